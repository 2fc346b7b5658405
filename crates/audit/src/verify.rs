//! Verification of the registry's hash-chained audit log, the one verifier of
//! `hpki-ca audit verify` (crates/cli), the operator console's "verify chain"
//! action and the checkpointer: the chain walk ([`Verifier`]), signed
//! checkpoints ([`CheckpointKey`], [`checkpoint_message`]) and the record of
//! checkpoints kept outside the database ([`Recorded`]). Pure: no network,
//! files only where named ([`Recorded::load`], [`CheckpointKey::load`]).
//!
//! The format of checkpoints and records is described in the crate's
//! documentation (crates/audit/src/lib.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use der::asn1::ObjectIdentifier;
use der::{Decode, Tag, Tagged};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use store::{audit_hash, AuditRecord};

/// Action of checkpoint entries (not one the store reserves for itself).
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";
/// Domain tag of the signed checkpoint message.
const CHECKPOINT_DOMAIN: &[u8] = b"hpki-audit-checkpoint-v1\0";

use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1 as PRIME256V1};

/// A checkpoint key or record file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Pem { path: PathBuf, source: pem::PemError },
    #[error("{path}: a {tag:?} PEM block, not PUBLIC KEY")]
    NotPublicKey { path: PathBuf, tag: String },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
}

/// A SubjectPublicKeyInfo that cannot verify checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a SubjectPublicKeyInfo: {0}")]
    NotSpki(der::Error),
    #[error("subjectPublicKey has unused bits")]
    UnusedBits,
    #[error("EC parameters: {0}")]
    EcParameters(der::Error),
    #[error("EC key without a named curve")]
    NoNamedCurve,
    #[error("EC curve {0}: only P-256 is supported")]
    Curve(ObjectIdentifier),
    #[error("public key algorithm {0}: only RSA and EC P-256 are supported")]
    Algorithm(ObjectIdentifier),
}

/// A hash given as hex that is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HexError {
    #[error("is not hex: {0}")]
    NotHex(#[from] hex::FromHexError),
    #[error("is {0} bytes, not 32")]
    Length(usize),
}

/// A time in microseconds that RFC 3339 cannot show.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("time {micros} µs: {source}")]
    Range { micros: i64, source: time::error::ComponentRange },
    #[error("time {micros} µs: {source}")]
    Format { micros: i64, source: time::error::Format },
}

/// Why a line of the checkpoint record is not a [`CheckpointRecord`] (the
/// parser's message, kept as text so that a [`Recorded`] can be cloned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnreadableLine(String);

impl From<serde_json::Error> for UnreadableLine {
    fn from(e: serde_json::Error) -> UnreadableLine {
        UnreadableLine(e.to_string())
    }
}

impl From<&str> for UnreadableLine {
    fn from(message: &str) -> UnreadableLine {
        UnreadableLine(message.to_owned())
    }
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
        if d.key_spki_sha256 != key.spki_sha256 {
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

/// RFC 3339 in UTC with exactly six fraction digits.
pub fn format_micros(micros: i64) -> Result<String, TimeError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|source| TimeError::Range { micros, source })?
        .format(&fmt)
        .map_err(|source| TimeError::Format { micros, source })
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

/// One line of the checkpoint record: a signed checkpoint as the registry took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The "audit.checkpoint" entry's own sequence and hash (hex) in the log.
    pub checkpoint_sequence: u64,
    pub checkpoint_hash: String,
    /// When it was appended (RFC 3339, UTC, microseconds) and by whom.
    pub at: String,
    pub actor: String,
    /// The entry it signs and that entry's hash, hex (the detail's `sequence` and `head_hash`).
    pub signs_sequence: u64,
    pub head_hash: String,
    pub algorithm: String,
    pub key_label: String,
    pub key_spki_sha256: String,
    /// Over [`checkpoint_message`], hex.
    pub signature: String,
}

