//! The Revocation gRPC service. Revocations themselves are recorded by the
//! registry (idempotent, transactional, audited, pushed on the status feed);
//! this service checks operator requests, runs the emergency procedure for a
//! lost card (identity confirmation, optional second-operator approval,
//! revocation of every certificate, an immediate CRL) and reports status.

use proto::crl::v1 as crl;
use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::registry::v1 as reg;
use proto::registry::v1::get_card_request::Key;
use proto::registry::v1::registry_client::RegistryClient;
use proto::revocation::v1 as pb;
use proto::revocation::v1::revocation_server::Revocation;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::convert;
use crate::error::RevocationError;
use crate::validate::{self, Confirmation, RevocationTimes};

/// `Approval.kind` of an emergency revocation awaiting a second operator.
pub const EMERGENCY_APPROVAL_KIND: &str = "emergency-revocation";
/// Audit actions this service appends (the revocations themselves are audited by the registry).
pub const AUDIT_EMERGENCY_REQUESTED: &str = "emergency.requested";
pub const AUDIT_EMERGENCY_APPROVED: &str = "emergency.approved";

/// What the service needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Two-person control of emergency revocations.
    pub emergency_requires_approval: bool,
    /// Issuer labels of the two issuing CAs, to publish only the CRLs concerned.
    pub signing_label: String,
    pub authentication_label: String,
    /// How far before the request an operator's revoked_at may lie.
    pub max_backdate: time::Duration,
}

impl Settings {
    pub fn from_config(cfg: &config::Config) -> Settings {
        Settings {
            emergency_requires_approval: cfg.revocation.emergency_requires_approval,
            signing_label: cfg.ca.signing.key_label.clone(),
            authentication_label: cfg.ca.authentication.key_label.clone(),
            max_backdate: time::Duration::seconds(
                i64::try_from(cfg.revocation.max_backdate_seconds).unwrap_or(i64::MAX),
            ),
        }
    }
}

#[derive(Clone)]
pub struct RevocationService {
    registry: RegistryClient<Channel>,
    crl: CrlPublisherClient<Channel>,
    settings: Settings,
}

/// An emergency request as checked; kept in the approval until a second
/// operator approves it.
#[derive(Debug, Serialize, Deserialize)]
struct EmergencyPayload {
    card_id: String,
    /// As the operator gave it, when the card was found by licence number.
    licence_number: String,
    confirmation: Confirmation,
    operator: String,
    note: String,
    requested_at: String,
    /// RFC 3339 (UTC), the invalidityDate; empty for none. Absent in
    /// approvals stored before it existed.
    #[serde(default)]
    compromised_at: String,
}

/// One run of the emergency procedure on a card that may already be revoked.
struct Execution<'a> {
    card_id: &'a str,
    /// The identity-confirmation record, stored with the revocation.
    confirmation_json: String,
    /// Recorded as `revoked_by`: the requesting operator, or the approver under two-person control.
    revoked_by: &'a str,
    /// The operator of this call (CRL publication).
    operator: &'a str,
    note: &'a str,
    approval: Option<&'a reg::Approval>,
    /// The time of compromise (invalidityDate), 0 for none.
    invalidity_date_unix: i64,
}

/// The terms every operator revocation carries, checked the same way for one
/// certificate or a whole card; each error names its request field.
struct Terms {
    reason: reg::RevocationReason,
    operator: String,
    note: String,
    times: RevocationTimes,
}

impl Terms {
    fn check(
        reason: i32,
        operator: &str,
        note: &str,
        revoked_at: &str,
        compromised_at: &str,
        max_backdate: time::Duration,
    ) -> Result<Terms, RevocationError> {
        let now = OffsetDateTime::now_utc();
        Ok(Terms {
            reason: validate::reason("reason", reason)?,
            operator: validate::id("operator", operator)?,
            note: validate::note("note", note)?,
            times: RevocationTimes::check(revoked_at, compromised_at, now, max_backdate)?,
        })
    }

    /// Whether a time was given that the certificates' notBefore must bound.
    fn needs_not_before(&self) -> bool {
        self.times.revoked_at.is_some() || self.times.compromised_at.is_some()
    }
}

