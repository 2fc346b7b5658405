//! Applications and cards: begin (holder + pending card), complete, and reads.

use serde_json::{json, Map, Value};

use crate::audit::{self, actions, Event};
use crate::certificates::require_certificate;
use crate::error::StoreError;
use crate::records::{
    ApplicationProcedure, BeginOutcome, CardRecord, CardState, CardView, CertificateKind, CertificateRecord,
    CertificateState, HolderDetails, HolderRecord, NewApplication, Procedure,
};
use crate::tx::{corrupt, fail, Tx, TxResult};
use crate::Store;

const HOLDER_SEQ_KEY: &[u8] = b"holder_seq";

impl Store {
    /// A "new" application: `begin_procedure` with `ApplicationProcedure::New`.
    pub fn begin_application(&self, app: &NewApplication, holder_id_prefix: &str) -> Result<BeginOutcome, StoreError> {
        self.begin_procedure(app, &ApplicationProcedure::New, holder_id_prefix)
    }

    /// Creates the holder (or updates the details of the one with this
    /// licence number) and a PENDING card, or returns the card already made
    /// for this application_id with `existing = true` and nothing written
    /// (`ApplicationMismatch` / `ApplicationProcedureMismatch` when that card
    /// was made for another licence number, procedure or replaced card).
    ///
    /// The holder may have no other current card: a PENDING or ACTIVE card
    /// whose `superseded_by` is unset (`ActiveCard`). A renewal replaces an
    /// ACTIVE card, a reissue a REVOKED one; either must be the same holder's
    /// and not superseded yet (`NoSuchReplacedCard`, `ReplacedCard`). The
    /// replaced card gets `superseded_by` in the same transaction and keeps
    /// its state (a renewed card stays ACTIVE until its certificates expire).
    pub fn begin_procedure(
        &self,
        app: &NewApplication,
        procedure: &ApplicationProcedure,
        holder_id_prefix: &str,
    ) -> Result<BeginOutcome, StoreError> {
        let outcome = self.trees.transact(|tx| begin(tx, app, procedure, holder_id_prefix))?;
        if !outcome.existing {
            self.flush_grouped()?;
        }
        Ok(outcome)
    }

    /// PENDING -> ACTIVE once both certificates are ISSUED; ACTIVE stays ACTIVE.
    pub fn complete_application(&self, card_id: &str, actor: &str) -> Result<CardRecord, StoreError> {
        self.transact_and_flush(Store::flush_grouped, |tx| complete(tx, card_id, actor))
    }

    pub fn get_card(&self, card_id: &str) -> Result<CardView, StoreError> {
        self.trees.transact(|tx| load_view(tx, card_id))
    }

    pub fn get_card_by_application(&self, application_id: &str) -> Result<CardView, StoreError> {
        self.trees.transact(|tx| match tx.card_by_application.get_str(application_id.as_bytes())? {
            Some(card_id) => load_view(tx, &card_id),
            None => fail(StoreError::NoSuchApplication { application_id: application_id.to_owned() }),
        })
    }

    /// The newest card of the holder with this licence number.
    pub fn get_card_by_licence(&self, licence_number: &str) -> Result<CardView, StoreError> {
        let none = || StoreError::NoSuchLicence { licence_number: licence_number.to_owned() };
        self.trees.transact(|tx| {
            let Some(holder_id) = tx.holder_by_licence.get_str(licence_number.as_bytes())? else {
                return fail(none());
            };
            let holder = require_holder(tx, &holder_id, "holder_by_licence", licence_number)?;
            match holder.card_ids.last() {
                Some(card_id) => load_view(tx, card_id),
                None => fail(none()),
            }
        })
    }
}

