//! Proto messages <-> store records. Incoming holders are validated here.

use proto::registry::v1 as pb;
use store::{
    ApprovalRecord, ApprovalState, AuditRecord, CardRecord, CardState, CardView, CertificateKind, CertificateRecord,
    CertificateState, CertificateStatus, ContactAddress, HolderCards, HolderDetails, HolderRecord, Membership,
    PinEscrow, RevocationReason, RevokedEntry, StatusChange,
};

use crate::error::RegistryError;
use crate::validate::{id, text, MAX_ID_LEN, MAX_TEXT_LEN};

/// The holder of a BeginApplication: its optional holder_id and its details.
pub fn holder_in(holder: Option<pb::Holder>) -> Result<(String, HolderDetails), RegistryError> {
    let h = holder.ok_or_else(|| RegistryError::invalid("holder", "is required"))?;
    let membership = match pb::Membership::try_from(h.membership) {
        Ok(pb::Membership::Member) => Membership::Member,
        Ok(pb::Membership::NonMember) => Membership::NonMember,
        _ => return Err(RegistryError::invalid("holder.membership", "must be MEMBER or NON_MEMBER")),
    };
    let details = HolderDetails {
        family_name_kanji: text("holder.family_name_kanji", &h.family_name_kanji, MAX_TEXT_LEN)?,
        given_name_kanji: text("holder.given_name_kanji", &h.given_name_kanji, MAX_TEXT_LEN)?,
        family_name_kana: text("holder.family_name_kana", &h.family_name_kana, MAX_TEXT_LEN)?,
        given_name_kana: text("holder.given_name_kana", &h.given_name_kana, MAX_TEXT_LEN)?,
        family_name_latin: text("holder.family_name_latin", &h.family_name_latin, MAX_TEXT_LEN)?,
        given_name_latin: text("holder.given_name_latin", &h.given_name_latin, MAX_TEXT_LEN)?,
        date_of_birth: text("holder.date_of_birth", &h.date_of_birth, MAX_ID_LEN)?,
        licence_number: id("holder.licence_number", &h.licence_number)?,
        licence_registered_on: text("holder.licence_registered_on", &h.licence_registered_on, MAX_ID_LEN)?,
        membership,
        contact: contact_in(h.contact.unwrap_or_default(), HOLDER_CONTACT_FIELDS)?,
        institution: text("holder.institution", &h.institution, MAX_TEXT_LEN)?,
        institution_kanji: text("holder.institution_kanji", &h.institution_kanji, MAX_TEXT_LEN)?,
    };
    let holder_id = if h.holder_id.is_empty() { String::new() } else { id("holder.holder_id", &h.holder_id)? };
    Ok((holder_id, details))
}