impl RevocationService {
    pub fn new(registry: RegistryClient<Channel>, crl: CrlPublisherClient<Channel>, settings: Settings) -> Self {
        RevocationService { registry, crl, settings }
    }

    async fn revoke_certificate(
        &self,
        req: pb::RevokeCertificateRequest,
    ) -> Result<pb::RevokeResponse, RevocationError> {
        let serial = validate::serial("serial", &req.serial)?;
        let terms = Terms::check(
            req.reason,
            &req.operator,
            &req.note,
            &req.revoked_at,
            &req.compromised_at,
            self.settings.max_backdate,
        )?;
        if terms.needs_not_before() {
            let cert = self.certificate(serial.clone()).await?;
            terms.times.check_not_before(cert.not_before_unix, &cert.serial)?;
        }
        let Terms { reason, operator, note, times } = terms;
        let answer = self
            .registry
            .clone()
            .revoke_certificate(reg::RevokeCertificateRequest {
                serial: serial.clone(),
                reason: reason as i32,
                revoked_at_unix: times.revoked_at_unix(),
                actor: operator.clone(),
                note,
                invalidity_date_unix: times.invalidity_date_unix(),
            })
            .await?
            .into_inner();
        let cert = answer.certificate.ok_or_else(|| missing("RevokeCertificate", "certificate"))?;
        tracing::info!(
            %serial, card_id = %cert.card_id, %operator, reason = reason.as_str_name(),
            already_revoked = answer.already_revoked, "certificate revoked"
        );
        Ok(pb::RevokeResponse {
            certificates: vec![convert::revoked_out(&cert, answer.already_revoked)],
            card_id: cert.card_id,
        })
    }

    async fn revoke_card(&self, req: pb::RevokeCardRequest) -> Result<pb::RevokeResponse, RevocationError> {
        let card_id = validate::id("card_id", &req.card_id)?;
        let terms = Terms::check(
            req.reason,
            &req.operator,
            &req.note,
            &req.revoked_at,
            &req.compromised_at,
            self.settings.max_backdate,
        )?;
        if terms.needs_not_before() {
            let view = self.card(Key::CardId(card_id.clone())).await?;
            for cert in &view.certificates {
                terms.times.check_not_before(cert.not_before_unix, &cert.serial)?;
            }
        }
        let Terms { reason, operator, note, times } = terms;
        let answer = self
            .registry
            .clone()
            .revoke_card(reg::RevokeCardRequest {
                card_id: card_id.clone(),
                reason: reason as i32,
                revoked_at_unix: times.revoked_at_unix(),
                actor: operator.clone(),
                note,
                confirmation_json: String::new(),
                invalidity_date_unix: times.invalidity_date_unix(),
            })
            .await?
            .into_inner();
        tracing::info!(
            %card_id, %operator, reason = reason.as_str_name(), newly_revoked = answer.newly_revoked,
            "card revoked"
        );
        Ok(pb::RevokeResponse {
            certificates: convert::card_revocations(&answer.certificates, answer.newly_revoked),
            card_id,
        })
    }

