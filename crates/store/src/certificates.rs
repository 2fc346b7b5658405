//! The life of one certificate before it is signed and stored:
//! RESERVED (serial taken) -> PRECERT (to-be-signed bytes recorded) -> ISSUED.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::application::require_card;
use crate::audit::{self, actions, Event};
use crate::crl_scopes::CrlScope;
use crate::error::StoreError;
use crate::feed::{self, FeedChange};
use crate::records::{
    CardRecord, CardState, CertificateKind, CertificateRecord, CertificateState, CertificateStatus, NewPinEscrow,
};
use crate::tx::{decode, fail, Tx, TxResult};
use crate::Store;
use domain::Serial;

/// What the issuer asks a serial for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub card_id: String,
    pub kind: CertificateKind,
    pub issuer_label: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// One certificate of a card for `prepare_card`: the serial the issuer chose
/// (`Serial::random`, as `reserve_serial` would), its validity, and the
/// to-be-signed bytes that carry that serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCertificate {
    pub kind: CertificateKind,
    pub serial: Serial,
    pub issuer_label: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub tbs_der: Vec<u8>,
    pub scope: Option<CrlScope>,
}

/// One signed certificate for `finish_card`; `tbs_of_cert` is its
/// tbsCertificate, taken out by the caller as for `store_certificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCertificate {
    pub serial: Serial,
    pub certificate_der: Vec<u8>,
    pub tbs_of_cert: Vec<u8>,
}

impl Store {
    /// `reserve_serial` and `record_tbs` for a card's certificates in one
    /// transaction and one durable flush (shared with concurrent writers, see
    /// `group_commit`). When it returns, every serial is the card's and PRECERT
    /// with its TBS: nothing the HSM signs next is unrecorded.
    ///
    /// The issuer chooses each serial. One already used by any certificate is
    /// refused (`CertificateState`) and nothing is written. A kind for which
    /// the card already has a serial (an earlier attempt's reservation, which
    /// keeps its serial and dates) must name that serial, and its TBS is then
    /// recorded as by `record_tbs` (the same bytes again write nothing). Audited
    /// as "serial.reserve" and "tbs.record" per certificate, like the separate calls.
    ///
    /// `pin`, when given, is the card's PIN escrow, stored first in the same
    /// transaction (as by `store_pin_escrow`, audited "pin.escrow") unless the
    /// card has one already, which is kept: the second value says whether this
    /// call stored it. Its `card_id` is not read: the escrow is `card_id`'s.
    pub fn prepare_card(
        &self,
        card_id: &str,
        certs: &[PreparedCertificate],
        pin: Option<&NewPinEscrow>,
        actor: &str,
    ) -> Result<(Vec<CertificateRecord>, bool), StoreError> {
        check_scopes(certs)?;
        let pin = escrow_of(card_id, pin);
        let (records, changed, pin_stored) =
            self.trees.transact(|tx| prepare_in(tx, card_id, certs, pin.as_ref(), actor))?;
        if changed {
            self.flush_grouped()?;
        }
        Ok((records, pin_stored))
    }

    /// `store_certificate` for each of the card's signed certificates (audited
    /// as `cert_actor`), then `complete_application` (as `actor`), in one
    /// transaction and one shared flush; their GOOD changes reach the feed
    /// after it. Returns the ACTIVE card. A card revoked meanwhile still gets
    /// its certificates stored (everything signed is recorded; they stay
    /// revoked), and the answer is then `CardNotPending`.
    pub fn finish_card(
        &self,
        card_id: &str,
        certs: &[SignedCertificate],
        cert_actor: &str,
        actor: &str,
    ) -> Result<CardRecord, StoreError> {
        let (card, changed, last_good) = self.trees.transact(|tx| finish_in(tx, card_id, certs, cert_actor, actor))?;
        if changed {
            crate::feed::flush_and_raise(self, last_good)?;
        }
        finished(card)
    }

    /// Reserves a fresh random serial for the card's certificate of `kind`, or,
    /// for `OcspResponder` (whose `card_id` must be empty), a fresh serial for a
    /// responder certificate: a new one on every call, audited like a card's.
    ///
    /// Idempotent: if the card already has a serial of that kind, that record
    /// is returned unchanged (whatever its state, and ignoring the new label
    /// and dates), so a retried call never makes a second certificate of a
    /// kind for one card. Otherwise the card must be PENDING.
    pub fn reserve_serial(&self, req: &Reservation, actor: &str) -> Result<CertificateRecord, StoreError> {
        self.transact_and_flush(Store::flush_grouped, |tx| reserve(tx, req, actor))
    }

    /// RESERVED -> PRECERT, keeping `tbs_der`. Recording the same bytes again is
    /// a no-op; different bytes once some are recorded is `TbsConflict` and
    /// leaves the record as it was.
    /// `scope`, when given, is recorded for the CRL publisher in the same
    /// transaction (see `crl_scopes`): how the certificate's distribution
    /// point was chosen.
    pub fn record_tbs(
        &self,
        serial: &Serial,
        tbs_der: &[u8],
        scope: Option<&CrlScope>,
        actor: &str,
    ) -> Result<CertificateRecord, StoreError> {
        if let Some(scope) = scope {
            crate::crl_scopes::check(scope)?;
        }
        self.transact_and_flush(Store::flush_grouped, |tx| {
            record_tbs(tx, find_certificate(tx, serial)?, tbs_der, scope, actor)
        })
    }

