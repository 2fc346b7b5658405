//! The audit view (auditors only): the registry's audit log filtered by
//! actor, action and time, and "verify chain", the same verification as
//! `hpki-ca audit verify` (the `audit` crate's [`Verifier`]): every entry's
//! hash and link, every signed checkpoint, and the record of checkpoints kept
//! outside the database.

use std::path::PathBuf;

use audit::{Broken, CheckpointKey, Conclusion, LogSource, Pages, Recorded, Verifier};
use proto::registry::v1 as reg;

use crate::error::ConsoleError;
use crate::App;

/// At most this many matching entries are shown (the newest).
pub const SHOWN: usize = 500;

/// What the audit page was asked to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact actor (case-insensitive); empty: anyone.
    pub actor: String,
    /// Action prefix (`emergency` matches `emergency.request`); empty: any.
    pub action: String,
    /// Microseconds since the epoch, inclusive; `None`: open.
    pub from_micros: Option<i64>,
    pub to_micros: Option<i64>,
}

impl Filter {
    pub fn matches(&self, e: &reg::AuditEntry) -> bool {
        (self.actor.is_empty() || e.actor.eq_ignore_ascii_case(&self.actor))
            && (self.action.is_empty() || e.action.starts_with(&self.action))
            && self.from_micros.is_none_or(|f| e.at_unix_micros >= f)
            && self.to_micros.is_none_or(|t| e.at_unix_micros <= t)
    }
}

/// Every entry of the log, page by page (each ListAudit reply holds up to ~2 MiB),
/// handed to `each` in order; `each` returning `false` stops early.
async fn walk(app: &App, mut each: impl FnMut(reg::AuditEntry) -> bool) -> Result<(), ConsoleError> {
    let mut client = app.audit_registry.clone();
    let mut pages = Pages::new(&mut client);
    while let Some(entries) = pages.next().await.map_err(|s| ConsoleError::upstream("registry", s))? {
        for e in entries {
            if !each(e) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The matching entries (the newest [`SHOWN`], oldest first) and how many matched.
pub async fn list(app: &App, filter: &Filter) -> Result<(Vec<reg::AuditEntry>, usize), ConsoleError> {
    let mut shown = std::collections::VecDeque::new();
    let mut matched = 0usize;
    walk(app, |e| {
        if filter.matches(&e) {
            matched += 1;
            if shown.len() == SHOWN {
                shown.pop_front();
            }
            shown.push_back(e);
        }
        true
    })
    .await?;
    Ok((shown.into(), matched))
}

/// The verdict of "verify chain", as `hpki-ca audit verify` would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The chain, its checkpoints and the checkpoint record all hold.
    Ok {
        entries: u64,
        head: String,
        checkpoints: u64,
        /// The latest verified checkpoint: (its sequence, the entry it signs).
        latest_checkpoint: Option<(u64, u64)>,
        /// Recorded checkpoints found in the chain.
        recorded: u64,
        record_path: String,
    },
    /// The first bad entry, or a recorded checkpoint the chain does not hold.
    Broken { sequence: Option<u64>, reason: String },
    /// Nothing is broken, but the verification is not complete: checkpoints
    /// that could not be checked, or no checkpoint record to hold the log to
    /// (the CLI's non-zero exit without `--without-record`).
    Incomplete { entries: u64, head: String, reason: String },
}

impl Verdict {
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Ok { .. } => "OK",
            Verdict::Broken { .. } => "BROKEN",
            Verdict::Incomplete { .. } => "INCOMPLETE",
        }
    }
}

fn load_error(e: audit::LoadError) -> ConsoleError {
    ConsoleError::AuditFiles(e)
}

/// The chain walked entry by entry, then held to the checkpoint record: the
/// verification of `hpki-ca audit verify`, apart from where the entries come from.
pub struct Check {
    verifier: Verifier,
    key: Option<CheckpointKey>,
    broken: Option<Broken>,
}

impl Check {
    pub fn new(key: Option<CheckpointKey>, key_path: PathBuf) -> Check {
        Check { verifier: Verifier::new(key.clone(), key_path), key, broken: None }
    }

    /// The next entry; `false` once the chain is broken (the rest need not come).
    pub fn push(&mut self, e: reg::AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        match self.verifier.push_entry(e) {
            Ok(()) => true,
            Err(b) => {
                self.broken = Some(b);
                false
            }
        }
    }