    async fn emergency_revoke(
        &self,
        req: pb::EmergencyRevokeRequest,
    ) -> Result<pb::EmergencyRevokeResponse, RevocationError> {
        use pb::emergency_revoke_request::Card;
        let now = OffsetDateTime::now_utc();
        let (field, key, licence_number) = match &req.card {
            Some(Card::CardId(v)) => ("card_id", Key::CardId(validate::id("card_id", v)?), String::new()),
            Some(Card::LicenceNumber(v)) => {
                let licence = validate::id("licence_number", v)?;
                ("licence_number", Key::LicenceNumber(licence.clone()), licence)
            }
            None => return Err(RevocationError::invalid("card", "card_id or licence_number is required")),
        };
        let confirmation = validate::confirmation(req.confirmation.as_ref(), now)?;
        let operator = validate::id("operator", &req.operator)?;
        let note = validate::note("note", &req.note)?;
        // The revocation itself is now; the loss may be earlier.
        let times = RevocationTimes::check("", &req.compromised_at, now, self.settings.max_backdate)?;

        let view = self.card(key).await?;
        let card = view.card.ok_or_else(|| missing("GetCard", "card"))?;
        let card_id = card.card_id.clone();
        let already_revoked = check_emergency_allowed(field, &card, &view.certificates)?;
        for cert in &view.certificates {
            times.check_not_before(cert.not_before_unix, &cert.serial)?;
        }
        let invalidity_date_unix = times.invalidity_date_unix();

        if self.settings.emergency_requires_approval && !already_revoked {
            let payload = EmergencyPayload {
                card_id: card_id.clone(),
                licence_number,
                confirmation: confirmation.clone(),
                operator: operator.clone(),
                note,
                requested_at: validate::rfc3339(now.unix_timestamp()),
                compromised_at: validate::rfc3339(invalidity_date_unix),
            };
            let payload_json = serde_json::to_string(&payload).map_err(RevocationError::EncodePayload)?;
            let approval = self
                .registry
                .clone()
                .create_approval(reg::CreateApprovalRequest {
                    kind: EMERGENCY_APPROVAL_KIND.into(),
                    subject: card_id.clone(),
                    payload_json,
                    requested_by: operator.clone(),
                })
                .await?
                .into_inner();
            let detail = serde_json::json!({
                "card_id": card_id,
                "approval_id": approval.approval_id,
                "requires_approval": true,
                "confirmation": confirmation,
            });
            self.audit(&operator, AUDIT_EMERGENCY_REQUESTED, &card_id, detail).await?;
            tracing::info!(%card_id, approval_id = %approval.approval_id, %operator, "emergency revocation awaiting approval");
            return Ok(pb::EmergencyRevokeResponse {
                state: pb::EmergencyState::AwaitingApproval as i32,
                approval_id: approval.approval_id,
                card_id,
                ..Default::default()
            });
        }

        let detail = serde_json::json!({
            "card_id": card_id,
            "requires_approval": false,
            "card_already_revoked": already_revoked,
            "confirmation": confirmation,
            "compromised_at": validate::rfc3339(invalidity_date_unix),
        });
        self.audit(&operator, AUDIT_EMERGENCY_REQUESTED, &card_id, detail).await?;
        self.execute(Execution {
            card_id: &card_id,
            confirmation_json: confirmation_record(&confirmation, &operator, None),
            revoked_by: &operator,
            operator: &operator,
            note: &note,
            approval: None,
            invalidity_date_unix,
        })
        .await
    }

