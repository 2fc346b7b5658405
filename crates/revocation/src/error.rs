//! Revocation errors and their one mapping to gRPC status.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The request is wrong; `field` is its proto path, e.g. `confirmation.method`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The request is well formed but the state does not allow it; the
    /// message starts with the field it is about.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The registry answered with an error.
    #[error("{}", registry_message(.0))]
    Registry(Status),
    /// The emergency revocation is recorded in the registry, but the CRL
    /// publisher could not publish the new CRL.
    #[error(
        "card {card_id}: the revocation is recorded ({newly_revoked} certificate(s) newly revoked), \
         but the CRL could not be published yet ({detail}); retry this call to publish it (a CRL \
         publisher that received the request retries by itself, otherwise the next scheduled CRL \
         includes it)"
    )]
    CrlNotPublished { card_id: String, newly_revoked: u32, detail: String },
    /// Configuration unusable at start, or the server failed.
    #[error("{0}")]
    Startup(String),
    /// The registry answered an RPC without a field it always sets.
    #[error("internal error: registry {rpc} answered without {field}")]
    MissingField { rpc: &'static str, field: &'static str },
    /// The registry returned a card whose state this build does not know.
    #[error("internal error: registry returned card {card_id} in an unknown state {state}")]
    UnknownCardState { card_id: String, state: i32 },
    /// An approval whose state this build does not know.
    #[error("internal error: approval {approval_id} is in an unknown state {state}")]
    UnknownApprovalState { approval_id: String, state: i32 },
    #[error("internal error: encoding the approval payload: {0}")]
    EncodePayload(#[source] serde_json::Error),
    /// The payload of an approval is not the emergency request we store.
    #[error("internal error: approval {approval_id} does not hold an emergency request: {source}")]
    BadPayload { approval_id: String, source: serde_json::Error },
    /// A time we stored in an approval payload does not parse.
    #[error("internal error: approval payload compromised_at {stored:?}: {source}")]
    BadStoredTime { stored: String, source: time::error::Parse },
}

impl RevocationError {
    pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> RevocationError {
        RevocationError::InvalidArgument { field: field.to_owned(), reason: reason.to_string() }
    }
}

impl From<Status> for RevocationError {
    fn from(s: Status) -> Self {
        RevocationError::Registry(s)
    }
}

/// The registry's verdicts already start with the field they are about
/// (`serial: no such certificate ...`); transport failures are labelled.
fn registry_message(s: &Status) -> String {
    if passes_through(s.code()) {
        s.message().to_owned()
    } else {
        format!("registry: {:?}: {}", s.code(), s.message())
    }
}

/// Registry codes that are verdicts on the request, returned to the caller as they are.
fn passes_through(code: Code) -> bool {
    matches!(code, Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument | Code::AlreadyExists)
}

impl From<RevocationError> for Status {
    fn from(e: RevocationError) -> Status {
        let msg = e.to_string();
        match e {
            RevocationError::InvalidArgument { .. } => Status::invalid_argument(msg),
            RevocationError::FailedPrecondition(_) => Status::failed_precondition(msg),
            RevocationError::Registry(s) => match s.code() {
                c if passes_through(c) => Status::new(c, msg),
                Code::Unavailable | Code::DeadlineExceeded => Status::unavailable(msg),
                _ => Status::internal(msg),
            },
            RevocationError::CrlNotPublished { .. } => Status::unavailable(msg),
            RevocationError::Startup(_)
            | RevocationError::MissingField { .. }
            | RevocationError::UnknownCardState { .. }
            | RevocationError::UnknownApprovalState { .. }
            | RevocationError::EncodePayload(_)
            | RevocationError::BadPayload { .. }
            | RevocationError::BadStoredTime { .. } => {
                tracing::error!(error = %msg, "revocation internal error");
                Status::internal(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_verdicts_pass_through_with_their_field() {
        let s = Status::from(RevocationError::from(Status::not_found("serial: no such certificate 0a")));
        assert_eq!((s.code(), s.message()), (Code::NotFound, "serial: no such certificate 0a"));
        let s = Status::from(RevocationError::from(Status::failed_precondition("approver: same")));
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "approver: same"));
    }

    #[test]
    fn registry_outages_are_unavailable_and_other_failures_internal() {
        let s = Status::from(RevocationError::from(Status::unavailable("connection refused")));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().starts_with("registry: Unavailable: "), "{}", s.message());
        let s = Status::from(RevocationError::from(Status::data_loss("chain broken")));
        assert_eq!(s.code(), Code::Internal);
    }

    #[test]
    fn an_unpublished_crl_is_unavailable_and_says_the_revocation_stands() {
        let e = RevocationError::CrlNotPublished {
            card_id: "C1".into(),
            newly_revoked: 2,
            detail: "connection refused".into(),
        };
        let s = Status::from(e);
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("revocation is recorded"), "{}", s.message());
        assert!(s.message().contains("CRL could not be published"), "{}", s.message());
    }

    #[test]
    fn internal_errors_keep_their_messages() {
        let s = Status::from(RevocationError::MissingField { rpc: "GetCard", field: "card" });
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error: registry GetCard answered without card"));
        let s = Status::from(RevocationError::UnknownCardState { card_id: "C1".into(), state: 9 });
        assert_eq!(s.message(), "internal error: registry returned card C1 in an unknown state 9");
    }

    #[test]
    fn invalid_arguments_name_the_field() {
        let s = Status::from(RevocationError::invalid("confirmation.method", "is required"));
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "confirmation.method: is required"));
    }
}
