//! The card path's three steps (`BeginApplication`, `PrepareCard`,
//! `FinishCard`): from a request to a store step, and from the store's answer
//! to the reply. The single calls and `CardSteps` (several steps in one call)
//! share them, so a step is checked and answered the same either way.

use proto::registry::v1 as pb;
use proto::registry::v1::card_step::Step;
use proto::registry::v1::card_step_answer::Answer;
use store::{CardStep, CardStepDone, NewApplication};
use tonic::{Request, Status};

use crate::convert;
use crate::error::RegistryError;
use crate::service::{
    certificate_in, crl_scope_in, peer, pin_escrow_in, procedure, tbs_serial_in, RegistryService, PREPARED_PIN_FIELDS,
};
use crate::validate;

/// The most steps one `CardSteps` call may carry.
pub(crate) const MAX_CARD_STEPS: usize = 64;

/// Who made a call, read from its request once: the steps of a `CardSteps`
/// call share it.
pub(crate) struct Caller {
    peer: String,
    tls: Option<tls::Caller>,
}

impl Caller {
    pub(crate) fn of<T>(request: &Request<T>) -> Caller {
        Caller { peer: peer(request), tls: tls::caller(request).cloned() }
    }

    /// The identity of the caller's client certificate (see `service::peer`).
    pub(crate) fn peer(&self) -> String {
        self.peer.clone()
    }

    /// The request's actor if given, else the caller's identity. Only our
    /// services relay an actor (the person or RA system they act for, named by
    /// that caller's certificate); anyone else may only name themselves.
    pub(crate) fn actor(&self, given: &str) -> Result<String, RegistryError> {
        if given.is_empty() {
            return Ok(self.peer.clone());
        }
        let given = validate::id("actor", given)?;
        match &self.tls {
            Some(caller) if !caller.is_service() && caller.identity != given => Err(RegistryError::invalid(
                "actor",
                format!("{given:?} is not the caller's identity {:?}", caller.identity),
            )),
            _ => Ok(given),
        }
    }
}

impl RegistryService {
    pub(crate) fn begin_in(&self, who: &Caller, req: pb::BeginApplicationRequest) -> Result<CardStep, RegistryError> {
        let actor = who.actor(&req.actor)?;
        let procedure = procedure(&req.procedure, &req.replaces_card_id)?;
        let (holder_id, holder) = convert::holder_in(req.holder)?;
        let app = NewApplication {
            application_id: validate::id("application_id", &req.application_id)?,
            holder_id,
            holder,
            application_json: validate::json("application_json", &req.application_json)?,
            actor,
            keys: convert::card_keys_in(&req.keys)?,
        };
        let holder_id_prefix = self.holder_id_prefix().to_owned();
        Ok(CardStep::Begin(Box::new(store::CardApplication { app, procedure, holder_id_prefix })))
    }

    pub(crate) fn prepare_in(&self, who: &Caller, req: pb::PrepareCardRequest) -> Result<CardStep, RegistryError> {
        let actor = who.peer();
        let pin_actor = match &req.pin_escrow {
            Some(pe) => who.actor(&pe.actor)?,
            None => String::new(),
        };
        let card_id = validate::id("card_id", &req.card_id)?;
        if req.certificates.is_empty() || req.certificates.len() > 2 {
            return Err(RegistryError::invalid("certificates", "one or two certificates of the card"));
        }
        let pin =
            req.pin_escrow.map(|pe| pin_escrow_in(PREPARED_PIN_FIELDS, pe, card_id.clone(), pin_actor)).transpose()?;
        let mut certs = Vec::with_capacity(req.certificates.len());
        for c in req.certificates {
            let kind = validate::kind("certificates.kind", c.kind)?;
            if !kind.of_card() {
                return Err(RegistryError::invalid("certificates.kind", "must be SIGNING or AUTHENTICATION"));
            }
            if certs.iter().any(|p: &store::PreparedCertificate| p.kind == kind) {
                return Err(RegistryError::invalid("certificates.kind", "each kind at most once"));
            }
            validate::validity("certificates.not_after_unix", c.not_before_unix, c.not_after_unix)?;
            let serial = tbs_serial_in(["certificates.serial", "certificates.tbs_der"], &c.serial, &c.tbs_der)?;
            let scope = c.crl_scope.map(|s| crl_scope_in(s, &c.tbs_der)).transpose()?;
            certs.push(store::PreparedCertificate {
                kind,
                serial,
                issuer_label: validate::id("certificates.issuer_label", &c.issuer_label)?,
                not_before_unix: c.not_before_unix,
                not_after_unix: c.not_after_unix,
                tbs_der: c.tbs_der,
                scope,
            });
        }
        Ok(CardStep::Prepare(store::CardPreparation { card_id, certs, pin, actor }))
    }

