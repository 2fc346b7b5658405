//! The Issuance gRPC service. Every procedure that issues a card (new,
//! renewal, reissue) goes through `issue_card`: begin the application in the
//! registry, encrypt the PIN for escrow, then `PrepareCard` (PIN escrow, both
//! serials reserved and both to-be-signed certificates recorded in one durable
//! write), sign both in the HSM, and `FinishCard` (both stored and the card
//! completed in one). The three registry steps of all cards in flight travel
//! together in `CardSteps` calls (`card_steps`). A retry with the same
//! application id resumes where a previous attempt stopped and never makes a
//! second card.

use std::sync::Arc;

use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::issuance::v1 as iss;
use proto::issuance::v1::{issuance_server::Issuance, IssuedCard, Membership};
use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use proto::revocation::v1::revocation_client::RevocationClient;
use tonic::{transport::Channel, Request, Response, Status};

use crate::card_steps::CardSteps;
use crate::error::IssuanceError;
use crate::fee::{fee_for, Procedure};
use crate::hsm_watch::{self, HsmStatus};
use crate::pin::PinChoice;
use crate::validate::check_application;
use crate::IssuingCaKey;

/// The service's collaborators: other services over gRPC and the HSM keys.
pub struct IssuanceService {
    pub(crate) registry: RegistryClient<Channel>,
    /// The card path's registry steps, sent together (`CardSteps`).
    steps: CardSteps,
    pub(crate) revocation: RevocationClient<Channel>,
    pub(crate) crl: CrlPublisherClient<Channel>,
    /// The certificate policy, typed and checked at start.
    pub(crate) policy: profile::Policy,
    /// `[profile] document_max_age_months`: the age limit of application documents.
    pub(crate) document_max_age_months: u32,
    pub(crate) settings: config::IssuanceConfig,
    pub(crate) signing: Arc<IssuingCaKey>,
    pub(crate) authentication: Arc<IssuingCaKey>,
    pub(crate) escrow: hsm::AesKey,
    pub(crate) hsm: hsm::Hsm,
    pub(crate) hsm_status: HsmStatus,
    /// The threads that make the HSM calls of a card (signatures, PIN escrow).
    pub(crate) signers: Arc<hsm::Signers>,
    /// Validity of the OCSP responder certificates it issues (`[ocsp] responder_validity_days`).
    pub(crate) responder_validity_days: u32,
}

/// One certificate as the registry holds it once issued.
struct Issued {
    serial: String,
    der: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// What one certificate of a card still needs (see `plan_certificate`).
enum Plan {
    Issued(Issued),
    Sign {
        kind: profile::CertKind,
        serial: String,
        tbs: Vec<u8>,
        not_before: i64,
        not_after: i64,
        /// What `PrepareCard` must record first; `None` when it is recorded already.
        prepare: Option<reg::PreparedCertificate>,
    },
}

/// What the RA declared of an application, whichever procedure: kept with
/// the card as its application record (see `application_record`).
pub(crate) struct Declared<'a> {
    /// As the RA sent it; the registry keys the application by it trimmed.
    pub id: &'a str,
    pub date: time::Date,
    /// Also the audit actor (see `actor`).
    pub ra_operator: &'a str,
    pub documents: Option<&'a iss::DocumentChecks>,
    /// Why a card is reissued; empty for the other procedures.
    pub reason: &'a str,
}

impl<'a> Declared<'a> {
    pub(crate) fn new(
        id: &'a str,
        date: time::Date,
        ra_operator: &'a str,
        documents: Option<&'a iss::DocumentChecks>,
    ) -> Self {
        Declared { id, date, ra_operator, documents, reason: "" }
    }
}

/// The card's two keys (CSRs verified) and how its PIN is chosen.
pub(crate) struct CardKeys {
    pub signing_csr: profile::csr::VerifiedCsr,
    pub authentication_csr: profile::csr::VerifiedCsr,
    pub pin: PinChoice,
}

