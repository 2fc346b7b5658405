//! The chain walk, the one verifier of `hpki-ca audit verify` (crates/cli),
//! the operator console's "verify chain" and the checkpointer ([`Verifier`]):
//! every entry's sequence, link, time and hash, and every signed checkpoint
//! entry ([`CheckpointDetail`], [`checkpoint_message`]) against the checkpoint
//! key. Pure: no network, no files.
//!
//! The format of checkpoints is described in the crate's documentation
//! (crates/audit/src/lib.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use store::{audit_hash, AuditRecord};

use crate::key::CheckpointKey;

/// Action of checkpoint entries (not one the store reserves for itself).
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";
/// Domain tag of the signed checkpoint message.
const CHECKPOINT_DOMAIN: &[u8] = b"hpki-audit-checkpoint-v1\0";

/// A hash given as hex that is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HexError {
    #[error("is not hex: {0}")]
    NotHex(#[from] hex::FromHexError),
    #[error("is {0} bytes, not 32")]
    Length(usize),
}

/// An entry as the registry sends it (hashes as bytes): hashes of the wrong
/// length break the chain at `expected`.
#[allow(clippy::too_many_arguments)]
pub fn record_from_parts(
    expected: u64,
    sequence: u64,
    at_unix_micros: i64,
    actor: String,
    action: String,
    subject: String,
    detail_json: String,
    prev_hash: &[u8],
    hash: &[u8],
) -> Result<AuditRecord, Broken> {
    let hash32 = |name: &str, b: &[u8]| {
        <[u8; 32]>::try_from(b).map_err(|_| broken(expected, format!("{name} is {} bytes, not 32", b.len())))
    };
    Ok(AuditRecord {
        prev_hash: hash32("prev_hash", prev_hash)?,
        hash: hash32("hash", hash)?,
        sequence,
        at_unix_micros,
        actor,
        action,
        subject,
        detail_json,
    })
}

/// The first bad entry: its sequence (where it should be in the chain) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub sequence: u64,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit chain BROKEN at sequence {}: {}", self.sequence, self.reason)
    }
}

pub fn broken(sequence: u64, reason: impl Into<String>) -> Broken {
    Broken { sequence, reason: reason.into() }
}

/// What a whole, unbroken chain looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// Hash of the last entry; zeros for an empty log.
    pub head: [u8; 32],
    /// Checkpoints whose head and signature were checked.
    pub checkpoints: u64,
    /// Checkpoints that could not be checked for want of the public key.
    pub unchecked: u64,
    /// The latest checked checkpoint: (its own sequence, the sequence it signs).
    pub latest_checkpoint: Option<(u64, u64)>,
    /// Every checkpoint entry whose head matched the chain, by its own sequence
    /// (signature checked or not): what recorded checkpoints are held against.
    pub checkpoint_entries: BTreeMap<u64, SeenCheckpoint>,
    /// Where the public key was looked for.
    pub key_path: PathBuf,
}

/// A checkpoint entry as the chain holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenCheckpoint {
    /// The entry it signs and that entry's hash.
    pub signs: u64,
    pub head: [u8; 32],
    /// The checkpoint entry's own hash.
    pub entry_hash: [u8; 32],
}

impl Verified {
    /// The last entry is a checkpoint whose signature was checked: the whole
    /// chain is anchored and a new checkpoint would only sign that one.
    pub fn head_is_checkpoint(&self) -> bool {
        self.entries > 0 && self.latest_checkpoint.is_some_and(|(at, _)| at == self.entries)
    }
}

/// Walks a chain entry by entry, in order, keeping 32 bytes per entry (the
/// hashes checkpoints may refer back to).
pub struct Verifier {
    key: Option<CheckpointKey>,
    key_path: PathBuf,
    next_sequence: u64,
    last_hash: [u8; 32],
    last_at: i64,
    hashes: Vec<[u8; 32]>,
    checkpoints: u64,
    unchecked: u64,
    latest_checkpoint: Option<(u64, u64)>,
    seen: BTreeMap<u64, SeenCheckpoint>,
}

impl Verifier {
    /// `key` is the checkpoint public key if there is one; `key_path` names it in messages.
    pub fn new(key: Option<CheckpointKey>, key_path: PathBuf) -> Verifier {
        Verifier {
            key,
            key_path,
            next_sequence: 1,
            last_hash: [0; 32],
            last_at: i64::MIN,
            hashes: Vec::new(),
            checkpoints: 0,
            unchecked: 0,
            latest_checkpoint: None,
            seen: BTreeMap::new(),
        }
    }

