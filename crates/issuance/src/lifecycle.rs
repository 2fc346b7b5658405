//! The card's life after issuance: renewal, reissue, contact change, cessation.
//! Each is checked like a new application and goes through the same issuing
//! path; revocations go through the revocation service, so the emergency path
//! and its immediate CRL are the same ones operators use.

use proto::crl::v1 as crl;
use proto::issuance::v1 as iss;
use proto::issuance::v1::{IssuedCard, Membership};
use proto::registry::v1 as reg;
use proto::revocation::v1 as rev;

use crate::error::IssuanceError;
use crate::fee::Procedure;
use crate::service::{
    actor, contact_from_registry, contact_to_registry, holder_from, invalid, registry_membership, Declared,
    IssuanceService,
};
use crate::validate::{self, check_application};

fn upstream(service: &'static str) -> impl FnOnce(tonic::Status) -> IssuanceError {
    move |status| IssuanceError::Upstream { service, status }
}

impl IssuanceService {
    async fn card(&self, card_id: &str) -> Result<reg::GetCardResponse, IssuanceError> {
        let card_id = validate::required("card_id", card_id)?;
        Ok(self
            .registry
            .clone()
            .get_card(reg::GetCardRequest { key: Some(reg::get_card_request::Key::CardId(card_id.to_owned())) })
            .await?
            .into_inner())
    }