/// The proto paths of a contact's fields: postal code, address, phone, email.
pub type ContactFields = [&'static str; 4];
pub const HOLDER_CONTACT_FIELDS: ContactFields =
    ["holder.contact.postal_code", "holder.contact.address", "holder.contact.phone", "holder.contact.email"];
pub const CONTACT_FIELDS: ContactFields = ["contact.postal_code", "contact.address", "contact.phone", "contact.email"];

pub fn contact_in(c: pb::ContactAddress, fields: ContactFields) -> Result<ContactAddress, RegistryError> {
    let [postal_code, address, phone, email] = fields;
    Ok(ContactAddress {
        postal_code: text(postal_code, &c.postal_code, MAX_ID_LEN)?,
        address: text(address, &c.address, MAX_TEXT_LEN)?,
        phone: text(phone, &c.phone, MAX_ID_LEN)?,
        email: text(email, &c.email, MAX_TEXT_LEN)?,
    })
}

pub fn contact_out(c: ContactAddress) -> pb::ContactAddress {
    pb::ContactAddress { postal_code: c.postal_code, address: c.address, phone: c.phone, email: c.email }
}

pub fn holder_out(h: HolderRecord) -> pb::Holder {
    let d = h.details;
    pb::Holder {
        holder_id: h.holder_id,
        family_name_kanji: d.family_name_kanji,
        given_name_kanji: d.given_name_kanji,
        family_name_kana: d.family_name_kana,
        given_name_kana: d.given_name_kana,
        family_name_latin: d.family_name_latin,
        given_name_latin: d.given_name_latin,
        date_of_birth: d.date_of_birth,
        licence_number: d.licence_number,
        licence_registered_on: d.licence_registered_on,
        membership: match d.membership {
            Membership::Member => pb::Membership::Member,
            Membership::NonMember => pb::Membership::NonMember,
        } as i32,
        contact: Some(contact_out(d.contact)),
        institution: d.institution,
        institution_kanji: d.institution_kanji,
    }
}

pub fn card_out(c: CardRecord) -> pb::Card {
    pb::Card {
        card_id: c.card_id,
        holder_id: c.holder_id,
        application_id: c.application_id,
        state: match c.state {
            CardState::Pending => pb::CardState::Pending,
            CardState::Active => pb::CardState::Active,
            CardState::Revoked => pb::CardState::Revoked,
        } as i32,
        signing_serial: c.signing_serial.map(|s| s.to_hex()).unwrap_or_default(),
        authentication_serial: c.authentication_serial.map(|s| s.to_hex()).unwrap_or_default(),
        created_at_unix: c.created_at_unix,
        application_json: c.application_json,
        procedure: c.procedure.name().to_owned(),
        replaces_card_id: c.replaces_card_id.unwrap_or_default(),
        superseded_by: c.superseded_by.unwrap_or_default(),
    }
}

pub fn pin_escrow_out(e: PinEscrow) -> pb::PinEscrowRecord {
    pb::PinEscrowRecord {
        card_id: e.card_id,
        key_label: e.key_label,
        iv: e.iv,
        ciphertext: e.ciphertext,
        stored_at_unix: e.stored_at_unix,
    }
}

pub fn holder_cards_out(h: HolderCards) -> pb::ListHolderCardsResponse {
    pb::ListHolderCardsResponse {
        holder: Some(holder_out(h.holder)),
        cards: h.cards.into_iter().map(card_view_out).collect(),
    }
}

pub fn certificate_out(r: CertificateRecord) -> pb::CertificateRecord {
    let tbs_der = r.tbs().map(<[u8]>::to_vec).unwrap_or_default();
    let revocation = r.revocation.unwrap_or(store::Revocation {
        revoked_at_unix: 0,
        reason: RevocationReason::Unspecified,
        revoked_by: String::new(),
        note: String::new(),
        sequence: 0,
        invalidity_date_unix: 0,
    });
    pb::CertificateRecord {
        serial: r.serial.to_hex(),
        card_id: r.card_id,
        kind: match r.kind {
            CertificateKind::Signing => pb::CertificateKind::Signing,
            CertificateKind::Authentication => pb::CertificateKind::Authentication,
            CertificateKind::OcspResponder => pb::CertificateKind::OcspResponder,
        } as i32,
        issuer_label: r.issuer_label,
        state: match r.state {
            CertificateState::Reserved => pb::CertificateState::Reserved,
            CertificateState::Precert => pb::CertificateState::Precert,
            CertificateState::Issued => pb::CertificateState::Issued,
            CertificateState::Revoked => pb::CertificateState::CertRevoked,
            CertificateState::Abandoned => pb::CertificateState::Abandoned,
        } as i32,
        tbs_der,
        certificate_der: r.certificate_der.unwrap_or_default(),
        not_before_unix: r.not_before_unix,
        not_after_unix: r.not_after_unix,
        reserved_at_unix: r.reserved_at_unix,
        revoked_at_unix: revocation.revoked_at_unix,
        revocation_reason: pb::RevocationReason::from(revocation.reason) as i32,
        revoked_by: revocation.revoked_by,
        revocation_note: revocation.note,
        revocation_sequence: revocation.sequence,
        invalidity_date_unix: revocation.invalidity_date_unix,
    }
}

pub fn status_change_out(c: StatusChange) -> pb::StatusChange {
    pb::StatusChange {
        sequence: c.sequence,
        serial: c.serial.to_hex(),
        issuer_label: c.issuer_label,
        status: match c.status {
            CertificateStatus::Good => pb::CertificateStatus::Good,
            CertificateStatus::Revoked => pb::CertificateStatus::Revoked,
        } as i32,
        revoked_at_unix: c.revoked_at_unix,
        reason: c.reason.map_or(pb::RevocationReason::Unspecified, pb::RevocationReason::from) as i32,
        not_after_unix: c.not_after_unix,
        card_id: c.card_id,
        at_unix_micros: c.at_unix_micros,
        invalidity_date_unix: c.invalidity_date_unix,
    }
}

pub fn revoked_entry_out(e: RevokedEntry) -> pb::RevokedEntry {
    pb::RevokedEntry {
        serial: e.serial.to_hex(),
        revoked_at_unix: e.revoked_at_unix,
        reason: pb::RevocationReason::from(e.reason) as i32,
        not_after_unix: e.not_after_unix,
        sequence: e.sequence,
        invalidity_date_unix: e.invalidity_date_unix,
    }
}

pub fn approval_out(a: ApprovalRecord) -> pb::Approval {
    pb::Approval {
        approval_id: a.approval_id,
        kind: a.kind,
        subject: a.subject,
        payload_json: a.payload_json,
        requested_by: a.requested_by,
        approved_by: a.approved_by,
        state: match a.state {
            ApprovalState::Awaiting => pb::ApprovalState::Awaiting,
            ApprovalState::Approved => pb::ApprovalState::Approved,
            ApprovalState::Executed => pb::ApprovalState::Executed,
        } as i32,
        created_at_unix: a.created_at_unix,
    }
}

/// An unresolved certificate with the card and holder it belongs to.
/// An unresolved certificate with its card and holder (none for a responder certificate).
pub fn unresolved_out(record: CertificateRecord, v: Option<CardView>) -> pb::UnresolvedCertificate {
    let (card, holder) = match v {
        Some(v) => (Some(card_out(v.card)), Some(holder_out(v.holder))),
        None => (None, None),
    };
    pb::UnresolvedCertificate { certificate: Some(certificate_out(record)), card, holder }
}

pub fn card_view_out(v: CardView) -> pb::GetCardResponse {
    pb::GetCardResponse {
        card: Some(card_out(v.card)),
        holder: Some(holder_out(v.holder)),
        certificates: v.certificates.into_iter().map(certificate_out).collect(),
    }
}

pub fn audit_out(a: AuditRecord) -> pb::AuditEntry {
    pb::AuditEntry {
        sequence: a.sequence,
        at_unix_micros: a.at_unix_micros,
        actor: a.actor,
        action: a.action,
        subject: a.subject,
        detail_json: a.detail_json,
        prev_hash: a.prev_hash.to_vec(),
        hash: a.hash.to_vec(),
    }
}

/// The keys of a BeginApplication: a known kind each, at most one per kind,
/// and a 32-byte SHA-256.
pub fn card_keys_in(keys: &[pb::CardKey]) -> Result<Vec<store::CardKey>, RegistryError> {
    let mut out: Vec<store::CardKey> = Vec::with_capacity(keys.len());
    for k in keys {
        let kind = crate::validate::kind("keys.kind", k.kind)?;
        let spki_sha256: [u8; 32] = k.spki_sha256.as_slice().try_into().map_err(|_| {
            RegistryError::invalid("keys.spki_sha256", format!("is {} bytes, not 32", k.spki_sha256.len()))
        })?;
        if out.iter().any(|o| o.kind == kind) {
            return Err(RegistryError::invalid("keys.kind", format!("{} is given twice", kind.name())));
        }
        if out.iter().any(|o| o.spki_sha256 == spki_sha256) {
            return Err(RegistryError::invalid("keys.spki_sha256", "both keys of a card are the same key"));
        }
        out.push(store::CardKey { kind, spki_sha256 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> pb::Holder {
        pb::Holder {
            licence_number: "123456".into(),
            family_name_kanji: "医師".into(),
            membership: pb::Membership::NonMember as i32,
            contact: Some(pb::ContactAddress { email: "a@example.jp".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_holder_round_trips() {
        let (holder_id, details) = holder_in(Some(holder())).unwrap();
        assert_eq!(holder_id, "");
        let back = holder_out(HolderRecord { holder_id: "JMA1".into(), details, card_ids: vec![] });
        assert_eq!(back, pb::Holder { holder_id: "JMA1".into(), ..holder() });
    }

    #[test]
    fn holder_fields_are_checked_by_name() {
        let err = holder_in(None).unwrap_err().to_string();
        assert_eq!(err, "holder: is required");
        let err = holder_in(Some(pb::Holder { licence_number: String::new(), ..holder() })).unwrap_err();
        assert_eq!(err.to_string(), "holder.licence_number: is required");
        let err = holder_in(Some(pb::Holder { membership: 0, ..holder() })).unwrap_err();
        assert!(err.to_string().starts_with("holder.membership: "));
        let err = holder_in(Some(pb::Holder { membership: 42, ..holder() })).unwrap_err();
        assert!(err.to_string().starts_with("holder.membership: "));
        let bad_contact = pb::ContactAddress { phone: "03\n1234".into(), ..Default::default() };
        let err = holder_in(Some(pb::Holder { contact: Some(bad_contact), ..holder() })).unwrap_err();
        assert!(err.to_string().starts_with("holder.contact.phone: "), "{err}");
    }
}
