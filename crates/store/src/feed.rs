//! The status feed: every change a relying party should see (a certificate
//! becoming GOOD when stored, REVOKED when revoked), numbered 1, 2, 3, ...
//! without gaps.
//!
//! Entries are written in the transaction of the change they describe, with
//! the counter in `meta`, so the feed and the records never disagree. Readers
//! only ever see entries up to the *durable position*: the highest sequence
//! known to be flushed to disk. It is raised after each flush, so a
//! subscriber is never shown a change that a crash could still undo (and
//! whose sequence would then be reused for another change).

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::records::{CertificateStatus, RevocationReason, StatusChange};
use crate::tx::{corrupt, decode, fail, Trees, Tx, TxResult};
use crate::Store;
use domain::Serial;

/// The last sequence handed out, in `meta`.
pub(crate) const FEED_LAST_KEY: &[u8] = b"feed_last";

/// A change to append; the feed adds sequence and time.
pub(crate) struct FeedChange<'a> {
    pub serial: &'a Serial,
    pub issuer_label: &'a str,
    pub status: CertificateStatus,
    pub revoked_at_unix: i64,
    pub reason: Option<RevocationReason>,
    pub not_after_unix: i64,
    pub card_id: &'a str,
    /// 0 for none.
    pub invalidity_date_unix: i64,
}

/// Appends inside the caller's transaction.
pub(crate) fn append(tx: &Tx<'_>, change: &FeedChange<'_>) -> TxResult<StatusChange> {
    let sequence = last_in_tx(tx)? + 1;
    // The counter and the tree move together; a used key means damage.
    if tx.feed.contains(&sequence.to_be_bytes())? {
        return fail(corrupt("feed", &sequence.to_be_bytes(), "sequence already used"));
    }
    let record = StatusChange {
        sequence,
        serial: change.serial.clone(),
        issuer_label: change.issuer_label.to_owned(),
        status: change.status,
        revoked_at_unix: change.revoked_at_unix,
        reason: change.reason,
        not_after_unix: change.not_after_unix,
        card_id: change.card_id.to_owned(),
        at_unix_micros: crate::clock::now_unix_micros(),
        invalidity_date_unix: change.invalidity_date_unix,
    };
    tx.feed.put_json(&sequence.to_be_bytes(), &record)?;
    tx.meta.put_json(FEED_LAST_KEY, &sequence)?;
    Ok(record)
}

/// The last sequence committed, as seen inside a transaction.
pub(crate) fn last_in_tx(tx: &Tx<'_>) -> TxResult<u64> {
    Ok(tx.meta.get_json::<u64>(FEED_LAST_KEY)?.unwrap_or(0))
}

/// The last sequence on disk, checked against the feed tree's last key.
pub(crate) fn last_stored(trees: &Trees) -> Result<u64, StoreError> {
    let counter = match trees.meta.get(FEED_LAST_KEY)? {
        Some(bytes) => decode::<u64>("meta", FEED_LAST_KEY, &bytes)?,
        None => 0,
    };
    let last_key = match trees.feed.last()? {
        Some((key, _)) => sequence_of_key(&key)?,
        None => 0,
    };
    if last_key != counter {
        return Err(corrupt(
            "meta",
            FEED_LAST_KEY,
            &format!("feed counter is {counter} but the feed's last entry is {last_key}"),
        ));
    }
    Ok(counter)
}

fn sequence_of_key(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key).map(u64::from_be_bytes).map_err(|_| corrupt("feed", key, "key is not an 8-byte sequence"))
}

/// The durable position, shared by every clone of a `Store`; a
/// `tokio::sync::watch` so async subscribers can wait for it to move.
#[derive(Clone)]
pub(crate) struct Durable(Arc<watch::Sender<u64>>);

impl Durable {
    pub fn new(position: u64) -> Durable {
        Durable(Arc::new(watch::Sender::new(position)))
    }

