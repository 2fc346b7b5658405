//! The record of checkpoints kept outside the database
//! (`<state_dir>/audit/checkpoints.jsonl`, one [`CheckpointRecord`] a line):
//! appending to it ([`append_record`]), reading it ([`Recorded::load`]) and
//! holding a verified chain to it ([`Recorded::check`], [`Recorded::conclude`]).

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chain::{checkpoint_message, hash32, Broken, CheckpointDetail, Verified};
use crate::error::{io, Error};
use crate::key::{CheckpointKey, LoadError};

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
/// RFC 3339 in UTC with exactly six fraction digits.
pub fn format_micros(micros: i64) -> Result<String, TimeError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|source| TimeError::Range { micros, source })?
        .format(&fmt)
        .map_err(|source| TimeError::Format { micros, source })
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
                Some(k) if d.record.key_spki_sha256 != k.spki_sha256() => {
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
impl Recorded {
    /// A record of these lines (tests; `None`: no record file).
    pub fn from_lines(
        path: PathBuf,
        lines: Option<Vec<(usize, Result<CheckpointRecord, UnreadableLine>)>>,
    ) -> Recorded {
        Recorded { path, lines }
    }
}

/// Appends `record` as one line to `path` and syncs it to disk. The folder is
/// made owner-only, the file owner-read/write; an existing file is only ever
/// appended to.
pub fn append_record(path: &Path, record: &CheckpointRecord) -> Result<(), Error> {
    let mut line = serde_json::to_vec(record).map_err(Error::RecordJson)?;
    line.push(b'\n');
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len > 0 {
        // A line cut short by a crash must not swallow this one: it stays a bad line of its own.
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1)).and_then(|_| file.read_exact(&mut last)).map_err(io(path))?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    // One write on an O_APPEND file: a manual and an automatic checkpoint cannot interleave.
    file.write_all(&line).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    if let (0, Some(dir)) = (len, dir) {
        // A new file: its name must survive a crash too.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use store::AuditRecord;

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

    #[cfg(unix)]
    #[test]
    fn records_are_appended_owner_only_and_a_torn_line_stays_on_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let s = signer();
        let (log, records) = checkpointed_log(&s);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit/checkpoints.jsonl");
        assert!(!Recorded::load(&path).unwrap().exists());
        append_record(&path, &records[0]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        // A write cut short by a crash, then the next checkpoint.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"checkpoint_seq").unwrap();
        append_record(&path, &records[1]).unwrap();
        let loaded = Recorded::load(&path).unwrap();
        let lines = loaded.lines.as_ref().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!((lines[0].0, lines[0].1.as_ref().unwrap()), (1, &records[0]));
        assert!(lines[1].1.is_err());
        assert_eq!((lines[2].0, lines[2].1.as_ref().unwrap()), (3, &records[1]));
        let v = verify(&log, Some(s.key.clone())).unwrap();
        assert_eq!(loaded.check(&v, Some(&s.key), LogSource::Live).unwrap_err().sequence, None);
        // Without the torn line both records match.
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().filter(|l| l.ends_with('}')).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        assert_eq!(Recorded::load(&path).unwrap().check(&v, Some(&s.key), LogSource::Live).unwrap().matched, 2);
    }
}
