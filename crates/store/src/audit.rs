//! The hash-chained audit log. Each entry carries the hash of the one before,
//! so editing, removing or reordering entries breaks the chain at that point.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::records::AuditRecord;
use crate::tx::{decode, Trees, Tx, TxResult};

/// Actions the store logs itself with the change they describe. Callers of
/// `Store::append_audit` may not use them, so those entries cannot be forged.
pub mod actions {
    pub const APPLICATION_BEGIN: &str = "application.begin";
    pub const SERIAL_RESERVE: &str = "serial.reserve";
    pub const TBS_RECORD: &str = "tbs.record";
    pub const CERTIFICATE_STORE: &str = "certificate.store";
    pub const APPLICATION_COMPLETE: &str = "application.complete";
    pub const CERTIFICATE_REVOKE: &str = "certificate.revoke";
    pub const CARD_REVOKE: &str = "card.revoke";
    pub const CRL_NUMBER: &str = "crl.number";
    pub const APPROVAL_CREATE: &str = "approval.create";
    pub const APPROVAL_APPROVE: &str = "approval.approve";
    pub const APPROVAL_EXECUTE: &str = "approval.execute";
    pub const BENCH_IMPORT: &str = "bench.import-revoked";
    /// The old card of a renewal or reissue got its `superseded_by`.
    pub const CARD_SUPERSEDE: &str = "card.supersede";
    pub const HOLDER_CONTACT: &str = "holder.contact";
    pub const PIN_ESCROW: &str = "pin.escrow";
    pub const PIN_DISCLOSE: &str = "pin.disclose";
    /// A RESERVED serial given up by restart recovery (never signed).
    pub const SERIAL_ABANDON: &str = "serial.abandon";
    /// The registry started: config file, its digest, whether it changed.
    pub const CONFIG_START: &str = "config.start";
    /// The key ceremony, written by `hpki-ca ceremony` straight into the
    /// database while no registry runs (`Store::append_ceremony_audit`).
    pub const CEREMONY_START: &str = "ceremony.start";
    /// A key found in or generated inside the HSM.
    pub const CEREMONY_KEY: &str = "ceremony.key";
    /// A CA, OCSP responder certificate (or the checkpoint public key) written or kept.
    pub const CEREMONY_CERTIFICATE: &str = "ceremony.certificate";
    /// The root's first ARL.
    pub const CEREMONY_ARL: &str = "ceremony.arl";
    /// The ceremony's outcome: ok, or failed with the error.
    pub const CEREMONY_END: &str = "ceremony.end";
    pub const CEREMONY: [&str; 5] = [CEREMONY_START, CEREMONY_KEY, CEREMONY_CERTIFICATE, CEREMONY_ARL, CEREMONY_END];
    /// The running OCSP responder issued or renewed its own delegated
    /// responder certificate. Not in `ALL`: the responder appends it through
    /// AppendAudit (role `service`), which refuses every action in `ALL`.
    pub const OCSP_RESPONDER_CERTIFICATE: &str = "ocsp.responder_certificate";
    /// An HSM-signed checkpoint of the chain's head. Not in `ALL`: it comes
    /// only through `Store::append_checkpoint_audit` (the registry's
    /// AppendCheckpoint, which only the checkpointer's identity may call);
    /// `Store::append_audit` refuses it like every action in `ALL`.
    pub const AUDIT_CHECKPOINT: &str = "audit.checkpoint";

    /// Whether `Store::append_audit` (and the registry's AppendAudit) refuses `action`.
    pub fn is_system(action: &str) -> bool {
        ALL.contains(&action) || action == AUDIT_CHECKPOINT
    }
    pub const ALL: [&str; 23] = [
        APPLICATION_BEGIN,
        SERIAL_RESERVE,
        TBS_RECORD,
        CERTIFICATE_STORE,
        APPLICATION_COMPLETE,
        CERTIFICATE_REVOKE,
        CARD_REVOKE,
        CRL_NUMBER,
        APPROVAL_CREATE,
        APPROVAL_APPROVE,
        APPROVAL_EXECUTE,
        BENCH_IMPORT,
        CARD_SUPERSEDE,
        HOLDER_CONTACT,
        PIN_ESCROW,
        PIN_DISCLOSE,
        SERIAL_ABANDON,
        CONFIG_START,
        CEREMONY_START,
        CEREMONY_KEY,
        CEREMONY_CERTIFICATE,
        CEREMONY_ARL,
        CEREMONY_END,
    ];
}