    async fn approve(&self, req: pb::ApproveEmergencyRequest) -> Result<pb::EmergencyRevokeResponse, RevocationError> {
        let approval_id = validate::id("approval_id", &req.approval_id)?;
        let operator = validate::id("operator", &req.operator)?;
        let approval = self.get_approval(&approval_id).await?;
        if approval.kind != EMERGENCY_APPROVAL_KIND {
            return Err(RevocationError::FailedPrecondition(format!(
                "approval_id: {approval_id} is a {:?} approval, not an emergency revocation",
                approval.kind
            )));
        }
        let payload: EmergencyPayload = serde_json::from_str(&approval.payload_json)
            .map_err(|source| RevocationError::BadPayload { approval_id: approval_id.clone(), source })?;

        // As the registry compares them. The requester is refused in every
        // state, so they never carry out their own request.
        if approval.requested_by.eq_ignore_ascii_case(&operator) {
            return Err(RevocationError::FailedPrecondition(format!(
                "operator: {operator} requested this emergency revocation; \
                 a second operator must approve it (two-person control)"
            )));
        }
        let approval = match reg::ApprovalState::try_from(approval.state) {
            Ok(reg::ApprovalState::Awaiting) => {
                let request = reg::ApproveRequest { approval_id: approval_id.clone(), approver: operator.clone() };
                match self.registry.clone().approve(request).await {
                    Ok(approved) => {
                        let approved = approved.into_inner();
                        let detail = serde_json::json!({
                            "card_id": approved.subject,
                            "approval_id": approval_id,
                            "requested_by": approved.requested_by,
                            "approved_by": approved.approved_by,
                            "confirmation": payload.confirmation,
                        });
                        self.audit(&operator, AUDIT_EMERGENCY_APPROVED, &approved.subject, detail).await?;
                        tracing::info!(card_id = %approved.subject, %approval_id, %operator, "emergency revocation approved");
                        approved
                    }
                    // Another operator may have approved it at the same moment.
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        let now = self.get_approval(&approval_id).await?;
                        if !is_approved(&now) {
                            return Err(s.into());
                        }
                        now
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            // Approved but not finished (an earlier call failed half way), or done:
            // running it again revokes nothing new and publishes the CRL again.
            Ok(reg::ApprovalState::Approved) | Ok(reg::ApprovalState::Executed) => approval,
            _ => return Err(RevocationError::UnknownApprovalState { approval_id, state: approval.state }),
        };
        let revoked_by =
            if approval.approved_by.is_empty() { operator.as_str() } else { approval.approved_by.as_str() };
        let record = confirmation_record(&payload.confirmation, &approval.requested_by, Some(&approval));
        self.execute(Execution {
            card_id: &approval.subject,
            confirmation_json: record,
            revoked_by,
            operator: &operator,
            note: &payload.note,
            approval: Some(&approval),
            invalidity_date_unix: compromised_at_unix(&payload.compromised_at)?,
        })
        .await
    }

    /// Revokes every certificate of the card (idempotent in the registry), marks
    /// the approval executed, and publishes the CRLs of the CAs concerned.
    async fn execute(&self, x: Execution<'_>) -> Result<pb::EmergencyRevokeResponse, RevocationError> {
        let revoked = self
            .registry
            .clone()
            .revoke_card(reg::RevokeCardRequest {
                card_id: x.card_id.to_owned(),
                reason: reg::RevocationReason::KeyCompromise as i32,
                revoked_at_unix: 0,
                actor: x.revoked_by.to_owned(),
                note: x.note.to_owned(),
                confirmation_json: x.confirmation_json,
                invalidity_date_unix: x.invalidity_date_unix,
            })
            .await?
            .into_inner();
        tracing::info!(
            card_id = %x.card_id, newly_revoked = revoked.newly_revoked, revoked_by = %x.revoked_by,
            "emergency revocation recorded"
        );
        let approval_id = x.approval.map(|a| a.approval_id.clone()).unwrap_or_default();
        if let Some(approval) = x.approval.filter(|a| a.state != reg::ApprovalState::Executed as i32) {
            let mark = reg::MarkApprovalExecutedRequest { approval_id: approval.approval_id.clone() };
            if let Err(e) = self.registry.clone().mark_approval_executed(mark).await {
                // The revocation stands; approving again finishes the bookkeeping.
                tracing::error!(%approval_id, code = ?e.code(), error = %e.message(), "could not mark the approval executed");
            }
        }
        let mut response = pb::EmergencyRevokeResponse {
            state: pb::EmergencyState::Done as i32,
            approval_id,
            card_id: x.card_id.to_owned(),
            certificates: convert::card_revocations(&revoked.certificates, revoked.newly_revoked),
            ..Default::default()
        };
        let Some(issuer) = convert::crl_issuer(
            &revoked.certificates,
            &self.settings.signing_label,
            &self.settings.authentication_label,
        ) else {
            tracing::warn!(card_id = %x.card_id, "the card has no certificates: no CRL to publish");
            return Ok(response);
        };
        let publish = crl::PublishRequest {
            issuer: issuer.clone(),
            kind: crl::CrlKind::Unspecified as i32,
            actor: x.operator.to_owned(),
            reason: format!("emergency revocation of card {}", x.card_id),
            // Relying parties that read only the full CRL must see it too.
            full_after_delta: true,
        };
        match self.crl.clone().publish(publish).await {
            Ok(published) => {
                let published = published.into_inner();
                response.crl_numbers = convert::crl_numbers(&published.crls);
                response.crl_kind = convert::crl_kind(&published.crls);
                response.crls = convert::issuer_crls(&published);
                tracing::info!(
                    card_id = %x.card_id, issuer = %issuer, crl_numbers = ?response.crl_numbers,
                    crl_kind = %response.crl_kind, crls = ?response.crls, "CRL published after emergency revocation"
                );
                Ok(response)
            }
            Err(e) => {
                tracing::error!(
                    card_id = %x.card_id, issuer = %issuer, code = ?e.code(), error = %e.message(),
                    "emergency revocation recorded, but the CRL could not be published"
                );
                Err(RevocationError::CrlNotPublished {
                    card_id: x.card_id.to_owned(),
                    newly_revoked: revoked.newly_revoked,
                    detail: format!("CRL publisher: {:?}: {}", e.code(), e.message()),
                })
            }
        }
    }

    async fn status(&self, req: pb::StatusRequest) -> Result<pb::StatusResponse, RevocationError> {
        use pb::status_request::Key as K;
        let (view, only) = match req.key {
            Some(K::Serial(v)) => {
                let serial = validate::serial("serial", &v)?;
                let cert = self.certificate(serial).await?;
                if cert.card_id.is_empty() {
                    // An OCSP responder certificate: it belongs to no card.
                    return Ok(pb::StatusResponse {
                        card_id: String::new(),
                        holder_id: String::new(),
                        card_state: String::new(),
                        certificates: vec![convert::status_out(&cert)],
                    });
                }
                (self.card(Key::CardId(cert.card_id.clone())).await?, Some(cert))
            }
            Some(K::CardId(v)) => (self.card(Key::CardId(validate::id("card_id", &v)?)).await?, None),
            Some(K::LicenceNumber(v)) => {
                (self.card(Key::LicenceNumber(validate::id("licence_number", &v)?)).await?, None)
            }
            None => return Err(RevocationError::invalid("key", "one of serial, card_id, licence_number is required")),
        };
        let card = view.card.ok_or_else(|| missing("GetCard", "card"))?;
        let mut certs = match only {
            Some(cert) => vec![cert],
            None => view.certificates,
        };
        certs.sort_by_key(|c| c.kind);
        Ok(pb::StatusResponse {
            card_id: card.card_id,
            holder_id: card.holder_id,
            card_state: convert::card_state_name(card.state).into(),
            certificates: certs.iter().map(convert::status_out).collect(),
        })
    }

    async fn certificate(&self, serial: String) -> Result<reg::CertificateRecord, RevocationError> {
        Ok(self.registry.clone().get_certificate(reg::GetCertificateRequest { serial }).await?.into_inner())
    }

    async fn card(&self, key: Key) -> Result<reg::GetCardResponse, RevocationError> {
        Ok(self.registry.clone().get_card(reg::GetCardRequest { key: Some(key) }).await?.into_inner())
    }

    async fn get_approval(&self, approval_id: &str) -> Result<reg::Approval, RevocationError> {
        let req = reg::GetApprovalRequest { approval_id: approval_id.to_owned() };
        Ok(self.registry.clone().get_approval(req).await?.into_inner())
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), RevocationError> {
        let req = reg::AppendAuditRequest {
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            detail_json: detail.to_string(),
        };
        self.registry.clone().append_audit(req).await?;
        Ok(())
    }
}

/// Whether an emergency revocation may run on this card; `Ok(true)` when the
/// card is already revoked for key compromise, so that running it again is a
/// harmless repeat. A card revoked for another reason is refused: revocation
/// is final and its first reason stands.
fn check_emergency_allowed(
    field: &str,
    card: &reg::Card,
    certs: &[reg::CertificateRecord],
) -> Result<bool, RevocationError> {
    match reg::CardState::try_from(card.state) {
        Ok(reg::CardState::Pending) | Ok(reg::CardState::Active) => Ok(false),
        Ok(reg::CardState::Revoked) => {
            let mut other: Vec<&str> = certs
                .iter()
                .filter(|c| {
                    convert::is_revoked(c) && c.revocation_reason != reg::RevocationReason::KeyCompromise as i32
                })
                .map(|c| reg::RevocationReason::try_from(c.revocation_reason).map_or("?", |r| r.as_str_name()))
                .collect();
            other.dedup();
            if other.is_empty() {
                Ok(true)
            } else {
                Err(RevocationError::FailedPrecondition(format!(
                    "{field}: card {} is already revoked (reason {}); revocation is final and the first reason stands",
                    card.card_id,
                    other.join(", ")
                )))
            }
        }
        _ => Err(RevocationError::UnknownCardState { card_id: card.card_id.clone(), state: card.state }),
    }
}

/// The stored compromised_at of an approval payload (written by us, RFC 3339 UTC).
fn compromised_at_unix(stored: &str) -> Result<i64, RevocationError> {
    if stored.is_empty() {
        return Ok(0);
    }
    OffsetDateTime::parse(stored, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|source| RevocationError::BadStoredTime { stored: stored.to_owned(), source })
}

fn is_approved(a: &reg::Approval) -> bool {
    a.state == reg::ApprovalState::Approved as i32 || a.state == reg::ApprovalState::Executed as i32
}

/// The identity-confirmation record stored with the revocation (and audited by the registry).
fn confirmation_record(c: &Confirmation, requested_by: &str, approval: Option<&reg::Approval>) -> String {
    let mut record = serde_json::json!({
        "confirmed_by": c.confirmed_by,
        "method": c.method,
        "confirmed_at": c.confirmed_at,
        "note": c.note,
        "requested_by": requested_by,
    });
    if let (Some(a), Some(map)) = (approval, record.as_object_mut()) {
        map.insert("approval_id".into(), a.approval_id.clone().into());
        map.insert("approved_by".into(), a.approved_by.clone().into());
    }
    record.to_string()
}

fn missing(rpc: &'static str, field: &'static str) -> RevocationError {
    RevocationError::MissingField { rpc, field }
}

/// Logs a refusal by ids and code only (messages may quote request text), and converts it.
fn reply<T>(rpc: &'static str, result: Result<T, RevocationError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(|e| {
        let status = Status::from(e);
        tracing::info!(rpc, code = ?status.code(), "request refused");
        status
    })
}

