//! The registry's errors and their one mapping to gRPC status codes. Every
//! message a client sees starts with the request field it is about.

use store::StoreError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request field is missing or malformed; `field` is its proto path.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create database folder {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot read config file {path}: {source}")]
    ConfigRead { path: std::path::PathBuf, source: std::io::Error },
    #[error("[store] postgres_password_file {path}: {source}")]
    ReadPasswordFile { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC kit could not build the server (no server certificate).
    #[error("gRPC server: {0}")]
    Server(tls::ServerError),
    /// A blocking task (a store call, opening the database, recording
    /// config.start) panicked or was cancelled.
    #[error("internal: {what} failed: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    /// The store call of a batch panicked (see `batch`), or answered a step
    /// with another kind's answer (a bug): nothing it did is known to the
    /// caller, who may retry.
    #[error("internal: the store call of this batch failed")]
    BatchLost,
}

impl RegistryError {
    /// For `spawn_blocking(..).await.map_err(RegistryError::task("store task"))`.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> RegistryError {
        move |source| RegistryError::Task { what, source }
    }
}

impl From<tls::ServerError> for RegistryError {
    fn from(e: tls::ServerError) -> RegistryError {
        match e {
            tls::ServerError::Tls(e) => RegistryError::Transport(e),
            tls::ServerError::Reflection(e) => RegistryError::Reflection(e),
            other => RegistryError::Server(other),
        }
    }
}

impl RegistryError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RegistryError {
        RegistryError::InvalidArgument { field, reason: reason.into() }
    }
}

impl From<RegistryError> for Status {
    fn from(err: RegistryError) -> Status {
        match err {
            RegistryError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            RegistryError::Store(e) => store_status(e),
            other => {
                tracing::error!(error = %other, "registry internal error");
                Status::internal(other.to_string())
            }
        }
    }
}