const HEAD_KEY: &[u8] = b"audit_head";
const HASH_DOMAIN: &[u8] = b"hpki-registry-audit-v1\0";

/// Where the chain ends; kept in `meta` so appends need no range scan (sled
/// transactions read by key only) and truncation of the tail is detectable.
#[derive(Serialize, Deserialize)]
struct Head {
    next_sequence: u64,
    #[serde(with = "hex::serde")]
    last_hash: [u8; 32],
    last_at_unix_micros: i64,
}

impl Head {
    fn genesis() -> Head {
        Head { next_sequence: 1, last_hash: [0; 32], last_at_unix_micros: 0 }
    }
}

/// What a caller wants logged; the store adds sequence, time and hashes.
pub(crate) struct Event<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail_json: String,
}

/// SHA-256 over a canonical encoding: a domain tag, then sequence and time as
/// 8-byte big-endian, each text field as an 8-byte big-endian length and its
/// UTF-8 bytes, then the previous hash. Length prefixes make the encoding
/// unambiguous, so no two different entries hash the same bytes.
pub fn audit_hash(record: &AuditRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(record.sequence.to_be_bytes());
    h.update(record.at_unix_micros.to_be_bytes());
    for text in [&record.actor, &record.action, &record.subject, &record.detail_json] {
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
    }
    h.update(record.prev_hash);
    h.finalize().into()
}

/// Appends inside the caller's transaction, so the entry commits with the change it describes.
pub(crate) fn append(tx: &Tx<'_>, event: &Event<'_>) -> TxResult<AuditRecord> {
    let head = tx.meta.get_json::<Head>(HEAD_KEY)?.unwrap_or_else(Head::genesis);
    // Never let time run backwards in the log, even if the clock does.
    let at = crate::clock::now_unix_micros().max(head.last_at_unix_micros);
    let mut record = AuditRecord {
        sequence: head.next_sequence,
        at_unix_micros: at,
        actor: event.actor.to_owned(),
        action: event.action.to_owned(),
        subject: event.subject.to_owned(),
        detail_json: event.detail_json.clone(),
        prev_hash: head.last_hash,
        hash: [0; 32],
    };
    record.hash = audit_hash(&record);
    if tx.audit_group.borrow().entries >= GROUP_MAX {
        write_group(tx)?;
    }
    tx.audit_group.borrow_mut().push(&record)?;
    let next = Head { next_sequence: record.sequence + 1, last_hash: record.hash, last_at_unix_micros: at };
    tx.meta.put_json(HEAD_KEY, &next)?;
    Ok(record)
}

/// Entries in one group at most: sled rewrites a leaf with every value in
/// it, so one very large value would cost more than it saves.
const GROUP_MAX: usize = 16;

/// The entries one transaction appends, stored under the first one's
/// sequence: one entry as its JSON object (as every entry was stored before
/// grouping), several as a JSON array of them. One write instead of one per
/// entry (a card's issuance appends eleven).
#[derive(Default)]
pub(crate) struct Group {
    first: Option<u64>,
    /// `[` and the entries' JSON, comma-separated.
    json: Vec<u8>,
    entries: usize,
}

impl Group {
    fn push(&mut self, record: &AuditRecord) -> TxResult<()> {
        let first = *self.first.get_or_insert(record.sequence);
        self.json.push(if self.entries == 0 { b'[' } else { b',' });
        if let Err(e) = serde_json::to_writer(&mut self.json, record) {
            let key = first.to_be_bytes();
            return crate::tx::fail(crate::tx::corrupt("audit", &key, &format!("cannot encode: {e}")));
        }
        self.entries += 1;
        Ok(())
    }
}