impl IssuanceService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: RegistryClient<Channel>,
        revocation: RevocationClient<Channel>,
        crl: CrlPublisherClient<Channel>,
        policy: profile::Policy,
        document_max_age_months: u32,
        settings: config::IssuanceConfig,
        signing: Arc<IssuingCaKey>,
        authentication: Arc<IssuingCaKey>,
        escrow: hsm::AesKey,
        hsm: hsm::Hsm,
    ) -> Self {
        let hsm_status = HsmStatus::new();
        IssuanceService {
            steps: CardSteps::new(registry.clone(), tls::Limits::DEFAULT.max_message_bytes),
            registry,
            revocation,
            crl,
            policy,
            document_max_age_months,
            settings,
            signing,
            authentication,
            escrow,
            hsm,
            hsm_status,
            signers: Arc::new(hsm::Signers::new("issuance-sign", 0)),
            responder_validity_days: 30,
        }
    }

    fn ca(&self, kind: profile::CertKind) -> &Arc<IssuingCaKey> {
        match kind {
            profile::CertKind::Signing => &self.signing,
            profile::CertKind::Authentication => &self.authentication,
        }
    }

    /// Parses and verifies both CSRs (proof of possession, key size).
    pub(crate) fn csrs(
        &self,
        signing: &[u8],
        authentication: &[u8],
    ) -> Result<(profile::csr::VerifiedCsr, profile::csr::VerifiedCsr), IssuanceError> {
        let min_bits = self.policy.min_rsa_bits;
        let s = profile::csr::parse_and_verify(signing, min_bits).map_err(|e| invalid("signing_csr", e))?;
        let a =
            profile::csr::parse_and_verify(authentication, min_bits).map_err(|e| invalid("authentication_csr", e))?;
        if s.subject_public_key_info_der() == a.subject_public_key_info_der() {
            return Err(invalid("authentication_csr", "uses the same key as signing_csr; the card has two keys"));
        }
        Ok((s, a))
    }

    /// The PIN choice, then both CSRs, of an application, checked.
    pub(crate) fn card_keys(
        &self,
        card_pin: &str,
        signing_csr: &[u8],
        authentication_csr: &[u8],
    ) -> Result<CardKeys, IssuanceError> {
        let pin = PinChoice::from_request("card_pin", card_pin)?;
        let (signing_csr, authentication_csr) = self.csrs(signing_csr, authentication_csr)?;
        Ok(CardKeys { signing_csr, authentication_csr, pin })
    }

    async fn submit(&self, app: iss::NewCardApplication) -> Result<IssuedCard, IssuanceError> {
        let today = profile::validity::today_jst();
        let checked = check_application(&app, today, self.document_max_age_months)?;
        let keys = self.card_keys(&app.card_pin, &app.signing_csr, &app.authentication_csr)?;
        let holder = holder_from(&app, checked.membership);
        let declared =
            Declared::new(&app.application_id, checked.application_date, &app.ra_operator, app.documents.as_ref());
        self.issue_card(Procedure::New, declared, String::new(), holder, keys).await
    }

    /// Sizes the registry calls that carry several cards' steps to the gRPC
    /// message limit both ends apply (`[limits] max_message_bytes`).
    pub fn with_message_limit(mut self, max_message_bytes: usize) -> Self {
        self.steps = CardSteps::new(self.registry.clone(), max_message_bytes);
        self
    }

    /// Refuses at once while the watcher knows the HSM is down, before the registry
    /// records anything.
    fn hsm_known_up(&self) -> Result<(), IssuanceError> {
        if self.hsm_status.is_up() {
            return Ok(());
        }
        Err(IssuanceError::Hsm(hsm::HsmError::Unavailable(
            "the HSM cannot be reached; nothing was recorded, retry later".into(),
        )))
    }

    /// `hsm_known_up`, then a ping of the token now: for steps that cannot be
    /// recorded twice.
    pub(crate) async fn hsm_reachable_now(&self) -> Result<(), IssuanceError> {
        self.hsm_known_up()?;
        hsm_watch::ping(&self.hsm).await.map_err(|e| match e {
            hsm::HsmError::Unavailable(m) => {
                IssuanceError::Hsm(hsm::HsmError::Unavailable(format!("{m}; nothing was recorded, retry later")))
            }
            other => IssuanceError::Hsm(other),
        })
    }

    /// The one path that makes a card, whichever procedure asked.
    pub(crate) async fn issue_card(
        &self,
        procedure: Procedure,
        declared: Declared<'_>,
        replaces_card_id: String,
        holder: reg::Holder,
        keys: CardKeys,
    ) -> Result<IssuedCard, IssuanceError> {
        self.hsm_known_up()?;
        let _on_path = self.steps.card();
        let procedure_name = procedure.name();
        let actor = actor(declared.ra_operator);
        let begun = self
            .steps
            .begin(reg::BeginApplicationRequest {
                application_id: declared.id.trim().to_owned(),
                holder: Some(holder),
                application_json: application_record(&declared, procedure),
                actor: actor.clone(),
                procedure: procedure_name.into(),
                replaces_card_id: replaces_card_id.clone(),
                keys: vec![
                    card_key(reg::CertificateKind::Signing, &keys.signing_csr),
                    card_key(reg::CertificateKind::Authentication, &keys.authentication_csr),
                ],
            })
            .await
            .map_err(|s| match s.code() {
                // The only ALREADY_EXISTS of BeginApplication: a key certified before.
                tonic::Code::AlreadyExists => IssuanceError::KeyInUse(s.message().to_owned()),
                _ => IssuanceError::Registry(s),
            })?;
        let card = begun.card.ok_or_else(|| IssuanceError::Internal("registry returned no card".into()))?;
        let holder = begun.holder.ok_or_else(|| IssuanceError::Internal("registry returned no holder".into()))?;
        let replayed = begun.existing;
        let who = subscriber(&holder);

        // The PIN is escrowed before any certificate exists (with PrepareCard, or
        // alone), so a card is never usable without a recoverable PIN.
        let (generated, escrow) = self.encrypt_pin(&card.card_id, keys.pin, &actor).await?;

        let csrs = [&keys.signing_csr, &keys.authentication_csr];
        let (out, pin_stored) =
            self.ensure_certificates(&card, &begun.certificates, csrs, escrow, &actor, &who).await?;
        let generated_pin = Self::pin_to_return(generated, pin_stored);
        let (sign, auth) = (&out[0], &out[1]);
        tracing::info!(card_id = %card.card_id, holder_id = %holder.holder_id, procedure = procedure_name, replayed, "card issued");
        Ok(IssuedCard {
            card_id: card.card_id,
            holder_id: holder.holder_id,
            signing_certificate: sign.der.clone(),
            authentication_certificate: auth.der.clone(),
            signing_serial: sign.serial.clone(),
            authentication_serial: auth.serial.clone(),
            not_before: rfc3339(sign.not_before),
            not_after: rfc3339(sign.not_after),
            fee: Some(fee_for(registry_membership(holder.membership), procedure)),
            replayed,
            generated_pin: generated_pin.unwrap_or_default(),
            replaces_card_id,
            crl_numbers: Vec::new(),
        })
    }

    /// Brings both certificates of the card to ISSUED and the card to ACTIVE,
    /// from whatever state a previous attempt left them in, in two registry
    /// writes: `PrepareCard` (PIN escrow, serials reserved and TBS recorded, before the
    /// HSM is asked to sign), then `FinishCard` (certificates stored, card
    /// completed). Returns (signing, authentication).
    async fn ensure_certificates(
        &self,
        card: &reg::Card,
        existing: &[reg::CertificateRecord],
        [signing_csr, authentication_csr]: [&profile::csr::VerifiedCsr; 2],
        escrow: reg::StorePinEscrowRequest,
        actor: &str,
        who: &profile::Subscriber,
    ) -> Result<([Issued; 2], bool), IssuanceError> {
        let card_id = &card.card_id;
        let mut plans = Vec::with_capacity(2);
        let mut to_prepare = Vec::new();
        for kind in [profile::CertKind::Signing, profile::CertKind::Authentication] {
            let found = existing.iter().find(|c| c.kind == reg_kind(kind) as i32);
            let csr = match kind {
                profile::CertKind::Signing => signing_csr,
                profile::CertKind::Authentication => authentication_csr,
            };
            let plan = self.plan_certificate(kind, card_id, found, csr, who)?;
            if let Plan::Sign { prepare: Some(p), .. } = &plan {
                to_prepare.push(p.clone());
            }
            plans.push(plan);
        }
        let pin_stored = if to_prepare.is_empty() {
            self.store_pin_escrow(escrow).await?
        } else {
            let req = reg::PrepareCardRequest {
                card_id: card_id.clone(),
                certificates: to_prepare,
                pin_escrow: Some(escrow),
            };
            self.steps.prepare(req).await?.pin_escrow_stored
        };
        // Both signatures at once: the HSM has a pool of sessions.
        let mut signing = Vec::new();
        for plan in &plans {
            if let Plan::Sign { kind, tbs, .. } = plan {
                let key = self.ca(*kind).key.clone();
                let to_sign = tbs.clone();
                signing.push(self.signers.start(move || key.sign(&to_sign))?);
            }
        }
        let mut signatures = Vec::with_capacity(signing.len());
        for pending in signing {
            signatures.push(pending.wait().await??);
        }
        let mut signatures = signatures.into_iter();
        let mut issued = Vec::with_capacity(2);
        let mut to_store = Vec::new();
        for plan in plans {
            match plan {
                Plan::Issued(done) => issued.push(done),
                Plan::Sign { serial, tbs, not_before, not_after, .. } => {
                    let signature =
                        signatures.next().ok_or_else(|| IssuanceError::Internal("a signature went missing".into()))?;
                    let der = profile::assemble_certificate(&tbs, &signature)?;
                    to_store.push(reg::SignedCertificate { serial: serial.clone(), certificate_der: der.clone() });
                    issued.push(Issued { serial, der, not_before, not_after });
                }
            }
        }
        if !to_store.is_empty() || card.state != reg::CardState::Active as i32 {
            self.steps
                .finish(reg::FinishCardRequest {
                    card_id: card_id.clone(),
                    certificates: to_store,
                    actor: actor.to_owned(),
                })
                .await?;
        }
        let [sign, auth]: [Issued; 2] =
            issued.try_into().map_err(|_| IssuanceError::Internal("a card has two certificates".into()))?;
        Ok(([sign, auth], pin_stored))
    }

    /// What one certificate of the card still needs. The TBS is built here, but
    /// signed only after `PrepareCard` has recorded it.
    fn plan_certificate(
        &self,
        kind: profile::CertKind,
        card_id: &str,
        existing: Option<&reg::CertificateRecord>,
        csr: &profile::csr::VerifiedCsr,
        who: &profile::Subscriber,
    ) -> Result<Plan, IssuanceError> {
        let ca = self.ca(kind);
        let state = existing.map(|c| c.state).unwrap_or(reg::CertificateState::Unspecified as i32);
        if let Some(rec) = existing.filter(|_| state == reg::CertificateState::Issued as i32) {
            return Ok(Plan::Issued(Issued {
                serial: rec.serial.clone(),
                der: rec.certificate_der.clone(),
                not_before: rec.not_before_unix,
                not_after: rec.not_after_unix,
            }));
        }
        if state == reg::CertificateState::CertRevoked as i32 {
            return Err(IssuanceError::FailedPrecondition(format!(
                "application_id: this card was revoked before it was complete (card {card_id})"
            )));
        }
        if let Some(rec) = existing.filter(|_| state == reg::CertificateState::Precert as i32) {
            return Ok(Plan::Sign {
                kind,
                serial: rec.serial.clone(),
                tbs: rec.tbs_der.clone(),
                not_before: rec.not_before_unix,
                not_after: rec.not_after_unix,
                prepare: None,
            });
        }
        // A reservation left by an earlier attempt keeps its serial and validity.
        let (serial, nb, na) = match existing.filter(|_| state == reg::CertificateState::Reserved as i32) {
            Some(rec) => (rec.serial.clone(), unix(rec.not_before_unix)?, unix(rec.not_after_unix)?),
            None => {
                let (nb, na) = profile::validity::subscriber_validity(
                    profile::validity::today_jst(),
                    self.policy.validity_years,
                    ca.ca.not_after(),
                );
                // Chosen here, as the registry's ReserveSerial would (it refuses one in use).
                (domain::Serial::random().to_hex(), nb, na)
            }
        };
        let serial_bytes = domain::Serial::from_hex(&serial).map_err(|_| IssuanceError::BadSerial(serial.clone()))?;
        let params = profile::subscriber_params(&self.policy, kind, who, serial_bytes.as_bytes(), nb, na, &ca.ca)?;
        let tbs = profile::tbs_certificate(&params, csr, &ca.ca)?;
        let crl_scope = reg::CrlScope {
            crl_url: self.policy.kind(kind).crl_url.as_str().to_owned(),
            partitions: self.policy.crl_partitions,
            delta_crls: self.policy.delta_crls,
        };
        let prepare = reg::PreparedCertificate {
            kind: reg_kind(kind) as i32,
            serial: serial.clone(),
            issuer_label: ca.label.clone(),
            not_before_unix: nb.unix_timestamp(),
            not_after_unix: na.unix_timestamp(),
            tbs_der: tbs.clone(),
            crl_scope: Some(crl_scope),
        };
        Ok(Plan::Sign {
            kind,
            serial,
            tbs,
            not_before: nb.unix_timestamp(),
            not_after: na.unix_timestamp(),
            prepare: Some(prepare),
        })
    }

    pub(crate) async fn audit_rejection(&self, action: &str, subject: &str, operator: &str, err: &IssuanceError) {
        let detail = serde_json::json!({ "subject": subject, "error": err.to_string() });
        let req = reg::AppendAuditRequest {
            actor: actor(operator),
            action: action.into(),
            subject: subject.into(),
            detail_json: detail.to_string(),
        };
        if let Err(e) = self.registry.clone().append_audit(req).await {
            tracing::warn!(error = %e, "could not audit a rejected request");
        }
    }
}