impl CheckpointRecord {
    /// The record of the checkpoint entry `sequence` (hash `hash`) with `detail`.
    pub fn new(
        sequence: u64,
        hash: &[u8],
        at_unix_micros: i64,
        actor: &str,
        detail: &CheckpointDetail,
    ) -> Result<CheckpointRecord, TimeError> {
        Ok(CheckpointRecord {
            checkpoint_sequence: sequence,
            checkpoint_hash: hex::encode(hash),
            at: format_micros(at_unix_micros)?,
            actor: actor.to_owned(),
            signs_sequence: detail.sequence,
            head_hash: detail.head_hash.clone(),
            algorithm: detail.algorithm.clone(),
            key_label: detail.key_label.clone(),
            key_spki_sha256: detail.key_spki_sha256.clone(),
            signature: detail.signature.clone(),
        })
    }
}

/// Where the chain being verified came from (for the wording of a missing checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Live,
    Export,
}

/// The checkpoint record as read for `verify`: each non-blank line, parsed or
/// why not, with its line number.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: PathBuf,
    /// `None`: there is no such file.
    pub lines: Option<Vec<(usize, Result<CheckpointRecord, UnreadableLine>)>>,
}

/// How many recorded checkpoints the chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordsMatched {
    /// Distinct checkpoint sequences found in the chain as recorded.
    pub matched: u64,
    /// Record lines whose signature could not be checked for want of the public key.
    pub unchecked: u64,
}

/// A recorded checkpoint the chain does not hold as recorded, or a record that is not genuine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBroken {
    /// The recorded checkpoint's sequence; `None` when its line is unreadable.
    pub sequence: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for RecordBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit chain BROKEN: {}", self.reason)
    }
}

impl RecordBroken {
    /// For the exit message, after the full line was printed.
    pub fn summary(&self) -> String {
        match self.sequence {
            Some(s) => format!("audit chain broken: the recorded checkpoint at sequence {s} does not match the log"),
            None => "audit chain broken: the checkpoint record is unreadable".to_owned(),
        }
    }
}

/// A record line with its hex fields decoded.
struct RecordLine<'a> {
    line: usize,
    record: &'a CheckpointRecord,
    head: [u8; 32],
    entry_hash: [u8; 32],
    signature: Vec<u8>,
}