    pub(crate) fn finish_in(&self, who: &Caller, req: pb::FinishCardRequest) -> Result<CardStep, RegistryError> {
        let cert_actor = who.peer();
        let actor = who.actor(&req.actor)?;
        let card_id = validate::id("card_id", &req.card_id)?;
        if req.certificates.len() > 2 {
            return Err(RegistryError::invalid("certificates", "at most the card's two certificates"));
        }
        let mut certs = Vec::with_capacity(req.certificates.len());
        for c in req.certificates {
            let fields = ["certificates.serial", "certificates.certificate_der"];
            let (serial, tbs_of_cert) = certificate_in(fields, &c.serial, &c.certificate_der)?;
            certs.push(store::SignedCertificate { serial, certificate_der: c.certificate_der, tbs_of_cert });
        }
        Ok(CardStep::Finish(store::CardCompletion { card_id, certs, cert_actor, actor }))
    }

    /// The steps of one `CardSteps` call, queued together (so they share store
    /// transactions), each answered in its place.
    pub(crate) async fn steps(&self, who: &Caller, steps: Vec<pb::CardStep>) -> Vec<pb::CardStepAnswer> {
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(steps.len());
        let (mut jobs, mut places) = (Vec::new(), Vec::new());
        for step in steps {
            let job = match step.step {
                Some(Step::Begin(r)) => self.begin_in(who, *r),
                Some(Step::Prepare(r)) => self.prepare_in(who, r),
                Some(Step::Finish(r)) => self.finish_in(who, r),
                None => Err(RegistryError::invalid("steps.step", "one of begin, prepare or finish is required")),
            };
            match job {
                Ok(job) => {
                    places.push(answers.len());
                    jobs.push(job);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(error_answer(e))),
            }
        }
        for (place, done) in places.into_iter().zip(self.card_steps_many(jobs).await) {
            let answer = done.map(answer_of).unwrap_or_else(error_answer);
            answers[place] = Some(answer);
        }
        answers.into_iter().map(|answer| pb::CardStepAnswer { answer }).collect()
    }
}

/// A step's reply, whichever step it was.
fn answer_of(done: CardStepDone) -> Answer {
    match done {
        CardStepDone::Begun(outcome) => Answer::Begun(Box::new(begun_out(*outcome))),
        CardStepDone::Prepared(_, pin_escrow_stored) => Answer::Prepared(pb::PrepareCardResponse { pin_escrow_stored }),
        CardStepDone::Finished(card) => Answer::Finished(convert::card_out(card)),
    }
}

pub(crate) fn begun_out(outcome: store::BeginOutcome) -> pb::BeginApplicationResponse {
    let view = convert::card_view_out(outcome.view);
    pb::BeginApplicationResponse {
        card: view.card,
        holder: view.holder,
        existing: outcome.existing,
        certificates: view.certificates,
    }
}

/// The status the step's own call would have ended with.
fn error_answer(err: RegistryError) -> Answer {
    let status = Status::from(err);
    Answer::Error(pb::StepError { code: status.code() as i32, message: status.message().to_owned() })
}