pub(crate) fn invalid(field: &str, why: impl std::fmt::Display) -> IssuanceError {
    IssuanceError::InvalidArgument { field: field.into(), reason: why.to_string() }
}

/// The audit actor of an RA request, as [`ra_who`] set it in `ra_operator`.
pub(crate) fn actor(ra_operator: &str) -> String {
    if ra_operator.is_empty() {
        "ra".into()
    } else {
        ra_operator.to_owned()
    }
}

/// Who asks: the RA identity of the caller's client certificate (`ra-tokyo`),
/// with the RA's own operator when it names one (`ra-tokyo:desk-7`). Every
/// handler puts this in the request's `ra_operator`, so the audit actor, the
/// application record and what is relayed to revocation name the RA system by
/// its certificate. Without TLS (development): `ra:<ra_operator>`.
/// The caller of a daily cap without a client certificate (TLS off: the
/// development switch). All such callers share one count.
pub(crate) const ANONYMOUS: &str = "anonymous";

pub(crate) fn ra_who<T>(request: &Request<T>, ra_operator: &str) -> String {
    let ra_operator = ra_operator.trim();
    match (tls::caller(request), ra_operator.is_empty()) {
        (Some(c), true) => c.identity.clone(),
        (Some(c), false) => format!("{}:{ra_operator}", c.identity),
        (None, true) => String::new(),
        (None, false) => format!("ra:{ra_operator}"),
    }
}

