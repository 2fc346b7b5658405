//! The registry's hash-chained audit log, as its readers and its checkpointer
//! see it: export it as JSON lines, verify it (from the live registry or from an
//! export) and anchor its head with a checkpoint signed in the HSM. The chain
//! itself (`store::AuditRecord`, `store::audit_hash`) is the store's, which
//! appends and hashes entries; this crate depends on it, never the reverse.
//! `hpki-ca audit …` (crates/cli), the operator console's "verify chain" and
//! the crl process's periodic checkpointer all use the one [`Verifier`].
//!
//! Verification recomputes every entry's hash with [`store::audit_hash`] and
//! checks that sequences run 1, 2, 3 … without a gap, that each entry names its
//! predecessor's hash and that time never runs backwards. Editing any field of
//! any entry therefore breaks the chain at exactly that entry.
//!
//! The chain alone cannot tell a consistent rewrite (an entry changed and every
//! later hash recomputed) from the real log; checkpoints can. A checkpoint is an
//! ordinary entry, action [`CHECKPOINT_ACTION`], whose detail names a sequence
//! and its hash and carries a signature over
//! `"hpki-audit-checkpoint-v1\0" ‖ sequence (8 bytes, big-endian) ‖ hash (32 bytes)`
//! by the HSM key [`CHECKPOINT_KEY_LABEL`]. The ceremony writes that key's
//! public half to `<cert_dir>/audit-checkpoint.pub.pem` ([`CHECKPOINT_PUB_FILE`]),
//! so `verify` needs no HSM. A checkpoint whose head is not the chain's, or whose
//! signature does not verify, breaks the chain at the checkpoint's own sequence.
//!
//! Checkpoints inside the log cannot show that its tail was cut off, the
//! latest checkpoints with it: what is left still verifies. So every checkpoint
//! the CA signs is also appended to a record outside the database,
//! `<state_dir>/audit/checkpoints.jsonl` ([`CheckpointRecord`], one JSON line
//! each), and `verify` requires every checkpoint recorded there to be in the
//! chain, unchanged, at its sequence.
//!
//! Export lines carry `detail` (the parsed JSON, for people and `jq`) and
//! `detail_json` (the exact text the hash covers); `verify --file` requires the
//! two to agree, so an edit of either is caught.
//!
//! Modules: [`chain`] (the chain walk and checkpoint entries: the verifier),
//! [`key`] (checkpoint keys), [`record`] (the checkpoint record outside the
//! database, and what a verification concludes), [`registry`] (ListAudit page
//! by page, the live verification), [`export`] (export lines, verifying an
//! export), [`checkpoint`] (signing and recording a checkpoint) and
//! [`checkpointer`] (the periodic task of the crl process).

use std::time::{Duration, Instant};

pub mod chain;
pub mod checkpoint;
pub mod checkpointer;
mod error;
pub mod export;
pub mod key;
pub mod record;
pub mod registry;
#[cfg(test)]
mod testing;

pub use chain::{
    broken, checkpoint_message, hash32, record_from_parts, Broken, CheckpointDetail, HexError, SeenCheckpoint,
    Verified, Verifier, CHECKPOINT_ACTION,
};
pub use checkpoint::{checkpoint_now, CheckpointError, CheckpointFiles, CheckpointOutcome, Checkpointer};
pub use error::Error;
pub use export::{verify_file, ExportLine, Exported, LineError};
pub use key::{CheckpointKey, KeyError, LoadError};
pub use record::{
    append_record, format_micros, CheckpointRecord, Conclusion, Holds, LogSource, RecordBroken, Recorded,
    RecordsMatched, TimeError, UnreadableLine,
};
pub use registry::{record_from_entry, verify_live, Pages};

/// HSM label of the key that signs audit-log checkpoints (`hpki-ca audit checkpoint`).
pub const CHECKPOINT_KEY_LABEL: &str = "audit-checkpoint";
/// Its public half, SubjectPublicKeyInfo PEM in the certificate folder, for `hpki-ca audit verify`.
pub const CHECKPOINT_PUB_FILE: &str = "audit-checkpoint.pub.pem";

/// How often long exports and verifications report progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Told the number of entries done so far, at most once per [`PROGRESS_EVERY`],
/// by long exports and verifications (the CLI prints it on stderr).
pub type Progress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// A [`Progress`] that is told nothing.
pub fn no_progress(_done: u64) {}

/// Calls a [`Progress`] at most once per [`PROGRESS_EVERY`].
pub(crate) struct Throttle<'a> {
    report: Progress<'a>,
    last: Instant,
}

impl<'a> Throttle<'a> {
    pub(crate) fn new(report: Progress<'a>) -> Throttle<'a> {
        Throttle { report, last: Instant::now() }
    }

    pub(crate) fn tick(&mut self, done: u64) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            (self.report)(done);
            self.last = Instant::now();
        }
    }
}
