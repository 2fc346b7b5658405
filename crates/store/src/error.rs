//! Everything the store can refuse or fail at. The registry maps these to gRPC
//! status codes in one place.

use crate::records::{ApprovalState, CardState, CertificateState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    /// The sled flush this write waited for, led by another writer, failed;
    /// `message` is that writer's error (a StoreError is not Clone).
    #[error("database error: the shared flush {number} failed: {message}")]
    SharedFlush { number: u64, message: String },
    /// A stored record did not decode: the database was edited or damaged.
    #[error("stored record {tree}/{key} is unreadable: {reason}")]
    Corrupt { tree: &'static str, key: String, reason: String },

    #[error("no such card {card_id}")]
    NoSuchCard { card_id: String },
    #[error("no card for application {application_id}")]
    NoSuchApplication { application_id: String },
    #[error("no card for licence number {licence_number}")]
    NoSuchLicence { licence_number: String },
    #[error("no such certificate {serial}")]
    NoSuchCertificate { serial: String },
    #[error("no such approval {approval_id}")]
    NoSuchApproval { approval_id: String },
    #[error("no such holder {holder_id}")]
    NoSuchHolder { holder_id: String },
    /// The card a renewal or reissue names does not exist.
    #[error("no such card {card_id}")]
    NoSuchReplacedCard { card_id: String },
    #[error("no PIN is escrowed for card {card_id}")]
    NoPinEscrow { card_id: String },

    /// The holder's current card; `pending_application` when it is still being
    /// issued (an attempt that failed half-way), which a retry of that application finishes.
    #[error("{}", active_card_message(card_id, pending_application.as_deref()))]
    ActiveCard { card_id: String, pending_application: Option<String> },
    /// A public key already certified on another card; `compromised` when that
    /// card's certificate was revoked for keyCompromise.
    #[error(
        "the public key is already certified on card {card_id}{}; every certificate needs a new key",
        if *compromised { " and was revoked for keyCompromise" } else { "" }
    )]
    KeyInUse { kind: crate::records::CertificateKind, card_id: String, compromised: bool },
    #[error("application {application_id} was made for licence number {licence_number}")]
    ApplicationMismatch { application_id: String, licence_number: String },
    /// A caller-supplied holder_id that is not the one on file for the licence.
    #[error("holder_id {given} is not {expected}")]
    HolderIdMismatch { given: String, expected: String },
    /// An application_id seen before, with another procedure or replaced card.
    #[error("application {application_id} was made as {made_as}")]
    ApplicationProcedureMismatch { application_id: String, made_as: String },
    /// The card a renewal or reissue names cannot be replaced; `reason` says why.
    #[error("{reason}")]
    ReplacedCard { card_id: String, reason: String },
    #[error("card {card_id} is {state}, not PENDING")]
    CardNotPending { card_id: String, state: CardState },
    #[error("card {card_id} is not complete: {missing}")]
    CardIncomplete { card_id: String, missing: String },
    #[error("certificate {serial} is {state}: {reason}")]
    CertificateState { serial: String, state: CertificateState, reason: &'static str },
    #[error("different to-be-signed bytes are already recorded for serial {serial}")]
    TbsConflict { serial: String },
    #[error("{reason}")]
    InvalidCrlScope { reason: String },
    #[error("certificate {serial}: {reason}")]
    CertificateConflict { serial: String, reason: &'static str },

    #[error("{revoked_at_unix} {reason}")]
    RevokedAt { revoked_at_unix: i64, reason: String },
    #[error("issuer label {issuer_label:?} {reason}")]
    IssuerLabel { issuer_label: String, reason: &'static str },
    #[error("CRL scope {scope:?} {reason}")]
    CrlScope { scope: String, reason: &'static str },
    #[error("after sequence {after_sequence} is beyond the feed's last sequence {last_sequence}")]
    FeedAhead { after_sequence: u64, last_sequence: u64 },
    /// Two-person control refused the approver (e.g. it is the requester).
    #[error("{reason}")]
    Approver { approval_id: String, reason: String },
    #[error("approval {approval_id} is {state}: {reason}")]
    ApprovalState { approval_id: String, state: ApprovalState, reason: String },

    /// A different escrow record for a card that has one (records are never replaced).
    #[error("a PIN is already escrowed for this card")]
    PinEscrowExists { card_id: String },
    #[error("the PIN was already disclosed for this request")]
    DisclosureRepeated { card_id: String, request_id: String },
    #[error(
        "disclosure limit reached, retry after {} (at most {max_per_window} per {window_seconds} s)",
        crate::clock::format_utc(*retry_after_unix)
    )]
    DisclosureLimit { card_id: String, retry_after_unix: i64, max_per_window: u32, window_seconds: u32 },
    /// An operator's time of compromise that the certificate cannot have.
    #[error("invalidity date {} of certificate {serial} {reason}", crate::clock::format_utc(*invalidity_date_unix))]
    InvalidityDate { serial: String, invalidity_date_unix: i64, reason: String },
    #[error(
        "daily PIN-disclosure cap of {cap} reached for RA {ra_identity} on {day} (JST), retry after {}",
        crate::clock::format_utc(*retry_after_unix)
    )]
    RaDailyLimit { ra_identity: String, day: String, cap: u32, retry_after_unix: i64 },

    #[error("action {action} is written only by the registry itself (audit.checkpoint: by the checkpointer, through AppendCheckpoint)")]
    ReservedAction { action: String },
    #[error("action {action} is not one of the key ceremony's")]
    NotCeremonyAction { action: String },
    /// Another process (normally the running registry) has the database open.
    #[error("the database {path} is in use by another process (is the registry running?)")]
    Locked { path: std::path::PathBuf },
    #[error("audit chain broken at sequence {sequence}: {reason}")]
    AuditChainBroken { sequence: u64, reason: String },

    /// A statement PostgreSQL refused or a connection that broke mid-call.
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// No connection within the pool's wait (the server is down or failing over).
    #[error("PostgreSQL unavailable: {0}")]
    PostgresUnavailable(String),
    #[error("[store] postgres_url: {0}")]
    PostgresConfig(String),
    #[error("the database schema is version {found}, newer than this build knows ({known}); upgrade hpki-ca")]
    PostgresSchemaTooNew { found: i32, known: i32 },
}

/// The server's own message and SQLSTATE where there is one (the plain
/// Display of a server error says only "db error").
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl StoreError {
    /// A failure of the database engine rather than a refusal of the request:
    /// the caller may try again (on PostgreSQL, once a standby is promoted).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Db(_)
                | StoreError::SharedFlush { .. }
                | StoreError::Postgres(_)
                | StoreError::PostgresUnavailable(_)
        )
    }
}

fn active_card_message(card_id: &str, pending_application: Option<&str>) -> String {
    match pending_application {
        None => format!("holder already has an active card {card_id}"),
        Some(app) => format!(
            "holder already has card {card_id} still being issued for application {app}; \
             submit that application again to finish it"
        ),
    }
}