    /// The verdict, with `recorded` (read before the first entry was listed).
    pub fn finish(self, recorded: &Recorded) -> Verdict {
        let outcome = match self.broken {
            Some(b) => Err(b),
            None => Ok(self.verifier.finish()),
        };
        let holds = match recorded.conclude(outcome, self.key.as_ref(), LogSource::Live) {
            Conclusion::Holds(holds) => holds,
            Conclusion::Broken(b) => return Verdict::Broken { sequence: Some(b.sequence), reason: b.to_string() },
            Conclusion::Unrecorded(b) => return Verdict::Broken { sequence: b.sequence, reason: b.to_string() },
        };
        let v = &holds.verified;
        let head = hex::encode(v.head);
        let unchecked = holds.unchecked();
        if unchecked > 0 {
            return Verdict::Incomplete {
                entries: v.entries,
                head,
                reason: format!("{unchecked} checkpoint(s) not checked: no public key at {}", v.key_path.display()),
            };
        }
        if !recorded.exists() {
            return Verdict::Incomplete {
                entries: v.entries,
                head,
                reason: format!(
                    "no checkpoint record at {}: a log cut off at its end would verify too",
                    recorded.path.display()
                ),
            };
        }
        Verdict::Ok {
            entries: v.entries,
            head,
            checkpoints: v.checkpoints,
            latest_checkpoint: v.latest_checkpoint,
            recorded: holds.matched.matched,
            record_path: recorded.path.display().to_string(),
        }
    }
}

/// Verifies the live log as `hpki-ca audit verify` does.
pub async fn verify(app: &App) -> Result<Verdict, ConsoleError> {
    let files = &app.audit_files;
    let key = CheckpointKey::load(&files.public_key).map_err(load_error)?;
    // Read before the log: a checkpoint is recorded only once the registry has
    // it, so each record read now is in the log listed next.
    let recorded = Recorded::load(&files.records).map_err(load_error)?;
    let mut check = Check::new(key, files.public_key.clone());
    walk(app, |e| check.push(e)).await?;
    Ok(check.finish(&recorded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, action: &str, at: i64) -> reg::AuditEntry {
        reg::AuditEntry { actor: actor.into(), action: action.into(), at_unix_micros: at, ..Default::default() }
    }

    /// A chain of `n` entries, hashed as the registry hashes them.
    fn chain(n: u64) -> Vec<reg::AuditEntry> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|sequence| {
                let mut r = store::AuditRecord {
                    sequence,
                    at_unix_micros: 1_000_000 * i64::try_from(sequence).unwrap(),
                    actor: format!("op-{sequence}"),
                    action: "card.revoke".into(),
                    subject: format!("C{sequence}"),
                    detail_json: "{}".into(),
                    prev_hash: prev,
                    hash: [0; 32],
                };
                r.hash = store::audit_hash(&r);
                prev = r.hash;
                reg::AuditEntry {
                    sequence: r.sequence,
                    at_unix_micros: r.at_unix_micros,
                    actor: r.actor,
                    action: r.action,
                    subject: r.subject,
                    detail_json: r.detail_json,
                    prev_hash: r.prev_hash.to_vec(),
                    hash: r.hash.to_vec(),
                }
            })
            .collect()
    }

    fn verdict(entries: Vec<reg::AuditEntry>, recorded: &Recorded) -> Verdict {
        let mut check = Check::new(None, "audit-checkpoint.pub.pem".into());
        for e in entries {
            if !check.push(e) {
                break;
            }
        }
        check.finish(recorded)
    }

    #[test]
    fn the_verdict_is_that_of_audit_verify() {
        let record = Recorded::from_lines("checkpoints.jsonl".into(), Some(Vec::new()));
        let log = chain(3);
        let head = hex::encode(&log[2].hash);
        match verdict(log.clone(), &record) {
            Verdict::Ok { entries, head: h, .. } => assert_eq!((entries, h), (3, head.clone())),
            other => panic!("{other:?}"),
        }
        // An edited entry breaks the chain at exactly that entry.
        let mut edited = log.clone();
        edited[1].actor = "someone-else".into();
        match verdict(edited, &record) {
            Verdict::Broken { sequence, reason } => {
                assert_eq!(sequence, Some(2));
                assert!(reason.contains("hash does not match"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A missing entry.
        let mut gap = log.clone();
        gap.remove(1);
        assert!(matches!(verdict(gap, &record), Verdict::Broken { sequence: Some(2), .. }));
        // No checkpoint record: not OK (the CLI exits non-zero without --without-record).
        let absent = Recorded::from_lines("none.jsonl".into(), None);
        match verdict(log, &absent) {
            Verdict::Incomplete { entries, reason, .. } => {
                assert_eq!(entries, 3);
                assert!(reason.contains("no checkpoint record"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_filter_takes_actor_action_prefix_and_time() {
        let f =
            Filter { actor: "OP-SATO".into(), action: "emergency".into(), from_micros: Some(10), to_micros: Some(20) };
        assert!(f.matches(&entry("op-sato", "emergency.request", 15)));
        assert!(!f.matches(&entry("op-ito", "emergency.request", 15)));
        assert!(!f.matches(&entry("op-sato", "card.issue", 15)));
        assert!(!f.matches(&entry("op-sato", "emergency.request", 9)));
        assert!(!f.matches(&entry("op-sato", "emergency.request", 21)));
        assert!(Filter::default().matches(&entry("anyone", "anything", 0)));
    }
}
