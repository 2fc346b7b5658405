//! Read-only views for the RA: a card with its certificates and fees, and a
//! holder's card history.

use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;

use crate::error::IssuanceError;
use crate::fee::{fee_for, Procedure};
use crate::lifecycle::membership_of;
use crate::service::{contact_from_registry, invalid, rfc3339, IssuanceService};

fn state_name(s: i32) -> String {
    reg::CardState::try_from(s).map(|s| s.as_str_name().to_ascii_lowercase()).unwrap_or_default()
}

fn certificate(c: &reg::CertificateRecord) -> iss::CertificateInfo {
    let status = match reg::CertificateState::try_from(c.state) {
        Ok(reg::CertificateState::Issued) => "good",
        Ok(reg::CertificateState::CertRevoked) => "revoked",
        _ => "pending",
    };
    let kind = match reg::CertificateKind::try_from(c.kind) {
        Ok(reg::CertificateKind::Signing) => "signing",
        Ok(reg::CertificateKind::Authentication) => "authentication",
        _ => "?",
    };
    iss::CertificateInfo {
        serial: c.serial.clone(),
        kind: kind.into(),
        status: status.into(),
        not_before: rfc3339(c.not_before_unix),
        not_after: rfc3339(c.not_after_unix),
        revoked_at: rfc3339(c.revoked_at_unix),
        revocation_reason: if status == "revoked" {
            reg::RevocationReason::try_from(c.revocation_reason).map(|r| r.as_str_name().to_owned()).unwrap_or_default()
        } else {
            String::new()
        },
        der: c.certificate_der.clone(),
    }
}

pub(crate) fn details(r: reg::GetCardResponse) -> iss::CardDetails {
    let card = r.card.unwrap_or_default();
    let holder = r.holder.unwrap_or_default();
    let membership = membership_of(&holder);
    let procedure = match card.procedure.as_str() {
        "renewal" => Procedure::Renewal,
        "reissue" => Procedure::Reissue,
        _ => Procedure::New,
    };
    iss::CardDetails {
        card_id: card.card_id,
        holder_id: holder.holder_id.clone(),
        state: state_name(card.state),
        procedure: if card.procedure.is_empty() { "new".into() } else { card.procedure },
        replaces_card_id: card.replaces_card_id,
        superseded_by: card.superseded_by,
        application_id: card.application_id,
        created_at: rfc3339(card.created_at_unix),
        holder_name: Some(iss::Applicant {
            family_name_kanji: holder.family_name_kanji.clone(),
            given_name_kanji: holder.given_name_kanji.clone(),
            family_name_kana: holder.family_name_kana.clone(),
            given_name_kana: holder.given_name_kana.clone(),
            family_name_latin: holder.family_name_latin.clone(),
            given_name_latin: holder.given_name_latin.clone(),
            date_of_birth: holder.date_of_birth.clone(),
        }),
        membership: membership as i32,
        licence_number: holder.licence_number.clone(),
        contact: holder.contact.map(contact_from_registry),
        certificates: r.certificates.iter().map(certificate).collect(),
        fee: Some(fee_for(membership, procedure)),
    }
}

impl IssuanceService {
    pub(crate) async fn card_details(&self, r: iss::CardRef) -> Result<iss::CardDetails, IssuanceError> {
        let key = match r.key {
            Some(iss::card_ref::Key::CardId(id)) if !id.trim().is_empty() => reg::get_card_request::Key::CardId(id),
            Some(iss::card_ref::Key::LicenceNumber(l)) if !l.trim().is_empty() => {
                reg::get_card_request::Key::LicenceNumber(l)
            }
            _ => return Err(invalid("key", "card_id or licence_number is required")),
        };
        let resp = self.registry.clone().get_card(reg::GetCardRequest { key: Some(key) }).await?.into_inner();
        Ok(details(resp))
    }

    pub(crate) async fn holder_history(&self, r: iss::HolderRef) -> Result<iss::HolderHistory, IssuanceError> {
        let key = match r.key {
            Some(iss::holder_ref::Key::HolderId(id)) if !id.trim().is_empty() => {
                reg::list_holder_cards_request::Key::HolderId(id)
            }
            Some(iss::holder_ref::Key::LicenceNumber(l)) if !l.trim().is_empty() => {
                reg::list_holder_cards_request::Key::LicenceNumber(l)
            }
            _ => return Err(invalid("key", "holder_id or licence_number is required")),
        };
        let resp =
            self.registry.clone().list_holder_cards(reg::ListHolderCardsRequest { key: Some(key) }).await?.into_inner();
        Ok(iss::HolderHistory {
            holder_id: resp.holder.map(|h| h.holder_id).unwrap_or_default(),
            cards: resp.cards.into_iter().map(details).collect(),
        })
    }
}