    /// The sequence the next entry must have.
    pub fn expected(&self) -> u64 {
        self.next_sequence
    }

    /// Checks the next entry of the chain.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let seq = self.next_sequence;
        if r.sequence > seq {
            return Err(broken(seq, format!("entry missing (the next one says sequence {})", r.sequence)));
        }
        if r.sequence < seq {
            return Err(broken(seq, format!("entry out of place (it says sequence {})", r.sequence)));
        }
        if r.prev_hash != self.last_hash {
            return Err(broken(seq, "previous hash does not match"));
        }
        if r.at_unix_micros < self.last_at {
            return Err(broken(seq, "time runs backwards"));
        }
        if audit_hash(r) != r.hash {
            return Err(broken(seq, "hash does not match the entry"));
        }
        if r.action == CHECKPOINT_ACTION {
            self.checkpoint(r)?;
        }
        self.hashes.push(r.hash);
        self.next_sequence = seq + 1;
        self.last_hash = r.hash;
        self.last_at = r.at_unix_micros;
        Ok(())
    }

    fn checkpoint(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let seq = r.sequence;
        let d: CheckpointDetail = serde_json::from_str(&r.detail_json)
            .map_err(|e| broken(seq, format!("checkpoint detail unreadable: {e}")))?;
        if d.sequence == 0 || d.sequence >= seq {
            return Err(broken(seq, format!("checkpoint signs sequence {}, not an earlier entry", d.sequence)));
        }
        let head = hash32(&d.head_hash).map_err(|e| broken(seq, format!("checkpoint head_hash {e}")))?;
        let index = usize::try_from(d.sequence - 1).map_err(|_| broken(seq, "checkpoint sequence out of range"))?;
        if self.hashes.get(index) != Some(&head) {
            return Err(broken(
                seq,
                format!("checkpoint head does not match the chain: entry {} has another hash", d.sequence),
            ));
        }
        let signature =
            hex::decode(&d.signature).map_err(|e| broken(seq, format!("checkpoint signature is not hex: {e}")))?;
        self.seen.insert(seq, SeenCheckpoint { signs: d.sequence, head, entry_hash: r.hash });
        let Some(key) = &self.key else {
            self.unchecked += 1;
            return Ok(());
        };
        if d.key_spki_sha256 != key.spki_sha256() {
            return Err(broken(
                seq,
                format!(
                    "checkpoint signed by another key (SPKI SHA-256 {}), not the one in {}",
                    d.key_spki_sha256,
                    self.key_path.display()
                ),
            ));
        }
        if !key.verify(&checkpoint_message(d.sequence, &head), &signature) {
            return Err(broken(seq, "checkpoint signature does not verify"));
        }
        self.checkpoints += 1;
        self.latest_checkpoint = Some((seq, d.sequence));
        Ok(())
    }

    pub fn finish(self) -> Verified {
        Verified {
            entries: self.next_sequence - 1,
            head: self.last_hash,
            checkpoints: self.checkpoints,
            unchecked: self.unchecked,
            latest_checkpoint: self.latest_checkpoint,
            checkpoint_entries: self.seen,
            key_path: self.key_path,
        }
    }
}
/// A 32-byte hash from hex.
pub fn hash32(text: &str) -> Result<[u8; 32], HexError> {
    let bytes = hex::decode(text)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| HexError::Length(bytes.len()))
}