impl Recorded {
    /// Reads `path`; a missing file is an empty, absent record.
    pub fn load(path: &Path) -> Result<Recorded, LoadError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Recorded { path: path.to_owned(), lines: None })
            }
            Err(e) => return Err(LoadError::Io { path: path.to_owned(), source: e }),
        };
        let lines = bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| (i + 1, serde_json::from_slice::<CheckpointRecord>(l).map_err(UnreadableLine::from)))
            .collect();
        Ok(Recorded { path: path.to_owned(), lines: Some(lines) })
    }

    pub fn exists(&self) -> bool {
        self.lines.is_some()
    }

    /// Holds the verified chain `v` to every record: each must be signed by
    /// `key` and be in the chain at its sequence with the same signed head and
    /// the same entry hash. An unreadable line fails first; otherwise the
    /// failing record with the lowest sequence is named.
    pub fn check(
        &self,
        v: &Verified,
        key: Option<&CheckpointKey>,
        source: LogSource,
    ) -> Result<RecordsMatched, RecordBroken> {
        let Some(lines) = &self.lines else {
            return Ok(RecordsMatched::default());
        };
        let file = self.path.display();
        let mut decoded = Vec::with_capacity(lines.len());
        for (line, parsed) in lines {
            let unreadable = |why: String| RecordBroken {
                sequence: None,
                reason: format!("{file} line {line} is not a checkpoint record: {why}"),
            };
            let record = parsed.as_ref().map_err(|e| unreadable(e.to_string()))?;
            decoded.push(RecordLine {
                line: *line,
                record,
                head: hash32(&record.head_hash).map_err(|e| unreadable(format!("head_hash {e}")))?,
                entry_hash: hash32(&record.checkpoint_hash).map_err(|e| unreadable(format!("checkpoint_hash {e}")))?,
                signature: hex::decode(&record.signature)
                    .map_err(|e| unreadable(format!("signature is not hex: {e}")))?,
            });
        }
        decoded.sort_by_key(|d| (d.record.checkpoint_sequence, d.line));
        let mut matched = BTreeSet::new();
        let mut unchecked = 0;
        for d in &decoded {
            let seq = d.record.checkpoint_sequence;
            let fail = |why: String| RecordBroken {
                sequence: Some(seq),
                reason: format!("checkpoint at sequence {seq} recorded in {file} {why}"),
            };
            // Not signed by our key: a forged or corrupted record, whatever the chain says.
            match key {
                None => unchecked += 1,
                Some(k) if d.record.key_spki_sha256 != k.spki_sha256 => {
                    return Err(fail(format!(
                        "(line {}) is signed by another key (SPKI SHA-256 {}), not the one in {}",
                        d.line,
                        d.record.key_spki_sha256,
                        v.key_path.display()
                    )))
                }
                Some(k) if !k.verify(&checkpoint_message(d.record.signs_sequence, &d.head), &d.signature) => {
                    return Err(fail(format!(
                        "(line {}) has a signature that does not verify with {}: the record is forged or corrupted",
                        d.line,
                        v.key_path.display()
                    )))
                }
                Some(_) => {}
            }
            let Some(seen) = v.checkpoint_entries.get(&seq) else {
                return Err(fail(if seq > v.entries {
                    match source {
                        LogSource::Live => format!(
                            "is missing from the log (the log ends at {}): entries were removed from its end",
                            v.entries
                        ),
                        LogSource::Export => format!(
                            "is missing from the export (it ends at {}): entries were removed from the log's end, \
                             or the export was made before the checkpoint",
                            v.entries
                        ),
                    }
                } else {
                    format!(
                        "differs from the log: entry {seq} there is not a checkpoint (entries were removed from \
                         the log's end and others appended, or the record is another log's)"
                    )
                }));
            };
            if (seen.signs, seen.head) != (d.record.signs_sequence, d.head) {
                return Err(fail(format!(
                    "differs from the log: the entry there signs entry {} (hash {}), the record entry {} (hash {})",
                    seen.signs,
                    hex::encode(seen.head),
                    d.record.signs_sequence,
                    d.record.head_hash
                )));
            }
            if seen.entry_hash != d.entry_hash {
                return Err(fail(
                    "differs from the log: the checkpoint entry there has another hash (its time, actor or \
                     detail differ)"
                        .to_owned(),
                ));
            }
            matched.insert(seq);
        }
        Ok(RecordsMatched { matched: u64::try_from(matched.len()).unwrap_or(u64::MAX), unchecked })
    }

    /// A chain walk's outcome held to this record: the conclusion that
    /// `hpki-ca audit verify` prints and the console shows.
    pub fn conclude(
        &self,
        outcome: Result<Verified, Broken>,
        key: Option<&CheckpointKey>,
        source: LogSource,
    ) -> Conclusion {
        let verified = match outcome {
            Ok(v) => v,
            Err(b) => return Conclusion::Broken(b),
        };
        match self.check(&verified, key, source) {
            Ok(matched) => Conclusion::Holds(Holds { verified, matched }),
            Err(b) => Conclusion::Unrecorded(b),
        }
    }
}

/// What a verification concludes ([`Recorded::conclude`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// The first bad entry of the chain.
    Broken(Broken),
    /// A recorded checkpoint the chain does not hold as recorded, or a record that is not genuine.
    Unrecorded(RecordBroken),
    /// The chain and every recorded checkpoint hold (as far as they could be checked).
    Holds(Holds),
}

/// A chain that holds, and the recorded checkpoints found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holds {
    pub verified: Verified,
    pub matched: RecordsMatched,
}

