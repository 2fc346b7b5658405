//! Audit logs for the tests of this crate: chains hashed as the store hashes
//! them, a P-256 checkpoint signer, checkpoints and their records.

use std::path::PathBuf;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use store::{audit_hash, AuditRecord};

use crate::chain::{checkpoint_message, Broken, CheckpointDetail, Verified, Verifier, CHECKPOINT_ACTION};
use crate::key::CheckpointKey;
use crate::record::{CheckpointRecord, LogSource, RecordBroken, Recorded, RecordsMatched};
use crate::CHECKPOINT_KEY_LABEL;

/// SubjectPublicKeyInfo DER of a P-256 key, up to the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub(crate) struct Signer {
    pub(crate) pair: EcdsaKeyPair,
    pub(crate) rng: SystemRandom,
    pub(crate) key: CheckpointKey,
}

pub(crate) fn signer() -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
    let key = CheckpointKey::from_spki_der(&spki).unwrap();
    Signer { pair, rng, key }
}

pub(crate) fn append(log: &mut Vec<AuditRecord>, action: &str, detail_json: &str) {
    let (prev_hash, sequence, at) = match log.last() {
        Some(r) => (r.hash, r.sequence + 1, r.at_unix_micros + 7),
        None => ([0; 32], 1, 1_750_000_000_123_456),
    };
    let mut r = AuditRecord {
        sequence,
        at_unix_micros: at,
        actor: "op".into(),
        action: action.into(),
        subject: format!("s{sequence}"),
        detail_json: detail_json.into(),
        prev_hash,
        hash: [0; 32],
    };
    r.hash = audit_hash(&r);
    log.push(r);
}

pub(crate) fn chain(n: u64) -> Vec<AuditRecord> {
    let mut log = Vec::new();
    for i in 0..n {
        append(&mut log, "test", &format!(r#"{{"i": {i}, "z": [1.5, null], "a": "x"}}"#));
    }
    log
}

pub(crate) fn checkpoint_detail(s: &Signer, sequence: u64, hash: &[u8; 32]) -> String {
    let sig = s.pair.sign(&s.rng, &checkpoint_message(sequence, hash)).unwrap();
    serde_json::to_string(&CheckpointDetail {
        sequence,
        head_hash: hex::encode(hash),
        algorithm: s.key.algorithm().into(),
        key_label: CHECKPOINT_KEY_LABEL.into(),
        key_spki_sha256: s.key.spki_sha256().to_owned(),
        signature: hex::encode(sig.as_ref()),
    })
    .unwrap()
}

pub(crate) fn add_checkpoint(log: &mut Vec<AuditRecord>, s: &Signer) {
    let last = log.last().unwrap().clone();
    let detail = checkpoint_detail(s, last.sequence, &last.hash);
    append(log, CHECKPOINT_ACTION, &detail);
}

/// Recomputes every hash from `from` on, as someone rewriting the log would.
pub(crate) fn rechain(log: &mut [AuditRecord], from: usize) {
    for i in from..log.len() {
        if i > 0 {
            log[i].prev_hash = log[i - 1].hash;
        }
        log[i].hash = audit_hash(&log[i]);
    }
}

pub(crate) fn verify(log: &[AuditRecord], key: Option<CheckpointKey>) -> Result<Verified, Broken> {
    let mut v = Verifier::new(key, PathBuf::from("test.pub.pem"));
    for r in log {
        v.push(r)?;
    }
    Ok(v.finish())
}

pub(crate) fn broken_at(log: &[AuditRecord], key: Option<CheckpointKey>) -> Broken {
    verify(log, key).expect_err("the chain should be broken")
}

/// The record line the CA would have written for the checkpoint entry `r`.
pub(crate) fn record_of(r: &AuditRecord) -> CheckpointRecord {
    let d: CheckpointDetail = serde_json::from_str(&r.detail_json).unwrap();
    CheckpointRecord::new(r.sequence, &r.hash, r.at_unix_micros, &r.actor, &d).unwrap()
}

pub(crate) fn recorded(records: &[CheckpointRecord]) -> Recorded {
    let lines = records.iter().cloned().enumerate().map(|(i, r)| (i + 1, Ok(r))).collect();
    Recorded::from_lines("cp.jsonl".into(), Some(lines))
}

/// 1-3, a checkpoint at 4 (signs 3), 5-6, a checkpoint at 7 (signs 6), 8; and the records of 4 and 7.
pub(crate) fn checkpointed_log(s: &Signer) -> (Vec<AuditRecord>, Vec<CheckpointRecord>) {
    let mut log = chain(3);
    add_checkpoint(&mut log, s);
    append(&mut log, "test", "{}");
    append(&mut log, "test", "{}");
    add_checkpoint(&mut log, s);
    append(&mut log, "test", "{}");
    let records = vec![record_of(&log[3]), record_of(&log[6])];
    (log, records)
}

pub(crate) fn check(
    log: &[AuditRecord],
    records: &[CheckpointRecord],
    key: Option<&CheckpointKey>,
    source: LogSource,
) -> Result<RecordsMatched, RecordBroken> {
    let v = verify(log, key.cloned()).expect("the chain itself verifies");
    recorded(records).check(&v, key, source)
}