/// The request's message with its `ra_operator` (the field `ra_operator`
/// picks) replaced by [`ra_who`]: what every RA handler works on.
fn from_ra<T>(mut request: Request<T>, ra_operator: fn(&mut T) -> &mut String) -> T {
    let given = std::mem::take(ra_operator(request.get_mut()));
    let who = ra_who(&request, &given);
    let mut message = request.into_inner();
    *ra_operator(&mut message) = who;
    message
}

/// The RA identity in a [`ra_who`] string.
fn ra_identity(who: &str) -> &str {
    who.split(':').next().unwrap_or("")
}

fn reg_kind(kind: profile::CertKind) -> reg::CertificateKind {
    match kind {
        profile::CertKind::Signing => reg::CertificateKind::Signing,
        profile::CertKind::Authentication => reg::CertificateKind::Authentication,
    }
}

pub(crate) fn registry_membership(m: i32) -> Membership {
    match reg::Membership::try_from(m) {
        Ok(reg::Membership::Member) => Membership::Member,
        _ => Membership::NonMember,
    }
}

pub(crate) fn unix(t: i64) -> Result<time::OffsetDateTime, IssuanceError> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|source| IssuanceError::BadTime { value: t, source })
}

/// RFC 3339 in UTC; empty for 0 (unset) or an unrepresentable time.
pub(crate) use timefmt::rfc3339_unless_unset as rfc3339;

