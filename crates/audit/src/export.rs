//! Exports: one JSON object per entry and line ([`ExportLine`]), written from
//! the live log, and verified again from the file (`hpki-ca audit verify --file`).

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use proto::registry::v1 as pb;
use proto::registry::v1::registry_client::RegistryClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::AuditRecord;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic::transport::Channel;

use crate::chain::{broken, hash32, Broken, HexError, Verified, Verifier};
use crate::error::{io, Error};
use crate::record::format_micros;
use crate::registry::Pages;
use crate::{Progress, Throttle};

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportLine {
    pub sequence: u64,
    /// RFC 3339, UTC, with microseconds.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// `detail_json` parsed (null when empty, a string when it is not JSON).
    pub detail: Value,
    /// The exact text the hash covers.
    pub detail_json: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Why an export line cannot stand for an entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("detail differs from detail_json")]
    DetailDiffers,
    #[error("at {text:?}: {source}")]
    Time { text: String, source: time::error::Parse },
    #[error("at {0:?} is finer than a microsecond")]
    FinerThanMicros(String),
    #[error("at {0:?} is out of range")]
    TimeOutOfRange(String),
    #[error("{field} {source}")]
    Hash { field: &'static str, source: HexError },
}

fn detail_value(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn parse_micros(text: &str) -> Result<i64, LineError> {
    let nanos = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|source| LineError::Time { text: text.to_owned(), source })?
        .unix_timestamp_nanos();
    if nanos % 1000 != 0 {
        return Err(LineError::FinerThanMicros(text.to_owned()));
    }
    i64::try_from(nanos / 1000).map_err(|_| LineError::TimeOutOfRange(text.to_owned()))
}

impl ExportLine {
    /// The line of an entry as the registry sent it.
    pub fn from_entry(e: &pb::AuditEntry) -> Result<ExportLine, Error> {
        Ok(ExportLine {
            sequence: e.sequence,
            at: format_micros(e.at_unix_micros).map_err(|source| Error::EntryTime { sequence: e.sequence, source })?,
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            detail: detail_value(&e.detail_json),
            detail_json: e.detail_json.clone(),
            prev_hash: hex::encode(&e.prev_hash),
            hash: hex::encode(&e.hash),
        })
    }

    /// The record this line stands for, or why it cannot stand for one.
    pub fn to_record(&self) -> Result<AuditRecord, LineError> {
        if detail_value(&self.detail_json) != self.detail {
            return Err(LineError::DetailDiffers);
        }
        Ok(AuditRecord {
            sequence: self.sequence,
            at_unix_micros: parse_micros(&self.at)?,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            detail_json: self.detail_json.clone(),
            prev_hash: hash32(&self.prev_hash).map_err(|source| LineError::Hash { field: "prev_hash", source })?,
            hash: hash32(&self.hash).map_err(|source| LineError::Hash { field: "hash", source })?,
        })
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub entries: u64,
    /// The sequence of the last entry written (0 for none).
    pub last: u64,
}

/// Writes every entry of the live log to `sink` as export lines; `shown` names
/// the sink in errors.
pub async fn export(
    client: &mut RegistryClient<Channel>,
    sink: &mut dyn Write,
    shown: &Path,
    progress: Progress<'_>,
) -> Result<Exported, Error> {
    let mut pages = Pages::new(client);
    let mut progress = Throttle::new(progress);
    let mut count = 0u64;
    let mut last = 0u64;
    while let Some(page) = pages.next().await? {
        for e in &page {
            let line = serde_json::to_string(&ExportLine::from_entry(e)?)
                .map_err(|source| Error::EntryJson { sequence: e.sequence, source })?;
            writeln!(sink, "{line}").map_err(io(shown))?;
            count += 1;
            last = e.sequence;
        }
        progress.tick(count);
    }
    sink.flush().map_err(io(shown))?;
    Ok(Exported { entries: count, last })
}

/// [`export`] into the file `path`: written whole as `<path>.tmp`, synced,
/// then renamed into place.
pub async fn export_to_file(
    client: &mut RegistryClient<Channel>,
    path: &Path,
    progress: Progress<'_>,
) -> Result<Exported, Error> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = PathBuf::from(name);
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut sink = BufWriter::new(file);
    let exported = export(client, &mut sink, path, progress).await?;
    drop(sink);
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(exported)
}

