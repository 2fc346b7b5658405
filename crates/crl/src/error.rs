//! The crate's error type, and its mapping to gRPC and HTTP status codes
//! (the only place either mapping is made).

use std::path::PathBuf;

/// Everything that can go wrong building, signing, publishing or serving a CRL.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The caller asked for something malformed (unknown issuer, bad serial).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request is well formed but cannot be done in this state or config
    /// (a delta CRL when deltas are off, a CA certificate that is missing).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A config value is unusable; the message names the field.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The registry refused or could not be reached.
    #[error("registry: {0}")]
    Registry(#[from] tonic::Status),
    /// The registry sent data that cannot go in a CRL.
    #[error("bad revocation entry from the registry: {0}")]
    BadEntry(String),
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    #[error("CA certificate: {0}")]
    Profile(#[from] profile::ProfileError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// DER encoding or decoding failed.
    #[error("encoding: {0}")]
    Encoding(String),
    /// A server or background task failed.
    #[error("internal: {0}")]
    Internal(String),
    /// The kit's server certificate or CA made no TLS configuration.
    #[error("internal: gRPC server TLS: {0}")]
    GrpcTls(#[source] tonic::transport::Error),
    /// The gRPC server could not be built otherwise (reflection, a client-only kit).
    #[error("internal: {0}")]
    GrpcSetup(#[source] tls::ServerError),
    /// The gRPC server stopped with an error.
    #[error("internal: gRPC server: {0}")]
    GrpcServe(#[source] tonic::transport::Error),
    /// A blocking task (CRL signing) panicked or was cancelled.
    #[error("internal: {what} task failed: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    /// A state file or sidecar we write could not be encoded.
    #[error("internal: {what}: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    /// A CRL was published for a URL no route serves.
    #[error("internal: {0} is not a served CRL URL")]
    UnservedUrl(String),
    /// Asked for an issuing CA the publisher was not started with.
    #[error("internal: no {0} CA")]
    NoCa(&'static str),
}

impl CrlError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CrlError {
        let path = path.into();
        move |source| CrlError::Io { path, source }
    }

    /// For `serde_json::to_vec(..).map_err(CrlError::json("ARL state"))`.
    pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> CrlError {
        move |source| CrlError::Json { what, source }
    }
}

impl From<tls::ServerError> for CrlError {
    fn from(e: tls::ServerError) -> Self {
        match e {
            tls::ServerError::Tls(e) => CrlError::GrpcTls(e),
            other => CrlError::GrpcSetup(other),
        }
    }
}

impl From<der::Error> for CrlError {
    fn from(e: der::Error) -> Self {
        CrlError::Encoding(e.to_string())
    }
}

impl From<CrlError> for tonic::Status {
    fn from(e: CrlError) -> Self {
        use tonic::Code;
        let code = match &e {
            CrlError::InvalidArgument(_) => Code::InvalidArgument,
            CrlError::FailedPrecondition(_) | CrlError::Config(_) => Code::FailedPrecondition,
            CrlError::Registry(s) => match s.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Code::Unavailable,
                _ => Code::Internal,
            },
            CrlError::Hsm(hsm::HsmError::Unavailable(_)) => Code::Unavailable,
            CrlError::BadEntry(_)
            | CrlError::Hsm(_)
            | CrlError::Profile(_)
            | CrlError::Io { .. }
            | CrlError::Encoding(_)
            | CrlError::Internal(_)
            | CrlError::GrpcTls(_)
            | CrlError::GrpcSetup(_)
            | CrlError::GrpcServe(_)
            | CrlError::Task { .. }
            | CrlError::Json { .. }
            | CrlError::UnservedUrl(_)
            | CrlError::NoCa(_) => Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}

/// The HTTP status for an error met while serving a CRL.
pub(crate) fn http_status(e: &CrlError) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match e {
        CrlError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        CrlError::Registry(_) | CrlError::Hsm(hsm::HsmError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes() {
        let code = |e: CrlError| tonic::Status::from(e).code();
        assert_eq!(code(CrlError::InvalidArgument("x".into())), tonic::Code::InvalidArgument);
        assert_eq!(code(CrlError::FailedPrecondition("x".into())), tonic::Code::FailedPrecondition);
        assert_eq!(code(CrlError::Registry(tonic::Status::unavailable("down"))), tonic::Code::Unavailable);
        assert_eq!(code(CrlError::Hsm(hsm::HsmError::Unavailable("gone".into()))), tonic::Code::Unavailable);
        assert_eq!(code(CrlError::BadEntry("x".into())), tonic::Code::Internal);
        assert_eq!(code(tls::ServerError::NoServerCertificate.into()), tonic::Code::Internal);
        let msg = tonic::Status::from(CrlError::Registry(tonic::Status::not_found("no such"))).message().to_owned();
        assert!(msg.contains("no such"), "{msg}");
    }

    #[test]
    fn http_codes() {
        use axum::http::StatusCode;
        assert_eq!(http_status(&CrlError::InvalidArgument("x".into())), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status(&CrlError::Io { path: "f".into(), source: std::io::Error::other("x") }),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let setup = CrlError::from(tls::ServerError::NoServerCertificate);
        assert_eq!(http_status(&setup), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            setup.to_string(),
            "internal: no server certificate in this process's gRPC kit (made for clients only)"
        );
    }
}