    /// Stores the signed certificate. `tbs_of_cert` is the tbsCertificate taken
    /// from `cert_der` by the caller (the store does not parse DER); it must equal
    /// the recorded bytes. PRECERT -> ISSUED; the same certificate again is a
    /// no-op. Becoming ISSUED appends a GOOD change to the status feed. A
    /// certificate whose reservation was revoked meanwhile is still stored
    /// (everything signed is recorded) but stays revoked, and no GOOD is sent.
    pub fn store_certificate(
        &self,
        serial: &Serial,
        cert_der: &[u8],
        tbs_of_cert: &[u8],
        actor: &str,
    ) -> Result<CertificateRecord, StoreError> {
        let (record, changed, issued) =
            self.trees.transact(|tx| store_cert(tx, find_certificate(tx, serial)?, cert_der, tbs_of_cert, actor))?;
        if changed {
            crate::feed::flush_and_raise(self, issued)?;
        }
        Ok(record)
    }

    pub fn get_certificate(&self, serial: &Serial) -> Result<CertificateRecord, StoreError> {
        match self.trees.certificates.get(serial.as_bytes())? {
            Some(bytes) => decode("certificates", serial.as_bytes(), &bytes),
            None => Err(StoreError::NoSuchCertificate { serial: serial.to_hex() }),
        }
    }

    /// RESERVED -> ABANDONED, for recovery after a restart: nothing was
    /// recorded to sign, so the CA never signed this serial and never will.
    /// The card's slot of that kind is freed, so a retry of the application
    /// reserves a fresh serial (the abandoned one is never reused). A later
    /// RecordTbs or StoreCertificate for it is refused. Abandoning an abandoned
    /// serial writes nothing; any other state is `CertificateState`.
    pub fn abandon_reservation(&self, serial: &Serial, actor: &str) -> Result<CertificateRecord, StoreError> {
        self.transact_and_flush(Store::flush, |tx| abandon(tx, serial, actor))
    }

    /// Certificates still RESERVED or PRECERT, for recovery after a restart:
    /// each one may or may not have been signed by the CA.
    pub fn unresolved_reservations(&self) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.trees.certificates.iter() {
            let (key, value) = item?;
            let record: CertificateRecord = decode("certificates", &key, &value)?;
            if matches!(record.state, CertificateState::Reserved | CertificateState::Precert) {
                out.push(record);
            }
        }
        Ok(out)
    }
}

fn reserve(tx: &Tx<'_>, req: &Reservation, actor: &str) -> TxResult<(CertificateRecord, bool)> {
    check_label(&req.issuer_label)?;
    let card = if req.kind.of_card() {
        let card = require_card(tx, &req.card_id)?;
        if let Some(serial) = card.serial(req.kind) {
            return Ok((require_certificate(tx, serial)?, false));
        }
        if card.state != CardState::Pending {
            return fail(StoreError::CardNotPending { card_id: card.card_id, state: card.state });
        }
        Some(card)
    } else if !req.card_id.is_empty() {
        return fail(StoreError::NoSuchCard { card_id: req.card_id.clone() });
    } else {
        None
    };
    // A collision of 127 random bits is not expected, but must never overwrite.
    let serial = loop {
        let s = Serial::random();
        if !tx.certificates.contains(s.as_bytes())? {
            break s;
        }
    };
    insert_reservation(tx, req, serial, card, actor)
}

/// Writes a RESERVED record for `serial` (checked unused by the caller), links
/// it to the card if any, and audits it as "serial.reserve".
fn insert_reservation(
    tx: &Tx<'_>,
    req: &Reservation,
    serial: Serial,
    mut card: Option<CardRecord>,
    actor: &str,
) -> TxResult<(CertificateRecord, bool)> {
    let record = CertificateRecord {
        serial: serial.clone(),
        card_id: req.card_id.clone(),
        kind: req.kind,
        issuer_label: req.issuer_label.clone(),
        state: CertificateState::Reserved,
        tbs_der: None,
        certificate_der: None,
        not_before_unix: req.not_before_unix,
        not_after_unix: req.not_after_unix,
        reserved_at_unix: crate::clock::now_unix(),
        revocation: None,
    };
    tx.certificates.put_json(serial.as_bytes(), &record)?;
    if let Some(card) = card.as_mut() {
        card.set_serial(req.kind, serial.clone());
        tx.cards.put_json(card.card_id.as_bytes(), &card)?;
    }
    let detail = json!({
        "card_id": req.card_id,
        "kind": req.kind,
        "issuer_label": req.issuer_label,
        "not_before_unix": req.not_before_unix,
        "not_after_unix": req.not_after_unix,
    });
    audit_certificate(tx, actor, actions::SERIAL_RESERVE, &serial, &detail)?;
    Ok((record, true))
}

