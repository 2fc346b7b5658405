//! The Issuance gRPC service: check the application, then for each card key
//! reserve a serial, record the to-be-signed certificate in the registry, sign
//! it in the HSM and store the result. A retry with the same application id
//! resumes where a previous attempt stopped and never makes a second card.

use std::sync::Arc;

use proto::issuance::v1::{issuance_server::Issuance, Fee, GetFeeRequest, IssuedCard, Membership, NewCardApplication};
use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::{transport::Channel, Request, Response, Status};

use crate::error::IssuanceError;
use crate::fee::fee_for;
use crate::validate::{check_application, CheckedApplication};
use crate::IssuingCaKey;

pub struct IssuanceService {
    registry: RegistryClient<Channel>,
    profile: config::ProfileConfig,
    signing: Arc<IssuingCaKey>,
    authentication: Arc<IssuingCaKey>,
}

/// One certificate as the registry holds it once issued.
struct Issued {
    serial: String,
    der: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

impl IssuanceService {
    pub fn new(
        registry: RegistryClient<Channel>,
        profile: config::ProfileConfig,
        signing: Arc<IssuingCaKey>,
        authentication: Arc<IssuingCaKey>,
    ) -> Self {
        IssuanceService { registry, profile, signing, authentication }
    }

    fn ca(&self, kind: profile::CertKind) -> &Arc<IssuingCaKey> {
        match kind {
            profile::CertKind::Signing => &self.signing,
            profile::CertKind::Authentication => &self.authentication,
        }
    }

    async fn submit(&self, app: NewCardApplication) -> Result<IssuedCard, IssuanceError> {
        let today = profile::validity::today_jst();
        let checked = check_application(&app, today, self.profile.document_max_age_months)?;
        let min_bits = self.profile.min_rsa_bits;
        let signing_csr = profile::csr::parse_and_verify(&app.signing_csr, min_bits)
            .map_err(|e| invalid("signing_csr", e))?;
        let auth_csr = profile::csr::parse_and_verify(&app.authentication_csr, min_bits)
            .map_err(|e| invalid("authentication_csr", e))?;
        if signing_csr.subject_public_key_info_der() == auth_csr.subject_public_key_info_der() {
            return Err(invalid("authentication_csr", "uses the same key as signing_csr; the card has two keys"));
        }

        let begun = self
            .registry
            .clone()
            .begin_application(begin_request(&app, &checked))
            .await?
            .into_inner();
        let card = begun.card.ok_or_else(|| IssuanceError::Internal("registry returned no card".into()))?;
        let holder = begun.holder.ok_or_else(|| IssuanceError::Internal("registry returned no holder".into()))?;
        let replayed = begun.existing;
        let who = subscriber(&holder);

        let mut out = Vec::with_capacity(2);
        for kind in [profile::CertKind::Signing, profile::CertKind::Authentication] {
            let existing = begun.certificates.iter().find(|c| c.kind == reg_kind(kind) as i32);
            let csr = match kind {
                profile::CertKind::Signing => &signing_csr,
                profile::CertKind::Authentication => &auth_csr,
            };
            out.push(self.ensure_certificate(kind, &card.card_id, existing, csr, &who).await?);
        }
        if card.state != reg::CardState::Active as i32 {
            self.registry
                .clone()
                .complete_application(reg::CompleteApplicationRequest {
                    card_id: card.card_id.clone(),
                    actor: actor(&app),
                })
                .await?;
        }
        let (sign, auth) = (&out[0], &out[1]);
        tracing::info!(card_id = %card.card_id, holder_id = %holder.holder_id, replayed, "card issued");
        Ok(IssuedCard {
            card_id: card.card_id,
            holder_id: holder.holder_id,
            signing_certificate: sign.der.clone(),
            authentication_certificate: auth.der.clone(),
            signing_serial: sign.serial.clone(),
            authentication_serial: auth.serial.clone(),
            not_before: rfc3339(sign.not_before),
            not_after: rfc3339(sign.not_after),
            fee: Some(fee_for(registry_membership(holder.membership))),
            replayed,
        })
    }