impl Holds {
    /// Checkpoints, in the chain or in the record, whose signature could not be
    /// checked for want of the public key: a verification that is not complete.
    pub fn unchecked(&self) -> u64 {
        self.verified.unchecked + self.matched.unchecked
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcdsaP256,
}

/// A checkpoint verification key, from SubjectPublicKeyInfo.
#[derive(Debug, Clone)]
pub struct CheckpointKey {
    kind: KeyKind,
    /// RSAPublicKey DER, or the uncompressed P-256 point: what ring takes.
    public: Vec<u8>,
    spki_der: Vec<u8>,
    spki_sha256: String,
}

impl CheckpointKey {
    /// Reads an SPKI PEM file; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<CheckpointKey>, LoadError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Io { path: path.to_owned(), source: e }),
        };
        let block = pem::parse(&text).map_err(|source| LoadError::Pem { path: path.to_owned(), source })?;
        if block.tag() != "PUBLIC KEY" {
            return Err(LoadError::NotPublicKey { path: path.to_owned(), tag: block.tag().to_owned() });
        }
        CheckpointKey::from_spki_der(block.contents())
            .map(Some)
            .map_err(|source| LoadError::Key { path: path.to_owned(), source })
    }

    pub fn from_spki_der(der: &[u8]) -> Result<CheckpointKey, KeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(KeyError::NotSpki)?;
        let public = spki.subject_public_key.as_bytes().ok_or(KeyError::UnusedBits)?.to_vec();
        let alg = &spki.algorithm;
        let kind = if alg.oid == RSA_ENCRYPTION {
            KeyKind::Rsa
        } else if alg.oid == ID_EC_PUBLIC_KEY {
            let curve = match alg.parameters {
                Some(p) if p.tag() == Tag::ObjectIdentifier => {
                    p.decode_as::<ObjectIdentifier>().map_err(KeyError::EcParameters)?
                }
                _ => return Err(KeyError::NoNamedCurve),
            };
            if curve != PRIME256V1 {
                return Err(KeyError::Curve(curve));
            }
            KeyKind::EcdsaP256
        } else {
            return Err(KeyError::Algorithm(alg.oid));
        };
        Ok(CheckpointKey { kind, public, spki_der: der.to_vec(), spki_sha256: hex::encode(Sha256::digest(der)) })
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{
            UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256,
        };
        let alg: &'static dyn VerificationAlgorithm = match self.kind {
            KeyKind::Rsa => &RSA_PKCS1_2048_8192_SHA256,
            KeyKind::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, &self.public).verify(message, signature).is_ok()
    }

    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa => "rsa-pkcs1-sha256",
            KeyKind::EcdsaP256 => "ecdsa-p256-sha256",
        }
    }
}

impl Recorded {
    /// A record of these lines (tests; `None`: no record file).
    pub fn from_lines(
        path: PathBuf,
        lines: Option<Vec<(usize, Result<CheckpointRecord, UnreadableLine>)>>,
    ) -> Recorded {
        Recorded { path, lines }
    }
}

impl CheckpointKey {
    /// The SubjectPublicKeyInfo DER of this key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER, hex.
    pub fn spki_sha256(&self) -> &str {
        &self.spki_sha256
    }
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

    #[test]
    fn recorded_checkpoints_the_chain_holds_match() {
        let s = signer();
        let (log, mut records) = checkpointed_log(&s);
        let m = check(&log, &records, Some(&s.key), LogSource::Live).unwrap();
        assert_eq!(m, RecordsMatched { matched: 2, unchecked: 0 });
        // The same checkpoint recorded twice (two copies concatenated) is one match.
        records.push(records[0].clone());
        assert_eq!(check(&log, &records, Some(&s.key), LogSource::Live).unwrap().matched, 2);
        // Without the public key the records still match the chain, but their signatures are unchecked.
        assert_eq!(check(&log, &records, None, LogSource::Live).unwrap(), RecordsMatched { matched: 2, unchecked: 3 });
        // No record file: nothing to hold the chain to.
        let v = verify(&log, Some(s.key.clone())).unwrap();
        let absent = Recorded::from_lines("none.jsonl".into(), None);
        assert!(!absent.exists());
        assert_eq!(absent.check(&v, Some(&s.key), LogSource::Live).unwrap(), RecordsMatched::default());
    }

