//! The audit view (auditors only): the registry's audit log filtered by
//! actor, action and time, and "verify chain", the same verification as
//! `hpki-ca audit verify` (the `audit` crate's [`Verifier`]): every entry's
//! hash and link, every signed checkpoint, and the record of checkpoints kept
//! outside the database.

use std::path::PathBuf;

use audit::{Broken, CheckpointKey, Conclusion, LogSource, Pages, Recorded, Verifier};
use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;

use crate::error::ConsoleError;
use crate::App;

/// At most this many matching entries are shown (the newest).
pub const SHOWN: usize = 500;

/// At most this many entries are read for one view: a filter whose time range
/// holds more is searched from the newest entry of the range back this far,
/// and the page says so.
pub const SCANNED: usize = 200_000;

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

/// What the audit view found.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The newest [`SHOWN`] matching entries, oldest first.
    pub entries: Vec<reg::AuditEntry>,
    /// How many of the entries read matched.
    pub matched: usize,
    /// How many entries were read.
    pub scanned: usize,
    /// False when the reading stopped at the limit before the filter's start.
    pub complete: bool,
}

/// The matching entries, read newest first from the newest one the filter's
/// end allows back to its start, at most [`SCANNED`] of them.
pub async fn list(app: &App, filter: &Filter) -> Result<Listed, ConsoleError> {
    list_from(app.audit_registry.clone(), filter, SCANNED).await
}

/// [`list`] with the registry and the reading limit given.
async fn list_from(
    mut client: RegistryClient<Channel>,
    filter: &Filter,
    scan_limit: usize,
) -> Result<Listed, ConsoleError> {
    let mut listed = Listed { entries: Vec::new(), matched: 0, scanned: 0, complete: true };
    let start = match filter.to_micros {
        None => Some(0), // 0: the newest
        Some(to) => newest_at_or_before(&mut client, to).await?,
    };
    let Some(start) = start else { return Ok(listed) };
    let mut pages = Pages::newest_first(&mut client, start);
    'pages: while let Some(page) = pages.next().await.map_err(|s| ConsoleError::upstream("registry", s))? {
        for e in page {
            // Times never decrease along the chain (the store keeps them so and
            // verification checks it): past the start, nothing older matches.
            if filter.from_micros.is_some_and(|f| e.at_unix_micros < f) {
                break 'pages;
            }
            if listed.scanned == scan_limit {
                listed.complete = false;
                break 'pages;
            }
            listed.scanned += 1;
            if filter.matches(&e) {
                listed.matched += 1;
                if listed.entries.len() < SHOWN {
                    listed.entries.push(e);
                }
            }
        }
    }
    listed.entries.reverse();
    Ok(listed)
}

/// The sequence of the newest entry stamped at or before `to`, by binary
/// search over the sequence (times never decrease along the chain); `None`
/// when every entry is later, or the log is empty.
async fn newest_at_or_before(client: &mut RegistryClient<Channel>, to: i64) -> Result<Option<u64>, ConsoleError> {
    // The entry at `sequence`, or the newest before it.
    async fn entry(
        client: &mut RegistryClient<Channel>,
        sequence: u64,
    ) -> Result<Option<reg::AuditEntry>, ConsoleError> {
        let request = reg::ListAuditRequest { from_sequence: sequence, limit: 1, newest_first: true };
        let reply = client.list_audit(request).await.map_err(|s| ConsoleError::upstream("registry", s))?;
        Ok(reply.into_inner().entries.into_iter().next())
    }
    let Some(head) = entry(client, 0).await? else { return Ok(None) };
    if head.at_unix_micros <= to {
        return Ok(Some(head.sequence));
    }
    // at(lo) <= to < at(hi), with lo = 0 standing for "before the first".
    let (mut lo, mut hi) = (0u64, head.sequence);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match entry(client, mid).await? {
            Some(e) if e.at_unix_micros <= to => lo = mid,
            _ => hi = mid,
        }
    }
    Ok((lo > 0).then_some(lo))
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

    #[tokio::test]
    async fn the_view_reads_back_from_the_newest_entry_the_range_allows_and_says_where_it_stopped() {
        let (server, mut c) = testkit::registry::Server::start_with_client().await;
        let mut stamps = Vec::new();
        for i in 0..12u32 {
            let actor = if i % 3 == 0 { "op-ito" } else { "op-sato" };
            let req = reg::AppendAuditRequest {
                actor: actor.into(),
                action: "ra.note".into(),
                subject: format!("s{i}"),
                detail_json: "{}".into(),
            };
            let e = c.append_audit(req).await.unwrap().into_inner();
            stamps.push((e.sequence, e.at_unix_micros));
        }
        let seqs = |l: &Listed| l.entries.iter().map(|e| e.sequence).collect::<Vec<_>>();
        let listed = |filter: Filter, limit| {
            let c = c.clone();
            async move { list_from(c, &filter, limit).await.unwrap() }
        };

        let all = listed(Filter::default(), SCANNED).await;
        assert_eq!(seqs(&all), (1..=12).collect::<Vec<u64>>(), "oldest first");
        assert_eq!((all.matched, all.scanned, all.complete), (12, 12, true));
        let ito = listed(Filter { actor: "op-ito".into(), ..Filter::default() }, SCANNED).await;
        assert_eq!(seqs(&ito), [1, 4, 7, 10]);
        assert_eq!((ito.matched, ito.scanned), (4, 12));

        // A time range: read from the newest entry at or before its end, back
        // to its start, and nothing outside it.
        let (from, to) = (stamps[3].1, stamps[8].1);
        let inside: Vec<u64> = stamps.iter().filter(|(_, at)| (from..=to).contains(at)).map(|(s, _)| *s).collect();
        let ranged =
            listed(Filter { from_micros: Some(from), to_micros: Some(to), ..Filter::default() }, SCANNED).await;
        assert_eq!(seqs(&ranged), inside);
        assert_eq!((ranged.scanned, ranged.complete), (inside.len(), true), "only the range is read");
        let before_all = listed(Filter { to_micros: Some(stamps[0].1 - 1), ..Filter::default() }, SCANNED).await;
        assert_eq!((before_all.entries.len(), before_all.scanned, before_all.complete), (0, 0, true));

        // The reading limit: the newest entries, and the view says it stopped.
        let capped = listed(Filter::default(), 5).await;
        assert_eq!(seqs(&capped), [8, 9, 10, 11, 12]);
        assert_eq!((capped.matched, capped.scanned, capped.complete), (5, 5, false));
        server.stop().await;
    }
}
