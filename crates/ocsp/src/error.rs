//! The crate's error type, and the one place that decides what each error
//! becomes on the wire: an OCSP response status and an HTTP status.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;

use crate::asn1::OCSPResponseStatus;

#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    /// Undecodable, oversized, too many certificates, bad GET encoding.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A CertID naming an issuer we do not answer for.
    #[error("not authoritative: {0}")]
    Unauthorized(String),
    /// Too many signatures in flight: fail fast.
    #[error("busy: {0}")]
    Busy(&'static str),
    /// A fresh signature over the live-signing rate (all clients, or this
    /// client's own): tryLater, while pre-signed answers keep being served.
    #[error("live signing rate exceeded ({})", .0.label())]
    RateLimited(RateLimit),
    /// Still waiting on the registry or the HSM when the request's deadline passed.
    #[error("no answer within the request deadline of {0:?}")]
    DeadlineExceeded(Duration),
    /// The client did not send its request body within the read timeout.
    #[error("request body not received within {0:?}")]
    SlowClient(Duration),
    /// A request path we do not serve.
    #[error("no OCSP endpoint at {0:?}")]
    NotFound(String),
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// The registry could not be asked (down, timeout) or answered oddly.
    #[error("registry: {0}")]
    Registry(String),
    #[error("certificate profile: {0}")]
    Profile(#[from] profile::ProfileError),
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Responder or issuing CA certificates that cannot be used.
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("startup: {0}")]
    Startup(String),
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("internal: {0}")]
    Internal(String),
    /// A blocking task (signing, token access) panicked or was cancelled.
    #[error("internal: {what} task: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    /// A time to encode lies before 1970 (GeneralizedTime from Unix seconds).
    #[error("internal: time {0} before 1970")]
    TimeBefore1970(i64),
    #[error("internal: {0}")]
    Clock(#[source] time::error::ComponentRange),
}

/// Which live-signing bucket was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// `[ocsp] live_signs_per_second` over all clients.
    Global,
    /// `[ocsp] per_client_live_signs_per_second` of one client address.
    Client,
}

impl RateLimit {
    pub fn label(self) -> &'static str {
        match self {
            RateLimit::Global => "live_sign_rate",
            RateLimit::Client => "client_live_sign_rate",
        }
    }
}

impl OcspError {
    /// The OCSP error response to send, or None when the answer is HTTP only.
    pub fn response_status(&self) -> Option<OCSPResponseStatus> {
        Some(match self {
            OcspError::Malformed(_) => OCSPResponseStatus::MalformedRequest,
            OcspError::Unauthorized(_) => OCSPResponseStatus::Unauthorized,
            // Transient: the client may ask again (RFC 6960 §2.3).
            OcspError::Busy(_)
            | OcspError::RateLimited(_)
            | OcspError::DeadlineExceeded(_)
            | OcspError::Hsm(_)
            | OcspError::Registry(_) => OCSPResponseStatus::TryLater,
            // An HTTP matter: the request never arrived whole.
            OcspError::NotFound(_) | OcspError::MethodNotAllowed(_) | OcspError::SlowClient(_) => return None,
            OcspError::Profile(_)
            | OcspError::Der(_)
            | OcspError::Io { .. }
            | OcspError::Certificates(_)
            | OcspError::Startup(_)
            | OcspError::Config(_)
            | OcspError::Internal(_)
            | OcspError::Task { .. }
            | OcspError::TimeBefore1970(_)
            | OcspError::Clock(_) => OCSPResponseStatus::InternalError,
        })
    }

    /// OCSP error responses travel with 200 (RFC 6960 A.1: the status is in the body).
    pub fn http_status(&self) -> StatusCode {
        match self {
            OcspError::NotFound(_) => StatusCode::NOT_FOUND,
            OcspError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            OcspError::SlowClient(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::OK,
        }
    }

    /// For `spawn_blocking(..).await.map_err(OcspError::task("signing"))`.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> OcspError {
        move |source| OcspError::Task { what, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OcspError {
        let path = path.into();
        move |source| OcspError::Io { path, source }
    }
}

impl From<tonic::Status> for OcspError {
    fn from(s: tonic::Status) -> Self {
        OcspError::Registry(format!("{:?}: {}", s.code(), s.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_and_transient_errors_map_to_their_ocsp_status() {
        let m = OcspError::Malformed("x".into());
        assert_eq!(m.response_status(), Some(OCSPResponseStatus::MalformedRequest));
        assert_eq!(m.http_status(), StatusCode::OK);
        assert_eq!(OcspError::Unauthorized("x".into()).response_status(), Some(OCSPResponseStatus::Unauthorized));
        assert_eq!(OcspError::Busy("x").response_status(), Some(OCSPResponseStatus::TryLater));
        let limited = OcspError::RateLimited(RateLimit::Client);
        assert_eq!(
            (limited.response_status(), limited.http_status()),
            (Some(OCSPResponseStatus::TryLater), StatusCode::OK)
        );
        assert_eq!(limited.to_string(), "live signing rate exceeded (client_live_sign_rate)");
        assert_eq!(OcspError::Registry("down".into()).response_status(), Some(OCSPResponseStatus::TryLater));
        assert_eq!(OcspError::Internal("bug".into()).response_status(), Some(OCSPResponseStatus::InternalError));
        assert_eq!(OcspError::NotFound("/x".into()).response_status(), None);
        assert_eq!(OcspError::NotFound("/x".into()).http_status(), StatusCode::NOT_FOUND);
        assert_eq!(OcspError::MethodNotAllowed("PUT".into()).http_status(), StatusCode::METHOD_NOT_ALLOWED);
        let late = OcspError::DeadlineExceeded(std::time::Duration::from_secs(5));
        assert_eq!((late.response_status(), late.http_status()), (Some(OCSPResponseStatus::TryLater), StatusCode::OK));
        let slow = OcspError::SlowClient(std::time::Duration::from_secs(10));
        assert_eq!((slow.response_status(), slow.http_status()), (None, StatusCode::REQUEST_TIMEOUT));
    }
}