/// The detail of an "audit.checkpoint" entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointDetail {
    /// The entry whose hash is signed (the head when the checkpoint was made).
    pub sequence: u64,
    /// Its hash, hex.
    pub head_hash: String,
    /// "rsa-pkcs1-sha256" or "ecdsa-p256-sha256".
    pub algorithm: String,
    pub key_label: String,
    /// SHA-256 of the signing key's SubjectPublicKeyInfo DER, hex.
    pub key_spki_sha256: String,
    /// Over [`checkpoint_message`], hex: PKCS#1 v1.5 for RSA, DER Ecdsa-Sig-Value for P-256.
    pub signature: String,
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(sequence: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn an_intact_chain_verifies() {
        let log = chain(5);
        let v = verify(&log, None).unwrap();
        assert_eq!((v.entries, v.head, v.checkpoints, v.unchecked), (5, log[4].hash, 0, 0));
        assert_eq!(verify(&[], None).unwrap().entries, 0);
    }

    type Edit = (&'static str, fn(&mut AuditRecord));

    #[test]
    fn every_kind_of_edit_breaks_at_that_entry() {
        let edits: [Edit; 8] = [
            ("actor", |r| r.actor.push('x')),
            ("action", |r| r.action = "other".into()),
            ("subject", |r| r.subject.clear()),
            ("detail", |r| r.detail_json = r.detail_json.replace(' ', "")),
            ("time", |r| r.at_unix_micros += 1),
            ("prev_hash", |r| r.prev_hash[0] ^= 1),
            ("hash", |r| r.hash[31] ^= 1),
            ("sequence", |r| r.sequence = 7),
        ];
        for (what, edit) in edits {
            let mut log = chain(5);
            edit(&mut log[2]);
            let b = broken_at(&log, None);
            assert_eq!(b.sequence, 3, "{what}: {b}");
        }
    }

    #[test]
    fn missing_repeated_or_backwards_entries_break_the_chain() {
        let mut gap = chain(5);
        gap.remove(3);
        let b = broken_at(&gap, None);
        assert_eq!(b.sequence, 4);
        assert!(b.reason.contains("missing"), "{b}");

        let mut repeated = chain(3);
        repeated.insert(2, repeated[1].clone());
        assert_eq!(broken_at(&repeated, None).sequence, 3);

        let mut backwards = chain(3);
        backwards[2].at_unix_micros = backwards[1].at_unix_micros - 1;
        rechain(&mut backwards, 2);
        let b = broken_at(&backwards, None);
        assert_eq!((b.sequence, b.reason.as_str()), (3, "time runs backwards"));
    }

    #[test]
    fn a_signed_checkpoint_verifies() {
        let s = signer();
        let mut log = chain(4);
        add_checkpoint(&mut log, &s);
        append(&mut log, "test", "");
        let v = verify(&log, Some(s.key.clone())).unwrap();
        assert_eq!((v.entries, v.checkpoints, v.latest_checkpoint), (6, 1, Some((5, 4))));
        // Without the public key the chain still verifies but the checkpoint is counted as unchecked.
        let v = verify(&log, None).unwrap();
        assert_eq!((v.checkpoints, v.unchecked), (0, 1));
    }

    #[test]
    fn the_head_is_anchored_only_while_a_verified_checkpoint_is_last() {
        let s = signer();
        let mut log = chain(3);
        assert!(!verify(&log, Some(s.key.clone())).unwrap().head_is_checkpoint());
        add_checkpoint(&mut log, &s);
        assert!(verify(&log, Some(s.key.clone())).unwrap().head_is_checkpoint());
        // Unchecked for want of the key: not anchored as far as we can tell.
        assert!(!verify(&log, None).unwrap().head_is_checkpoint());
        append(&mut log, "test", "{}");
        assert!(!verify(&log, Some(s.key.clone())).unwrap().head_is_checkpoint());
        assert!(!verify(&[], Some(s.key.clone())).unwrap().head_is_checkpoint());
    }

    #[test]
    fn a_consistent_rewrite_is_caught_by_the_next_checkpoint() {
        let s = signer();
        let mut log = chain(4);
        add_checkpoint(&mut log, &s);
        append(&mut log, "test", "{}");
        log[1].actor = "mallory".into();
        rechain(&mut log, 1);
        let b = broken_at(&log, Some(s.key.clone()));
        assert_eq!(b.sequence, 5, "{b}");
        assert!(b.reason.contains("head does not match"), "{b}");
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_breaks_the_chain_at_the_checkpoint() {
        let s = signer();
        let other = signer();
        // Signed by another key.
        let mut log = chain(3);
        add_checkpoint(&mut log, &other);
        let b = broken_at(&log, Some(s.key.clone()));
        assert_eq!(b.sequence, 4);
        assert!(b.reason.contains("another key"), "{b}");
        // Claims our key but the signature is someone else's.
        let mut log = chain(3);
        let last = log[2].clone();
        let mut d: CheckpointDetail = serde_json::from_str(&checkpoint_detail(&other, 3, &last.hash)).unwrap();
        d.key_spki_sha256 = s.key.spki_sha256().to_owned();
        append(&mut log, CHECKPOINT_ACTION, &serde_json::to_string(&d).unwrap());
        let b = broken_at(&log, Some(s.key.clone()));
        assert_eq!((b.sequence, b.reason.as_str()), (4, "checkpoint signature does not verify"));
        // Signs a later entry than exists before it, or nothing readable.
        let mut log = chain(3);
        append(&mut log, CHECKPOINT_ACTION, &checkpoint_detail(&s, 4, &[0; 32]));
        assert_eq!(broken_at(&log, Some(s.key.clone())).sequence, 4);
        let mut log = chain(3);
        append(&mut log, CHECKPOINT_ACTION, "{}");
        assert_eq!(broken_at(&log, Some(s.key.clone())).sequence, 4);
    }
}