fn subscriber(h: &reg::Holder) -> profile::Subscriber {
    profile::Subscriber {
        holder_id: h.holder_id.clone(),
        given_name_latin: h.given_name_latin.clone(),
        family_name_latin: h.family_name_latin.clone(),
        given_name_kanji: h.given_name_kanji.clone(),
        family_name_kanji: h.family_name_kanji.clone(),
        institution: if h.institution.is_empty() { None } else { Some(h.institution.clone()) },
        institution_kanji: if h.institution_kanji.is_empty() { None } else { Some(h.institution_kanji.clone()) },
    }
}

/// A contact address the registry keeps, as the RA sees it.
pub(crate) fn contact_from_registry(c: reg::ContactAddress) -> iss::ContactAddress {
    iss::ContactAddress { postal_code: c.postal_code, address: c.address, phone: c.phone, email: c.email }
}

pub(crate) fn contact_to_registry(c: &iss::ContactAddress) -> reg::ContactAddress {
    reg::ContactAddress {
        postal_code: c.postal_code.trim().into(),
        address: c.address.trim().into(),
        phone: c.phone.trim().into(),
        email: c.email.trim().into(),
    }
}

/// The holder of a checked new-card application (a reissue is checked as
/// one), as the registry stores it (holder_id assigned by the registry).
pub(crate) fn holder_from(app: &iss::NewCardApplication, membership: Membership) -> reg::Holder {
    let a = app.applicant.clone().unwrap_or_default();
    let l = app.licence.clone().unwrap_or_default();
    reg::Holder {
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
        membership: match membership {
            Membership::Member => reg::Membership::Member,
            _ => reg::Membership::NonMember,
        } as i32,
        contact: app.contact.as_ref().map(contact_to_registry),
        institution: app.institution.trim().into(),
        institution_kanji: app.institution_kanji.trim().into(),
    }
}