    #[test]
    fn a_cut_off_tail_is_named_by_the_first_recorded_checkpoint_it_lost() {
        let s = signer();
        let (mut log, records) = checkpointed_log(&s);
        log.truncate(6);
        // What is left is a valid chain with a valid checkpoint: only the record shows the cut.
        assert_eq!(verify(&log, Some(s.key.clone())).unwrap().checkpoints, 1);
        let b = check(&log, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert_eq!(
            b.to_string(),
            "audit chain BROKEN: checkpoint at sequence 7 recorded in cp.jsonl is missing from the log \
             (the log ends at 6): entries were removed from its end"
        );
        let b = check(&log, &records, Some(&s.key), LogSource::Export).unwrap_err();
        assert!(b.reason.contains("missing from the export (it ends at 6)"), "{b}");
        // Cut deeper: the lower of the two lost checkpoints is named.
        log.truncate(3);
        let b = check(&log, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(4), "{b}");
        assert!(b.reason.contains("(the log ends at 3)"), "{b}");
    }

    #[test]
    fn a_log_cut_and_grown_again_differs_from_the_record() {
        let s = signer();
        let (log, records) = checkpointed_log(&s);
        // Other entries where the checkpoint was.
        let mut regrown = log[..6].to_vec();
        append(&mut regrown, "test", "{}");
        append(&mut regrown, "test", "{}");
        let b = check(&regrown, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("differs from the log: entry 7 there is not a checkpoint"), "{b}");
        // A new, genuine checkpoint at 7 over another entry 6.
        let mut other_head = log[..5].to_vec();
        append(&mut other_head, "test", r#"{"other": true}"#);
        add_checkpoint(&mut other_head, &s);
        let b = check(&other_head, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("the entry there signs entry 6 (hash"), "{b}");
        // A checkpoint at 7 over the same entry 6, signed again: same head, another entry.
        let mut resigned = log[..6].to_vec();
        add_checkpoint(&mut resigned, &s);
        let b = check(&resigned, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("the checkpoint entry there has another hash"), "{b}");
    }

    #[test]
    fn a_record_not_signed_by_the_key_is_reported_before_the_chain_is_consulted() {
        let s = signer();
        let other = signer();
        let (log, records) = checkpointed_log(&s);
        // One bit of the signature flipped, on a checkpoint the chain does hold.
        let mut flipped = records.clone();
        let mut sig = hex::decode(&flipped[1].signature).unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        flipped[1].signature = hex::encode(sig);
        let b = check(&log, &flipped, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("(line 2) has a signature that does not verify with test.pub.pem"), "{b}");
        // A record of a checkpoint the log never had, made with another key: forged, not "missing".
        let mut forged = records.clone();
        let mut fake = records[1].clone();
        fake.checkpoint_sequence = 9;
        fake.key_spki_sha256 = other.key.spki_sha256().to_owned();
        forged.push(fake);
        let b = check(&log, &forged, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(9));
        assert!(b.reason.contains("(line 3) is signed by another key"), "{b}");
        // An unreadable line fails, naming the line.
        let mut unreadable = recorded(&records);
        if let Some(lines) = unreadable.lines.as_mut() {
            lines.insert(1, (2, Err("expected value at line 1 column 1".into())));
        }
        let v = verify(&log, Some(s.key.clone())).unwrap();
        let b = unreadable.check(&v, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, None);
        assert!(b.reason.starts_with("cp.jsonl line 2 is not a checkpoint record"), "{b}");
    }

    #[test]
    fn a_conclusion_is_the_chain_then_the_record() {
        let s = signer();
        let (log, records) = checkpointed_log(&s);
        let record = recorded(&records);
        let walked = |log: &[AuditRecord], key: Option<CheckpointKey>| verify(log, key);
        match record.conclude(walked(&log, Some(s.key.clone())), Some(&s.key), LogSource::Live) {
            Conclusion::Holds(h) => assert_eq!((h.verified.entries, h.matched.matched, h.unchecked()), (8, 2, 0)),
            other => panic!("{other:?}"),
        }
        // Without the key: both checkpoints in the chain and both record lines unchecked.
        match record.conclude(walked(&log, None), None, LogSource::Live) {
            Conclusion::Holds(h) => assert_eq!(h.unchecked(), 4),
            other => panic!("{other:?}"),
        }
        let mut edited = log.clone();
        edited[1].actor = "mallory".into();
        let broken = record.conclude(walked(&edited, None), None, LogSource::Live);
        assert!(matches!(broken, Conclusion::Broken(Broken { sequence: 2, .. })), "{broken:?}");
        let cut = record.conclude(walked(&log[..6], Some(s.key.clone())), Some(&s.key), LogSource::Live);
        assert!(matches!(cut, Conclusion::Unrecorded(RecordBroken { sequence: Some(7), .. })), "{cut:?}");
    }
}