    /// Brings one certificate of the card to ISSUED, from whatever state a previous
    /// attempt left it in. The TBS is recorded before the HSM is asked to sign.
    async fn ensure_certificate(
        &self,
        kind: profile::CertKind,
        card_id: &str,
        existing: Option<&reg::CertificateRecord>,
        csr: &profile::csr::VerifiedCsr,
        who: &profile::Subscriber,
    ) -> Result<Issued, IssuanceError> {
        let ca = self.ca(kind);
        let mut registry = self.registry.clone();
        let state = existing.map(|c| c.state).unwrap_or(reg::CertificateState::Unspecified as i32);
        if let Some(rec) = existing.filter(|_| state == reg::CertificateState::Issued as i32) {
            return Ok(Issued {
                serial: rec.serial.clone(),
                der: rec.certificate_der.clone(),
                not_before: rec.not_before_unix,
                not_after: rec.not_after_unix,
            });
        }
        let (serial, tbs, not_before, not_after) = match existing {
            Some(rec) if state == reg::CertificateState::Precert as i32 => {
                (rec.serial.clone(), rec.tbs_der.clone(), rec.not_before_unix, rec.not_after_unix)
            }
            _ => {
                // A reservation left by an earlier attempt keeps its validity: the
                // registry returns the same serial and the record must match the TBS.
                let (nb, na) = match existing.filter(|_| state == reg::CertificateState::Reserved as i32) {
                    Some(rec) => (unix(rec.not_before_unix)?, unix(rec.not_after_unix)?),
                    None => profile::validity::subscriber_validity(
                        profile::validity::today_jst(),
                        self.profile.validity_years,
                        ca.ca.not_after(),
                    ),
                };
                let serial = registry
                    .reserve_serial(reg::ReserveSerialRequest {
                        card_id: card_id.to_owned(),
                        kind: reg_kind(kind) as i32,
                        issuer_label: ca.label.clone(),
                        not_before_unix: nb.unix_timestamp(),
                        not_after_unix: na.unix_timestamp(),
                    })
                    .await?
                    .into_inner()
                    .serial;
                let serial_bytes = hex::decode(&serial)
                    .map_err(|_| IssuanceError::Internal(format!("registry returned a bad serial {serial:?}")))?;
                let params = profile::subscriber_params(&self.profile, kind, who, &serial_bytes, nb, na, &ca.ca)?;
                let tbs = profile::tbs_certificate(&params, csr, &ca.ca)?;
                registry
                    .record_tbs(reg::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs.clone() })
                    .await?;
                (serial, tbs, nb.unix_timestamp(), na.unix_timestamp())
            }
        };
        let key = ca.key.clone();
        let to_sign = tbs.clone();
        let signature = tokio::task::spawn_blocking(move || key.sign(&to_sign))
            .await
            .map_err(|e| IssuanceError::Internal(format!("signing task failed: {e}")))??;
        let der = profile::assemble_certificate(&tbs, &signature)?;
        registry
            .store_certificate(reg::StoreCertificateRequest { serial: serial.clone(), certificate_der: der.clone() })
            .await?;
        Ok(Issued { serial, der, not_before, not_after })
    }

