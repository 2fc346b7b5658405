//! The issuance service: registration-authority systems submit new-card
//! applications; we check them (`validate`), build the HPKI certificate
//! profiles (`profile` crate), record the to-be-signed certificates in the
//! registry, sign them with the issuing CA keys in the HSM and store them.

mod card_steps;
pub mod error;
pub mod fee;
mod hsm_watch;
mod lifecycle;
mod pin;
mod query;
mod recovery;
mod responder;
pub mod service;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::issuance::v1::issuance_server::IssuanceServer;
use proto::registry::v1::registry_client::RegistryClient;
use proto::revocation::v1::revocation_client::RevocationClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use error::IssuanceError;
pub use service::IssuanceService;

/// An issuing CA's certificate with the HSM key that matches it.
pub struct IssuingCaKey {
    pub ca: profile::IssuingCa,
    pub key: hsm::HsmKey,
    pub label: String,
}

impl IssuingCaKey {
    /// Loads the CA certificate (PEM) and finds its key in the HSM by label,
    /// refusing a certificate whose public key is not the HSM key's.
    pub fn load(hsm: &hsm::Hsm, cert_path: &std::path::Path, label: &str) -> Result<Self, IssuanceError> {
        let ca = profile::IssuingCa::read_pem_file(cert_path)
            .map_err(|e| e.at_start("issuing CA certificate", IssuanceError::Startup))?;
        let key = hsm.key(label)?;
        if !ca.certifies(&key.subject_public_key_info_der()) {
            return Err(IssuanceError::Startup(format!(
                "{} does not certify the HSM key labelled {label:?}",
                cert_path.display()
            )));
        }
        Ok(IssuingCaKey { ca, key, label: label.to_owned() })
    }
}

/// A lazily connecting client, so issuance can start before the registry.
pub fn registry_client(kit: &tls::GrpcKit, url: &str) -> Result<RegistryClient<Channel>, IssuanceError> {
    let endpoint = kit
        .endpoint_as("issuance", url)
        .map_err(|e| IssuanceError::Startup(format!("issuance.registry_url {url:?}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30));
    Ok(kit.client(RegistryClient::new(endpoint.connect_lazy())))
}

fn lazy_channel(kit: &tls::GrpcKit, field: &str, url: &str) -> Result<Channel, IssuanceError> {
    Ok(kit
        .endpoint_as("issuance", url)
        .map_err(|e| IssuanceError::Startup(format!("{field} {url:?}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(60))
        .connect_lazy())
}

/// Builds the service from config: both issuing CAs (in the `issuing` token), the
/// PIN escrow key (in the `escrow` token) and the clients.
pub fn build_service(
    cfg: &config::Config,
    kit: &tls::GrpcKit,
    hsm: &hsm::Hsm,
    escrow_token: &hsm::Hsm,
) -> Result<IssuanceService, IssuanceError> {
    let dir = cfg.cert_dir();
    let signing = IssuingCaKey::load(hsm, &dir.join(&cfg.ca.signing.file_name), &cfg.ca.signing.key_label)?;
    let authentication =
        IssuingCaKey::load(hsm, &dir.join(&cfg.ca.authentication.file_name), &cfg.ca.authentication.key_label)?;
    let escrow = escrow_token.find_aes_key(&cfg.issuance.pin_escrow_key_label)?.ok_or_else(|| {
        IssuanceError::Startup(format!(
            "no PIN escrow key {:?} in the HSM (run the key ceremony first: hpki-ca ceremony)",
            cfg.issuance.pin_escrow_key_label
        ))
    })?;
    // Parsed once here: a bad OID or URL stops the start, naming its key.
    let policy = cfg.profile.policy().map_err(|e| IssuanceError::Startup(e.to_string()))?;
    let mut service = IssuanceService::new(
        registry_client(kit, &cfg.issuance.registry_url)?,
        kit.client(RevocationClient::new(lazy_channel(kit, "issuance.revocation_url", &cfg.issuance.revocation_url)?)),
        kit.client(CrlPublisherClient::new(lazy_channel(kit, "issuance.crl_url", &cfg.issuance.crl_url)?)),
        policy,
        cfg.profile.document_max_age_months,
        cfg.issuance.clone(),
        Arc::new(signing),
        Arc::new(authentication),
        escrow,
        hsm.clone(),
    );
    service.responder_validity_days = cfg.ocsp.responder_validity_days;
    let service = service.with_message_limit(kit.limits().max_message_bytes);
    Ok(service)
}

/// Serves Issuance, gRPC health and reflection on `listener` until `shutdown`.
pub async fn serve(
    service: IssuanceService,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IssuanceError> {
    let recovery = recovery::Recovery::new(&service);
    recovery.spawn();
    let (hsm, hsm_status) = (service.hsm.clone(), service.hsm_status.clone());
    let server = kit.server(IssuanceServer::new(service)).await.map_err(|e| match e {
        tls::ServerError::Tls(e) => IssuanceError::Startup(format!("issuance server TLS: {e}")),
        other => IssuanceError::Startup(other.to_string()),
    })?;
    hsm_watch::spawn(hsm, hsm_status, server.health().clone(), recovery);
    server.serve(listener, shutdown).await.map_err(|e| IssuanceError::Startup(format!("issuance server: {e}")))
}