fn check_label(issuer_label: &str) -> TxResult<()> {
    // The label is the prefix of the revoked_by_issuer index, ended by 0x00.
    if issuer_label.is_empty() || issuer_label.contains('\0') {
        return fail(StoreError::IssuerLabel {
            issuer_label: issuer_label.to_owned(),
            reason: "must be non-empty and contain no NUL",
        });
    }
    Ok(())
}

/// One certificate of `prepare_card`: reserved (unless the card has it
/// already), then PRECERT. Whether anything was written.
fn prepare(tx: &Tx<'_>, card_id: &str, cert: &PreparedCertificate, actor: &str) -> TxResult<(CertificateRecord, bool)> {
    if !cert.kind.of_card() {
        return fail(StoreError::CertificateConflict {
            serial: cert.serial.to_hex(),
            reason: "only a card's signing and authentication certificates are prepared with the card",
        });
    }
    let card = require_card(tx, card_id)?;
    let (record, reserved) = match card.serial(cert.kind) {
        Some(existing) if *existing == cert.serial => (find_certificate(tx, existing)?, false),
        Some(existing) => {
            let record = require_certificate(tx, existing)?;
            return wrong_state(
                existing,
                record.state,
                "is already the card's serial of this kind (an earlier attempt's): prepare it, not another",
            );
        }
        None => {
            check_label(&cert.issuer_label)?;
            if card.state != CardState::Pending {
                return fail(StoreError::CardNotPending { card_id: card.card_id, state: card.state });
            }
            if let Some(used) = tx.certificates.get_json::<CertificateRecord>(cert.serial.as_bytes())? {
                return wrong_state(&cert.serial, used.state, "this serial is already in use; choose another");
            }
            let req = Reservation {
                card_id: card_id.to_owned(),
                kind: cert.kind,
                issuer_label: cert.issuer_label.clone(),
                not_before_unix: cert.not_before_unix,
                not_after_unix: cert.not_after_unix,
            };
            (insert_reservation(tx, &req, cert.serial.clone(), Some(card), actor)?.0, true)
        }
    };
    let (record, recorded) = record_tbs(tx, record, &cert.tbs_der, cert.scope.as_ref(), actor)?;
    Ok((record, reserved || recorded))
}

fn abandon(tx: &Tx<'_>, serial: &Serial, actor: &str) -> TxResult<(CertificateRecord, bool)> {
    let mut record = find_certificate(tx, serial)?;
    match record.state {
        CertificateState::Abandoned => return Ok((record, false)),
        CertificateState::Reserved if record.tbs_der.is_none() => {}
        state => return wrong_state(serial, state, "only a RESERVED serial with nothing recorded can be abandoned"),
    }
    record.state = CertificateState::Abandoned;
    tx.certificates.put_json(serial.as_bytes(), &record)?;
    let mut freed = false;
    if record.kind.of_card() {
        let mut card = require_card(tx, &record.card_id)?;
        freed = card.serial(record.kind) == Some(serial);
        if freed {
            card.clear_serial(record.kind);
            tx.cards.put_json(card.card_id.as_bytes(), &card)?;
        }
    }
    let detail = json!({ "card_id": record.card_id, "kind": record.kind, "slot_freed": freed });
    audit_certificate(tx, actor, actions::SERIAL_ABANDON, serial, &detail)?;
    Ok((record, true))
}

/// `record` is the serial's, as read (or just written) in this transaction.
fn record_tbs(
    tx: &Tx<'_>,
    mut record: CertificateRecord,
    tbs_der: &[u8],
    scope: Option<&CrlScope>,
    actor: &str,
) -> TxResult<(CertificateRecord, bool)> {
    let serial = &record.serial.clone();
    match record.tbs() {
        Some(recorded) if recorded == tbs_der => return Ok((record, false)),
        Some(_) => return fail(StoreError::TbsConflict { serial: serial.to_hex() }),
        None => {}
    }
    if record.state != CertificateState::Reserved {
        return wrong_state(serial, record.state, "to-be-signed bytes can only be recorded for a RESERVED serial");
    }
    record.tbs_der = Some(tbs_der.to_vec());
    record.state = CertificateState::Precert;
    tx.certificates.put_json(serial.as_bytes(), &record)?;
    if let Some(scope) = scope {
        crate::crl_scopes::record(tx, &record.issuer_label, scope, record.not_after_unix)?;
    }
    let detail = json!({ "card_id": record.card_id, "kind": record.kind, "tbs_sha256": sha256_hex(tbs_der) });
    audit_certificate(tx, actor, actions::TBS_RECORD, serial, &detail)?;
    Ok((record, true))
}