pub(crate) fn begin(
    tx: &Tx<'_>,
    app: &NewApplication,
    procedure: &ApplicationProcedure,
    prefix: &str,
) -> TxResult<BeginOutcome> {
    let licence = &app.holder.licence_number;
    if let Some(card_id) = tx.card_by_application.get_str(app.application_id.as_bytes())? {
        let view = load_view(tx, &card_id)?;
        // The same id for another physician or procedure is a client bug, not a retry.
        if view.holder.details.licence_number != *licence {
            return fail(StoreError::ApplicationMismatch {
                application_id: app.application_id.clone(),
                licence_number: view.holder.details.licence_number,
            });
        }
        let card = &view.card;
        if card.procedure != procedure.procedure() || card.replaces_card_id.as_deref() != procedure.replaces_card_id() {
            let made_as = match &card.replaces_card_id {
                Some(old) => format!("a {} of card {old}", card.procedure),
                None => format!("a {} application", card.procedure),
            };
            return fail(StoreError::ApplicationProcedureMismatch {
                application_id: app.application_id.clone(),
                made_as,
            });
        }
        return Ok(BeginOutcome { view, existing: true });
    }

    let existing_holder = match tx.holder_by_licence.get_str(licence.as_bytes())? {
        Some(holder_id) => {
            let holder = require_holder(tx, &holder_id, "holder_by_licence", licence)?;
            if !app.holder_id.is_empty() && app.holder_id != holder.holder_id {
                return fail(StoreError::HolderIdMismatch { given: app.holder_id.clone(), expected: holder.holder_id });
            }
            Some(holder)
        }
        None => {
            if !app.holder_id.is_empty() {
                return fail(StoreError::HolderIdMismatch {
                    given: app.holder_id.clone(),
                    expected: "empty (the registry assigns ids to new holders)".into(),
                });
            }
            None
        }
    };

    let replaced = match procedure.replaces_card_id() {
        None => None,
        Some(old_id) => Some(replaceable(tx, old_id, procedure.procedure(), existing_holder.as_ref())?),
    };

    let (mut holder, holder_changes) = match existing_holder {
        Some(mut holder) => {
            for card_id in &holder.card_ids {
                if replaced.as_ref().is_some_and(|old| old.card_id == *card_id) {
                    continue;
                }
                let card = require_card(tx, card_id)?;
                if card.superseded_by.is_none() && matches!(card.state, CardState::Pending | CardState::Active) {
                    let pending_application = (card.state == CardState::Pending).then(|| card.application_id.clone());
                    return fail(StoreError::ActiveCard { card_id: card.card_id, pending_application });
                }
            }
            let changes = holder_changes(&holder.details, &app.holder);
            holder.details = app.holder.clone();
            (holder, changes)
        }
        None => {
            let holder = HolderRecord {
                holder_id: next_holder_id(tx, prefix)?,
                details: app.holder.clone(),
                card_ids: Vec::new(),
            };
            (holder, Map::new())
        }
    };

    crate::keys::check_unused(tx, &app.keys, None)?;
    let card_id = new_card_id(tx)?;
    let card = CardRecord {
        card_id: card_id.clone(),
        holder_id: holder.holder_id.clone(),
        application_id: app.application_id.clone(),
        state: CardState::Pending,
        signing_serial: None,
        authentication_serial: None,
        created_at_unix: crate::clock::now_unix(),
        application_json: app.application_json.clone(),
        procedure: procedure.procedure(),
        replaces_card_id: procedure.replaces_card_id().map(str::to_owned),
        superseded_by: None,
    };
    holder.card_ids.push(card_id.clone());

    tx.holders.put_json(holder.holder_id.as_bytes(), &holder)?;
    tx.holder_by_licence.put_str(licence.as_bytes(), &holder.holder_id)?;
    tx.cards.put_json(card_id.as_bytes(), &card)?;
    tx.card_by_application.put_str(app.application_id.as_bytes(), &card_id)?;
    crate::keys::index(tx, &card_id, &app.keys)?;
    let mut detail = json!({
        "application_id": app.application_id,
        "holder_id": holder.holder_id,
        "licence_number": licence,
        "procedure": card.procedure,
    });
    if let Some(old) = &card.replaces_card_id {
        detail["replaces_card_id"] = json!(old);
    }
    if !holder_changes.is_empty() {
        detail["holder_changes"] = Value::Object(holder_changes);
    }
    if !app.keys.is_empty() {
        let keys: Map<String, Value> =
            app.keys.iter().map(|k| (k.kind.name().to_owned(), json!(hex::encode(k.spki_sha256)))).collect();
        detail["key_spki_sha256"] = Value::Object(keys);
    }
    audit::append(
        tx,
        &Event {
            actor: &app.actor,
            action: actions::APPLICATION_BEGIN,
            subject: &card_id,
            detail_json: detail.to_string(),
        },
    )?;
    if let Some(mut old) = replaced {
        old.superseded_by = Some(card_id.clone());
        tx.cards.put_json(old.card_id.as_bytes(), &old)?;
        let detail = json!({
            "superseded_by": card_id,
            "procedure": card.procedure,
            "state": old.state,
            "application_id": app.application_id,
        });
        audit::append(
            tx,
            &Event {
                actor: &app.actor,
                action: actions::CARD_SUPERSEDE,
                subject: &old.card_id,
                detail_json: detail.to_string(),
            },
        )?;
    }
    Ok(BeginOutcome { view: CardView { card, holder, certificates: Vec::new() }, existing: false })
}

