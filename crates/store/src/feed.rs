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
use crate::serial::Serial;
use crate::tx::{corrupt, decode, fail, Trees, Tx, TxResult};
use crate::Store;

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
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("feed", key, "key is not an 8-byte sequence"))
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

/// The store's way to end a feed-producing write: flush, then let readers see it.
pub(crate) fn flush_and_raise(store: &Store, last_sequence: Option<u64>) -> Result<(), StoreError> {
    store.flush()?;
    if let Some(sequence) = last_sequence {
        store.durable.raise(sequence);
    }
    Ok(())
}