/// The operator of a call: the identity of the caller's certificate. An
/// `operator` field may repeat it (or be empty); one that names someone else
/// is refused, so nobody acts, or approves, under another person's name. Our
/// services (issuance, for reissue and cessation) relay the RA person they
/// act for. Without TLS (development) the field is taken as given.
fn operator_of<T>(request: &Request<T>, given: &str) -> Result<String, RevocationError> {
    match tls::caller(request) {
        None => Ok(given.to_owned()),
        Some(caller) if caller.is_service() => Ok(given.to_owned()),
        Some(caller) if given.is_empty() || given == caller.identity => Ok(caller.identity.clone()),
        Some(caller) => Err(RevocationError::invalid(
            "operator",
            format!(
                "{given:?} is not the identity of the caller's client certificate ({:?}); \
                 leave it empty or give that identity",
                caller.identity
            ),
        )),
    }
}

/// The request with its `operator` field set by [`operator_of`] (a macro: the
/// request types share no trait for the field). Used with `?` inside an
/// `async { .. }` block, so a refused operator is answered as the call's error.
macro_rules! with_operator {
    ($request:expr) => {{
        let request = $request;
        operator_of(&request, &request.get_ref().operator).map(|operator| {
            let mut req = request.into_inner();
            req.operator = operator;
            req
        })
    }};
}