/// The card a renewal or reissue replaces, if it may be replaced: the same
/// holder's, not superseded, ACTIVE for a renewal and REVOKED for a reissue.
fn replaceable(
    tx: &Tx<'_>,
    card_id: &str,
    procedure: Procedure,
    holder: Option<&HolderRecord>,
) -> TxResult<CardRecord> {
    let Some(old) = tx.cards.get_json::<CardRecord>(card_id.as_bytes())? else {
        return fail(StoreError::NoSuchReplacedCard { card_id: card_id.to_owned() });
    };
    let refuse = |reason: String| fail(StoreError::ReplacedCard { card_id: card_id.to_owned(), reason });
    if holder.is_none_or(|h| h.holder_id != old.holder_id) {
        return refuse("belongs to another holder".into());
    }
    if let Some(next) = &old.superseded_by {
        let how = match tx.cards.get_json::<CardRecord>(next.as_bytes())?.map(|c| c.procedure) {
            Some(Procedure::Reissue) => "reissued as",
            _ => "renewed by",
        };
        return refuse(format!("already {how} card {next}"));
    }
    match (procedure, old.state) {
        (Procedure::Renewal, CardState::Active) | (Procedure::Reissue, CardState::Revoked) => Ok(old),
        (Procedure::Renewal, CardState::Revoked) => {
            refuse("is REVOKED: a renewal needs an ACTIVE card (a revoked card is reissued)".into())
        }
        (Procedure::Renewal, state) => refuse(format!("is {state}: a renewal needs an ACTIVE card")),
        (_, state) => refuse(format!("must be revoked before a reissue (it is {state})")),
    }
}

/// The holder details that differ, as {field: {old, new}}, for the audit log.
/// Compared field by field as JSON objects, so a field added later is compared
/// too; one that only one side carries counts as null on the other.
pub(crate) fn holder_changes(old: &HolderDetails, new: &HolderDetails) -> Map<String, Value> {
    let fields = |details: &HolderDetails| match json!(details) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    let (old, mut new) = (fields(old), fields(new));
    let mut changes: Map<String, Value> = old
        .into_iter()
        .filter_map(|(field, old)| {
            let new = new.remove(&field).unwrap_or_default();
            (old != new).then(|| (field, json!({ "old": old, "new": new })))
        })
        .collect();
    changes.extend(
        new.into_iter()
            .filter(|(_, new)| !new.is_null())
            .map(|(field, new)| (field, json!({ "old": null, "new": new }))),
    );
    changes
}

/// Holder ids are the prefix and a gapless 10-digit counter, e.g. JMA0000000001.
fn next_holder_id(tx: &Tx<'_>, prefix: &str) -> TxResult<String> {
    let mut seq: u64 = tx.meta.get_json(HOLDER_SEQ_KEY)?.unwrap_or(0);
    loop {
        seq += 1;
        let id = format!("{prefix}{seq:010}");
        // Only taken if the prefix was changed back and forth; skip, never reuse.
        if !tx.holders.contains(id.as_bytes())? {
            tx.meta.put_json(HOLDER_SEQ_KEY, &seq)?;
            return Ok(id);
        }
    }
}

/// "C" and 16 random hex digits; random so ids reveal nothing about volume.
fn new_card_id(tx: &Tx<'_>) -> TxResult<String> {
    loop {
        let id = format!("C{}", hex::encode(rand::random::<[u8; 8]>()));
        if !tx.cards.contains(id.as_bytes())? {
            return Ok(id);
        }
    }
}

pub(crate) fn complete(tx: &Tx<'_>, card_id: &str, actor: &str) -> TxResult<(CardRecord, bool)> {
    complete_with(tx, require_card(tx, card_id)?, &[], actor)
}

/// `complete` of `card` as read in this transaction; `known` are certificate
/// records also read or written in it, so they are not decoded again.
pub(crate) fn complete_with(
    tx: &Tx<'_>,
    mut card: CardRecord,
    known: &[CertificateRecord],
    actor: &str,
) -> TxResult<(CardRecord, bool)> {
    let card_id = &card.card_id.clone();
    match card.state {
        CardState::Active => return Ok((card, false)),
        CardState::Revoked => return fail(StoreError::CardNotPending { card_id: card.card_id, state: card.state }),
        CardState::Pending => {}
    }
    let mut missing = Vec::new();
    for kind in CertificateKind::ALL {
        match card.serial(kind) {
            None => missing.push(format!("{} certificate not reserved", kind.name())),
            Some(serial) => {
                let state = match known.iter().find(|r| r.serial == *serial) {
                    Some(r) => r.state,
                    None => require_certificate(tx, serial)?.state,
                };
                if state != CertificateState::Issued {
                    missing.push(format!("{} certificate {} is {}, not ISSUED", kind.name(), serial, state));
                }
            }
        }
    }
    if !missing.is_empty() {
        return fail(StoreError::CardIncomplete { card_id: card.card_id, missing: missing.join("; ") });
    }
    card.state = CardState::Active;
    tx.cards.put_json(card_id.as_bytes(), &card)?;
    let detail = json!({
        "signing_serial": card.signing_serial,
        "authentication_serial": card.authentication_serial,
    });
    audit::append(
        tx,
        &Event { actor, action: actions::APPLICATION_COMPLETE, subject: card_id, detail_json: detail.to_string() },
    )?;
    Ok((card, true))
}