    /// The card an application id already made, if any (a retry resumes it).
    async fn existing_application(&self, application_id: &str) -> Result<Option<reg::GetCardResponse>, IssuanceError> {
        let key = reg::get_card_request::Key::ApplicationId(application_id.to_owned());
        match self.registry.clone().get_card(reg::GetCardRequest { key: Some(key) }).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// Asks for CRLs at once after a revocation; their numbers, or empty when that fails
    /// (the revocation stands and the scheduled CRL will carry it).
    async fn publish_crls(&self, why: &str, operator: &str) -> Vec<u64> {
        let req = crl::PublishRequest {
            issuer: String::new(),
            kind: crl::CrlKind::Unspecified as i32,
            actor: actor(operator),
            reason: why.to_owned(),
            full_after_delta: false,
        };
        match self.crl.clone().publish(req).await {
            Ok(r) => r.into_inner().crls.iter().map(|c| c.crl_number).collect(),
            Err(e) => {
                tracing::error!(error = %e, "revocation recorded but the CRL could not be published yet");
                Vec::new()
            }
        }
    }

    pub(crate) async fn renew_card(&self, app: iss::RenewalApplication) -> Result<IssuedCard, IssuanceError> {
        let today = profile::validity::today_jst();
        let application_id = validate::application_id(&app.application_id)?.to_owned();
        let application_date = validate::application_date("application_date", &app.application_date, today)?;
        validate::documents(app.documents.as_ref(), application_date, self.document_max_age_months)?;
        let keys = self.card_keys(&app.card_pin, &app.signing_csr, &app.authentication_csr)?;
        let old = self.card(&app.card_id).await?;
        let card = old.card.clone().unwrap_or_default();
        let mut holder = old.holder.clone().unwrap_or_default();
        if self.existing_application(&application_id).await?.is_none() {
            if card.state != reg::CardState::Active as i32 {
                return Err(IssuanceError::FailedPrecondition(format!(
                    "card_id: only an active card can be renewed; {} is {}",
                    card.card_id,
                    reg::CardState::try_from(card.state).map(|s| s.as_str_name()).unwrap_or("?")
                )));
            }
            if !card.superseded_by.is_empty() {
                return Err(IssuanceError::FailedPrecondition(format!(
                    "card_id: already renewed or replaced by card {}",
                    card.superseded_by
                )));
            }
            let expires = old.certificates.iter().map(|c| c.not_after_unix).min().unwrap_or(0);
            let opens = expires - i64::from(self.settings.renewal_window_days) * 86_400;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if now < opens {
                return Err(IssuanceError::FailedPrecondition(format!(
                    "card_id: renewal opens {} days before expiry, on {} (the card expires {})",
                    self.settings.renewal_window_days,
                    crate::service::rfc3339(opens),
                    crate::service::rfc3339(expires)
                )));
            }
        }
        if let Some(c) = app.contact.as_ref() {
            validate::required("contact.address", &c.address)?;
            holder.contact = Some(contact_to_registry(c));
        }
        let declared = Declared::new(&application_id, application_date, &app.ra_operator, app.documents.as_ref());
        self.issue_card(Procedure::Renewal, declared, card.card_id, holder, keys).await
    }

    pub(crate) async fn reissue_card(&self, app: iss::ReissueApplication) -> Result<IssuedCard, IssuanceError> {
        let today = profile::validity::today_jst();
        let reason = iss::ReissueReason::try_from(app.reason).unwrap_or(iss::ReissueReason::Unspecified);
        if reason == iss::ReissueReason::Unspecified {
            return Err(invalid("reason", "is required (LOSS, DAMAGE, NAME_CHANGE or MEMBERSHIP_CHANGE)"));
        }
        let confirmation = match reason {
            iss::ReissueReason::Loss => Some(validate::confirmation("confirmation", app.confirmation.as_ref())?),
            _ => None,
        };
        let old = self.card(&app.card_id).await?;
        let card = old.card.clone().unwrap_or_default();
        let old_holder = old.holder.clone().unwrap_or_default();
        // The same checks as a new application, with the licence on file.
        let as_new = reissue_as_new(&app, &old_holder);
        let checked = check_application(&as_new, today, self.document_max_age_months)?;
        if reason == iss::ReissueReason::MembershipChange
            && checked.membership == registry_membership(old_holder.membership)
        {
            return Err(invalid("membership", "a membership change must change the membership"));
        }
        let keys = self.card_keys(&app.card_pin, &app.signing_csr, &app.authentication_csr)?;
        let application_id = app.application_id.trim().to_owned();

        let crl_numbers =
            self.revoke_before_reissue(&application_id, &card, reason, confirmation, &app.ra_operator).await?;
        let holder = holder_from(&as_new, checked.membership);
        let declared = Declared {
            reason: reason.as_str_name(),
            ..Declared::new(&application_id, checked.application_date, &app.ra_operator, app.documents.as_ref())
        };
        let mut issued = self.issue_card(Procedure::Reissue, declared, card.card_id, holder, keys).await?;
        issued.crl_numbers = crl_numbers;
        Ok(issued)
    }

    /// Revokes the card a reissue replaces (unless this application was
    /// already begun): there is never a moment with two valid cards. The CRL
    /// numbers published for it.
    async fn revoke_before_reissue(
        &self,
        application_id: &str,
        card: &reg::Card,
        reason: iss::ReissueReason,
        confirmation: Option<domain::IdentityConfirmation>,
        operator: &str,
    ) -> Result<Vec<u64>, IssuanceError> {
        if self.existing_application(application_id).await?.is_some() {
            return Ok(Vec::new());
        }
        if card.state == reg::CardState::Pending as i32 {
            return Err(IssuanceError::FailedPrecondition(format!(
                "card_id: card {} was never completed; finish or revoke it first",
                card.card_id
            )));
        }
        if !card.superseded_by.is_empty() {
            return Err(IssuanceError::FailedPrecondition(format!(
                "card_id: already replaced by card {}",
                card.superseded_by
            )));
        }
        if card.state != reg::CardState::Active as i32 {
            return Ok(Vec::new());
        }
        self.revoke_for_reissue(&card.card_id, reason, confirmation, operator).await
    }

    async fn revoke_for_reissue(
        &self,
        card_id: &str,
        reason: iss::ReissueReason,
        confirmation: Option<domain::IdentityConfirmation>,
        operator: &str,
    ) -> Result<Vec<u64>, IssuanceError> {
        let mut revocation = self.revocation.clone();
        if reason == iss::ReissueReason::Loss {
            // Checked by validate::confirmation before anything was revoked.
            let Some(c) = confirmation else {
                return Err(invalid("confirmation", "is required (who confirmed the holder's identity, how and when)"));
            };
            let resp = revocation
                .emergency_revoke(rev::EmergencyRevokeRequest {
                    card: Some(rev::emergency_revoke_request::Card::CardId(card_id.to_owned())),
                    confirmation: Some(c.into()),
                    operator: actor(operator),
                    note: "reissue after loss".into(),
                    compromised_at: String::new(),
                })
                .await
                .map_err(upstream("revocation"))?
                .into_inner();
            if resp.state == rev::EmergencyState::AwaitingApproval as i32 {
                return Err(IssuanceError::FailedPrecondition(format!(
                    "card_id: the emergency revocation of card {card_id} awaits a second operator (approval {}); \
                     retry the reissue once it is approved",
                    resp.approval_id
                )));
            }
            return Ok(resp.crl_numbers);
        }
        let why = match reason {
            iss::ReissueReason::MembershipChange => reg::RevocationReason::AffiliationChanged,
            _ => reg::RevocationReason::Superseded,
        };
        self.revoke_card(card_id, why, operator, format!("reissue: {}", reason.as_str_name())).await?;
        Ok(self.publish_crls(&format!("reissue of card {card_id}"), operator).await)
    }

    /// Revokes every certificate of a card now, through the revocation
    /// service's ordinary (not emergency) path.
    async fn revoke_card(
        &self,
        card_id: &str,
        reason: reg::RevocationReason,
        operator: &str,
        note: String,
    ) -> Result<rev::RevokeResponse, IssuanceError> {
        let req = rev::RevokeCardRequest {
            card_id: card_id.to_owned(),
            reason: reason as i32,
            operator: actor(operator),
            note,
            revoked_at: String::new(),
            compromised_at: String::new(),
        };
        Ok(self.revocation.clone().revoke_card(req).await.map_err(upstream("revocation"))?.into_inner())
    }

    pub(crate) async fn change_contact_of(
        &self,
        req: iss::ContactChange,
    ) -> Result<iss::ContactChangeResult, IssuanceError> {
        let today = profile::validity::today_jst();
        let contact = req.contact.as_ref().ok_or_else(|| invalid("contact", "is required"))?;
        validate::required("contact.address", &contact.address)?;
        let change_date = validate::application_date("change_date", &req.change_date, today)?;
        let current = self.card(&req.card_id).await?;
        let holder = current.holder.unwrap_or_default();
        let old_address = holder.contact.as_ref().map(|c| c.address.trim().to_owned()).unwrap_or_default();
        if old_address != contact.address.trim() {
            validate::within_months(
                "resident_record_issued_on",
                &req.resident_record_issued_on,
                change_date,
                self.document_max_age_months,
            )?;
        }
        let resp = self
            .registry
            .clone()
            .update_contact(reg::UpdateContactRequest {
                holder_id: holder.holder_id.clone(),
                contact: Some(contact_to_registry(contact)),
                resident_record_issued_on: req.resident_record_issued_on.clone(),
                actor: actor(&req.ra_operator),
            })
            .await?
            .into_inner();
        Ok(iss::ContactChangeResult {
            holder_id: holder.holder_id,
            changed: resp.changed,
            previous: resp.previous.map(contact_from_registry),
            current: resp.holder.and_then(|h| h.contact).map(contact_from_registry),
        })
    }

    pub(crate) async fn cease(&self, req: iss::CessationRequest) -> Result<iss::CessationResult, IssuanceError> {
        let current = self.card(&req.card_id).await?;
        let card = current.card.unwrap_or_default();
        let resp = self
            .revoke_card(&card.card_id, reg::RevocationReason::CessationOfOperation, &req.ra_operator, req.note.clone())
            .await?;
        let already = !resp.certificates.is_empty() && resp.certificates.iter().all(|c| c.already_revoked);
        let crl_numbers = if already {
            Vec::new()
        } else {
            self.publish_crls(&format!("cessation of card {}", card.card_id), &req.ra_operator).await
        };
        Ok(iss::CessationResult {
            card_id: card.card_id,
            revoked_serials: resp.certificates.into_iter().map(|c| c.serial).collect(),
            already_revoked: already,
            crl_numbers,
        })
    }
}

/// Membership as the registry stores it, for callers that need the enum.
pub(crate) fn membership_of(h: &reg::Holder) -> Membership {
    registry_membership(h.membership)
}

/// A reissue application as a new-card application, with the licence (and,
/// unless a new one is given, the contact address) on file, so it passes the
/// same checks.
fn reissue_as_new(app: &iss::ReissueApplication, old_holder: &reg::Holder) -> iss::NewCardApplication {
    iss::NewCardApplication {
        application_id: app.application_id.clone(),
        applicant: app.applicant.clone(),
        licence: Some(iss::MedicalLicence {
            licence_number: old_holder.licence_number.clone(),
            registered_on: old_holder.licence_registered_on.clone(),
        }),
        membership: app.membership,
        contact: app.contact.clone().or_else(|| old_holder.contact.clone().map(contact_from_registry)),
        documents: app.documents.clone(),
        signing_csr: app.signing_csr.clone(),
        authentication_csr: app.authentication_csr.clone(),
        application_date: app.application_date.clone(),
        institution: app.institution.clone(),
        institution_kanji: app.institution_kanji.clone(),
        ra_operator: app.ra_operator.clone(),
        card_pin: String::new(),
    }
}
