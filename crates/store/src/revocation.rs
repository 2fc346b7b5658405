//! Revocation: final and idempotent. Revoking writes, in one transaction, the
//! certificate's revocation, a REVOKED change on the status feed, an entry in
//! the per-issuer index that CRLs are built from, and the audit entry.

use serde_json::json;

use crate::application::{load_view, require_card};
use crate::audit::{self, actions, Event};
use crate::certificates::{audit_certificate, find_certificate, require_certificate, wrong_state};
use crate::error::StoreError;
use crate::feed::{self, FeedChange};
use crate::records::{
    CardRevokeOutcome, CardState, CertificateKind, CertificateRecord, CertificateState, CertificateStatus, Revocation,
    RevocationReason, RevocationRequest, RevokeOutcome, RevokedEntry, RevokedQuery, StatusChange,
};
use crate::tx::{corrupt, decode, fail, Tx, TxResult};
use crate::Store;
use domain::Serial;

/// How far in the future a revocation time may lie (clocks of operator
/// workstations drift); anything later is refused.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Revoked entries of one issuer, read lazily from the database.
pub type RevokedEntries = Box<dyn Iterator<Item = Result<RevokedEntry, StoreError>> + Send>;

impl Store {
    /// Revokes one certificate, whatever its state (a RESERVED or PRECERT
    /// serial is then never served as good, and stays revoked if its
    /// certificate is stored later). Revoking a revoked certificate writes
    /// nothing and answers `already_revoked` with the first revocation.
    pub fn revoke_certificate(&self, serial: &Serial, req: &RevocationRequest) -> Result<RevokeOutcome, StoreError> {
        let revoked_at = resolve_revoked_at(req.revoked_at_unix)?;
        let (outcome, sequence) = self.trees.transact(|tx| {
            let mut record = find_certificate(tx, serial)?;
            if record.state == CertificateState::Revoked {
                return Ok((RevokeOutcome { certificate: record, already_revoked: true }, None));
            }
            if record.state == CertificateState::Abandoned {
                return wrong_state(serial, record.state, "an abandoned serial was never signed and cannot be revoked");
            }
            let sequence = revoke_in_tx(tx, &mut record, req, revoked_at)?;
            Ok((RevokeOutcome { certificate: record, already_revoked: false }, Some(sequence)))
        })?;
        if sequence.is_some() {
            feed::flush_and_raise(self, sequence)?;
        }
        Ok(outcome)
    }

    /// Revokes every certificate of the card (reserved ones too) and sets the
    /// card REVOKED, all in one transaction: one "card.revoke" audit entry
    /// carrying `confirmation_json` (the identity-confirmation record), then
    /// one "certificate.revoke" per certificate revoked now. Certificates
    /// already revoked keep their first revocation. Concurrent calls for one
    /// card revoke each certificate exactly once; a call that finds nothing
    /// left to do writes nothing and answers `newly_revoked = 0`.
    pub fn revoke_card(
        &self,
        card_id: &str,
        req: &RevocationRequest,
        confirmation_json: &str,
    ) -> Result<CardRevokeOutcome, StoreError> {
        let revoked_at = resolve_revoked_at(req.revoked_at_unix)?;
        let (outcome, last_sequence, changed) =
            self.trees.transact(|tx| revoke_card_in_tx(tx, card_id, req, revoked_at, confirmation_json))?;
        if changed {
            feed::flush_and_raise(self, last_sequence)?;
        }
        Ok(outcome)
    }

