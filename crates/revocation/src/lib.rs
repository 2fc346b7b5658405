//! The revocation service, for operators: revoke one certificate or a whole
//! card with an RFC 5280 reason, and the emergency revocation of a lost card
//! (紛失届 → 緊急失効): identity confirmation, optional approval by a second
//! operator, every certificate revoked for keyCompromise and a CRL published
//! at once. It talks to the registry and the CRL publisher over gRPC only.

pub mod convert;
mod error;
mod service;
pub mod validate;

use std::future::Future;
use std::time::Duration;

use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::registry::v1::registry_client::RegistryClient;
use proto::revocation::v1::revocation_server::RevocationServer;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::ServingStatus;

pub use error::RevocationError;
pub use service::{
    RevocationService, Settings, AUDIT_EMERGENCY_APPROVED, AUDIT_EMERGENCY_REQUESTED, EMERGENCY_APPROVAL_KIND,
};

/// How long a CRL publication may take (a full CRL of a large CA is signed in the HSM).
const CRL_PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);

fn endpoint(kit: &tls::GrpcKit, field: &str, url: &str, timeout: Duration) -> Result<Channel, RevocationError> {
    let endpoint = kit
        .endpoint_as("revocation", url)
        .map_err(|e| RevocationError::Startup(format!("{field} {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    Ok(endpoint.connect_lazy())
}

/// A lazily connecting registry client, so the service can start before the registry.
pub fn registry_client(kit: &tls::GrpcKit, url: &str) -> Result<RegistryClient<Channel>, RevocationError> {
    let channel = endpoint(kit, "revocation.registry_url", url, Duration::from_secs(30))?;
    Ok(kit.client(RegistryClient::new(channel)))
}

/// A lazily connecting CRL publisher client.
pub fn crl_client(kit: &tls::GrpcKit, url: &str) -> Result<CrlPublisherClient<Channel>, RevocationError> {
    Ok(kit.client(CrlPublisherClient::new(endpoint(kit, "revocation.crl_url", url, CRL_PUBLISH_TIMEOUT)?)))
}

impl RevocationService {
    /// The service as configured in `[revocation]` (and the CA key labels of `[ca]`).
    pub fn from_config(cfg: &config::Config, kit: &tls::GrpcKit) -> Result<RevocationService, RevocationError> {
        Ok(RevocationService::new(
            registry_client(kit, &cfg.revocation.registry_url)?,
            crl_client(kit, &cfg.revocation.crl_url)?,
            Settings::from_config(cfg),
        ))
    }
}

/// Serves Revocation, gRPC health and reflection on `listener` until `shutdown`.
pub async fn serve(
    cfg: &config::Config,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RevocationError> {
    serve_service(RevocationService::from_config(cfg, &kit)?, kit, listener, shutdown).await
}

/// As `serve`, with a service built by the caller.
pub async fn serve_service(
    service: RevocationService,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RevocationError> {
    let addr = listener.local_addr().map_err(|e| RevocationError::Startup(format!("listener: {e}")))?;
    let server = kit.server(RevocationServer::new(service)).await.map_err(|e| match e {
        tls::ServerError::Tls(e) => RevocationError::Startup(format!("revocation server TLS: {e}")),
        other => RevocationError::Startup(other.to_string()),
    })?;
    server.health().set_service_status("", ServingStatus::Serving).await;
    tracing::info!(%addr, "revocation service listening");
    server.serve(listener, shutdown).await.map_err(|e| RevocationError::Startup(format!("revocation server: {e}")))?;
    tracing::info!(%addr, "revocation service stopped");
    Ok(())
}