pub(crate) fn require_card(tx: &Tx<'_>, card_id: &str) -> TxResult<CardRecord> {
    match tx.cards.get_json(card_id.as_bytes())? {
        Some(card) => Ok(card),
        None => fail(StoreError::NoSuchCard { card_id: card_id.to_owned() }),
    }
}

/// A holder another record points at; missing means the database is damaged.
pub(crate) fn require_holder(
    tx: &Tx<'_>,
    holder_id: &str,
    from_tree: &'static str,
    from_key: &str,
) -> TxResult<HolderRecord> {
    match tx.holders.get_json(holder_id.as_bytes())? {
        Some(h) => Ok(h),
        None => fail(corrupt(from_tree, from_key.as_bytes(), &format!("holder {holder_id} is missing"))),
    }
}

pub(crate) fn load_view(tx: &Tx<'_>, card_id: &str) -> TxResult<CardView> {
    let card = require_card(tx, card_id)?;
    let holder = require_holder(tx, &card.holder_id, "cards", card_id)?;
    let mut certificates = Vec::new();
    for kind in CertificateKind::ALL {
        if let Some(serial) = card.serial(kind) {
            certificates.push(require_certificate(tx, serial)?);
        }
    }
    Ok(CardView { card, holder, certificates })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::records::Membership;
    use crate::test_support::{application, reopened, temp_store};
    use crate::{Reservation, Store};

    /// Reserves, records and stores both certificates with stand-in bytes.
    fn issue_both(store: &Store, card_id: &str) {
        for kind in CertificateKind::ALL {
            let req = Reservation {
                card_id: card_id.into(),
                kind,
                issuer_label: "sign-ca".into(),
                not_before_unix: 1_700_000_000,
                not_after_unix: 1_800_000_000,
            };
            let rec = store.reserve_serial(&req, "t").unwrap();
            let tbs = [b"tbs-".as_slice(), rec.serial.as_bytes()].concat();
            store.record_tbs(&rec.serial, &tbs, None, "t").unwrap();
            store.store_certificate(&rec.serial, b"cert", &tbs, "t").unwrap();
        }
    }

    fn revoke_card(store: &Store, card_id: &str) {
        let req = crate::test_support::revocation(crate::RevocationReason::CessationOfOperation);
        let out = store.revoke_card(card_id, &req, "").unwrap();
        assert_eq!(out.view.card.state, CardState::Revoked);
    }

    #[test]
    fn begin_creates_a_holder_and_a_pending_card_with_an_audit_entry() {
        let (_dir, store) = temp_store();
        let out = store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        assert!(!out.existing);
        let card = &out.view.card;
        assert_eq!(card.state, CardState::Pending);
        assert_eq!(card.holder_id, "JMA0000000001");
        assert_eq!(card.application_id, "app-1");
        assert!(card.card_id.starts_with('C') && card.card_id.len() == 17, "{}", card.card_id);
        assert!(card.card_id[1..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(out.view.holder.card_ids, vec![card.card_id.clone()]);
        assert!(out.view.certificates.is_empty());

        let second = store.begin_application(&application("app-2", "L2"), "JMA").unwrap();
        assert_eq!(second.view.holder.holder_id, "JMA0000000002");

        let log = store.list_audit(0, None).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].action, "application.begin");
        assert_eq!(log[0].subject, card.card_id);
        assert_eq!(log[0].actor, "ra-test");
    }

    #[test]
    fn begin_again_with_the_same_application_id_returns_the_same_card_and_writes_nothing() {
        let (_dir, store) = temp_store();
        let first = store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        let again = store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        assert!(again.existing);
        assert_eq!(again.view, first.view);
        assert_eq!(store.list_audit(0, None).unwrap().len(), 1);
    }

    #[test]
    fn begin_with_a_known_application_id_for_another_licence_is_refused() {
        let (_dir, store) = temp_store();
        store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        let err = store.begin_application(&application("app-1", "L2"), "JMA").unwrap_err();
        assert!(
            matches!(err, StoreError::ApplicationMismatch { ref licence_number, .. } if licence_number == "L1"),
            "{err}"
        );
        assert!(matches!(store.get_card_by_licence("L2"), Err(StoreError::NoSuchLicence { .. })));
    }

    #[test]
    fn concurrent_begins_with_one_application_id_make_one_card() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.begin_application(&application("app-1", "L1"), "JMA").unwrap())
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| !o.existing).count(), 1);
        assert!(outcomes.iter().all(|o| o.view.card.card_id == outcomes[0].view.card.card_id));
        assert_eq!(store.trees.cards.len(), 1);
        assert_eq!(store.trees.holders.len(), 1);
        assert_eq!(store.list_audit(0, None).unwrap().len(), 1);
    }

    #[test]
    fn a_holder_with_a_pending_or_active_card_cannot_begin_another() {
        let (_dir, store) = temp_store();
        let first = store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        let card_id = first.view.card.card_id.clone();
        let err = store.begin_application(&application("app-2", "L1"), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { card_id: ref c, .. } if *c == card_id), "{err}");
        // Still being issued: the error names the application to submit again.
        assert!(
            matches!(err, StoreError::ActiveCard { pending_application: Some(ref a), .. } if a == "app-1"),
            "{err}"
        );
        assert!(err.to_string().contains("application app-1") && err.to_string().contains("again"), "{err}");

        issue_both(&store, &card_id);
        store.complete_application(&card_id, "t").unwrap();
        let err = store.begin_application(&application("app-2", "L1"), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { pending_application: None, .. }), "{err}");
        assert_eq!(err.to_string(), format!("holder already has an active card {card_id}"));
        assert!(matches!(store.get_card_by_application("app-2"), Err(StoreError::NoSuchApplication { .. })));
    }

    #[test]
    fn after_revocation_the_same_holder_gets_a_new_card_and_updated_details() {
        let (_dir, store) = temp_store();
        let first = store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        revoke_card(&store, &first.view.card.card_id);

        let mut app = application("app-2", "L1");
        app.holder.family_name_latin = "NEWNAME".into();
        app.holder_id = "JMA0000000001".into(); // a caller may name the holder it knows
        let second = store.begin_application(&app, "JMA").unwrap();
        assert_eq!(second.view.holder.holder_id, "JMA0000000001");
        assert_eq!(second.view.holder.details.family_name_latin, "NEWNAME");
        assert_eq!(second.view.holder.card_ids.len(), 2);
        let newest = store.get_card_by_licence("L1").unwrap();
        assert_eq!(newest.card.card_id, second.view.card.card_id);
    }

    #[test]
    fn a_caller_supplied_holder_id_must_be_the_one_on_file() {
        let (_dir, store) = temp_store();
        let mut app = application("app-1", "L1");
        app.holder_id = "JMA0000000099".into();
        let err = store.begin_application(&app, "JMA").unwrap_err();
        assert!(matches!(err, StoreError::HolderIdMismatch { .. }), "{err}");
        assert_eq!(store.trees.holders.len(), 0);

        let first = store.begin_application(&application("app-1", "L1"), "JMA").unwrap();
        revoke_card(&store, &first.view.card.card_id);
        let mut app = application("app-2", "L1");
        app.holder_id = "JMA0000000099".into();
        let err = store.begin_application(&app, "JMA").unwrap_err();
        assert!(matches!(err, StoreError::HolderIdMismatch { ref expected, .. } if expected == "JMA0000000001"));
    }

    #[test]
    fn complete_needs_both_certificates_issued_and_is_idempotent() {
        let (_dir, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        let err = store.complete_application(&card_id, "t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("signing certificate not reserved"), "{text}");
        assert!(text.contains("authentication certificate not reserved"), "{text}");

        let req = Reservation {
            card_id: card_id.clone(),
            kind: CertificateKind::Signing,
            issuer_label: "sign-ca".into(),
            not_before_unix: 1,
            not_after_unix: 2,
        };
        let rec = store.reserve_serial(&req, "t").unwrap();
        let text = store.complete_application(&card_id, "t").unwrap_err().to_string();
        assert!(text.contains(&format!("signing certificate {} is RESERVED, not ISSUED", rec.serial)), "{text}");

        let (_dir2, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        issue_both(&store, &card_id);
        let card = store.complete_application(&card_id, "op").unwrap();
        assert_eq!(card.state, CardState::Active);
        let entries = store.list_audit(0, None).unwrap().len();
        assert_eq!(store.complete_application(&card_id, "op").unwrap(), card);
        assert_eq!(store.list_audit(0, None).unwrap().len(), entries, "a repeated complete logs nothing");
        let view = store.get_card(&card_id).unwrap();
        assert_eq!(view.card.state, CardState::Active);
        assert!(view.certificates.iter().all(|c| c.state == CertificateState::Issued));
        assert_eq!(store.list_audit(0, None).unwrap().last().unwrap().action, "application.complete");
    }

    #[test]
    fn a_revoked_card_cannot_be_completed() {
        let (_dir, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        revoke_card(&store, &card_id);
        let err = store.complete_application(&card_id, "t").unwrap_err();
        assert!(matches!(err, StoreError::CardNotPending { state: CardState::Revoked, .. }), "{err}");
    }

    #[test]
    fn reads_of_unknown_keys_are_not_found() {
        let (_dir, store) = temp_store();
        assert!(matches!(store.get_card("Cnope"), Err(StoreError::NoSuchCard { .. })));
        assert!(matches!(store.get_card_by_application("nope"), Err(StoreError::NoSuchApplication { .. })));
        assert!(matches!(store.get_card_by_licence("nope"), Err(StoreError::NoSuchLicence { .. })));
        assert!(matches!(store.complete_application("Cnope", "t"), Err(StoreError::NoSuchCard { .. })));
    }

    #[test]
    fn a_damaged_card_record_is_reported_not_panicked_on() {
        let (_dir, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        store.trees.cards.insert(card_id.as_bytes(), &b"{not json"[..]).unwrap();
        let err = store.get_card(&card_id).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { tree: "cards", .. }), "{err}");
        assert!(matches!(store.complete_application(&card_id, "t"), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn data_survives_close_and_reopen() {
        let (_dir, store, card_id) = reopened(|store| {
            let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
            issue_both(store, &card_id);
            store.complete_application(&card_id, "t").unwrap();
            card_id
        });
        let view = store.get_card_by_application("app-1").unwrap();
        assert_eq!(view.card.card_id, card_id);
        assert_eq!(view.card.state, CardState::Active);
        assert_eq!(view.certificates.len(), 2);
        assert_eq!(store.verify_audit_chain().unwrap(), 8);
        // Counters continue after a reopen.
        let next = store.begin_application(&application("app-2", "L2"), "JMA").unwrap();
        assert_eq!(next.view.holder.holder_id, "JMA0000000002");
        assert_eq!(store.verify_audit_chain().unwrap(), 9);
    }

    fn renewal(replaces: &str) -> ApplicationProcedure {
        ApplicationProcedure::Renewal { replaces_card_id: replaces.into() }
    }

    fn reissue(replaces: &str) -> ApplicationProcedure {
        ApplicationProcedure::Reissue { replaces_card_id: replaces.into() }
    }

    /// An ACTIVE card for licence `licence` made by application `app_id`.
    fn active_card(store: &Store, app_id: &str, licence: &str) -> String {
        let card_id = store.begin_application(&application(app_id, licence), "JMA").unwrap().view.card.card_id;
        issue_both(store, &card_id);
        store.complete_application(&card_id, "t").unwrap();
        card_id
    }

    fn replaced_refusal(err: StoreError) -> String {
        match err {
            StoreError::ReplacedCard { reason, .. } => reason,
            other => panic!("expected ReplacedCard, got {other:?}"),
        }
    }

    fn audit_len(store: &Store) -> usize {
        store.list_audit(0, None).unwrap().len()
    }

    #[test]
    fn a_renewal_makes_a_pending_card_and_supersedes_the_active_one_in_one_step() {
        let (_dir, store) = temp_store();
        let old_id = active_card(&store, "app-1", "L1");
        let before = audit_len(&store);

        let out = store.begin_procedure(&application("app-2", "L1"), &renewal(&old_id), "JMA").unwrap();
        assert!(!out.existing);
        let new = &out.view.card;
        assert_eq!(new.state, CardState::Pending);
        assert_eq!(new.procedure, Procedure::Renewal);
        assert_eq!(new.replaces_card_id.as_deref(), Some(old_id.as_str()));
        assert_eq!(new.superseded_by, None);
        assert_eq!(out.view.holder.card_ids, vec![old_id.clone(), new.card_id.clone()]);

        let old = store.get_card(&old_id).unwrap();
        assert_eq!(old.card.state, CardState::Active, "a renewed card stays valid until it expires");
        assert_eq!(old.card.superseded_by.as_deref(), Some(new.card_id.as_str()));
        assert!(old.certificates.iter().all(|c| c.state == CertificateState::Issued));

        let log = store.list_audit(0, None).unwrap();
        assert_eq!(log.len(), before + 2);
        assert_eq!(log[before].action, "application.begin");
        assert_eq!(log[before].subject, new.card_id);
        let detail: Value = serde_json::from_str(&log[before].detail_json).unwrap();
        assert_eq!(detail["procedure"], "renewal");
        assert_eq!(detail["replaces_card_id"], old_id.as_str());
        assert!(detail.get("holder_changes").is_none(), "same details: {detail}");
        assert_eq!(log[before + 1].action, "card.supersede");
        assert_eq!(log[before + 1].subject, old_id);
        let detail: Value = serde_json::from_str(&log[before + 1].detail_json).unwrap();
        assert_eq!(detail["superseded_by"], new.card_id.as_str());
        assert_eq!(store.verify_audit_chain().unwrap(), log.len() as u64);
    }

    #[test]
    fn a_renewal_is_refused_for_unknown_foreign_pending_revoked_or_superseded_cards() {
        let (_dir, store) = temp_store();
        let other = active_card(&store, "app-other", "L9");
        let pending = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        let before = audit_len(&store);

        let err = store.begin_procedure(&application("app-2", "L1"), &renewal("Cnope"), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::NoSuchReplacedCard { ref card_id } if card_id == "Cnope"), "{err}");
        let err = store.begin_procedure(&application("app-2", "L1"), &renewal(&other), "JMA").unwrap_err();
        assert_eq!(replaced_refusal(err), "belongs to another holder");
        // A licence with no holder yet cannot renew anyone's card either.
        let err = store.begin_procedure(&application("app-2", "L5"), &renewal(&other), "JMA").unwrap_err();
        assert_eq!(replaced_refusal(err), "belongs to another holder");
        let err = store.begin_procedure(&application("app-2", "L1"), &renewal(&pending), "JMA").unwrap_err();
        assert_eq!(replaced_refusal(err), "is PENDING: a renewal needs an ACTIVE card");

        revoke_card(&store, &pending);
        let before_revoked = audit_len(&store);
        let err = store.begin_procedure(&application("app-2", "L1"), &renewal(&pending), "JMA").unwrap_err();
        assert!(replaced_refusal(err).starts_with("is REVOKED: a renewal needs an ACTIVE card"));
        assert_eq!(audit_len(&store), before_revoked, "refusals write nothing");
        assert!(before_revoked > before);

        let renewed = store.begin_procedure(&application("app-3", "L9"), &renewal(&other), "JMA").unwrap();
        let err = store.begin_procedure(&application("app-4", "L9"), &renewal(&other), "JMA").unwrap_err();
        assert_eq!(replaced_refusal(err), format!("already renewed by card {}", renewed.view.card.card_id));
        assert!(matches!(store.get_card_by_application("app-2"), Err(StoreError::NoSuchApplication { .. })));
        assert!(matches!(store.get_card_by_application("app-4"), Err(StoreError::NoSuchApplication { .. })));
    }

    #[test]
    fn a_reissue_needs_the_old_card_revoked_first() {
        let (_dir, store) = temp_store();
        let old_id = active_card(&store, "app-1", "L1");
        let err = store.begin_procedure(&application("app-2", "L1"), &reissue(&old_id), "JMA").unwrap_err();
        assert_eq!(replaced_refusal(err), "must be revoked before a reissue (it is ACTIVE)");
        assert!(store.get_card(&old_id).unwrap().card.superseded_by.is_none());

        revoke_card(&store, &old_id);
        let out = store.begin_procedure(&application("app-2", "L1"), &reissue(&old_id), "JMA").unwrap();
        let new = out.view.card;
        assert_eq!((new.state, new.procedure), (CardState::Pending, Procedure::Reissue));
        assert_eq!(new.replaces_card_id.as_deref(), Some(old_id.as_str()));
        let old = store.get_card(&old_id).unwrap().card;
        assert_eq!(old.state, CardState::Revoked);
        assert_eq!(old.superseded_by.as_deref(), Some(new.card_id.as_str()));

        let err = store.begin_procedure(&application("app-3", "L1"), &reissue(&old_id), "JMA").unwrap_err();
        assert_eq!(replaced_refusal(err), format!("already reissued as card {}", new.card_id));
    }

    #[test]
    fn only_cards_that_are_not_superseded_count_as_the_holders_current_card() {
        let (_dir, store) = temp_store();
        let old_id = active_card(&store, "app-1", "L1");
        let err = store.begin_application(&application("app-2", "L1"), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { ref card_id, .. } if *card_id == old_id), "{err}");

        let new_id =
            store.begin_procedure(&application("app-2", "L1"), &renewal(&old_id), "JMA").unwrap().view.card.card_id;
        // The old card no longer counts, the pending renewal does.
        let err = store.begin_application(&application("app-3", "L1"), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { ref card_id, .. } if *card_id == new_id), "{err}");
    }

    #[test]
    fn a_reissue_of_an_old_card_is_refused_while_another_card_is_current() {
        let (_dir, store) = temp_store();
        let first = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        revoke_card(&store, &first);
        let current = active_card(&store, "app-2", "L1");
        let err = store.begin_procedure(&application("app-3", "L1"), &reissue(&first), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ActiveCard { ref card_id, .. } if *card_id == current), "{err}");
        assert!(store.get_card(&first).unwrap().card.superseded_by.is_none());
    }

    #[test]
    fn a_repeated_renewal_returns_the_same_card_and_another_procedure_is_refused() {
        let (_dir, store) = temp_store();
        let old_id = active_card(&store, "app-1", "L1");
        let first = store.begin_procedure(&application("app-2", "L1"), &renewal(&old_id), "JMA").unwrap();
        let entries = audit_len(&store);
        let again = store.begin_procedure(&application("app-2", "L1"), &renewal(&old_id), "JMA").unwrap();
        assert!(again.existing);
        assert_eq!(again.view, first.view);
        assert_eq!(audit_len(&store), entries, "a retry writes nothing");

        let err = store.begin_application(&application("app-2", "L1"), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ApplicationProcedureMismatch { .. }), "{err}");
        assert_eq!(err.to_string(), format!("application app-2 was made as a renewal of card {old_id}"));
        let err = store.begin_procedure(&application("app-2", "L1"), &reissue(&old_id), "JMA").unwrap_err();
        assert!(matches!(err, StoreError::ApplicationProcedureMismatch { .. }), "{err}");
        let err = store.begin_procedure(&application("app-1", "L1"), &renewal(&old_id), "JMA").unwrap_err();
        assert_eq!(err.to_string(), "application app-1 was made as a new application");
    }

    #[test]
    fn concurrent_renewals_of_one_card_make_one_new_card() {
        let (_dir, store) = temp_store();
        let old_id = active_card(&store, "app-0", "L1");
        let store = Arc::new(store);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                let procedure = renewal(&old_id);
                std::thread::spawn(move || {
                    store.begin_procedure(&application(&format!("app-r{i}"), "L1"), &procedure, "JMA")
                })
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let made: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(made.len(), 1, "{outcomes:?}");
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(refused.to_string().starts_with("already renewed by card"), "{refused}");
        }
        let old = store.get_card(&old_id).unwrap().card;
        assert_eq!(old.superseded_by.as_deref(), Some(made[0].view.card.card_id.as_str()));
        assert_eq!(store.trees.cards.len(), 2);
    }

    #[test]
    fn holder_details_are_updated_and_their_changes_audited() {
        let (_dir, store) = temp_store();
        let old_id = active_card(&store, "app-1", "L1");
        revoke_card(&store, &old_id);
        let mut app = application("app-2", "L1");
        app.holder.family_name_kanji = "新姓".into();
        app.holder.membership = Membership::NonMember;
        let out = store.begin_procedure(&app, &reissue(&old_id), "JMA").unwrap();
        assert_eq!(out.view.holder.details, app.holder);
        assert_eq!(store.get_card(&old_id).unwrap().holder.details, app.holder);

        let log = store.list_audit(0, None).unwrap();
        let begin = log.iter().rev().find(|e| e.action == "application.begin").unwrap();
        let detail: Value = serde_json::from_str(&begin.detail_json).unwrap();
        assert_eq!(
            detail["holder_changes"],
            json!({
                "family_name_kanji": { "old": "医師", "new": "新姓" },
                "membership": { "old": "MEMBER", "new": "NON_MEMBER" },
            })
        );
    }

    #[test]
    fn cards_stored_before_procedures_existed_read_as_new() {
        let (_dir, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        let old_json = json!({
            "card_id": card_id,
            "holder_id": "JMA0000000001",
            "application_id": "app-1",
            "state": "PENDING",
            "signing_serial": null,
            "authentication_serial": null,
            "created_at_unix": 1_700_000_000,
            "application_json": "{}",
        });
        store.trees.cards.insert(card_id.as_bytes(), old_json.to_string().as_bytes()).unwrap();
        let card = store.get_card(&card_id).unwrap().card;
        assert_eq!((card.procedure, card.replaces_card_id, card.superseded_by), (Procedure::New, None, None));
        // And a new card writes no empty links.
        let (_dir2, store) = temp_store();
        let card_id = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view.card.card_id;
        let raw = store.trees.cards.get(card_id.as_bytes()).unwrap().unwrap();
        let text = std::str::from_utf8(&raw).unwrap();
        assert!(text.contains(r#""procedure":"new""#) && !text.contains("superseded_by"), "{text}");
    }
}