fn store_status(err: StoreError) -> Status {
    use StoreError as E;
    let (code, field) = match &err {
        E::NoSuchCard { .. } => (Code::NotFound, "card_id"),
        E::NoSuchApplication { .. } => (Code::NotFound, "application_id"),
        E::NoSuchLicence { .. } => (Code::NotFound, "licence_number"),
        E::NoSuchCertificate { .. } => (Code::NotFound, "serial"),
        E::NoSuchHolder { .. } => (Code::NotFound, "holder_id"),
        E::NoSuchReplacedCard { .. } => (Code::NotFound, "replaces_card_id"),
        E::NoPinEscrow { .. } => (Code::NotFound, "card_id"),
        E::ActiveCard { .. } => (Code::FailedPrecondition, "holder.licence_number"),
        // Named as the RA knows it: the CSR that carried the key.
        E::KeyInUse { kind: store::CertificateKind::Signing, .. } => (Code::AlreadyExists, "signing_csr"),
        E::KeyInUse { kind: store::CertificateKind::Authentication, .. } => (Code::AlreadyExists, "authentication_csr"),
        E::KeyInUse { kind: store::CertificateKind::OcspResponder, .. } => (Code::AlreadyExists, "csr"),
        E::ApplicationMismatch { .. } | E::ApplicationProcedureMismatch { .. } => {
            (Code::FailedPrecondition, "application_id")
        }
        E::ReplacedCard { .. } => (Code::FailedPrecondition, "replaces_card_id"),
        E::PinEscrowExists { .. } => (Code::AlreadyExists, "card_id"),
        E::DisclosureRepeated { .. } => (Code::FailedPrecondition, "request_id"),
        E::DisclosureLimit { .. } => (Code::ResourceExhausted, "card_id"),
        E::RaDailyLimit { .. } => (Code::ResourceExhausted, "ra_identity"),
        E::HolderIdMismatch { .. } => (Code::InvalidArgument, "holder.holder_id"),
        E::CardNotPending { .. } | E::CardIncomplete { .. } => (Code::FailedPrecondition, "card_id"),
        E::CertificateState { .. } => (Code::FailedPrecondition, "serial"),
        E::TbsConflict { .. } => (Code::FailedPrecondition, "tbs_der"),
        E::CertificateConflict { .. } => (Code::FailedPrecondition, "certificate_der"),
        E::ReservedAction { .. } | E::NotCeremonyAction { .. } => (Code::InvalidArgument, "action"),
        E::NoSuchApproval { .. } => (Code::NotFound, "approval_id"),
        E::RevokedAt { .. } => (Code::InvalidArgument, "revoked_at_unix"),
        E::InvalidityDate { .. } => (Code::InvalidArgument, "invalidity_date_unix"),
        E::IssuerLabel { .. } => (Code::InvalidArgument, "issuer_label"),
        E::CrlScope { .. } => (Code::InvalidArgument, "scope"),
        E::InvalidCrlScope { .. } => (Code::InvalidArgument, "crl_scope"),
        E::FeedAhead { .. } => (Code::OutOfRange, "after_sequence"),
        E::Approver { .. } => (Code::FailedPrecondition, "approver"),
        E::ApprovalState { .. } => (Code::FailedPrecondition, "approval_id"),
        E::Corrupt { .. } | E::AuditChainBroken { .. } => {
            tracing::error!(error = %err, "registry database damaged");
            return Status::data_loss(err.to_string());
        }
        E::Postgres(_) | E::PostgresUnavailable(_) => {
            // Unavailable: the client may retry, e.g. once a standby is promoted.
            tracing::error!(error = %err, "registry database unavailable");
            return Status::unavailable(err.to_string());
        }
        E::Db(_) | E::SharedFlush { .. } | E::Locked { .. } | E::PostgresConfig(_) | E::PostgresSchemaTooNew { .. } => {
            tracing::error!(error = %err, "registry database error");
            return Status::internal(err.to_string());
        }
    };
    Status::new(code, format!("{field}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(err: StoreError) -> Status {
        Status::from(RegistryError::from(err))
    }

    #[test]
    fn store_refusals_map_to_codes_and_name_the_field() {
        let s = status(StoreError::NoSuchCard { card_id: "C1".into() });
        assert_eq!((s.code(), s.message()), (Code::NotFound, "card_id: no such card C1"));
        let s = status(StoreError::ActiveCard { card_id: "C2".into(), pending_application: None });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "holder.licence_number: holder already has an active card C2");
        let s = status(StoreError::CertificateConflict {
            serial: "01".into(),
            reason: "certificate does not match the recorded to-be-signed bytes",
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().starts_with("certificate_der: "), "{}", s.message());
        let s = status(StoreError::Approver {
            approval_id: "A1".into(),
            reason: "must differ from the requesting operator".into(),
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "approver: must differ from the requesting operator");
        let s = status(StoreError::RevokedAt { revoked_at_unix: 9, reason: "is in the future".into() });
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "revoked_at_unix: 9 is in the future"));
        let s = status(StoreError::FeedAhead { after_sequence: 9, last_sequence: 3 });
        assert_eq!(s.code(), Code::OutOfRange);
        assert!(s.message().starts_with("after_sequence: "));
        let s = status(StoreError::ReplacedCard { card_id: "C1".into(), reason: "belongs to another holder".into() });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "replaces_card_id: belongs to another holder");
        let s = status(StoreError::NoSuchReplacedCard { card_id: "C1".into() });
        assert_eq!((s.code(), s.message()), (Code::NotFound, "replaces_card_id: no such card C1"));
        let s = status(StoreError::NoSuchHolder { holder_id: "JMA1".into() });
        assert_eq!((s.code(), s.message()), (Code::NotFound, "holder_id: no such holder JMA1"));
        let s = status(StoreError::PinEscrowExists { card_id: "C1".into() });
        assert_eq!(s.code(), Code::AlreadyExists);
        assert_eq!(s.message(), "card_id: a PIN is already escrowed for this card");
        let s = status(StoreError::DisclosureRepeated { card_id: "C1".into(), request_id: "r1".into() });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "request_id: the PIN was already disclosed for this request");
        let s = status(StoreError::DisclosureLimit {
            card_id: "C1".into(),
            retry_after_unix: 0,
            max_per_window: 3,
            window_seconds: 60,
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "card_id: disclosure limit reached, retry after 1970-01-01T00:00:00Z (at most 3 per 60 s)"
        );
        let s = status(StoreError::RaDailyLimit {
            ra_identity: "ra-tokyo".into(),
            day: "2026-01-05".into(),
            cap: 20,
            retry_after_unix: 0,
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "ra_identity: daily PIN-disclosure cap of 20 reached for RA ra-tokyo on 2026-01-05 (JST), retry after \
             1970-01-01T00:00:00Z"
        );
        let s = status(StoreError::Corrupt { tree: "cards", key: "C1".into(), reason: "x".into() });
        assert_eq!(s.code(), Code::DataLoss);
    }

    #[test]
    fn invalid_arguments_name_the_field() {
        let s = Status::from(RegistryError::invalid("serial", "is empty"));
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "serial: is empty"));
    }
}
