//! Issuance errors and their one mapping to gRPC status.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    /// The request is wrong; `field` is its proto path, e.g. `documents.photo_taken_on`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    /// The registry answered with an error.
    #[error("{}", .0.message())]
    Registry(Status),
    /// A CSR's public key is already certified on a card; the registry's
    /// message names the CSR field.
    #[error("{0}")]
    KeyInUse(String),
    /// Another of our services answered with an error.
    #[error("{service}: {}", status.message())]
    Upstream { service: &'static str, status: Status },
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    #[error("certificate profile: {0}")]
    Profile(#[from] profile::ProfileError),
    /// Configuration or CA material unusable at start.
    #[error("{0}")]
    Startup(String),
    /// A blocking task (HSM signing, PIN escrow) panicked or was cancelled.
    #[error("internal error: {what} task failed: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    #[error("internal error: clock: {0}")]
    Clock(#[source] time::error::ComponentRange),
    /// The registry reserved a serial that is not hex.
    #[error("internal error: registry returned a bad serial {0:?}")]
    BadSerial(String),
    /// The registry returned a Unix time out of range.
    #[error("internal error: registry returned a bad time {value}: {source}")]
    BadTime { value: i64, source: time::error::ComponentRange },
    /// The escrow record names another key than the configured escrow key.
    #[error(
        "internal error: the PIN of card {card_id} is escrowed under key {stored:?}, not the configured {configured:?}"
    )]
    EscrowKey { card_id: String, stored: String, configured: String },
    /// A certificate to finish signing names an issuing CA key we do not hold.
    #[error("internal error: no issuing CA key labelled {label:?} to sign {serial}")]
    NoIssuerKey { label: String, serial: String },
    /// A record we write could not be encoded as JSON.
    #[error("internal error: encoding a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IssuanceError {
    /// For `spawn_blocking(..).await.map_err(IssuanceError::task("signing"))`.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> IssuanceError {
        move |source| IssuanceError::Task { what, source }
    }
}

impl From<Status> for IssuanceError {
    fn from(s: Status) -> Self {
        IssuanceError::Registry(s)
    }
}

impl From<IssuanceError> for Status {
    fn from(e: IssuanceError) -> Status {
        let msg = e.to_string();
        match e {
            IssuanceError::InvalidArgument { .. } | IssuanceError::KeyInUse(_) => Status::invalid_argument(msg),
            IssuanceError::FailedPrecondition(_) => Status::failed_precondition(msg),
            IssuanceError::Registry(s) => match s.code() {
                // The registry's own verdicts about the application pass through.
                Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists | Code::ResourceExhausted => {
                    Status::new(s.code(), msg)
                }
                Code::Unavailable | Code::DeadlineExceeded => Status::unavailable(msg),
                _ => Status::internal(msg),
            },
            IssuanceError::Upstream { status, .. } => match status.code() {
                Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument | Code::AlreadyExists => {
                    Status::new(status.code(), msg)
                }
                Code::Unavailable | Code::DeadlineExceeded => Status::unavailable(msg),
                _ => Status::internal(msg),
            },
            IssuanceError::Hsm(hsm::HsmError::Unavailable(_)) => Status::unavailable(msg),
            _ => Status::internal(msg),
        }
    }
}