#[tonic::async_trait]
impl Revocation for RevocationService {
    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let answer = async { RevocationService::revoke_certificate(self, with_operator!(request)?).await }.await;
        reply("RevokeCertificate", answer)
    }

    async fn revoke_card(
        &self,
        request: Request<pb::RevokeCardRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let answer = async { RevocationService::revoke_card(self, with_operator!(request)?).await }.await;
        reply("RevokeCard", answer)
    }

    async fn emergency_revoke(
        &self,
        request: Request<pb::EmergencyRevokeRequest>,
    ) -> Result<Response<pb::EmergencyRevokeResponse>, Status> {
        let answer = async { RevocationService::emergency_revoke(self, with_operator!(request)?).await }.await;
        reply("EmergencyRevoke", answer)
    }

    async fn approve_emergency_revocation(
        &self,
        request: Request<pb::ApproveEmergencyRequest>,
    ) -> Result<Response<pb::EmergencyRevokeResponse>, Status> {
        let answer = async { self.approve(with_operator!(request)?).await }.await;
        reply("ApproveEmergencyRevocation", answer)
    }

    async fn get_status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        reply("GetStatus", self.status(request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(state: reg::CardState) -> reg::Card {
        reg::Card { card_id: "C9".into(), state: state as i32, ..Default::default() }
    }

    fn revoked(reason: reg::RevocationReason) -> reg::CertificateRecord {
        reg::CertificateRecord {
            state: reg::CertificateState::CertRevoked as i32,
            revocation_reason: reason as i32,
            ..Default::default()
        }
    }

    #[test]
    fn emergency_runs_on_live_cards_and_repeats_on_key_compromise_only() {
        assert!(!check_emergency_allowed("card_id", &card(reg::CardState::Active), &[]).unwrap());
        assert!(!check_emergency_allowed("card_id", &card(reg::CardState::Pending), &[]).unwrap());
        let lost = [revoked(reg::RevocationReason::KeyCompromise), revoked(reg::RevocationReason::KeyCompromise)];
        assert!(check_emergency_allowed("card_id", &card(reg::CardState::Revoked), &lost).unwrap());
        let superseded = [revoked(reg::RevocationReason::Superseded), revoked(reg::RevocationReason::Superseded)];
        let err = check_emergency_allowed("licence_number", &card(reg::CardState::Revoked), &superseded)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "licence_number: card C9 is already revoked (reason SUPERSEDED); revocation is final and the first reason stands"
        );
    }

    #[test]
    fn the_confirmation_record_names_both_operators_under_two_person_control() {
        let c = Confirmation {
            confirmed_by: "op-a".into(),
            method: domain::ConfirmationMethod::Phone,
            confirmed_at: "2026-05-01T02:30:00Z".into(),
            note: String::new(),
        };
        let plain: serde_json::Value = serde_json::from_str(&confirmation_record(&c, "op-a", None)).unwrap();
        assert_eq!(plain["method"], "PHONE");
        assert_eq!(plain["requested_by"], "op-a");
        assert!(plain.get("approved_by").is_none());
        let a = reg::Approval { approval_id: "A1".into(), approved_by: "op-b".into(), ..Default::default() };
        let approved: serde_json::Value = serde_json::from_str(&confirmation_record(&c, "op-a", Some(&a))).unwrap();
        assert_eq!((approved["approval_id"].as_str(), approved["approved_by"].as_str()), (Some("A1"), Some("op-b")));
    }

    #[test]
    fn the_approval_payload_round_trips() {
        let p = EmergencyPayload {
            card_id: "C1".into(),
            licence_number: "555001".into(),
            confirmation: Confirmation {
                confirmed_by: "op-a".into(),
                method: domain::ConfirmationMethod::WrittenReport,
                confirmed_at: "2026-05-01T02:30:00Z".into(),
                note: "紛失届".into(),
            },
            operator: "op-a".into(),
            note: "n".into(),
            requested_at: "2026-05-01T02:31:00Z".into(),
            compromised_at: "2026-04-30T09:00:00Z".into(),
        };
        let back: EmergencyPayload = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back.confirmation, p.confirmation);
        assert_eq!(back.card_id, "C1");
        assert_eq!(compromised_at_unix(&back.compromised_at).unwrap(), 1_777_539_600);
        // Approvals stored before compromised_at existed still load.
        let old: EmergencyPayload = serde_json::from_str(
            &serde_json::to_string(&p).unwrap().replace(r#","compromised_at":"2026-04-30T09:00:00Z""#, ""),
        )
        .unwrap();
        assert_eq!(compromised_at_unix(&old.compromised_at).unwrap(), 0);
    }
}