    /// The revoked certificates of one issuing CA, read lazily (a million
    /// entries are never held in memory at once).
    ///
    /// - `after_sequence == 0`: every revocation, ordered by serial bytes
    ///   (for our 16-octet serials, numerically), from the per-issuer index.
    /// - `after_sequence > 0`: only revocations with a larger feed sequence,
    ///   in sequence order, read from the feed, so a delta costs what changed
    ///   rather than the size of the whole list.
    ///
    /// Only revocations up to the durable feed position at the time of the
    /// call are listed; entries whose notAfter is before `at_unix` (0 = now)
    /// are left out unless `include_expired`.
    pub fn revoked_entries(&self, query: &RevokedQuery) -> Result<RevokedEntries, StoreError> {
        let upto = self.durable.get();
        let at = if query.at_unix == 0 { crate::clock::now_unix() } else { query.at_unix };
        let include_expired = query.include_expired;
        let keep = move |e: &RevokedEntry| include_expired || e.not_after_unix >= at;
        if query.after_sequence == 0 {
            let prefix = index_prefix(&query.issuer_label);
            let prefix_len = prefix.len();
            let iter = self.trees.revoked_by_issuer.scan_prefix(prefix).filter_map(move |item| {
                let entry = match item {
                    Ok((key, value)) => decode_index_entry(&key, prefix_len, &value),
                    Err(e) => Err(e),
                };
                match entry {
                    Ok(e) if e.sequence > upto || !keep(&e) => None,
                    other => Some(other),
                }
            });
            return Ok(Box::new(iter));
        }
        let from = query.after_sequence.saturating_add(1);
        if from > upto {
            return Ok(Box::new(std::iter::empty()));
        }
        let issuer = query.issuer_label.clone();
        let range = self.trees.feed.range(from.to_be_bytes()..=upto.to_be_bytes());
        let iter = range.filter_map(move |item| {
            let change: Result<StatusChange, StoreError> = match item {
                Ok((key, value)) => decode("feed", &key, &value),
                Err(e) => Err(e),
            };
            match change {
                Err(e) => Some(Err(e)),
                Ok(c) if c.status != CertificateStatus::Revoked || c.issuer_label != issuer => None,
                Ok(c) => {
                    let entry = RevokedEntry {
                        serial: c.serial,
                        revoked_at_unix: c.revoked_at_unix,
                        reason: c.reason.unwrap_or(RevocationReason::Unspecified),
                        not_after_unix: c.not_after_unix,
                        sequence: c.sequence,
                        invalidity_date_unix: c.invalidity_date_unix,
                    };
                    keep(&entry).then_some(Ok(entry))
                }
            }
        });
        Ok(Box::new(iter))
    }
}

/// 0 means now; otherwise not before 1970 and at most a small clock skew ahead.
fn resolve_revoked_at(given: i64) -> Result<i64, StoreError> {
    let now = crate::clock::now_unix();
    if given == 0 {
        return Ok(now);
    }
    if given < 0 {
        return Err(StoreError::RevokedAt { revoked_at_unix: given, reason: "is before 1970".into() });
    }
    if given > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(StoreError::RevokedAt {
            revoked_at_unix: given,
            reason: format!("is in the future (now is {now}; at most {MAX_CLOCK_SKEW_SECS} s ahead allowed)"),
        });
    }
    Ok(given)
}

/// The operator's time of compromise, checked against the certificate: 0
/// (none), or neither before its notBefore nor after the revocation time.
fn check_invalidity_date(record: &CertificateRecord, req: &RevocationRequest, revoked_at: i64) -> TxResult<i64> {
    let given = req.invalidity_date_unix;
    if given == 0 {
        return Ok(0);
    }
    let refuse = |reason: String| {
        fail(StoreError::InvalidityDate { serial: record.serial.to_hex(), invalidity_date_unix: given, reason })
    };
    if given < record.not_before_unix {
        return refuse(format!(
            "is before the certificate's notBefore ({})",
            crate::clock::format_utc(record.not_before_unix)
        ));
    }
    if given > revoked_at {
        return refuse(format!("is after the revocation time ({})", crate::clock::format_utc(revoked_at)));
    }
    Ok(given)
}

