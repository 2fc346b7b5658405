//! Asking the registry about one serial on a cache miss, and appending the
//! responder's own audit entries to its log.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::error::OcspError;
use crate::status::CertState;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where certificate statuses come from on a miss.
pub trait CertificateSource: Send + Sync + 'static {
    /// The issuer label and status of `serial_hex`, or None when the registry has never heard of it.
    fn certificate(&self, serial_hex: String) -> BoxFuture<'_, Result<Option<(String, CertState)>, OcspError>>;
}

/// An entry for the registry's audit log (AppendAudit; the registry adds
/// sequence, time and hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail_json: String,
}

/// Why an audit entry is not in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Not taken now (registry away, timed out): offer it again later.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// Refused for what it is (invalid, or our role may not append): the same
    /// entry cannot succeed later.
    #[error("registry refused the entry: {0}")]
    Refused(String),
}

/// Where the responder's own audit entries go.
pub trait AuditSink: Send + Sync + 'static {
    /// Appends `event`; Ok(sequence) once the registry has it.
    fn append_audit(&self, event: AuditEvent) -> BoxFuture<'_, Result<u64, AuditError>>;
}

/// A lazily connecting registry client (the responder may start before the registry).
pub fn registry_client(kit: &tls::GrpcKit, url: &str) -> Result<RegistryClient<Channel>, OcspError> {
    let endpoint = kit
        .endpoint_as("ocsp", url)
        .map_err(|e| OcspError::Startup(format!("ocsp.registry_url {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    Ok(kit.client(RegistryClient::new(endpoint.connect_lazy())))
}

/// GetCertificate, bounded in time: a miss must not hang a client.
pub struct RegistrySource {
    client: RegistryClient<Channel>,
    timeout: Duration,
}

impl RegistrySource {
    pub fn new(client: RegistryClient<Channel>) -> RegistrySource {
        RegistrySource { client, timeout: Duration::from_secs(5) }
    }
}

impl CertificateSource for RegistrySource {
    fn certificate(&self, serial_hex: String) -> BoxFuture<'_, Result<Option<(String, CertState)>, OcspError>> {
        let mut client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let call = client.get_certificate(reg::GetCertificateRequest { serial: serial_hex });
            match tokio::time::timeout(timeout, call).await {
                Err(_) => Err(OcspError::Registry("GetCertificate timed out".into())),
                Ok(Ok(resp)) => {
                    let rec = resp.into_inner();
                    let state = CertState::from_record(&rec);
                    Ok(Some((rec.issuer_label, state)))
                }
                // The registry also says NOT_FOUND / INVALID_ARGUMENT for serials it cannot even parse.
                Ok(Err(s)) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => Ok(None),
                Ok(Err(s)) => Err(s.into()),
            }
        })
    }
}

impl AuditSink for RegistrySource {
    fn append_audit(&self, event: AuditEvent) -> BoxFuture<'_, Result<u64, AuditError>> {
        let mut client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let call = client.append_audit(reg::AppendAuditRequest {
                actor: event.actor,
                action: event.action,
                subject: event.subject,
                detail_json: event.detail_json,
            });
            match tokio::time::timeout(timeout, call).await {
                Err(_) => Err(AuditError::Unavailable("AppendAudit timed out".into())),
                Ok(Ok(resp)) => Ok(resp.into_inner().sequence),
                Ok(Err(s)) => {
                    let why = format!("{:?}: {}", s.code(), s.message());
                    match s.code() {
                        Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated => {
                            Err(AuditError::Refused(why))
                        }
                        _ => Err(AuditError::Unavailable(why)),
                    }
                }
            }
        })
    }
}