/// The record, whether anything was written, and the GOOD feed sequence if
/// the certificate became ISSUED. `record` is the serial's, as read in this
/// transaction.
fn store_cert(
    tx: &Tx<'_>,
    mut record: CertificateRecord,
    cert_der: &[u8],
    tbs_of_cert: &[u8],
    actor: &str,
) -> TxResult<(CertificateRecord, bool, Option<u64>)> {
    let serial = &record.serial.clone();
    let mismatch = || StoreError::CertificateConflict {
        serial: serial.to_hex(),
        reason: "certificate does not match the recorded to-be-signed bytes",
    };
    let Some(recorded_tbs) = record.tbs() else {
        return wrong_state(
            serial,
            record.state,
            "no to-be-signed bytes recorded; record them before storing a certificate",
        );
    };
    if recorded_tbs != tbs_of_cert {
        return fail(mismatch());
    }
    if let Some(stored) = &record.certificate_der {
        if stored.as_slice() == cert_der {
            return Ok((record, false, None));
        }
        // Same TBS, other signature (e.g. ECDSA signed twice): keep the first.
        return fail(StoreError::CertificateConflict {
            serial: serial.to_hex(),
            reason: "a different certificate is already stored for this serial",
        });
    }
    if crate::records::first_element(cert_der) == Some(tbs_of_cert) {
        record.tbs_der = None;
    }
    record.certificate_der = Some(cert_der.to_vec());
    let mut good = None;
    if record.state == CertificateState::Precert {
        record.state = CertificateState::Issued;
        let change = feed::append(
            tx,
            &FeedChange {
                serial,
                issuer_label: &record.issuer_label,
                status: CertificateStatus::Good,
                revoked_at_unix: 0,
                reason: None,
                not_after_unix: record.not_after_unix,
                card_id: &record.card_id,
                invalidity_date_unix: 0,
            },
        )?;
        good = Some(change.sequence);
    }
    tx.certificates.put_json(serial.as_bytes(), &record)?;
    let detail = json!({
        "card_id": record.card_id,
        "kind": record.kind,
        "certificate_sha256": sha256_hex(cert_der),
        "state": record.state,
        "feed_sequence": good,
    });
    audit_certificate(tx, actor, actions::CERTIFICATE_STORE, serial, &detail)?;
    Ok((record, true, good))
}

/// Audits a step of one certificate's life: its serial is the entry's subject.
pub(crate) fn audit_certificate(
    tx: &Tx<'_>,
    actor: &str,
    action: &str,
    serial: &Serial,
    detail: &serde_json::Value,
) -> TxResult<()> {
    let subject = serial.to_hex();
    audit::append(tx, &Event { actor, action, subject: &subject, detail_json: detail.to_string() })?;
    Ok(())
}

/// Refuses a step that a serial in `state` does not allow; `reason` says which.
pub(crate) fn wrong_state<T>(serial: &Serial, state: CertificateState, reason: &'static str) -> TxResult<T> {
    fail(StoreError::CertificateState { serial: serial.to_hex(), state, reason })
}

/// A serial the caller named: absent is the caller's NotFound.
pub(crate) fn find_certificate(tx: &Tx<'_>, serial: &Serial) -> TxResult<CertificateRecord> {
    match tx.certificates.get_json(serial.as_bytes())? {
        Some(r) => Ok(r),
        None => fail(StoreError::NoSuchCertificate { serial: serial.to_hex() }),
    }
}