/// What the RA declared it checked, kept with the card (CSRs are in the certificates; the PIN nowhere).
fn application_record(declared: &Declared<'_>, procedure: Procedure) -> String {
    let docs = declared.documents.cloned().unwrap_or_default();
    let photo_id = docs.photo_id.clone().unwrap_or_default();
    serde_json::json!({
        "application_id": declared.id,
        "application_date": declared.date.to_string(),
        "procedure": procedure.name(),
        "reason": declared.reason,
        "ra_operator": declared.ra_operator,
        "ra_identity": ra_identity(declared.ra_operator),
        "documents": {
            "photo_taken_on": docs.photo_taken_on,
            "resident_record_issued_on": docs.resident_record_issued_on,
            "photo_id": {
                "type": iss::PhotoIdType::try_from(photo_id.r#type).map(|t| t.as_str_name()).unwrap_or("?"),
                "expires_on": photo_id.expires_on,
                "issued_on": photo_id.issued_on,
            },
            "licence_copy_checked": docs.licence_copy_checked,
            "licence_back_endorsed": docs.licence_back_endorsed,
            "licence_back_copied": docs.licence_back_copied,
        },
    })
    .to_string()
}

/// Runs a procedure, audits a refusal, and maps the error to a status.
macro_rules! handle {
    ($self:ident, $action:expr, $subject:expr, $operator:expr, $body:expr) => {{
        let subject: String = $subject;
        let operator: String = $operator;
        match $body.await {
            Ok(v) => Ok(Response::new(v)),
            Err(e) => {
                if matches!(e, IssuanceError::InvalidArgument { .. } | IssuanceError::FailedPrecondition(_) | IssuanceError::Registry(_)) {
                    $self.audit_rejection($action, &subject, &operator, &e).await;
                }
                tracing::info!(action = $action, subject = %subject, error = %e, "request refused");
                Err(Status::from(e))
            }
        }
    }};
}

#[tonic::async_trait]
impl Issuance for IssuanceService {
    async fn submit_application(
        &self,
        request: Request<iss::NewCardApplication>,
    ) -> Result<Response<IssuedCard>, Status> {
        let app = from_ra(request, |m| &mut m.ra_operator);
        handle!(self, "application.rejected", app.application_id.clone(), app.ra_operator.clone(), self.submit(app))
    }

    async fn renew(&self, request: Request<iss::RenewalApplication>) -> Result<Response<IssuedCard>, Status> {
        let app = from_ra(request, |m| &mut m.ra_operator);
        handle!(self, "renewal.rejected", app.application_id.clone(), app.ra_operator.clone(), self.renew_card(app))
    }

    async fn reissue(&self, request: Request<iss::ReissueApplication>) -> Result<Response<IssuedCard>, Status> {
        let app = from_ra(request, |m| &mut m.ra_operator);
        handle!(self, "reissue.rejected", app.application_id.clone(), app.ra_operator.clone(), self.reissue_card(app))
    }

    async fn change_contact(
        &self,
        request: Request<iss::ContactChange>,
    ) -> Result<Response<iss::ContactChangeResult>, Status> {
        let req = from_ra(request, |m| &mut m.ra_operator);
        handle!(self, "contact.rejected", req.card_id.clone(), req.ra_operator.clone(), self.change_contact_of(req))
    }

    async fn cease_use(
        &self,
        request: Request<iss::CessationRequest>,
    ) -> Result<Response<iss::CessationResult>, Status> {
        let req = from_ra(request, |m| &mut m.ra_operator);
        handle!(self, "cessation.rejected", req.card_id.clone(), req.ra_operator.clone(), self.cease(req))
    }

    async fn disclose_pin(
        &self,
        request: Request<iss::PinDisclosureRequest>,
    ) -> Result<Response<iss::PinDisclosure>, Status> {
        // The RA system's identity, for its daily cap: from its certificate, never from the request.
        let ra_identity = tls::caller(&request).map_or_else(|| ANONYMOUS.to_owned(), |c| c.identity.clone());
        let req = from_ra(request, |m| &mut m.ra_operator);
        handle!(
            self,
            "pin.disclosure-rejected",
            req.card_id.clone(),
            req.ra_operator.clone(),
            self.disclose(req, ra_identity)
        )
    }

    async fn get_fee(&self, request: Request<iss::GetFeeRequest>) -> Result<Response<iss::Fee>, Status> {
        let m = Membership::try_from(request.into_inner().membership).unwrap_or(Membership::Unspecified);
        if m == Membership::Unspecified {
            return Err(invalid("membership", "is required (MEMBER or NON_MEMBER)").into());
        }
        Ok(Response::new(fee_for(m, Procedure::New)))
    }

    async fn get_card(&self, request: Request<iss::CardRef>) -> Result<Response<iss::CardDetails>, Status> {
        Ok(Response::new(self.card_details(request.into_inner()).await?))
    }

    /// Only our OCSP process may ask (the transport's role policy refuses RA,
    /// operator and auditor certificates before we get here).
    async fn issue_responder_certificate(
        &self,
        request: Request<iss::ResponderCertificateRequest>,
    ) -> Result<Response<iss::ResponderCertificate>, Status> {
        let req = request.into_inner();
        let issuer = req.issuer.clone();
        match self.issue_responder(req).await {
            Ok(cert) => Ok(Response::new(cert)),
            Err(e) => {
                tracing::info!(action = "responder_certificate", issuer = %issuer, error = %e, "request refused");
                Err(Status::from(e))
            }
        }
    }

    async fn get_holder_history(
        &self,
        request: Request<iss::HolderRef>,
    ) -> Result<Response<iss::HolderHistory>, Status> {
        Ok(Response::new(self.holder_history(request.into_inner()).await?))
    }
}

/// A CSR's key as the registry indexes it: SHA-256 of the SubjectPublicKeyInfo DER.
fn card_key(kind: reg::CertificateKind, csr: &profile::csr::VerifiedCsr) -> reg::CardKey {
    use sha2::Digest;
    reg::CardKey { kind: kind as i32, spki_sha256: sha2::Sha256::digest(csr.subject_public_key_info_der()).to_vec() }
}