    async fn audit_rejection(&self, app: &NewCardApplication, err: &IssuanceError) {
        let detail = serde_json::json!({ "application_id": app.application_id, "error": err.to_string() });
        let req = reg::AppendAuditRequest {
            actor: actor(app),
            action: "application.rejected".into(),
            subject: app.application_id.clone(),
            detail_json: detail.to_string(),
        };
        if let Err(e) = self.registry.clone().append_audit(req).await {
            tracing::warn!(error = %e, "could not audit a rejected application");
        }
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> IssuanceError {
    IssuanceError::InvalidArgument { field: field.into(), reason: why.to_string() }
}

fn actor(app: &NewCardApplication) -> String {
    if app.ra_operator.is_empty() { "ra".into() } else { format!("ra:{}", app.ra_operator) }
}

fn reg_kind(kind: profile::CertKind) -> reg::CertificateKind {
    match kind {
        profile::CertKind::Signing => reg::CertificateKind::Signing,
        profile::CertKind::Authentication => reg::CertificateKind::Authentication,
    }
}

fn registry_membership(m: i32) -> Membership {
    match reg::Membership::try_from(m) {
        Ok(reg::Membership::Member) => Membership::Member,
        _ => Membership::NonMember,
    }
}

fn unix(t: i64) -> Result<time::OffsetDateTime, IssuanceError> {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map_err(|e| IssuanceError::Internal(format!("registry returned a bad time {t}: {e}")))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn subscriber(h: &reg::Holder) -> profile::Subscriber {
    profile::Subscriber {
        holder_id: h.holder_id.clone(),
        given_name_latin: h.given_name_latin.clone(),
        family_name_latin: h.family_name_latin.clone(),
        given_name_kanji: h.given_name_kanji.clone(),
        family_name_kanji: h.family_name_kanji.clone(),
        institution: if h.institution.is_empty() { None } else { Some(h.institution.clone()) },
    }
}

fn begin_request(app: &NewCardApplication, checked: &CheckedApplication) -> reg::BeginApplicationRequest {
    let a = app.applicant.clone().unwrap_or_default();
    let l = app.licence.clone().unwrap_or_default();
    let c = app.contact.clone().unwrap_or_default();
    let membership = match checked.membership {
        Membership::Member => reg::Membership::Member,
        _ => reg::Membership::NonMember,
    };
    let docs = app.documents.clone().unwrap_or_default();
    let photo_id = docs.photo_id.clone().unwrap_or_default();
    // What the RA declared it checked, kept with the card (CSRs are in the certificates).
    let record = serde_json::json!({
        "application_id": app.application_id,
        "application_date": checked.application_date.to_string(),
        "ra_operator": app.ra_operator,
        "documents": {
            "photo_taken_on": docs.photo_taken_on,
            "resident_record_issued_on": docs.resident_record_issued_on,
            "photo_id": {
                "type": proto::issuance::v1::PhotoIdType::try_from(photo_id.r#type).map(|t| t.as_str_name()).unwrap_or("?"),
                "expires_on": photo_id.expires_on,
                "issued_on": photo_id.issued_on,
            },
            "licence_copy_checked": docs.licence_copy_checked,
            "licence_back_endorsed": docs.licence_back_endorsed,
            "licence_back_copied": docs.licence_back_copied,
        },
    });
    reg::BeginApplicationRequest {
        application_id: app.application_id.trim().to_owned(),
        holder: Some(reg::Holder {
            holder_id: String::new(),
            family_name_kanji: a.family_name_kanji.trim().into(),
            given_name_kanji: a.given_name_kanji.trim().into(),
            family_name_kana: a.family_name_kana.trim().into(),
            given_name_kana: a.given_name_kana.trim().into(),
            family_name_latin: a.family_name_latin.trim().into(),
            given_name_latin: a.given_name_latin.trim().into(),
            date_of_birth: a.date_of_birth,
            licence_number: l.licence_number.trim().into(),
            licence_registered_on: l.registered_on,
            membership: membership as i32,
            contact: Some(reg::ContactAddress {
                postal_code: c.postal_code,
                address: c.address,
                phone: c.phone,
                email: c.email,
            }),
            institution: app.institution.trim().into(),
        }),
        application_json: record.to_string(),
        actor: actor(app),
        procedure: "new".into(),
        replaces_card_id: String::new(),
    }
}

#[tonic::async_trait]
impl Issuance for IssuanceService {
    async fn submit_application(&self, request: Request<NewCardApplication>) -> Result<Response<IssuedCard>, Status> {
        let app = request.into_inner();
        match self.submit(app.clone()).await {
            Ok(card) => Ok(Response::new(card)),
            Err(e) => {
                if matches!(e, IssuanceError::InvalidArgument { .. } | IssuanceError::Registry(_)) {
                    self.audit_rejection(&app, &e).await;
                }
                tracing::info!(application_id = %app.application_id, error = %e, "application not issued");
                Err(e.into())
            }
        }
    }

    async fn get_fee(&self, request: Request<GetFeeRequest>) -> Result<Response<Fee>, Status> {
        let m = Membership::try_from(request.into_inner().membership).unwrap_or(Membership::Unspecified);
        if m == Membership::Unspecified {
            return Err(invalid("membership", "is required (MEMBER or NON_MEMBER)").into());
        }
        Ok(Response::new(fee_for(m)))
    }
}