/// Walks the export at `path` with `v`: the verdict (a line that is no entry
/// breaks the chain where it stands), or why the file could not be read.
pub fn verify_file(path: &Path, mut v: Verifier, progress: Progress<'_>) -> Result<Result<Verified, Broken>, Error> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut progress = Throttle::new(progress);
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(Err(broken(v.expected(), format!("line {line_no} is not UTF-8"))));
            }
            Err(e) => return Err(io(path)(e)),
        };
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<ExportLine>(&line)
            .map_err(|e| format!("line {line_no} is not an audit entry: {e}"))
            .and_then(|l| l.to_record().map_err(|e| format!("line {line_no}: {e}")));
        let checked = match record {
            Ok(r) => v.push(&r),
            Err(reason) => Err(broken(v.expected(), reason)),
        };
        if let Err(b) = checked {
            return Ok(Err(b));
        }
        progress.tick(v.expected() - 1);
    }
    Ok(Ok(v.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn export_lines_round_trip_and_detect_edits() {
        let log = chain(3);
        for r in &log {
            let entry = pb::AuditEntry {
                sequence: r.sequence,
                at_unix_micros: r.at_unix_micros,
                actor: r.actor.clone(),
                action: r.action.clone(),
                subject: r.subject.clone(),
                detail_json: r.detail_json.clone(),
                prev_hash: r.prev_hash.to_vec(),
                hash: r.hash.to_vec(),
            };
            let text = serde_json::to_string(&ExportLine::from_entry(&entry).unwrap()).unwrap();
            let line: ExportLine = serde_json::from_str(&text).unwrap();
            assert_eq!(&line.to_record().unwrap(), r, "{text}");
            assert_eq!(line.detail["i"], serde_json::json!(r.sequence - 1));

            let mut edited = line.clone();
            edited.detail["a"] = "y".into();
            assert_eq!(edited.to_record().unwrap_err().to_string(), "detail differs from detail_json");
            let mut finer = line.clone();
            finer.at = finer.at.replace('Z', "1Z");
            assert!(finer.to_record().unwrap_err().to_string().contains("finer than a microsecond"));
        }
    }

    #[test]
    fn times_have_six_fraction_digits() {
        assert_eq!(format_micros(1_750_000_000_000_000).unwrap(), "2025-06-15T15:06:40.000000Z");
        assert_eq!(parse_micros("2025-06-15T15:06:40.000001Z").unwrap(), 1_750_000_000_000_001);
        assert_eq!(parse_micros("2025-06-16T00:06:40.5+09:00").unwrap(), 1_750_000_000_500_000);
        assert_eq!(detail_value(""), Value::Null);
        assert_eq!(detail_value("not json"), Value::String("not json".into()));
    }

    #[test]
    fn verify_file_reports_the_line_at_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = chain(4);
        let mut text = String::new();
        for r in &log {
            let line = ExportLine {
                sequence: r.sequence,
                at: format_micros(r.at_unix_micros).unwrap(),
                actor: r.actor.clone(),
                action: r.action.clone(),
                subject: r.subject.clone(),
                detail: detail_value(&r.detail_json),
                detail_json: r.detail_json.clone(),
                prev_hash: hex::encode(r.prev_hash),
                hash: hex::encode(r.hash),
            };
            text.push_str(&serde_json::to_string(&line).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, &text).unwrap();
        let v = verify_file(&path, Verifier::new(None, "k".into()), &mut crate::no_progress).unwrap().unwrap();
        assert_eq!(v.entries, 4);

        std::fs::write(&path, text.replace("\"subject\":\"s3\"", "\"subject\":\"s9\"")).unwrap();
        let b = verify_file(&path, Verifier::new(None, "k".into()), &mut crate::no_progress).unwrap().unwrap_err();
        assert_eq!(b.sequence, 3, "{b}");

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{{not json\n{}\n", lines[0], lines[1])).unwrap();
        let b = verify_file(&path, Verifier::new(None, "k".into()), &mut crate::no_progress).unwrap().unwrap_err();
        assert_eq!(b.sequence, 2, "{b}");
        assert!(b.reason.contains("line 2"), "{b}");
    }
}
