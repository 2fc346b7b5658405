//! Restart recovery: when the issuance service starts, every certificate a
//! crash left half-done in the registry is resolved.
//!
//! - PRECERT (to-be-signed bytes recorded; the CA may or may not have signed
//!   them): sign the recorded bytes with the issuing CA key the record names
//!   and store the certificate, so nothing signed stays unrecorded and nothing
//!   recorded stays half-done.
//! - RESERVED (nothing recorded, so never signed): abandon the serial; the
//!   card's slot is freed and a retry of the application reserves a new one.
//!
//! Then every PENDING card touched whose two certificates are ISSUED is
//! completed. Every step is idempotent in the registry, so a second issuance
//! process recovering at the same time, or a request of a live one racing with
//! recovery, does no harm: the loser of a race sees FAILED_PRECONDITION, the
//! record is read again, and a pass that left anything unresolved is retried.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::error::IssuanceError;
use crate::{IssuanceService, IssuingCaKey};

/// Who recovery writes as, in the audit log.
const ACTOR: &str = "issuance-recovery";
/// Passes before giving up (the registry may start after us); about two minutes.
const MAX_PASSES: u32 = 120;
const PASS_DELAY: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub signed: u32,
    pub abandoned: u32,
    /// Resolved by someone else meanwhile (another process or a retried request).
    pub raced: u32,
    pub completed: u32,
    /// Left unresolved by this pass (e.g. an unknown issuer label).
    pub failed: u32,
}

/// What recovery needs of the service; cheap to clone.
#[derive(Clone)]
pub(crate) struct Recovery {
    registry: RegistryClient<Channel>,
    keys: Vec<Arc<IssuingCaKey>>,
}

impl Recovery {
    pub(crate) fn new(service: &IssuanceService) -> Recovery {
        Recovery {
            registry: service.registry.clone(),
            keys: vec![service.signing.clone(), service.authentication.clone()],
        }
    }

    /// Starts recovery in the background (the registry may not be up yet): passes
    /// are repeated, a second apart, until one leaves nothing unresolved. Run at
    /// start and whenever the HSM comes back.
    pub(crate) fn spawn(&self) {
        let recovery = self.clone();
        tokio::spawn(async move { recovery.run().await });
    }

    async fn run(self) {
        for pass in 1..=MAX_PASSES {
            match self.pass().await {
                Ok(s) if s.failed == 0 => {
                    tracing::info!(
                        signed = s.signed,
                        abandoned = s.abandoned,
                        raced = s.raced,
                        completed = s.completed,
                        pass,
                        "recovery done: {} PRECERT signed and stored, {} RESERVED abandoned, {} cards completed",
                        s.signed,
                        s.abandoned,
                        s.completed
                    );
                    return;
                }
                Ok(s) => tracing::warn!(pass, failed = s.failed, "restart recovery left records unresolved; retrying"),
                Err(e) => tracing::warn!(pass, error = %e, "restart recovery could not run; retrying"),
            }
            tokio::time::sleep(PASS_DELAY).await;
        }
        tracing::error!("restart recovery gave up after {MAX_PASSES} passes; unresolved records remain");
    }

    async fn pass(&self) -> Result<Summary, IssuanceError> {
        let mut registry = self.registry.clone();
        let entries = registry.list_unresolved(reg::ListUnresolvedRequest {}).await?.into_inner().entries;
        let mut summary = Summary::default();
        let mut cards = BTreeSet::new();
        for entry in entries {
            let Some(cert) = entry.certificate else { continue };
            if let Some(card) = &entry.card {
                cards.insert(card.card_id.clone());
            }
            match self.resolve(&cert).await {
                Ok(Outcome::Signed) => summary.signed += 1,
                Ok(Outcome::Abandoned) => summary.abandoned += 1,
                Ok(Outcome::Raced) => summary.raced += 1,
                Err(e) => {
                    summary.failed += 1;
                    tracing::warn!(serial = %cert.serial, error = %e, "could not resolve a certificate");
                }
            }
        }
        for card_id in cards {
            match self.complete_if_issued(&card_id).await {
                Ok(true) => summary.completed += 1,
                Ok(false) => {}
                Err(e) => {
                    summary.failed += 1;
                    tracing::warn!(%card_id, error = %e, "could not complete a recovered card");
                }
            }
        }
        Ok(summary)
    }

    async fn resolve(&self, cert: &reg::CertificateRecord) -> Result<Outcome, IssuanceError> {
        let mut registry = self.registry.clone();
        let result = if cert.state == reg::CertificateState::Precert as i32 {
            self.sign_and_store(cert).await.map(|()| Outcome::Signed)
        } else if cert.state == reg::CertificateState::Reserved as i32 {
            let req = reg::AbandonReservationRequest { serial: cert.serial.clone(), actor: ACTOR.into() };
            registry.abandon_reservation(req).await.map(|_| Outcome::Abandoned).map_err(IssuanceError::from)
        } else {
            return Ok(Outcome::Raced);
        };
        match result {
            // Someone moved the record on meanwhile: read it again.
            Err(IssuanceError::Registry(s)) if s.code() == Code::FailedPrecondition => {
                let now = registry
                    .get_certificate(reg::GetCertificateRequest { serial: cert.serial.clone() })
                    .await?
                    .into_inner();
                let reserved = reg::CertificateState::Reserved as i32;
                let precert = reg::CertificateState::Precert as i32;
                if now.state == reserved || now.state == precert {
                    // Still unresolved (e.g. RESERVED -> PRECERT by a live request): the next pass.
                    Err(IssuanceError::Registry(s))
                } else {
                    Ok(Outcome::Raced)
                }
            }
            other => other,
        }
    }

    async fn sign_and_store(&self, cert: &reg::CertificateRecord) -> Result<(), IssuanceError> {
        let ca = self.keys.iter().find(|k| k.label == cert.issuer_label).ok_or_else(|| IssuanceError::NoIssuerKey {
            label: cert.issuer_label.clone(),
            serial: cert.serial.clone(),
        })?;
        let key = ca.key.clone();
        let tbs = cert.tbs_der.clone();
        let signature =
            tokio::task::spawn_blocking(move || key.sign(&tbs)).await.map_err(IssuanceError::task("signing"))??;
        let der = profile::assemble_certificate(&cert.tbs_der, &signature)?;
        self.registry
            .clone()
            .store_certificate(reg::StoreCertificateRequest { serial: cert.serial.clone(), certificate_der: der })
            .await?;
        Ok(())
    }

    /// Completes a PENDING card whose two certificates are ISSUED; true if it did.
    async fn complete_if_issued(&self, card_id: &str) -> Result<bool, IssuanceError> {
        let mut registry = self.registry.clone();
        let req = reg::GetCardRequest { key: Some(reg::get_card_request::Key::CardId(card_id.to_owned())) };
        let view = registry.get_card(req).await?.into_inner();
        let pending = view.card.as_ref().is_some_and(|c| c.state == reg::CardState::Pending as i32);
        let issued = |kind: reg::CertificateKind| {
            view.certificates.iter().any(|c| c.kind == kind as i32 && c.state == reg::CertificateState::Issued as i32)
        };
        if !pending || !issued(reg::CertificateKind::Signing) || !issued(reg::CertificateKind::Authentication) {
            return Ok(false);
        }
        let req = reg::CompleteApplicationRequest { card_id: card_id.to_owned(), actor: ACTOR.into() };
        registry.complete_application(req).await?;
        Ok(true)
    }
}

enum Outcome {
    Signed,
    Abandoned,
    Raced,
}
