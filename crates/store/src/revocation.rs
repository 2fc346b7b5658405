//! Revocation: final and idempotent. Revoking writes, in one transaction, the
//! certificate's revocation, a REVOKED change on the status feed, an entry in
//! the per-issuer index that CRLs are built from, and the audit entry.

use serde_json::{json, Value};

use crate::application::{load_view, require_card};
use crate::audit::{self, actions, Event};
use crate::certificates::{find_certificate, require_certificate};
use crate::error::StoreError;
use crate::feed::{self, FeedChange};
use crate::records::{
    CardRevokeOutcome, CardState, CertificateKind, CertificateRecord, CertificateState, CertificateStatus,
    Revocation, RevocationReason, RevocationRequest, RevokeOutcome, RevokedEntry, RevokedQuery, StatusChange,
};
use crate::serial::Serial;
use crate::tx::{corrupt, decode, Tx, TxResult};
use crate::Store;

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
    pub fn revoke_certificate(
        &self,
        serial: &Serial,
        req: &RevocationRequest,
    ) -> Result<RevokeOutcome, StoreError> {
        let revoked_at = resolve_revoked_at(req.revoked_at_unix)?;
        let (outcome, sequence) = self.trees.transact(|tx| {
            let mut record = find_certificate(tx, serial)?;
            if record.state == CertificateState::Revoked {
                return Ok((RevokeOutcome { certificate: record, already_revoked: true }, None));
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
                    Err(e) => Err(StoreError::Db(e)),
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
                Err(e) => Err(StoreError::Db(e)),
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

/// Revokes a certificate that is not revoked yet: record, feed, index, audit.
/// Returns the feed sequence.
fn revoke_in_tx(
    tx: &Tx<'_>,
    record: &mut CertificateRecord,
    req: &RevocationRequest,
    revoked_at: i64,
) -> TxResult<u64> {
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
    });
    tx.certificates.put_json(record.serial.as_bytes(), record)?;
    let entry = RevokedEntry {
        serial: record.serial.clone(),
        revoked_at_unix: revoked_at,
        reason: req.reason,
        not_after_unix: record.not_after_unix,
        sequence: change.sequence,
    };
    tx.revoked_by_issuer
        .put_raw(&index_key(&record.issuer_label, &record.serial), &encode_index_value(&entry))?;
    let detail = json!({
        "card_id": record.card_id,
        "kind": record.kind,
        "issuer_label": record.issuer_label,
        "previous_state": previous,
        "reason": req.reason,
        "revoked_at_unix": revoked_at,
        "note": req.note,
        "feed_sequence": change.sequence,
    });
    let subject = record.serial.to_hex();
    audit::append(
        tx,
        &Event {
            actor: &req.actor,
            action: actions::CERTIFICATE_REVOKE,
            subject: &subject,
            detail_json: detail.to_string(),
        },
    )?;
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
    // The confirmation record is JSON (the registry checks it); kept as text otherwise.
    let confirmation = if confirmation_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(confirmation_json)
            .unwrap_or_else(|_| Value::String(confirmation_json.to_owned()))
    };
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
        &Event {
            actor: &req.actor,
            action: actions::CARD_REVOKE,
            subject: card_id,
            detail_json: detail.to_string(),
        },
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

/// Index values are fixed 25 bytes, small enough that a million fit in a few
/// tens of MB: revoked_at (i64 BE), not_after (i64 BE), sequence (u64 BE),
/// reason code (u8).
const INDEX_VALUE_LEN: usize = 25;

pub(crate) fn encode_index_value(e: &RevokedEntry) -> [u8; INDEX_VALUE_LEN] {
    let mut out = [0u8; INDEX_VALUE_LEN];
    out[0..8].copy_from_slice(&e.revoked_at_unix.to_be_bytes());
    out[8..16].copy_from_slice(&e.not_after_unix.to_be_bytes());
    out[16..24].copy_from_slice(&e.sequence.to_be_bytes());
    out[24] = e.reason.code();
    out
}

fn decode_index_entry(key: &[u8], prefix_len: usize, value: &[u8]) -> Result<RevokedEntry, StoreError> {
    let bad = |reason: &str| corrupt("revoked_by_issuer", key, reason);
    let serial = key
        .get(prefix_len..)
        .and_then(|s| Serial::from_bytes(s).ok())
        .ok_or_else(|| bad("key has no valid serial"))?;
    let v: &[u8; INDEX_VALUE_LEN] = value.try_into().map_err(|_| bad("value is not 25 bytes"))?;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[i..i + 8]);
        b
    };
    Ok(RevokedEntry {
        serial,
        revoked_at_unix: i64::from_be_bytes(word(0)),
        not_after_unix: i64::from_be_bytes(word(8)),
        sequence: u64::from_be_bytes(word(16)),
        reason: RevocationReason::from_code(v[24]).ok_or_else(|| bad("unknown reason code"))?,
    })
}