/// Writes what the transaction appended (nothing when it appended nothing).
pub(crate) fn write_group(tx: &Tx<'_>) -> TxResult<()> {
    let group = std::mem::take(&mut *tx.audit_group.borrow_mut());
    let Some(first) = group.first else { return Ok(()) };
    let mut json = group.json;
    if group.entries == 1 {
        json.remove(0);
    } else {
        json.push(b']');
    }
    tx.audit.put_raw(&first.to_be_bytes(), &json)
}

/// The entries stored under one key: one object, or an array of them.
fn decode_group(key: &[u8], value: &[u8]) -> Result<Vec<AuditRecord>, StoreError> {
    match value.first() {
        Some(b'[') => decode("audit", key, value),
        _ => Ok(vec![decode("audit", key, value)?]),
    }
}

/// A JSON document given as text (the registry checks it), for embedding in
/// an audit detail: `null` when empty, kept as a string if it does not parse.
pub(crate) fn embed_json(text: &str) -> serde_json::Value {
    if text.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// Entries from `from` on, at most `limit` of them (`None` for all).
pub(crate) fn list(trees: &Trees, from: u64, limit: Option<usize>) -> Result<Vec<AuditRecord>, StoreError> {
    let mut out = Vec::new();
    // `from` may be inside a group: start at the group's key.
    let start = match trees.audit.last_at_or_before(from.to_be_bytes())? {
        Some((key, _)) => key.to_vec(),
        None => from.to_be_bytes().to_vec(),
    };
    for item in trees.audit.range(start..) {
        let (key, value) = item?;
        for record in decode_group(&key, &value)? {
            if limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
            if record.sequence >= from {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// Up to `limit` entries at or before sequence `to`, newest first: one
/// lookup per stored group, so reading the newest entries of a long log costs
/// no more than reading its first ones.
pub(crate) fn list_back(trees: &Trees, to: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
    let mut out = Vec::new();
    let mut at = to;
    while out.len() < limit {
        let Some((key, value)) = trees.audit.last_at_or_before(at.to_be_bytes())? else { break };
        let Some(first) = key_sequence(&key) else {
            return Err(crate::tx::corrupt("audit", &key, "malformed key in the audit tree"));
        };
        for record in decode_group(&key, &value)?.into_iter().rev() {
            if record.sequence <= to && out.len() < limit {
                out.push(record);
            }
        }
        match first.checked_sub(1) {
            Some(before) if before > 0 => at = before,
            _ => break,
        }
    }
    Ok(out)
}

/// The sequence a stored group's key names (its first entry's).
fn key_sequence(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// Walks the whole chain; returns the number of entries, or the first sequence
/// at which an entry is missing, unreadable, out of place or altered.
pub(crate) fn verify(trees: &Trees) -> Result<u64, StoreError> {
    let broken = |sequence: u64, reason: &str| StoreError::AuditChainBroken { sequence, reason: reason.to_owned() };
    let mut expected = Head::genesis();
    for item in trees.audit.iter() {
        let (key, value) = item?;
        let Some(key_seq) = key_sequence(&key) else {
            return Err(broken(expected.next_sequence, "malformed key in the audit tree"));
        };
        if key_seq != expected.next_sequence {
            return Err(broken(expected.next_sequence, "entry missing"));
        }
        // An empty group holds no entry, so it is as unreadable as a bad one.
        let Some(group) = decode_group(&key, &value).ok().filter(|g| !g.is_empty()) else {
            return Err(broken(key_seq, "entry unreadable"));
        };
        for record in group {
            // Within a group, each entry stands where the one before leaves off.
            let seq = expected.next_sequence;
            if record.sequence != seq {
                return Err(broken(seq, "entry stored under another sequence"));
            }
            if record.prev_hash != expected.last_hash {
                return Err(broken(seq, "previous hash does not match"));
            }
            if record.at_unix_micros < expected.last_at_unix_micros {
                return Err(broken(seq, "time runs backwards"));
            }
            if audit_hash(&record) != record.hash {
                return Err(broken(seq, "hash does not match the entry"));
            }
            expected =
                Head { next_sequence: seq + 1, last_hash: record.hash, last_at_unix_micros: record.at_unix_micros };
        }
    }
    let head = match trees.meta.get(HEAD_KEY)? {
        Some(bytes) => decode::<Head>("meta", HEAD_KEY, &bytes)?,
        None => Head::genesis(),
    };
    if head.next_sequence != expected.next_sequence || head.last_hash != expected.last_hash {
        return Err(broken(expected.next_sequence, "entries missing at the end of the log"));
    }
    Ok(expected.next_sequence - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    #[test]
    fn appended_entries_chain_and_verify() {
        let (_dir, store) = temp_store();
        assert_eq!(store.verify_audit_chain().unwrap(), 0);
        let a = store.append_audit("op", "ra.note", "JMA0000000001", r#"{"by":"post"}"#).unwrap();
        let b = store.append_audit("op", "crl.publish", "", "{}").unwrap();
        assert_eq!((a.sequence, b.sequence), (1, 2));
        assert_eq!(a.prev_hash, [0; 32]);
        assert_eq!(b.prev_hash, a.hash);
        assert!(b.at_unix_micros >= a.at_unix_micros);
        assert_eq!(audit_hash(&b), b.hash);
        assert_eq!(store.verify_audit_chain().unwrap(), 2);
        assert_eq!(store.list_audit(2, None).unwrap(), vec![b.clone()]);
        assert_eq!(store.list_audit(0, Some(1)).unwrap(), vec![a]);
        assert!(store.list_audit(3, None).unwrap().is_empty());
    }

    #[test]
    fn callers_cannot_log_the_stores_own_actions() {
        let (_dir, store) = temp_store();
        for action in actions::ALL {
            let err = store.append_audit("op", action, "x", "{}").unwrap_err();
            assert!(matches!(err, StoreError::ReservedAction { .. }), "{action}: {err}");
        }
        assert_eq!(store.verify_audit_chain().unwrap(), 0);
        // A service's own action is not reserved: the OCSP responder must be able to log it.
        assert!(!actions::ALL.contains(&actions::OCSP_RESPONDER_CERTIFICATE));
        let entry = store.append_audit("ocsp-responder", actions::OCSP_RESPONDER_CERTIFICATE, "sign-ca", "{}").unwrap();
        assert_eq!((entry.sequence, entry.action.as_str()), (1, "ocsp.responder_certificate"));
    }

    #[test]
    fn concurrent_writers_all_commit_and_the_chain_holds() {
        // On PostgreSQL they queue on the write lock instead of failing each
        // other with serialization errors (a connection each, so all 64 are
        // in a transaction at once).
        let dir = tempfile::tempdir().unwrap();
        let location = match crate::test_support::location(&dir) {
            crate::Location::Postgres { url, password, .. } => {
                crate::Location::Postgres { url, password, pool_size: 64 }
            }
            sled => sled,
        };
        let store = crate::Store::open_at(&location).unwrap();
        let writers: Vec<_> = (0..64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store.append_audit("t", "test.concurrent", &format!("{t}-{i}"), "{}").unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(store.verify_audit_chain().unwrap(), 640);
    }

    #[test]
    fn a_second_open_while_the_first_holds_the_database_is_locked() {
        let (dir, store) = temp_store();
        if let crate::Location::Postgres { .. } = crate::test_support::location(&dir) {
            // Several registries may share a PostgreSQL database: no lock to test.
            return;
        }
        match crate::Store::open(&dir.path().join("db")) {
            Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().join("db")),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, got a second handle"),
        }
        drop(store);
        assert!(crate::Store::open(&dir.path().join("db")).is_ok(), "reopens once released");
    }

    #[test]
    fn the_ceremony_appends_only_its_own_actions() {
        let (_dir, store) = temp_store();
        let a = store.append_ceremony_audit("op-ito", actions::CEREMONY_START, "hpki-ca", "{}").unwrap();
        let b = store.append_ceremony_audit("op-ito", actions::CEREMONY_KEY, "root-ca", r#"{"outcome":"generated"}"#);
        assert_eq!((a.sequence, b.unwrap().prev_hash), (1, a.hash));
        for action in ["ra.note", actions::CONFIG_START, actions::CERTIFICATE_STORE] {
            let err = store.append_ceremony_audit("op", action, "x", "{}").unwrap_err();
            assert!(matches!(err, StoreError::NotCeremonyAction { .. }), "{action}: {err}");
        }
        assert_eq!(store.verify_audit_chain().unwrap(), 2);
    }

    #[test]
    fn the_hash_separates_fields() {
        let base = AuditRecord {
            sequence: 1,
            at_unix_micros: 5,
            actor: "ab".into(),
            action: "c".into(),
            subject: String::new(),
            detail_json: String::new(),
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        let shifted = AuditRecord { actor: "a".into(), action: "bc".into(), ..base.clone() };
        assert_ne!(audit_hash(&base), audit_hash(&shifted));
    }

    fn five_entries() -> (tempfile::TempDir, crate::Store) {
        let (dir, store) = temp_store();
        for i in 0..5 {
            store.append_audit("op", "test", &format!("s{i}"), "{}").unwrap();
        }
        (dir, store)
    }

    fn broken_at(store: &crate::Store) -> u64 {
        match store.verify_audit_chain() {
            Err(StoreError::AuditChainBroken { sequence, .. }) => sequence,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    /// Entries 1-2 alone, 3-6 appended by one transaction, 7 alone.
    fn a_group_of_four() -> (tempfile::TempDir, crate::Store) {
        let (dir, store) = temp_store();
        let event = |i: u32| Event { actor: "op", action: "test", subject: "", detail_json: format!("{{\"n\":{i}}}") };
        for i in 1..=2 {
            store.append_event(event(i)).unwrap();
        }
        store.trees.transact(|tx| (3..=6).try_for_each(|i| append(tx, &event(i)).map(drop))).unwrap();
        store.append_event(event(7)).unwrap();
        (dir, store)
    }

    #[test]
    fn a_transactions_entries_are_one_record_and_read_as_before() {
        let (_dir, store) = a_group_of_four();
        let keys: Vec<u64> =
            store.trees.audit.iter().map(|kv| u64::from_be_bytes(kv.unwrap().0.as_ref().try_into().unwrap())).collect();
        assert_eq!(keys, [1, 2, 3, 7], "one key per transaction, under its first sequence");
        assert_eq!(store.verify_audit_chain().unwrap(), 7);
        let all = store.list_audit(0, None).unwrap();
        assert_eq!(all.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
        assert!(all.windows(2).all(|w| w[1].prev_hash == w[0].hash));
        // From inside a group, and a limit that ends inside one.
        let seqs =
            |from, limit| -> Vec<u64> { store.list_audit(from, limit).unwrap().iter().map(|r| r.sequence).collect() };
        assert_eq!(seqs(5, None), [5, 6, 7]);
        assert_eq!(seqs(2, Some(3)), [2, 3, 4]);
        assert_eq!(seqs(4, Some(1)), [4]);
        assert!(seqs(8, None).is_empty());

        // Newest first: from the head, from inside a group, across groups.
        let back =
            |to, limit| -> Vec<u64> { store.list_audit_back(to, limit).unwrap().iter().map(|r| r.sequence).collect() };
        assert_eq!(back(u64::MAX, 100), [7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(back(5, 2), [5, 4]);
        assert_eq!(back(6, 4), [6, 5, 4, 3]);
        assert_eq!(back(7, 3), [7, 6, 5]);
        assert_eq!(back(2, 5), [2, 1]);
        assert!(back(0, 5).is_empty());
        assert!(back(7, 0).is_empty());
        let newest = store.list_audit_back(u64::MAX, 7).unwrap();
        let mut oldest_first = store.list_audit(0, None).unwrap();
        oldest_first.reverse();
        assert_eq!(newest, oldest_first, "the same entries as the forward listing");
    }

    #[test]
    fn a_long_transaction_is_stored_in_groups_of_at_most_group_max() {
        let (_dir, store) = temp_store();
        let n = GROUP_MAX as u64 + 4;
        let event = Event { actor: "op", action: "test", subject: "", detail_json: "{}".into() };
        store.trees.transact(|tx| (0..n).try_for_each(|_| append(tx, &event).map(drop))).unwrap();
        let keys: Vec<u64> =
            store.trees.audit.iter().map(|kv| u64::from_be_bytes(kv.unwrap().0.as_ref().try_into().unwrap())).collect();
        assert_eq!(keys, [1, GROUP_MAX as u64 + 1]);
        assert_eq!(store.verify_audit_chain().unwrap(), n);
        let tail: Vec<u64> = store.list_audit(n - 1, None).unwrap().iter().map(|r| r.sequence).collect();
        assert_eq!(tail, [n - 1, n]);
    }

    #[test]
    fn editing_or_dropping_an_entry_inside_a_group_breaks_the_chain_there() {
        let (_dir, store) = a_group_of_four();
        let key = 3u64.to_be_bytes();
        let text = String::from_utf8(store.trees.audit.get(key).unwrap().unwrap().to_vec()).unwrap();
        let edited = text.replace(r#"{\"n\":5}"#, r#"{\"n\":50}"#);
        assert_ne!(edited, text);
        store.trees.audit.insert(key, edited.as_bytes()).unwrap();
        assert_eq!(broken_at(&store), 5);

        let (_dir, store) = a_group_of_four();
        let mut group: Vec<serde_json::Value> =
            serde_json::from_slice(&store.trees.audit.get(key).unwrap().unwrap()).unwrap();
        group.remove(1);
        store.trees.audit.insert(key, serde_json::to_vec(&group).unwrap()).unwrap();
        assert_eq!(broken_at(&store), 4);

        let (_dir, store) = a_group_of_four();
        store.trees.audit.insert(key, &b"[]"[..]).unwrap();
        assert_eq!(broken_at(&store), 3);
    }

    #[test]
    fn editing_one_entry_breaks_the_chain_at_that_sequence() {
        let (_dir, store) = five_entries();
        let key = 3u64.to_be_bytes();
        let bytes = store.trees.audit.get(key).unwrap().unwrap();
        let edited = String::from_utf8(bytes.to_vec()).unwrap().replace("\"op\"", "\"mallory\"");
        store.trees.audit.insert(key, edited.as_bytes()).unwrap();
        assert_eq!(broken_at(&store), 3);
    }

    #[test]
    fn unreadable_missing_or_truncated_entries_break_the_chain() {
        let (_dir, store) = five_entries();
        store.trees.audit.insert(2u64.to_be_bytes(), &b"garbage"[..]).unwrap();
        assert_eq!(broken_at(&store), 2);

        let (_dir, store) = five_entries();
        store.trees.audit.remove(4u64.to_be_bytes()).unwrap();
        assert_eq!(broken_at(&store), 4);

        let (_dir, store) = five_entries();
        store.trees.audit.remove(5u64.to_be_bytes()).unwrap();
        assert_eq!(broken_at(&store), 5);
    }

    #[test]
    fn state_changes_are_logged_in_order_and_the_chain_verifies() {
        let (_dir, store) = temp_store();
        let app = crate::test_support::application("app-1", "L1");
        let card_id = store.begin_application(&app, "JMA").unwrap().view.card.card_id;
        let req = crate::Reservation {
            card_id,
            kind: crate::CertificateKind::Signing,
            issuer_label: "sign-ca".into(),
            not_before_unix: 1,
            not_after_unix: 2,
        };
        let rec = store.reserve_serial(&req, "iss").unwrap();
        store.record_tbs(&rec.serial, b"tbs", None, "iss").unwrap();
        store.store_certificate(&rec.serial, b"cert", b"tbs", "iss").unwrap();
        let actions: Vec<_> = store.list_audit(0, None).unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["application.begin", "serial.reserve", "tbs.record", "certificate.store"]);
        assert_eq!(store.verify_audit_chain().unwrap(), 4);
    }
}