    /// Raises the position (never lowers it); call only after a flush that
    /// covered every change up to `sequence`.
    pub fn raise(&self, sequence: u64) {
        self.0.send_if_modified(|current| {
            if sequence > *current {
                *current = sequence;
                true
            } else {
                false
            }
        });
    }

    pub fn get(&self) -> u64 {
        *self.0.borrow()
    }

    fn downgrade(&self) -> std::sync::Weak<watch::Sender<u64>> {
        Arc::downgrade(&self.0)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl Store {
    /// The last sequence of the feed that is durable; everything up to it can
    /// be read with `feed_after`.
    pub fn feed_position(&self) -> u64 {
        self.durable.get()
    }

    /// A receiver of the durable position: `changed().await` wakes when new
    /// changes can be read. Subscribe *before* reading the backlog, then read
    /// with `feed_after` from the last sequence handled whenever it moves;
    /// reading from the tree each time means no change is ever skipped or
    /// repeated, however late the subscriber wakes.
    pub fn subscribe_feed(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Up to `limit` changes with sequence > `after`, in order, ending at the
    /// durable position. `FeedAhead` when `after` is beyond it (the subscriber
    /// saw a feed this database does not have, e.g. after a restore).
    pub fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<StatusChange>, StoreError> {
        let durable = self.durable.get();
        if after > durable {
            return Err(StoreError::FeedAhead { after_sequence: after, last_sequence: durable });
        }
        let mut out = Vec::new();
        let mut expected = after.saturating_add(1);
        if expected > durable {
            return Ok(out);
        }
        for item in self.trees.feed.range(expected.to_be_bytes()..=durable.to_be_bytes()) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let sequence = sequence_of_key(&key)?;
            if sequence != expected {
                return Err(corrupt("feed", &expected.to_be_bytes(), "entry missing"));
            }
            let change: StatusChange = decode("feed", &key, &value)?;
            if change.sequence != sequence {
                return Err(corrupt("feed", &key, "entry stored under another sequence"));
            }
            out.push(change);
            expected += 1;
        }
        if out.len() < limit && expected <= durable {
            return Err(corrupt("feed", &expected.to_be_bytes(), "entry missing"));
        }
        Ok(out)
    }

    /// All changes after `after` up to the durable position; for tests and
    /// small feeds (the gRPC stream pages with `feed_after`).
    pub fn feed_all_after(&self, after: u64) -> Result<Vec<StatusChange>, StoreError> {
        self.feed_after(after, usize::MAX)
    }
}

/// How often a store on PostgreSQL reads the feed counter, to see the
/// commits of other registry processes on the same database.
pub(crate) const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// On PostgreSQL, another registry may commit changes: raise the durable
/// position to the committed counter every [`FOLLOW_INTERVAL`], until every
/// clone of the store is dropped. A committed counter covers every sequence
/// below it: the counter is one row, so feed writers commit in order.
pub(crate) fn follow_commits(trees: &Trees, durable: &Durable) {
    let (meta, weak) = (trees.meta.clone(), durable.downgrade());
    let spawned = std::thread::Builder::new().name("feed-follow".into()).spawn(move || loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let Some(sender) = weak.upgrade() else { return };
        // A failed read (the server failing over) is asked again next time.
        if let Ok(Some(bytes)) = meta.get(FEED_LAST_KEY) {
            if let Ok(last) = decode::<u64>("meta", FEED_LAST_KEY, &bytes) {
                Durable(sender).raise(last);
            }
        }
    });
    // Without the thread this process still sees its own commits.
    drop(spawned);
}

/// The store's way to end a feed-producing write: flush (shared with
/// concurrent writers), then let readers see it.
pub(crate) fn flush_and_raise(store: &Store, last_sequence: Option<u64>) -> Result<(), StoreError> {
    store.flush_grouped()?;
    if let Some(sequence) = last_sequence {
        store.durable.raise(sequence);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{issued_card, reopened, revocation, temp_store};

    #[test]
    fn issuing_and_revoking_append_gapless_changes() {
        let (_dir, store) = temp_store();
        assert_eq!(store.feed_position(), 0);
        assert!(store.feed_all_after(0).unwrap().is_empty());
        let (card_id, serials) = issued_card(&store, "app-1", "L1", "sign-ca", 2_000_000_000);
        store.revoke_card(&card_id, &revocation(RevocationReason::KeyCompromise), "").unwrap();

        let changes = store.feed_all_after(0).unwrap();
        let seqs: Vec<_> = changes.iter().map(|c| c.sequence).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        let statuses: Vec<_> = changes.iter().map(|c| (c.serial.clone(), c.status)).collect();
        assert_eq!(
            statuses,
            [
                (serials[0].clone(), CertificateStatus::Good),
                (serials[1].clone(), CertificateStatus::Good),
                (serials[0].clone(), CertificateStatus::Revoked),
                (serials[1].clone(), CertificateStatus::Revoked),
            ]
        );
        assert!(changes.iter().all(|c| c.card_id == card_id && c.issuer_label == "sign-ca"));
        assert!(changes.windows(2).all(|w| w[0].at_unix_micros <= w[1].at_unix_micros));
        assert_eq!(changes[0].reason, None);
        assert_eq!(changes[0].not_after_unix, 2_000_000_000);
        assert_eq!(store.feed_position(), 4);

        assert_eq!(store.feed_after(1, 2).unwrap(), changes[1..3].to_vec());
        assert_eq!(store.feed_after(3, 100).unwrap(), changes[3..].to_vec());
        assert!(store.feed_after(4, 100).unwrap().is_empty());
        let err = store.feed_after(5, 100).unwrap_err();
        assert!(matches!(err, StoreError::FeedAhead { after_sequence: 5, last_sequence: 4 }), "{err}");
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn the_durable_position_wakes_subscribers() {
        let (_dir, store) = temp_store();
        let mut rx = store.subscribe_feed();
        assert_eq!(*rx.borrow_and_update(), 0);
        issued_card(&store, "app-1", "L1", "sign-ca", 2_000_000_000);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
        // Changes that write no feed entry do not move it.
        store.append_audit("op", "ra.note", "JMA1", "{}").unwrap();
        assert!(!rx.has_changed().unwrap());
        store.durable.raise(1);
        assert_eq!(store.feed_position(), 2, "never lowered");
    }

    #[test]
    fn the_feed_survives_reopen_and_continues_without_gaps() {
        let (_dir, store, _) = reopened(|store| issued_card(store, "app-1", "L1", "sign-ca", 2_000_000_000));
        assert_eq!(store.feed_position(), 2);
        issued_card(&store, "app-2", "L2", "sign-ca", 2_000_000_000);
        let seqs: Vec<_> = store.feed_all_after(0).unwrap().iter().map(|c| c.sequence).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }

    #[test]
    fn a_missing_or_damaged_feed_entry_is_reported() {
        let (_dir, store) = temp_store();
        issued_card(&store, "app-1", "L1", "sign-ca", 2_000_000_000);
        issued_card(&store, "app-2", "L2", "sign-ca", 2_000_000_000);
        store.trees.feed.remove(2u64.to_be_bytes()).unwrap();
        let err = store.feed_after(0, 10).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { tree: "feed", .. }), "{err}");
        assert_eq!(store.feed_after(0, 1).unwrap().len(), 1, "entries before the hole still read");
        assert!(matches!(store.feed_after(1, 10), Err(StoreError::Corrupt { .. })));
        store.trees.feed.insert(2u64.to_be_bytes(), &b"junk"[..]).unwrap();
        assert!(matches!(store.feed_after(1, 10), Err(StoreError::Corrupt { .. })));

        // The tree's end and the counter must agree when the store is opened.
        store.trees.feed.remove(4u64.to_be_bytes()).unwrap();
        assert!(matches!(last_stored(&store.trees), Err(StoreError::Corrupt { tree: "meta", .. })));
    }
}