/// A serial a card points at: absent means the database is damaged.
pub(crate) fn require_certificate(tx: &Tx<'_>, serial: &Serial) -> TxResult<CertificateRecord> {
    match tx.certificates.get_json(serial.as_bytes())? {
        Some(r) => Ok(r),
        None => fail(crate::tx::corrupt("certificates", serial.as_bytes(), "referenced by a card but missing")),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The CRL scopes of a card's certificates are checked before any transaction.
pub(crate) fn check_scopes(certs: &[PreparedCertificate]) -> Result<(), StoreError> {
    for cert in certs {
        if let Some(scope) = &cert.scope {
            crate::crl_scopes::check(scope)?;
        }
    }
    Ok(())
}

/// The PIN escrow `prepare_card` stores: the given one, as `card_id`'s.
pub(crate) fn escrow_of(card_id: &str, pin: Option<&NewPinEscrow>) -> Option<NewPinEscrow> {
    pin.map(|new| NewPinEscrow { card_id: card_id.to_owned(), ..new.clone() })
}

/// `prepare_card`'s writes inside a transaction: (records, changed, pin stored).
pub(crate) fn prepare_in(
    tx: &Tx<'_>,
    card_id: &str,
    certs: &[PreparedCertificate],
    pin: Option<&NewPinEscrow>,
    actor: &str,
) -> TxResult<(Vec<CertificateRecord>, bool, bool)> {
    let mut records = Vec::with_capacity(certs.len());
    let mut changed = false;
    let mut pin_stored = false;
    if let Some(new) = pin {
        if !tx.pin_escrow.contains(card_id.as_bytes())? {
            pin_stored = crate::pin::store_escrow(tx, new)?.1;
            changed |= pin_stored;
        }
    }
    for cert in certs {
        let (record, wrote) = prepare(tx, card_id, cert, actor)?;
        records.push(record);
        changed |= wrote;
    }
    Ok((records, changed, pin_stored))
}

/// `finish_card`'s writes inside a transaction: (card, changed, last GOOD feed sequence).
pub(crate) fn finish_in(
    tx: &Tx<'_>,
    card_id: &str,
    certs: &[SignedCertificate],
    cert_actor: &str,
    actor: &str,
) -> TxResult<(CardRecord, bool, Option<u64>)> {
    let mut changed = false;
    let mut last_good = None;
    let mut stored = Vec::with_capacity(certs.len());
    for cert in certs {
        let record = find_certificate(tx, &cert.serial)?;
        if record.card_id != card_id {
            return fail(StoreError::CertificateConflict {
                serial: cert.serial.to_hex(),
                reason: "belongs to another card",
            });
        }
        let (record, wrote, good) = store_cert(tx, record, &cert.certificate_der, &cert.tbs_of_cert, cert_actor)?;
        stored.push(record);
        changed |= wrote;
        last_good = last_good.max(good);
    }
    let card = require_card(tx, card_id)?;
    if card.state == CardState::Revoked {
        return Ok((card, changed, last_good));
    }
    let (card, completed) = crate::application::complete_with(tx, card, &stored, actor)?;
    Ok((card, changed || completed, last_good))
}

/// `finish_card`'s answer once its writes are durable: a card revoked
/// meanwhile is `CardNotPending` (its certificates are stored all the same).
pub(crate) fn finished(card: CardRecord) -> Result<CardRecord, StoreError> {
    if card.state == CardState::Revoked {
        return Err(StoreError::CardNotPending { card_id: card.card_id, state: card.state });
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{application, prepared, signed, temp_store};

    fn pending_card(store: &Store) -> String {
        store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id
    }

    fn reservation(card_id: &str, kind: CertificateKind) -> Reservation {
        Reservation {
            card_id: card_id.into(),
            kind,
            issuer_label: "sign-ca".into(),
            not_before_unix: 1_700_000_000,
            not_after_unix: 1_857_000_000,
        }
    }

    #[test]
    fn prepare_and_finish_make_an_active_card_in_two_writes_audited_like_the_single_steps() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let (s, a) = (Serial::random(), Serial::random());
        let certs = [prepared(CertificateKind::Signing, &s), prepared(CertificateKind::Authentication, &a)];
        let escrow = NewPinEscrow {
            card_id: "ignored".into(),
            key_label: "pin-escrow".into(),
            iv: vec![7; 12],
            ciphertext: vec![9; 24],
            actor: "ra-1".into(),
        };
        let (records, pin_stored) = store.prepare_card(&card_id, &certs, Some(&escrow), "issuance").unwrap();
        assert!(pin_stored);
        assert_eq!(store.get_pin_escrow(&card_id).unwrap().ciphertext, escrow.ciphertext);
        assert_eq!(
            records.iter().map(|r| (r.serial.clone(), r.state)).collect::<Vec<_>>(),
            [(s.clone(), CertificateState::Precert), (a.clone(), CertificateState::Precert)]
        );
        assert_eq!(records[0].tbs_der.as_deref(), Some(certs[0].tbs_der.as_slice()));
        let view = store.get_card(&card_id).unwrap();
        assert_eq!((view.card.signing_serial.as_ref(), view.card.authentication_serial.as_ref()), (Some(&s), Some(&a)));
        assert_eq!(store.unresolved_reservations().unwrap().len(), 2, "recorded before anything is signed");
        let actions: Vec<_> = store.list_audit(2, None).unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["pin.escrow", "serial.reserve", "tbs.record", "serial.reserve", "tbs.record"]);

        // A retry of the same preparation writes nothing.
        let audit_len = store.list_audit(1, None).unwrap().len();
        let other_pin = NewPinEscrow { ciphertext: vec![8; 24], ..escrow.clone() };
        assert_eq!(
            store.prepare_card(&card_id, &certs, Some(&other_pin), "issuance").unwrap(),
            (records.clone(), false)
        );
        assert_eq!(store.get_pin_escrow(&card_id).unwrap().ciphertext, escrow.ciphertext, "the first escrow is kept");
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len);
        assert_eq!(store.feed_position(), 0, "nothing is GOOD before it is stored");

        let card = store.finish_card(&card_id, &[signed(&s), signed(&a)], "issuance", "ra-1").unwrap();
        assert_eq!(card.state, CardState::Active);
        assert_eq!(store.get_certificate(&a).unwrap().state, CertificateState::Issued);
        let feed: Vec<_> = store.feed_all_after(0).unwrap().into_iter().map(|c| c.serial).collect();
        assert_eq!(feed, [s.clone(), a.clone()], "both GOOD, durable");
        let log = store.list_audit(audit_len as u64 + 1, None).unwrap();
        let actions: Vec<_> = log.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
        assert_eq!(
            actions,
            [("certificate.store", "issuance"), ("certificate.store", "issuance"), ("application.complete", "ra-1")]
        );
        // Replayed: same card, nothing written.
        assert_eq!(store.finish_card(&card_id, &[signed(&s), signed(&a)], "issuance", "ra-1").unwrap(), card);
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len + 3);
        assert!(store.unresolved_reservations().unwrap().is_empty());
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn prepare_refuses_a_used_serial_or_a_second_serial_for_a_kind_and_writes_nothing() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let taken = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap().serial;
        let other_card = store.begin_application(&application("app-2", "L2"), "JMA").unwrap().view.card.card_id;
        let audit_len = store.list_audit(1, None).unwrap().len();

        // Another card's serial: refused, and the first certificate of the batch is not kept either.
        let fresh = Serial::random();
        let certs = [prepared(CertificateKind::Signing, &fresh), prepared(CertificateKind::Authentication, &taken)];
        let err = store.prepare_card(&other_card, &certs, None, "iss").unwrap_err();
        assert!(
            matches!(err, StoreError::CertificateState { .. }) && err.to_string().contains("already in use"),
            "{err}"
        );
        assert!(matches!(store.get_certificate(&fresh), Err(StoreError::NoSuchCertificate { .. })));
        assert_eq!(store.get_card(&other_card).unwrap().card.signing_serial, None);

        // The card has a signing serial already: another one is refused, that one is recorded.
        let err = store.prepare_card(&card_id, &[prepared(CertificateKind::Signing, &fresh)], None, "iss").unwrap_err();
        assert!(err.to_string().contains("already the card's serial"), "{err}");
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len);
        let rec = store.prepare_card(&card_id, &[prepared(CertificateKind::Signing, &taken)], None, "iss").unwrap().0;
        assert_eq!(rec[0].state, CertificateState::Precert);
        assert_eq!(rec[0].reserved_at_unix, store.get_certificate(&taken).unwrap().reserved_at_unix);
        let err = store
            .prepare_card(&card_id, &[prepared(CertificateKind::OcspResponder, &Serial::random())], None, "iss")
            .unwrap_err();
        assert!(matches!(err, StoreError::CertificateConflict { .. }), "{err}");
    }

    #[test]
    fn finish_on_a_card_revoked_meanwhile_stores_what_was_signed_and_refuses_to_complete() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let (s, a) = (Serial::random(), Serial::random());
        let certs = [prepared(CertificateKind::Signing, &s), prepared(CertificateKind::Authentication, &a)];
        store.prepare_card(&card_id, &certs, None, "issuance").unwrap();
        store
            .revoke_card(&card_id, &crate::test_support::revocation(crate::RevocationReason::KeyCompromise), "")
            .unwrap();
        let err = store.finish_card(&card_id, &[signed(&s), signed(&a)], "issuance", "ra-1").unwrap_err();
        assert!(matches!(err, StoreError::CardNotPending { state: CardState::Revoked, .. }), "{err}");
        for serial in [&s, &a] {
            let rec = store.get_certificate(serial).unwrap();
            assert_eq!(rec.certificate_der, Some(signed(serial).certificate_der), "signed, so recorded");
            assert_ne!(rec.state, CertificateState::Issued);
        }
        // A certificate of another card is refused.
        let other = store.begin_application(&application("app-2", "L2"), "JMA").unwrap().view.card.card_id;
        let err = store.finish_card(&other, &[signed(&s)], "issuance", "ra-1").unwrap_err();
        assert!(err.to_string().contains("belongs to another card"), "{err}");
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn abandon_frees_the_slot_refuses_later_steps_and_is_idempotent() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let first = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        assert_eq!(store.unresolved_reservations().unwrap().len(), 1);
        let gone = store.abandon_reservation(&first.serial, "recovery").unwrap();
        assert_eq!(gone.state, CertificateState::Abandoned);
        assert!(store.unresolved_reservations().unwrap().is_empty());
        let audit_len = store.list_audit(1, None).unwrap().len();
        assert_eq!(store.abandon_reservation(&first.serial, "recovery").unwrap(), gone);
        assert_eq!(store.list_audit(1, None).unwrap().len(), audit_len, "a repeat writes nothing");
        let last = store.list_audit(1, None).unwrap().pop().unwrap();
        assert_eq!(last.action, actions::SERIAL_ABANDON);
        assert!(matches!(
            store.record_tbs(&first.serial, b"tbs", None, "iss"),
            Err(StoreError::CertificateState { state: CertificateState::Abandoned, .. })
        ));
        assert!(store.store_certificate(&first.serial, b"cert", b"tbs", "iss").is_err());
        assert!(store
            .revoke_certificate(
                &first.serial,
                &crate::RevocationRequest {
                    reason: crate::RevocationReason::KeyCompromise,
                    revoked_at_unix: 0,
                    actor: "op".into(),
                    note: String::new(),
                    invalidity_date_unix: 0,
                }
            )
            .is_err());
        let second = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        assert_ne!(second.serial, first.serial, "the retry gets a fresh serial");
        assert_eq!(store.get_card(&card_id).unwrap().card.signing_serial, Some(second.serial.clone()));
        store.record_tbs(&second.serial, b"tbs", None, "iss").unwrap();
        assert!(matches!(
            store.abandon_reservation(&second.serial, "recovery"),
            Err(StoreError::CertificateState { state: CertificateState::Precert, .. })
        ));
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn reserve_gives_a_positive_16_octet_serial_and_links_it_to_the_card() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let sign = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        assert_eq!(sign.state, CertificateState::Reserved);
        assert_eq!(sign.serial.as_bytes().len(), 16);
        assert!(sign.serial.as_bytes()[0] & 0x80 == 0 && sign.serial.as_bytes()[0] != 0);
        assert_eq!(sign.not_after_unix, 1_857_000_000);
        let auth = store.reserve_serial(&reservation(&card_id, CertificateKind::Authentication), "iss").unwrap();
        assert_ne!(sign.serial, auth.serial);

        let view = store.get_card(&card_id).unwrap();
        assert_eq!(view.card.signing_serial.as_ref(), Some(&sign.serial));
        assert_eq!(view.card.authentication_serial.as_ref(), Some(&auth.serial));
        assert_eq!(view.certificates, vec![sign.clone(), auth]);
        assert_eq!(store.get_certificate(&sign.serial).unwrap(), sign);
        let log = store.list_audit(2, Some(1)).unwrap();
        assert_eq!(log[0].action, "serial.reserve");
        assert_eq!(log[0].subject, sign.serial.to_hex());
    }

    #[test]
    fn responder_certificates_belong_to_no_card_get_a_fresh_serial_each_time_and_resolve_like_a_cards() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let err = store.reserve_serial(&reservation(&card_id, CertificateKind::OcspResponder), "iss").unwrap_err();
        assert!(matches!(err, StoreError::NoSuchCard { .. }), "a responder certificate names no card: {err}");
        assert_eq!(store.trees.certificates.len(), 0);
        let first = store.reserve_serial(&reservation("", CertificateKind::OcspResponder), "iss").unwrap();
        let second = store.reserve_serial(&reservation("", CertificateKind::OcspResponder), "iss").unwrap();
        assert_ne!(first.serial, second.serial, "no slot to be idempotent on: a new serial each time");
        assert_eq!((first.card_id.as_str(), first.state), ("", CertificateState::Reserved));
        let view = store.get_card(&card_id).unwrap();
        assert_eq!((view.card.signing_serial, view.card.authentication_serial), (None, None), "no card touched");
        let mut open: Vec<_> = store.unresolved_reservations().unwrap().into_iter().map(|r| r.serial).collect();
        open.sort();
        let mut want = vec![first.serial.clone(), second.serial.clone()];
        want.sort();
        assert_eq!(open, want, "both are left for the restart recovery");
        // Recovery: the RESERVED one is abandoned, the PRECERT one stored.
        assert_eq!(store.abandon_reservation(&first.serial, "recovery").unwrap().state, CertificateState::Abandoned);
        let abandon = store.list_audit(1, None).unwrap().pop().unwrap();
        assert_eq!(abandon.action, actions::SERIAL_ABANDON);
        assert!(abandon.detail_json.contains("\"slot_freed\":false"), "{}", abandon.detail_json);
        store.record_tbs(&second.serial, b"tbs", None, "iss").unwrap();
        let issued = store.store_certificate(&second.serial, b"cert", b"tbs", "iss").unwrap();
        assert_eq!(issued.state, CertificateState::Issued);
        let revoked = store
            .revoke_certificate(
                &second.serial,
                &crate::test_support::revocation(crate::RevocationReason::KeyCompromise),
            )
            .unwrap();
        assert_eq!(revoked.certificate.state, CertificateState::Revoked);
        assert!(store.unresolved_reservations().unwrap().is_empty());
        store.verify_audit_chain().unwrap();
    }

    #[test]
    fn reserving_a_kind_again_returns_the_first_reservation_unchanged() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let first = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        let mut other = reservation(&card_id, CertificateKind::Signing);
        other.not_before_unix += 86_400;
        let again = store.reserve_serial(&other, "iss").unwrap();
        assert_eq!(again, first);
        assert_eq!(store.trees.certificates.len(), 1);
    }

    #[test]
    fn reserve_needs_a_known_pending_card() {
        let (_dir, store) = temp_store();
        let err = store.reserve_serial(&reservation("Cnope", CertificateKind::Signing), "iss").unwrap_err();
        assert!(matches!(err, StoreError::NoSuchCard { .. }), "{err}");

        let card_id = pending_card(&store);
        store
            .trees
            .transact(|tx| {
                let mut card = require_card(tx, &card_id)?;
                card.state = CardState::Revoked;
                tx.cards.put_json(card_id.as_bytes(), &card)
            })
            .unwrap();
        let err = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap_err();
        assert!(matches!(err, StoreError::CardNotPending { .. }), "{err}");
        assert_eq!(store.trees.certificates.len(), 0);
    }

    #[test]
    fn record_tbs_moves_to_precert_once_and_refuses_other_bytes() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let rec = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        let pre = store.record_tbs(&rec.serial, b"tbs-one", None, "iss").unwrap();
        assert_eq!(pre.state, CertificateState::Precert);
        assert_eq!(pre.tbs_der.as_deref(), Some(&b"tbs-one"[..]));
        let entries = store.list_audit(0, None).unwrap().len();
        assert_eq!(store.record_tbs(&rec.serial, b"tbs-one", None, "iss").unwrap(), pre);
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries);

        let err = store.record_tbs(&rec.serial, b"tbs-two", None, "iss").unwrap_err();
        assert!(matches!(err, StoreError::TbsConflict { .. }), "{err}");
        assert_eq!(store.get_certificate(&rec.serial).unwrap(), pre, "stored TBS unchanged");
    }

    #[test]
    fn record_tbs_for_an_unknown_serial_is_not_found() {
        let (_dir, store) = temp_store();
        let serial = Serial::random();
        let err = store.record_tbs(&serial, b"tbs", None, "iss").unwrap_err();
        assert!(matches!(err, StoreError::NoSuchCertificate { .. }), "{err}");
        assert!(matches!(store.get_certificate(&serial), Err(StoreError::NoSuchCertificate { .. })));
        assert_eq!(store.trees.certificates.len(), 0);
    }

    #[test]
    fn store_certificate_checks_the_recorded_tbs_and_is_idempotent() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let rec = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();

        let err = store.store_certificate(&rec.serial, b"cert", b"tbs", "iss").unwrap_err();
        assert!(matches!(err, StoreError::CertificateState { state: CertificateState::Reserved, .. }), "{err}");

        let pre = store.record_tbs(&rec.serial, b"tbs", None, "iss").unwrap();
        let err = store.store_certificate(&rec.serial, b"cert", b"other-tbs", "iss").unwrap_err();
        assert!(err.to_string().contains("certificate does not match the recorded to-be-signed bytes"), "{err}");
        assert_eq!(store.get_certificate(&rec.serial).unwrap(), pre, "record unchanged");

        let issued = store.store_certificate(&rec.serial, b"cert", b"tbs", "iss").unwrap();
        assert_eq!(issued.state, CertificateState::Issued);
        assert_eq!(issued.certificate_der.as_deref(), Some(&b"cert"[..]));
        assert_eq!(store.store_certificate(&rec.serial, b"cert", b"tbs", "iss").unwrap(), issued);

        let err = store.store_certificate(&rec.serial, b"cert-resigned", b"tbs", "iss").unwrap_err();
        assert!(err.to_string().contains("a different certificate is already stored"), "{err}");
        let err = store.record_tbs(&rec.serial, b"tbs-two", None, "iss").unwrap_err();
        assert!(matches!(err, StoreError::TbsConflict { .. }));
        assert_eq!(store.get_certificate(&rec.serial).unwrap(), issued);
        assert_eq!(store.list_audit(0, None).unwrap().last().unwrap().action, "certificate.store");
    }

    #[test]
    fn a_stored_certificate_that_holds_the_tbs_replaces_it_and_every_check_still_reads_it() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let rec = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        // DER-shaped: SEQUENCE { tbs SEQUENCE, signature BIT STRING }.
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x07];
        let cert = [[0x30, 0x0a].as_slice(), &tbs, &[0x03, 0x03, 0x00, 0xab, 0xcd]].concat();
        let resigned = [[0x30, 0x0a].as_slice(), &tbs, &[0x03, 0x03, 0x00, 0xee, 0xee]].concat();
        store.record_tbs(&rec.serial, &tbs, None, "iss").unwrap();

        let issued = store.store_certificate(&rec.serial, &cert, &tbs, "iss").unwrap();
        assert_eq!((issued.tbs_der.as_deref(), issued.tbs()), (None, Some(&tbs[..])));
        assert_eq!(store.get_certificate(&rec.serial).unwrap(), issued);
        let entries = store.list_audit(0, None).unwrap().len();
        assert_eq!(store.store_certificate(&rec.serial, &cert, &tbs, "iss").unwrap(), issued);
        assert_eq!(store.record_tbs(&rec.serial, &tbs, None, "iss").unwrap(), issued, "a retried RecordTbs");
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries, "retries write nothing");

        let err = store.store_certificate(&rec.serial, &resigned, &tbs, "iss").unwrap_err();
        assert!(err.to_string().contains("a different certificate is already stored"), "{err}");
        let err = store.store_certificate(&rec.serial, &cert, b"other-tbs", "iss").unwrap_err();
        assert!(err.to_string().contains("certificate does not match the recorded to-be-signed bytes"), "{err}");
        let err = store.record_tbs(&rec.serial, b"tbs-two", None, "iss").unwrap_err();
        assert!(matches!(err, StoreError::TbsConflict { .. }), "{err}");
        assert_eq!(store.get_certificate(&rec.serial).unwrap(), issued);
    }

    #[test]
    fn unresolved_reservations_are_those_reserved_or_precert() {
        let (_dir, store) = temp_store();
        let card_id = pending_card(&store);
        let sign = store.reserve_serial(&reservation(&card_id, CertificateKind::Signing), "iss").unwrap();
        let auth = store.reserve_serial(&reservation(&card_id, CertificateKind::Authentication), "iss").unwrap();
        store.record_tbs(&auth.serial, b"tbs", None, "iss").unwrap();
        let mut open: Vec<_> = store.unresolved_reservations().unwrap().into_iter().map(|r| r.serial).collect();
        open.sort();
        let mut want = vec![sign.serial.clone(), auth.serial.clone()];
        want.sort();
        assert_eq!(open, want);

        store.store_certificate(&auth.serial, b"cert", b"tbs", "iss").unwrap();
        let open = store.unresolved_reservations().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].serial, sign.serial);
    }
}
