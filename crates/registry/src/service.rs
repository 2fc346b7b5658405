//! The gRPC handlers: validate the request, call the store on a blocking
//! thread (its writes fsync), convert the answer.

use std::sync::Arc;

use proto::registry::v1 as pb;
use proto::registry::v1::get_card_request::Key;
use proto::registry::v1::list_holder_cards_request::Key as HolderKey;
use proto::registry::v1::registry_server::Registry;
use store::{
    ApplicationProcedure, CardStep, CardStepDone, DisclosureLimit, NewApproval, NewPinEscrow, PinDisclosureRequest,
    Procedure, Reservation, RevocationRequest, RevokedQuery, Serial, Store, StoreError,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::batch::Batcher;
use crate::card_path::{self, Caller, MAX_CARD_STEPS};
use crate::convert;
use crate::error::RegistryError;
use crate::streams::{self, ChunkStream, FEED_PAGE};
use crate::validate::{self, MAX_DER_LEN, MAX_TEXT_LEN};
use crate::x509;

/// ListAudit answers at most about this many bytes, below tonic's default
/// 4 MiB decoding limit on the client; callers page on with from_sequence.
const AUDIT_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// The PIN-disclosure limits: the registry's own configuration (`[issuance]`),
/// never a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLimits {
    /// Disclosures of one card within a sliding window.
    pub per_card: DisclosureLimit,
    /// Disclosures by one RA identity per calendar day (JST).
    pub per_ra_per_day: u32,
}

impl PinLimits {
    pub fn from_config(c: &config::IssuanceConfig) -> PinLimits {
        PinLimits {
            per_card: DisclosureLimit {
                max_per_window: c.pin_disclosures_per_window.max(1),
                window_seconds: c.pin_disclosure_window_days.max(1).saturating_mul(86_400),
            },
            per_ra_per_day: c.pin_disclosures_per_ra_per_day.max(1),
        }
    }
}

impl Default for PinLimits {
    fn default() -> Self {
        PinLimits::from_config(&config::IssuanceConfig::default())
    }
}

#[derive(Clone)]
pub struct RegistryService {
    store: Store,
    holder_id_prefix: String,
    pin_limits: PinLimits,
    /// Set to true to end the endless WatchStatus streams (and long
    /// ListRevoked ones), so a graceful shutdown does not wait on them.
    end_streams: Arc<watch::Sender<bool>>,
    /// BeginApplication, PrepareCard and FinishCard calls that arrive together
    /// share a transaction.
    card_steps: Batcher<CardStep, Result<CardStepDone, StoreError>>,
}