/// Revokes a certificate that is not revoked yet: record, feed, index, audit.
/// Returns the feed sequence.
fn revoke_in_tx(
    tx: &Tx<'_>,
    record: &mut CertificateRecord,
    req: &RevocationRequest,
    revoked_at: i64,
) -> TxResult<u64> {
    let invalidity_date_unix = check_invalidity_date(record, req, revoked_at)?;
    let change = feed::append(
        tx,
        &FeedChange {
            serial: &record.serial,
            issuer_label: &record.issuer_label,
            status: CertificateStatus::Revoked,
            revoked_at_unix: revoked_at,
            reason: Some(req.reason),
            not_after_unix: record.not_after_unix,
            card_id: &record.card_id,
            invalidity_date_unix,
        },
    )?;
    let previous = record.state;
    record.state = CertificateState::Revoked;
    record.revocation = Some(Revocation {
        revoked_at_unix: revoked_at,
        reason: req.reason,
        revoked_by: req.actor.clone(),
        note: req.note.clone(),
        sequence: change.sequence,
        invalidity_date_unix,
    });
    tx.certificates.put_json(record.serial.as_bytes(), record)?;
    let entry = RevokedEntry {
        serial: record.serial.clone(),
        revoked_at_unix: revoked_at,
        reason: req.reason,
        not_after_unix: record.not_after_unix,
        sequence: change.sequence,
        invalidity_date_unix,
    };
    tx.revoked_by_issuer.put_raw(&index_key(&record.issuer_label, &record.serial), &encode_index_value(&entry))?;
    let detail = json!({
        "card_id": record.card_id,
        "kind": record.kind,
        "issuer_label": record.issuer_label,
        "previous_state": previous,
        "reason": req.reason,
        "revoked_at_unix": revoked_at,
        "invalidity_date_unix": (invalidity_date_unix != 0).then_some(invalidity_date_unix),
        "note": req.note,
        "feed_sequence": change.sequence,
    });
    audit_certificate(tx, &req.actor, actions::CERTIFICATE_REVOKE, &record.serial, &detail)?;
    Ok(change.sequence)
}

/// The outcome, the last feed sequence written, and whether anything changed.
fn revoke_card_in_tx(
    tx: &Tx<'_>,
    card_id: &str,
    req: &RevocationRequest,
    revoked_at: i64,
    confirmation_json: &str,
) -> TxResult<(CardRevokeOutcome, Option<u64>, bool)> {
    let mut card = require_card(tx, card_id)?;
    let mut to_revoke = Vec::new();
    let mut already = Vec::new();
    for kind in CertificateKind::ALL {
        if let Some(serial) = card.serial(kind) {
            let record = require_certificate(tx, serial)?;
            if record.state == CertificateState::Revoked {
                already.push(serial.to_hex());
            } else {
                to_revoke.push(record);
            }
        }
    }
    if card.state == CardState::Revoked && to_revoke.is_empty() {
        let view = load_view(tx, card_id)?;
        return Ok((CardRevokeOutcome { view, newly_revoked: 0 }, None, false));
    }

    let previous = card.state;
    card.state = CardState::Revoked;
    tx.cards.put_json(card_id.as_bytes(), &card)?;
    let confirmation = audit::embed_json(confirmation_json);
    let serials: Vec<String> = to_revoke.iter().map(|r| r.serial.to_hex()).collect();
    let detail = json!({
        "previous_state": previous,
        "reason": req.reason,
        "revoked_at_unix": revoked_at,
        "note": req.note,
        "confirmation": confirmation,
        "revoked_serials": serials,
        "already_revoked_serials": already,
    });
    audit::append(
        tx,
        &Event { actor: &req.actor, action: actions::CARD_REVOKE, subject: card_id, detail_json: detail.to_string() },
    )?;

    let mut last = None;
    let newly = u32::try_from(to_revoke.len()).unwrap_or(u32::MAX);
    for mut record in to_revoke {
        last = Some(revoke_in_tx(tx, &mut record, req, revoked_at)?);
    }
    let view = load_view(tx, card_id)?;
    Ok((CardRevokeOutcome { view, newly_revoked: newly }, last, true))
}

pub(crate) fn index_prefix(issuer_label: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(issuer_label.len() + 1 + 20);
    key.extend_from_slice(issuer_label.as_bytes());
    key.push(0);
    key
}

pub(crate) fn index_key(issuer_label: &str, serial: &Serial) -> Vec<u8> {
    let mut key = index_prefix(issuer_label);
    key.extend_from_slice(serial.as_bytes());
    key
}