impl RegistryService {
    pub fn new(store: Store, holder_id_prefix: String) -> RegistryService {
        RegistryService {
            card_steps: Batcher::new(store.clone(), Store::card_steps),
            store,
            holder_id_prefix,
            pin_limits: PinLimits::default(),
            end_streams: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The PIN-disclosure limits to apply (the default: `[issuance]`'s defaults).
    pub fn with_pin_limits(mut self, pin_limits: PinLimits) -> RegistryService {
        self.pin_limits = pin_limits;
        self
    }

    /// Ends every open stream with UNAVAILABLE (clients resume with their
    /// last sequence); call when the server starts shutting down.
    pub fn end_streams(&self) {
        self.end_streams.send_replace(true);
    }

    /// Runs a store call off the async workers: store writes block on fsync.
    /// One step of a card's issuance, in a transaction shared with the steps
    /// that arrive with it (`batch`).
    async fn card_step(&self, step: CardStep) -> Result<CardStepDone, RegistryError> {
        Ok(self.card_steps.call(step).await??)
    }

    /// Several steps queued at once, so they share transactions; an answer each, in order.
    pub(crate) async fn card_steps_many(&self, steps: Vec<CardStep>) -> Vec<Result<CardStepDone, RegistryError>> {
        let answers = self.card_steps.call_many(steps).await;
        answers.into_iter().map(|a| Ok(a??)).collect()
    }

    pub(crate) fn holder_id_prefix(&self) -> &str {
        &self.holder_id_prefix
    }

    async fn run<T, F>(&self, f: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(RegistryError::task("store task"))?
            .map_err(RegistryError::from)
    }
}

/// Who to name in the audit log for calls whose request carries no actor:
/// the identity of the caller's client certificate (`issuance`, `crl`...);
/// the peer address only without TLS (`[tls] enabled = false`, development).
pub(crate) fn peer<T>(request: &Request<T>) -> String {
    if let Some(caller) = tls::caller(request) {
        return caller.identity.clone();
    }
    match request.remote_addr() {
        Some(addr) => format!("peer:{addr}"),
        None => "peer:unknown".into(),
    }
}

/// The request's actor if given, else the caller's identity (`Caller::actor`).
fn actor<T>(request: &Request<T>, given: &str) -> Result<String, RegistryError> {
    Caller::of(request).actor(given)
}

/// What the operator asked for in a revoke request.
fn revocation(
    reason: i32,
    revoked_at_unix: i64,
    invalidity_date_unix: i64,
    actor: &str,
    note: &str,
) -> Result<RevocationRequest, RegistryError> {
    if invalidity_date_unix < 0 {
        return Err(RegistryError::invalid("invalidity_date_unix", "is before 1970 (0 for none)"));
    }
    Ok(RevocationRequest {
        reason: validate::reason("reason", reason)?,
        revoked_at_unix,
        actor: validate::id("actor", actor)?,
        note: validate::text("note", note, MAX_TEXT_LEN)?,
        invalidity_date_unix,
    })
}

#[tonic::async_trait]
impl Registry for RegistryService {
    type ListRevokedStream = ChunkStream<pb::RevokedEntry>;
    type WatchStatusStream = ChunkStream<pb::StatusChange>;

    async fn begin_application(
        &self,
        request: Request<pb::BeginApplicationRequest>,
    ) -> Result<Response<pb::BeginApplicationResponse>, Status> {
        let step = self.begin_in(&Caller::of(&request), request.into_inner())?;
        let CardStepDone::Begun(outcome) = self.card_step(step).await? else {
            return Err(RegistryError::BatchLost.into());
        };
        Ok(Response::new(card_path::begun_out(*outcome)))
    }

    async fn reserve_serial(
        &self,
        request: Request<pb::ReserveSerialRequest>,
    ) -> Result<Response<pb::ReserveSerialResponse>, Status> {
        let actor = peer(&request);
        let req = request.into_inner();
        validate::validity("not_after_unix", req.not_before_unix, req.not_after_unix)?;
        let kind = validate::kind("kind", req.kind)?;
        let card_id = if kind.of_card() {
            validate::id("card_id", &req.card_id)?
        } else if req.card_id.is_empty() {
            String::new()
        } else {
            return Err(RegistryError::invalid("card_id", "must be empty for an OCSP_RESPONDER certificate").into());
        };
        let reservation = Reservation {
            card_id,
            kind,
            issuer_label: validate::id("issuer_label", &req.issuer_label)?,
            not_before_unix: req.not_before_unix,
            not_after_unix: req.not_after_unix,
        };
        let record = self.run(move |s| s.reserve_serial(&reservation, &actor)).await?;
        Ok(Response::new(pb::ReserveSerialResponse { serial: record.serial.to_hex() }))
    }

    async fn record_tbs(
        &self,
        request: Request<pb::RecordTbsRequest>,
    ) -> Result<Response<pb::RecordTbsResponse>, Status> {
        let actor = peer(&request);
        let req = request.into_inner();
        let serial = tbs_serial_in(["serial", "tbs_der"], &req.serial, &req.tbs_der)?;
        let scope = req.crl_scope.map(|s| crl_scope_in(s, &req.tbs_der)).transpose()?;
        self.run(move |s| s.record_tbs(&serial, &req.tbs_der, scope.as_ref(), &actor)).await?;
        Ok(Response::new(pb::RecordTbsResponse {}))
    }

    async fn store_certificate(
        &self,
        request: Request<pb::StoreCertificateRequest>,
    ) -> Result<Response<pb::StoreCertificateResponse>, Status> {
        let actor = peer(&request);
        let req = request.into_inner();
        let (serial, tbs) = certificate_in(["serial", "certificate_der"], &req.serial, &req.certificate_der)?;
        self.run(move |s| s.store_certificate(&serial, &req.certificate_der, &tbs, &actor)).await?;
        Ok(Response::new(pb::StoreCertificateResponse {}))
    }

    async fn complete_application(
        &self,
        request: Request<pb::CompleteApplicationRequest>,
    ) -> Result<Response<pb::Card>, Status> {
        let actor = actor(&request, &request.get_ref().actor)?;
        let card_id = validate::id("card_id", &request.get_ref().card_id)?;
        let card = self.run(move |s| s.complete_application(&card_id, &actor)).await?;
        Ok(Response::new(convert::card_out(card)))
    }

    async fn prepare_card(
        &self,
        request: Request<pb::PrepareCardRequest>,
    ) -> Result<Response<pb::PrepareCardResponse>, Status> {
        let step = self.prepare_in(&Caller::of(&request), request.into_inner())?;
        let CardStepDone::Prepared(_, pin_escrow_stored) = self.card_step(step).await? else {
            return Err(RegistryError::BatchLost.into());
        };
        Ok(Response::new(pb::PrepareCardResponse { pin_escrow_stored }))
    }

    async fn finish_card(&self, request: Request<pb::FinishCardRequest>) -> Result<Response<pb::Card>, Status> {
        let step = self.finish_in(&Caller::of(&request), request.into_inner())?;
        let CardStepDone::Finished(card) = self.card_step(step).await? else {
            return Err(RegistryError::BatchLost.into());
        };
        Ok(Response::new(convert::card_out(card)))
    }

    async fn card_steps(
        &self,
        request: Request<pb::CardStepsRequest>,
    ) -> Result<Response<pb::CardStepsResponse>, Status> {
        let who = Caller::of(&request);
        let steps = request.into_inner().steps;
        if steps.is_empty() || steps.len() > MAX_CARD_STEPS {
            let why = format!("{} steps (one to {MAX_CARD_STEPS} in a call)", steps.len());
            return Err(RegistryError::invalid("steps", why).into());
        }
        Ok(Response::new(pb::CardStepsResponse { answers: self.steps(&who, steps).await }))
    }

    async fn get_card(&self, request: Request<pb::GetCardRequest>) -> Result<Response<pb::GetCardResponse>, Status> {
        let view = match request.into_inner().key {
            Some(Key::CardId(v)) => {
                let card_id = validate::id("card_id", &v)?;
                self.run(move |s| s.get_card(&card_id)).await?
            }
            Some(Key::ApplicationId(v)) => {
                let application_id = validate::id("application_id", &v)?;
                self.run(move |s| s.get_card_by_application(&application_id)).await?
            }
            Some(Key::LicenceNumber(v)) => {
                let licence = validate::id("licence_number", &v)?;
                self.run(move |s| s.get_card_by_licence(&licence)).await?
            }
            None => {
                let reason = "one of card_id, application_id, licence_number is required";
                return Err(RegistryError::invalid("key", reason).into());
            }
        };
        Ok(Response::new(convert::card_view_out(view)))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::CertificateRecord>, Status> {
        let serial = validate::serial("serial", &request.get_ref().serial)?;
        let record = self.run(move |s| s.get_certificate(&serial)).await?;
        Ok(Response::new(convert::certificate_out(record)))
    }

    async fn append_audit(&self, request: Request<pb::AppendAuditRequest>) -> Result<Response<pb::AuditEntry>, Status> {
        let actor = actor(&request, &request.get_ref().actor)?;
        let req = request.into_inner();
        let action = validate::id("action", &req.action)?;
        if store::actions::is_system(&action) {
            return Err(RegistryError::invalid(
                "action",
                format!(
                    "{action} is written only by the registry itself{}",
                    if action == store::actions::AUDIT_CHECKPOINT {
                        " (checkpoints: AppendCheckpoint, for the checkpointer only)"
                    } else {
                        ""
                    }
                ),
            )
            .into());
        }
        let subject = validate::text("subject", &req.subject, MAX_TEXT_LEN)?;
        let detail = validate::json("detail_json", &req.detail_json)?;
        let entry = self.run(move |s| s.append_audit(&actor, &action, &subject, &detail)).await?;
        Ok(Response::new(convert::audit_out(entry)))
    }

    async fn append_checkpoint(
        &self,
        request: Request<pb::AppendCheckpointRequest>,
    ) -> Result<Response<pb::AuditEntry>, Status> {
        let actor = actor(&request, &request.get_ref().actor)?;
        let req = request.into_inner();
        let subject = validate::text("subject", &req.subject, MAX_TEXT_LEN)?;
        let detail = validate::json("detail_json", &req.detail_json)?;
        let entry = self.run(move |s| s.append_checkpoint_audit(&actor, &subject, &detail)).await?;
        Ok(Response::new(convert::audit_out(entry)))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let (from, newest_first) = (req.from_sequence, req.newest_first);
        let entries = self
            .run(move |s| {
                // Read page by page so a huge log is never loaded whole.
                let mut out = Vec::new();
                let mut bytes = 0;
                // Where the next page starts; None once the log's end (or start) is passed.
                let mut next = Some(if newest_first && from == 0 { u64::MAX } else { from });
                while let Some(at) = next {
                    let want = limit.map_or(1000, |l| (l - out.len()).min(1000));
                    let page = if newest_first { s.list_audit_back(at, want)? } else { s.list_audit(at, Some(want))? };
                    let Some(last) = page.last() else { break };
                    // Always onwards, even past an entry whose sequence field was edited.
                    next = if newest_first {
                        last.sequence.min(at).checked_sub(1).filter(|&n| n > 0)
                    } else {
                        last.sequence.max(at).checked_add(1)
                    };
                    for e in page {
                        bytes += e.actor.len() + e.action.len() + e.subject.len() + e.detail_json.len() + 128;
                        out.push(e);
                        if bytes >= AUDIT_PAGE_BYTES || limit.is_some_and(|l| out.len() >= l) {
                            return Ok(out);
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(pb::ListAuditResponse { entries: entries.into_iter().map(convert::audit_out).collect() }))
    }

    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        let req = request.into_inner();
        let serial = validate::serial("serial", &req.serial)?;
        let revocation = revocation(req.reason, req.revoked_at_unix, req.invalidity_date_unix, &req.actor, &req.note)?;
        let outcome = self.run(move |s| s.revoke_certificate(&serial, &revocation)).await?;
        Ok(Response::new(pb::RevokeCertificateResponse {
            certificate: Some(convert::certificate_out(outcome.certificate)),
            already_revoked: outcome.already_revoked,
        }))
    }

    async fn revoke_card(
        &self,
        request: Request<pb::RevokeCardRequest>,
    ) -> Result<Response<pb::RevokeCardResponse>, Status> {
        let req = request.into_inner();
        let card_id = validate::id("card_id", &req.card_id)?;
        let revocation = revocation(req.reason, req.revoked_at_unix, req.invalidity_date_unix, &req.actor, &req.note)?;
        let confirmation = validate::json("confirmation_json", &req.confirmation_json)?;
        let outcome = self.run(move |s| s.revoke_card(&card_id, &revocation, &confirmation)).await?;
        Ok(Response::new(pb::RevokeCardResponse {
            card: Some(convert::card_out(outcome.view.card)),
            certificates: outcome.view.certificates.into_iter().map(convert::certificate_out).collect(),
            newly_revoked: outcome.newly_revoked,
        }))
    }

    async fn list_revoked(
        &self,
        request: Request<pb::ListRevokedRequest>,
    ) -> Result<Response<Self::ListRevokedStream>, Status> {
        let req = request.into_inner();
        if req.at_unix < 0 {
            return Err(RegistryError::invalid("at_unix", "must not be negative (0 means now)").into());
        }
        let query = RevokedQuery {
            issuer_label: validate::id("issuer_label", &req.issuer_label)?,
            after_sequence: req.after_sequence,
            include_expired: req.include_expired,
            at_unix: req.at_unix,
        };
        let stream = streams::list_revoked(self.store.clone(), query, self.end_streams.subscribe());
        Ok(Response::new(stream))
    }

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let after = request.into_inner().after_sequence;
        // Subscribe before the first read: whatever becomes durable after the
        // read moves the position, so the stream reads on and misses nothing.
        let position = self.store.subscribe_feed();
        // The first page is read here so a bad resume point fails the call.
        let first_page = self.run(move |s| s.feed_after(after, FEED_PAGE)).await?;
        let stream =
            streams::watch_status(self.store.clone(), position, after, first_page, self.end_streams.subscribe());
        Ok(Response::new(stream))
    }

    async fn get_feed_position(
        &self,
        _request: Request<pb::FeedPositionRequest>,
    ) -> Result<Response<pb::FeedPosition>, Status> {
        Ok(Response::new(pb::FeedPosition { last_sequence: self.store.feed_position() }))
    }

    async fn next_crl_number(
        &self,
        request: Request<pb::NextCrlNumberRequest>,
    ) -> Result<Response<pb::NextCrlNumberResponse>, Status> {
        let actor = peer(&request);
        let scope = request.into_inner().scope;
        let number = self.run(move |s| s.next_crl_number(&scope, &actor)).await?;
        Ok(Response::new(pb::NextCrlNumberResponse {
            crl_number: number.crl_number,
            feed_sequence: number.feed_sequence,
        }))
    }

    async fn list_crl_scopes(
        &self,
        request: Request<pb::ListCrlScopesRequest>,
    ) -> Result<Response<pb::ListCrlScopesResponse>, Status> {
        let label = validate::id("issuer_label", &request.into_inner().issuer_label)?;
        let records = self.run(move |s| s.crl_scopes(&label)).await?;
        let scopes = records
            .into_iter()
            .map(|r| pb::RecordedCrlScope {
                scope: Some(pb::CrlScope {
                    crl_url: r.scope.crl_url,
                    partitions: r.scope.partitions,
                    delta_crls: r.scope.delta_crls,
                }),
                not_after_unix: r.not_after_unix,
            })
            .collect();
        Ok(Response::new(pb::ListCrlScopesResponse { scopes }))
    }

    async fn create_approval(
        &self,
        request: Request<pb::CreateApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let req = request.into_inner();
        let new = NewApproval {
            kind: validate::id("kind", &req.kind)?,
            subject: validate::text("subject", &req.subject, MAX_TEXT_LEN)?,
            payload_json: validate::json("payload_json", &req.payload_json)?,
            requested_by: validate::id("requested_by", &req.requested_by)?,
        };
        let approval = self.run(move |s| s.create_approval(&new)).await?;
        Ok(Response::new(convert::approval_out(approval)))
    }

    async fn approve(&self, request: Request<pb::ApproveRequest>) -> Result<Response<pb::Approval>, Status> {
        let req = request.into_inner();
        let approval_id = validate::id("approval_id", &req.approval_id)?;
        let approver = validate::id("approver", &req.approver)?;
        let approval = self.run(move |s| s.approve(&approval_id, &approver)).await?;
        Ok(Response::new(convert::approval_out(approval)))
    }

    async fn get_approval(&self, request: Request<pb::GetApprovalRequest>) -> Result<Response<pb::Approval>, Status> {
        let approval_id = validate::id("approval_id", &request.get_ref().approval_id)?;
        let approval = self.run(move |s| s.get_approval(&approval_id)).await?;
        Ok(Response::new(convert::approval_out(approval)))
    }

    async fn mark_approval_executed(
        &self,
        request: Request<pb::MarkApprovalExecutedRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let actor = peer(&request);
        let approval_id = validate::id("approval_id", &request.get_ref().approval_id)?;
        let approval = self.run(move |s| s.mark_approval_executed(&approval_id, &actor)).await?;
        Ok(Response::new(convert::approval_out(approval)))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::UpdateContactResponse>, Status> {
        let actor = actor(&request, &request.get_ref().actor)?;
        let req = request.into_inner();
        let holder_id = validate::id("holder_id", &req.holder_id)?;
        let Some(contact) = req.contact else {
            return Err(RegistryError::invalid("contact", "is required").into());
        };
        let contact = convert::contact_in(contact, convert::CONTACT_FIELDS)?;
        let issued_on = validate::optional_date("resident_record_issued_on", &req.resident_record_issued_on)?;
        let update = self.run(move |s| s.update_contact(&holder_id, &contact, &issued_on, &actor)).await?;
        Ok(Response::new(pb::UpdateContactResponse {
            holder: Some(convert::holder_out(update.holder)),
            previous: Some(convert::contact_out(update.previous)),
            changed: update.changed,
        }))
    }

    async fn store_pin_escrow(
        &self,
        request: Request<pb::StorePinEscrowRequest>,
    ) -> Result<Response<pb::PinEscrowRecord>, Status> {
        let actor = actor(&request, &request.get_ref().actor)?;
        let req = request.into_inner();
        let card_id = validate::id("card_id", &req.card_id)?;
        let new = pin_escrow_in(PIN_FIELDS, req, card_id, actor)?;
        let escrow = self.run(move |s| s.store_pin_escrow(&new)).await?;
        Ok(Response::new(convert::pin_escrow_out(escrow)))
    }

    async fn disclose_pin_escrow(
        &self,
        request: Request<pb::PinDisclosureRequest>,
    ) -> Result<Response<pb::PinEscrowRecord>, Status> {
        let req = request.into_inner();
        if req.confirmation_json.is_empty() {
            return Err(RegistryError::invalid("confirmation_json", "is required").into());
        }
        let disclosure = PinDisclosureRequest {
            card_id: validate::id("card_id", &req.card_id)?,
            request_id: validate::id("request_id", &req.request_id)?,
            confirmation_json: validate::json("confirmation_json", &req.confirmation_json)?,
            actor: validate::id("actor", &req.actor)?,
            limit: self.pin_limits.per_card,
            ra_identity: validate::id("ra_identity", &req.ra_identity)?,
            ra_daily_cap: self.pin_limits.per_ra_per_day,
        };
        let escrow = self.run(move |s| s.disclose_pin_escrow(&disclosure)).await?;
        Ok(Response::new(convert::pin_escrow_out(escrow)))
    }

    async fn list_unresolved(
        &self,
        _request: Request<pb::ListUnresolvedRequest>,
    ) -> Result<Response<pb::ListUnresolvedResponse>, Status> {
        let found = self
            .run(|s| {
                let mut out = Vec::new();
                for record in s.unresolved_reservations()? {
                    let view = if record.kind.of_card() { Some(s.get_card(&record.card_id)?) } else { None };
                    out.push((record, view));
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(pb::ListUnresolvedResponse {
            entries: found.into_iter().map(|(record, view)| convert::unresolved_out(record, view)).collect(),
        }))
    }

    async fn abandon_reservation(
        &self,
        request: Request<pb::AbandonReservationRequest>,
    ) -> Result<Response<pb::CertificateRecord>, Status> {
        let actor = actor(&request, &request.get_ref().actor)?;
        let serial = validate::serial("serial", &request.get_ref().serial)?;
        let record = self.run(move |s| s.abandon_reservation(&serial, &actor)).await?;
        Ok(Response::new(convert::certificate_out(record)))
    }

    async fn list_holder_cards(
        &self,
        request: Request<pb::ListHolderCardsRequest>,
    ) -> Result<Response<pb::ListHolderCardsResponse>, Status> {
        let cards = match request.into_inner().key {
            Some(HolderKey::HolderId(v)) => {
                let holder_id = validate::id("holder_id", &v)?;
                self.run(move |s| s.list_holder_cards(&holder_id)).await?
            }
            Some(HolderKey::LicenceNumber(v)) => {
                let licence = validate::id("licence_number", &v)?;
                self.run(move |s| s.list_holder_cards_by_licence(&licence)).await?
            }
            None => return Err(RegistryError::invalid("key", "one of holder_id, licence_number is required").into()),
        };
        Ok(Response::new(convert::holder_cards_out(cards)))
    }

    async fn find_holders(
        &self,
        request: Request<pb::FindHoldersRequest>,
    ) -> Result<Response<pb::FindHoldersResponse>, Status> {
        let req = request.into_inner();
        if req.query.chars().count() > 256 {
            return Err(RegistryError::invalid("query", "is longer than 256 characters").into());
        }
        let limit = match req.limit {
            0 => 20,
            n => n.min(100) as usize,
        };
        let found = self.run(move |s| s.find_holders(&req.query, limit)).await?;
        Ok(Response::new(pb::FindHoldersResponse {
            holders: found.into_iter().map(convert::holder_cards_out).collect(),
        }))
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let state = match pb::ApprovalState::try_from(request.get_ref().state) {
            Ok(pb::ApprovalState::Unspecified) => None,
            Ok(pb::ApprovalState::Awaiting) => Some(store::ApprovalState::Awaiting),
            Ok(pb::ApprovalState::Approved) => Some(store::ApprovalState::Approved),
            Ok(pb::ApprovalState::Executed) => Some(store::ApprovalState::Executed),
            Err(_) => return Err(RegistryError::invalid("state", "is no ApprovalState").into()),
        };
        let approvals = self.run(move |s| s.list_approvals(state)).await?;
        Ok(Response::new(pb::ListApprovalsResponse {
            approvals: approvals.into_iter().map(convert::approval_out).collect(),
        }))
    }
}

/// The procedure of a BeginApplication and the card it replaces.
/// A CRL scope as recorded. The TBS must name its URL: its path without
/// ".crl" is in every URL derived from it (partition `<path>-pN.crl`, delta
/// `<path>-delta.crl`), whatever the URL parser did to scheme and host. So a
/// scope that does not belong to the certificate is refused rather than
/// published for years.
pub(crate) fn crl_scope_in(scope: pb::CrlScope, tbs_der: &[u8]) -> Result<store::CrlScope, RegistryError> {
    let url = validate::text("crl_scope.crl_url", &scope.crl_url, MAX_TEXT_LEN)?;
    let path = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
    let stem = path.strip_suffix(".crl").unwrap_or(path);
    if stem.len() < 2 || !tbs_der.windows(stem.len()).any(|w| w == stem.as_bytes()) {
        return Err(RegistryError::invalid("crl_scope.crl_url", format!("{url} is not named by tbs_der")));
    }
    if scope.partitions > store::MAX_SCOPE_PARTITIONS {
        return Err(RegistryError::invalid(
            "crl_scope.partitions",
            format!("{} (at most {})", scope.partitions, store::MAX_SCOPE_PARTITIONS),
        ));
    }
    Ok(store::CrlScope { crl_url: url, partitions: scope.partitions, delta_crls: scope.delta_crls })
}

pub(crate) fn procedure(name: &str, replaces_card_id: &str) -> Result<ApplicationProcedure, RegistryError> {
    let procedure = match name {
        "" => Procedure::New,
        other => Procedure::from_name(other).ok_or_else(|| {
            RegistryError::invalid("procedure", format!("{other:?} is not \"new\", \"renewal\" or \"reissue\""))
        })?,
    };
    if procedure == Procedure::New {
        if !replaces_card_id.is_empty() {
            return Err(RegistryError::invalid("replaces_card_id", "must be empty for a new application"));
        }
        return Ok(ApplicationProcedure::New);
    }
    if replaces_card_id.is_empty() {
        return Err(RegistryError::invalid("replaces_card_id", format!("is required for a {procedure}")));
    }
    let replaces_card_id = validate::id("replaces_card_id", replaces_card_id)?;
    Ok(match procedure {
        Procedure::Renewal => ApplicationProcedure::Renewal { replaces_card_id },
        _ => ApplicationProcedure::Reissue { replaces_card_id },
    })
}

/// A serial and the to-be-signed certificate that must carry it: bytes that
/// cannot become this serial's certificate would only fail later, after the
/// HSM has signed them. `fields` names both in the request.
pub(crate) fn tbs_serial_in(fields: [&'static str; 2], serial: &str, tbs_der: &[u8]) -> Result<Serial, RegistryError> {
    let [serial_field, tbs_field] = fields;
    let serial = validate::serial(serial_field, serial)?;
    validate::der(tbs_field, tbs_der)?;
    if x509::tbs_serial(tbs_field, tbs_der)? != serial.as_bytes() {
        return Err(RegistryError::invalid(tbs_field, format!("its serial number is not {serial}")));
    }
    Ok(serial)
}

/// A serial and the signed certificate that must carry it, with the
/// certificate's tbsCertificate (the store compares it with the recorded
/// bytes). `fields` names both in the request.
pub(crate) fn certificate_in(
    fields: [&'static str; 2],
    serial: &str,
    certificate_der: &[u8],
) -> Result<(Serial, Vec<u8>), RegistryError> {
    let [serial_field, der_field] = fields;
    let serial = validate::serial(serial_field, serial)?;
    validate::der(der_field, certificate_der)?;
    let parsed = x509::parse_certificate(der_field, certificate_der)?;
    if parsed.serial != serial.as_bytes() {
        return Err(RegistryError::invalid(der_field, format!("its serial number is not {serial}")));
    }
    Ok((serial, parsed.tbs_der.to_vec()))
}

/// The names of a PIN escrow's key_label, iv and ciphertext: in
/// StorePinEscrow, and in PrepareCard's `pin_escrow`.
const PIN_FIELDS: [&str; 3] = ["key_label", "iv", "ciphertext"];
pub(crate) const PREPARED_PIN_FIELDS: [&str; 3] = ["pin_escrow.key_label", "pin_escrow.iv", "pin_escrow.ciphertext"];

/// A PIN escrow to store for `card_id` (the request's own `card_id` and
/// `actor` are the caller's to check), its fields named by `fields`.
pub(crate) fn pin_escrow_in(
    fields: [&'static str; 3],
    pe: pb::StorePinEscrowRequest,
    card_id: String,
    actor: String,
) -> Result<NewPinEscrow, RegistryError> {
    let [key_label_field, iv_field, ciphertext_field] = fields;
    let key_label = validate::id(key_label_field, &pe.key_label)?;
    validate::bytes_len(iv_field, &pe.iv, PIN_IV_LEN..=PIN_IV_LEN, "the AES-GCM nonce")?;
    validate::bytes_len(ciphertext_field, &pe.ciphertext, PIN_CIPHERTEXT_LEN, "the encrypted PIN and its GCM tag")?;
    Ok(NewPinEscrow { card_id, key_label, iv: pe.iv, ciphertext: pe.ciphertext, actor })
}

/// The AES-GCM nonce of an escrowed PIN.
const PIN_IV_LEN: usize = 12;
/// An escrowed PIN's ciphertext: at least the 16-byte GCM tag.
const PIN_CIPHERTEXT_LEN: std::ops::RangeInclusive<usize> = 16..=1024;

// Keep the DER bound in line with what a gRPC message may carry anyway.
const _: () = assert!(MAX_DER_LEN < 4 * 1024 * 1024);