/// Index values are 25 bytes, small enough that a million fit in a few tens
/// of MB: revoked_at (i64 BE), not_after (i64 BE), sequence (u64 BE), reason
/// code (u8); then, only for an entry with an invalidityDate, that (i64 BE):
/// 33 bytes. Entries written before invalidityDate existed are 25 bytes.
const INDEX_VALUE_LEN: usize = 25;
const INDEX_VALUE_WITH_INVALIDITY_LEN: usize = INDEX_VALUE_LEN + 8;

pub(crate) fn encode_index_value(e: &RevokedEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_VALUE_WITH_INVALIDITY_LEN);
    out.extend_from_slice(&e.revoked_at_unix.to_be_bytes());
    out.extend_from_slice(&e.not_after_unix.to_be_bytes());
    out.extend_from_slice(&e.sequence.to_be_bytes());
    out.push(e.reason.code());
    if e.invalidity_date_unix != 0 {
        out.extend_from_slice(&e.invalidity_date_unix.to_be_bytes());
    }
    out
}

fn decode_index_entry(key: &[u8], prefix_len: usize, value: &[u8]) -> Result<RevokedEntry, StoreError> {
    let bad = |reason: &str| corrupt("revoked_by_issuer", key, reason);
    let serial =
        key.get(prefix_len..).and_then(|s| Serial::from_bytes(s).ok()).ok_or_else(|| bad("key has no valid serial"))?;
    if value.len() != INDEX_VALUE_LEN && value.len() != INDEX_VALUE_WITH_INVALIDITY_LEN {
        return Err(bad("value is not 25 or 33 bytes"));
    }
    let v = value;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[i..i + 8]);
        b
    };
    let invalidity_date_unix =
        if v.len() == INDEX_VALUE_WITH_INVALIDITY_LEN { i64::from_be_bytes(word(25)) } else { 0 };
    Ok(RevokedEntry {
        serial,
        revoked_at_unix: i64::from_be_bytes(word(0)),
        not_after_unix: i64::from_be_bytes(word(8)),
        sequence: u64::from_be_bytes(word(16)),
        reason: RevocationReason::from_code(v[24]).ok_or_else(|| bad("unknown reason code"))?,
        invalidity_date_unix,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::test_support::{application, issued_card, reopened, reserved, revocation, temp_store};
    use serde_json::Value;

    const FAR: i64 = 4_000_000_000;

    fn actions(store: &Store) -> Vec<String> {
        store.list_audit(0, None).unwrap().into_iter().map(|e| e.action).collect()
    }

    fn query(issuer_label: &str) -> RevokedQuery {
        RevokedQuery { issuer_label: issuer_label.into(), after_sequence: 0, include_expired: false, at_unix: 0 }
    }

    fn listed(store: &Store, q: &RevokedQuery) -> Vec<RevokedEntry> {
        store.revoked_entries(q).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn revoking_twice_changes_nothing_the_second_time() {
        let (_dir, store) = temp_store();
        let (_, serials) = issued_card(&store, "app-1", "L1", "sign-ca", FAR);
        let feed_before = store.feed_position();
        let audit_before = store.list_audit(0, None).unwrap().len();

        let mut first_req = revocation(RevocationReason::KeyCompromise);
        first_req.revoked_at_unix = 1_750_000_000;
        let first = store.revoke_certificate(&serials[0], &first_req).unwrap();
        assert!(!first.already_revoked);
        let cert = &first.certificate;
        assert_eq!(cert.state, CertificateState::Revoked);
        let rev = cert.revocation.clone().unwrap();
        assert_eq!(rev.revoked_at_unix, 1_750_000_000);
        assert_eq!(rev.reason, RevocationReason::KeyCompromise);
        assert_eq!(rev.revoked_by, "op-alice");
        assert_eq!(rev.sequence, feed_before + 1);
        assert_eq!(store.feed_position(), feed_before + 1);

        let mut second_req = revocation(RevocationReason::Superseded);
        second_req.actor = "op-bob".into();
        let second = store.revoke_certificate(&serials[0], &second_req).unwrap();
        assert!(second.already_revoked);
        assert_eq!(second.certificate, first.certificate, "the first revocation stands");
        assert_eq!(store.get_certificate(&serials[0]).unwrap(), first.certificate);
        assert_eq!(store.feed_position(), feed_before + 1, "no second feed entry");
        assert_eq!(store.list_audit(0, None).unwrap().len(), audit_before + 1, "one audit entry");
        assert_eq!(actions(&store).last().map(String::as_str), Some("certificate.revoke"));

        let changes = store.feed_all_after(feed_before).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].status, CertificateStatus::Revoked);
        assert_eq!(changes[0].serial, serials[0]);
        assert_eq!(changes[0].reason, Some(RevocationReason::KeyCompromise));
        assert_eq!(changes[0].revoked_at_unix, 1_750_000_000);
        assert_eq!(changes[0].not_after_unix, FAR);
        assert_eq!(store.verify_audit_chain().unwrap() as usize, audit_before + 1);
    }

    #[test]
    fn an_invalidity_date_is_kept_on_the_record_the_feed_and_the_index() {
        let (_dir, store) = temp_store();
        // Issued by the helper with notBefore 1_700_000_000.
        let (_, serials) = issued_card(&store, "app-1", "L1", "sign-ca", FAR);
        let feed_before = store.feed_position();
        let mut req = revocation(RevocationReason::KeyCompromise);
        req.revoked_at_unix = 1_750_000_000;
        for (bad, why) in
            [(1_699_999_999, "before the certificate's notBefore"), (1_750_000_001, "after the revocation time")]
        {
            req.invalidity_date_unix = bad;
            let err = store.revoke_certificate(&serials[0], &req).unwrap_err();
            assert!(matches!(err, StoreError::InvalidityDate { .. }), "{err}");
            assert!(err.to_string().contains(why), "{err}");
        }
        assert_eq!(store.feed_position(), feed_before, "a refusal writes nothing");

        req.invalidity_date_unix = 1_740_000_000;
        let out = store.revoke_certificate(&serials[0], &req).unwrap();
        assert_eq!(out.certificate.revocation.unwrap().invalidity_date_unix, 1_740_000_000);
        let changes = store.feed_all_after(feed_before).unwrap();
        assert_eq!(changes[0].invalidity_date_unix, 1_740_000_000);
        assert_eq!(changes[0].revoked_at_unix, 1_750_000_000, "revocationDate stays the revocation time");
        // Both ways of listing, and an entry without one beside it (the old 25-byte form).
        store.revoke_certificate(&serials[1], &revocation(RevocationReason::Superseded)).unwrap();
        let all = listed(&store, &query("sign-ca"));
        let with: Vec<i64> = all.iter().map(|e| e.invalidity_date_unix).collect();
        assert!(with.contains(&1_740_000_000) && with.contains(&0), "{with:?}");
        let mut delta = query("sign-ca");
        delta.after_sequence = feed_before;
        let listed_delta = listed(&store, &delta);
        assert_eq!(listed_delta[0].invalidity_date_unix, 1_740_000_000);
        assert_eq!(listed_delta[1].invalidity_date_unix, 0);
    }

    #[test]
    fn an_unknown_serial_is_not_found_and_nothing_is_written() {
        let (_dir, store) = temp_store();
        let serial = Serial::random();
        let err = store.revoke_certificate(&serial, &revocation(RevocationReason::KeyCompromise)).unwrap_err();
        assert!(matches!(err, StoreError::NoSuchCertificate { serial: ref s } if *s == serial.to_hex()), "{err}");
        let err = store.revoke_card("Cnope", &revocation(RevocationReason::KeyCompromise), "{}").unwrap_err();
        assert!(matches!(err, StoreError::NoSuchCard { .. }), "{err}");
        assert_eq!(store.feed_position(), 0);
        assert_eq!(store.verify_audit_chain().unwrap(), 0);
    }

    #[test]
    fn revocation_times_in_the_future_or_before_1970_are_refused() {
        let (_dir, store) = temp_store();
        let (_, serials) = issued_card(&store, "app-1", "L1", "sign-ca", FAR);
        let now = crate::clock::now_unix();
        for bad in [now + MAX_CLOCK_SKEW_SECS + 60, -1] {
            let mut req = revocation(RevocationReason::KeyCompromise);
            req.revoked_at_unix = bad;
            let err = store.revoke_certificate(&serials[0], &req).unwrap_err();
            assert!(matches!(err, StoreError::RevokedAt { revoked_at_unix, .. } if revoked_at_unix == bad), "{err}");
            let err = store.revoke_card("Cwhatever", &req, "").unwrap_err();
            assert!(matches!(err, StoreError::RevokedAt { .. }), "checked first: {err}");
        }
        assert_eq!(store.get_certificate(&serials[0]).unwrap().state, CertificateState::Issued);

        let mut req = revocation(RevocationReason::KeyCompromise);
        req.revoked_at_unix = now + 10; // a little clock skew is fine
        let out = store.revoke_certificate(&serials[0], &req).unwrap();
        assert_eq!(out.certificate.revocation.unwrap().revoked_at_unix, now + 10);

        let out = store.revoke_certificate(&serials[1], &revocation(RevocationReason::KeyCompromise)).unwrap();
        let at = out.certificate.revocation.unwrap().revoked_at_unix;
        assert!((now..=now + 5).contains(&at), "0 means now: {at} vs {now}");
    }

    #[test]
    fn revoke_card_revokes_every_certificate_and_the_card_in_one_go() {
        let (_dir, store) = temp_store();
        let (card_id, serials) = issued_card(&store, "app-1", "L1", "sign-ca", FAR);
        store.complete_application(&card_id, "ra").unwrap();
        let before = store.feed_position();
        let audit_before = store.list_audit(0, None).unwrap().len();
        let confirmation = r#"{"confirmed_by":"op-alice","method":"phone","at":"2026-01-05T10:00:00+09:00"}"#;

        let out = store.revoke_card(&card_id, &revocation(RevocationReason::KeyCompromise), confirmation).unwrap();
        assert_eq!(out.newly_revoked, 2);
        assert_eq!(out.view.card.state, CardState::Revoked);
        assert_eq!(out.view.certificates.len(), 2);
        assert!(out.view.certificates.iter().all(|c| c.state == CertificateState::Revoked));
        let seqs: Vec<_> = out.view.certificates.iter().map(|c| c.revocation.as_ref().unwrap().sequence).collect();
        assert_eq!(seqs, [before + 1, before + 2]);

        let log = store.list_audit(0, None).unwrap();
        let new: Vec<_> = log[audit_before..].iter().map(|e| e.action.as_str()).collect();
        assert_eq!(new, ["card.revoke", "certificate.revoke", "certificate.revoke"]);
        let card_entry: Value = serde_json::from_str(&log[audit_before].detail_json).unwrap();
        assert_eq!(card_entry["confirmation"]["method"], "phone");
        assert_eq!(card_entry["previous_state"], "ACTIVE");
        assert_eq!(card_entry["revoked_serials"].as_array().unwrap().len(), 2);

        // Again: nothing to do, nothing written.
        let again = store.revoke_card(&card_id, &revocation(RevocationReason::Superseded), "").unwrap();
        assert_eq!(again.newly_revoked, 0);
        assert_eq!(again.view, out.view);
        assert_eq!(store.feed_position(), before + 2);
        assert_eq!(store.list_audit(0, None).unwrap().len(), audit_before + 3);
        for serial in &serials {
            let rev = store.get_certificate(serial).unwrap().revocation.unwrap();
            assert_eq!(rev.reason, RevocationReason::KeyCompromise);
        }
    }

    #[test]
    fn revoke_card_keeps_an_earlier_certificate_revocation() {
        let (_dir, store) = temp_store();
        let (card_id, serials) = issued_card(&store, "app-1", "L1", "sign-ca", FAR);
        let first = store.revoke_certificate(&serials[1], &revocation(RevocationReason::AffiliationChanged)).unwrap();
        let out = store.revoke_card(&card_id, &revocation(RevocationReason::KeyCompromise), "").unwrap();
        assert_eq!(out.newly_revoked, 1);
        assert_eq!(out.view.certificates[1], first.certificate);
        assert_eq!(out.view.certificates[0].revocation.as_ref().unwrap().reason, RevocationReason::KeyCompromise);
    }

    #[test]
    fn concurrent_revoke_card_calls_revoke_each_certificate_once() {
        let (_dir, store) = temp_store();
        let (card_id, serials) = issued_card(&store, "app-1", "L1", "sign-ca", FAR);
        let before = store.feed_position();
        let store = Arc::new(store);
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (store, barrier, card_id) = (Arc::clone(&store), Arc::clone(&barrier), card_id.clone());
                std::thread::spawn(move || {
                    let mut req = revocation(RevocationReason::KeyCompromise);
                    req.actor = format!("op-{i}");
                    barrier.wait();
                    store.revoke_card(&card_id, &req, "{}").unwrap()
                })
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(outcomes.iter().map(|o| o.newly_revoked).sum::<u32>(), 2);
        assert_eq!(outcomes.iter().filter(|o| o.newly_revoked > 0).count(), 1, "one call did it all");
        assert!(outcomes.iter().all(|o| o.view.card.state == CardState::Revoked));
        assert!(outcomes.iter().all(|o| o.view.certificates == outcomes[0].view.certificates));

        let changes = store.feed_all_after(before).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        let mut revoked: Vec<_> = changes.iter().map(|c| c.serial.clone()).collect();
        revoked.sort();
        let mut expected = serials.clone();
        expected.sort();
        assert_eq!(revoked, expected);
        assert!(changes.iter().all(|c| c.status == CertificateStatus::Revoked));
        let log = actions(&store);
        assert_eq!(log.iter().filter(|a| *a == "card.revoke").count(), 1);
        assert_eq!(log.iter().filter(|a| *a == "certificate.revoke").count(), 2);
        assert_eq!(listed(&store, &query("sign-ca")).len(), 2);
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn reserved_and_precert_serials_are_revoked_too_and_never_become_good() {
        let (_dir, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        let sign = reserved(&store, &card_id, CertificateKind::Signing, "sign-ca", FAR);
        let auth = reserved(&store, &card_id, CertificateKind::Authentication, "auth-ca", FAR);
        store.record_tbs(&auth.serial, b"tbs-auth", None, "iss").unwrap();

        let out = store.revoke_card(&card_id, &revocation(RevocationReason::KeyCompromise), "").unwrap();
        assert_eq!(out.newly_revoked, 2);
        let audit = store.list_audit(0, None).unwrap().len();

        // The signer's late answer for the PRECERT one is recorded, but it stays revoked.
        let stored = store.store_certificate(&auth.serial, b"cert-auth", b"tbs-auth", "iss").unwrap();
        assert_eq!(stored.state, CertificateState::Revoked);
        assert_eq!(stored.certificate_der.as_deref(), Some(&b"cert-auth"[..]));
        assert!(stored.revocation.is_some());
        // The RESERVED one can no longer get to-be-signed bytes, so it is never signed.
        let err = store.record_tbs(&sign.serial, b"tbs-sign", None, "iss").unwrap_err();
        assert!(matches!(err, StoreError::CertificateState { state: CertificateState::Revoked, .. }), "{err}");
        assert_eq!(store.list_audit(0, None).unwrap().len(), audit + 1, "certificate.store only");

        let changes = store.feed_all_after(0).unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.status == CertificateStatus::Revoked), "no GOOD: {changes:?}");
        assert_eq!(listed(&store, &query("sign-ca"))[0].serial, sign.serial);
        assert_eq!(listed(&store, &query("auth-ca"))[0].serial, auth.serial);
        assert!(store.complete_application(&card_id, "ra").is_err());
    }

    #[test]
    fn revoked_entries_filter_by_issuer_expiry_and_sequence() {
        let (_dir, store) = temp_store();
        let (_, a) = issued_card(&store, "app-1", "L1", "sign-ca", 2_000_000_000);
        let (_, b) = issued_card(&store, "app-2", "L2", "sign-ca", 1_800_000_000);
        let (_, c) = issued_card(&store, "app-3", "L3", "sign-ca", 2_000_000_000);
        let req = revocation(RevocationReason::CessationOfOperation);
        let ra = store.revoke_certificate(&a[0], &req).unwrap().certificate;
        let rb = store.revoke_certificate(&b[0], &req).unwrap().certificate;
        let mark = store.feed_position();
        let rc = store.revoke_certificate(&c[0], &req).unwrap().certificate;
        // Authentication certificates were issued under the same label by the helper;
        // a different issuer's revocation must not show up.
        let (_, other) = issued_card(&store, "app-4", "L4", "auth-ca", 2_000_000_000);
        store.revoke_certificate(&other[0], &req).unwrap();

        let mut all_sign = vec![ra.serial.clone(), rb.serial.clone(), rc.serial.clone()];
        all_sign.sort();
        let serials = |q: &RevokedQuery| listed(&store, q).into_iter().map(|e| e.serial).collect::<Vec<_>>();

        let mut q = query("sign-ca");
        q.at_unix = 1_900_000_000; // b has expired by then
        let mut without_b = all_sign.clone();
        without_b.retain(|s| *s != rb.serial);
        assert_eq!(serials(&q), without_b, "ordered by serial, expired left out");
        q.include_expired = true;
        assert_eq!(serials(&q), all_sign);
        q.at_unix = 1_700_000_000;
        q.include_expired = false;
        assert_eq!(serials(&q), all_sign, "nothing expired yet");

        q.after_sequence = mark;
        let delta = listed(&store, &q);
        assert_eq!(delta.len(), 1);
        assert_eq!(delta[0].serial, rc.serial);
        assert_eq!(delta[0].sequence, mark + 1);
        assert_eq!(delta[0].reason, RevocationReason::CessationOfOperation);
        q.after_sequence = store.feed_position();
        assert!(listed(&store, &q).is_empty());
        q.after_sequence = u64::MAX;
        assert!(listed(&store, &q).is_empty());

        assert_eq!(serials(&query("auth-ca")), vec![other[0].clone()]);
        assert!(serials(&query("sign")).is_empty(), "a label is not a prefix of another");
        let entry = &listed(&store, &query("auth-ca"))[0];
        assert_eq!(entry.not_after_unix, 2_000_000_000);
    }

    #[test]
    fn the_index_entry_round_trips_and_damage_is_reported() {
        let entry = RevokedEntry {
            serial: Serial::from_hex("7f0102").unwrap(),
            revoked_at_unix: 1_750_000_000,
            reason: RevocationReason::PrivilegeWithdrawn,
            not_after_unix: -5,
            sequence: u64::MAX,
            invalidity_date_unix: 0,
        };
        let key = index_key("sign-ca", &entry.serial);
        let value = encode_index_value(&entry);
        assert_eq!(value.len(), 25, "the form written before invalidityDate existed");
        assert_eq!(decode_index_entry(&key, 8, &value).unwrap(), entry);
        assert!(decode_index_entry(&key, 8, &value[..24]).is_err());
        let with = RevokedEntry { invalidity_date_unix: 1_749_000_000, ..entry.clone() };
        let longer = encode_index_value(&with);
        assert_eq!(longer.len(), 33);
        assert_eq!(decode_index_entry(&key, 8, &longer).unwrap(), with);
        assert!(decode_index_entry(&key, 8, &longer[..30]).is_err());
        let mut bad_reason = value.clone();
        bad_reason[24] = 6;
        assert!(decode_index_entry(&key, 8, &bad_reason).is_err());
        assert!(decode_index_entry(&key[..8], 8, &value).is_err(), "no serial in the key");
    }

    #[test]
    fn revocations_survive_close_and_reopen() {
        let (_dir, store, serials) = reopened(|store| {
            let (card_id, serials) = issued_card(store, "app-1", "L1", "sign-ca", FAR);
            store.revoke_card(&card_id, &revocation(RevocationReason::KeyCompromise), "").unwrap();
            serials
        });
        assert_eq!(store.feed_position(), 4, "2 GOOD + 2 REVOKED");
        assert_eq!(listed(&store, &query("sign-ca")).len(), 2);
        let again = store.revoke_certificate(&serials[0], &revocation(RevocationReason::Superseded)).unwrap();
        assert!(again.already_revoked);
        store.verify_audit_chain().unwrap();
    }
}
