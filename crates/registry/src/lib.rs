//! The registry: the gRPC service (`hpki.registry.v1.Registry`) that is the
//! only writer of the CA database. Handlers validate input and call the
//! `store` crate; every status message names the request field it is about.
//!
//! # Revocation, the status feed and CRL inputs
//!
//! - **RevokeCertificate / RevokeCard** are final and idempotent: a second
//!   call writes nothing, answers `already_revoked` (or `newly_revoked = 0`)
//!   and the first time and reason stand. RevokeCard revokes every
//!   certificate of the card, RESERVED and PRECERT ones included, in one
//!   transaction with the card. `actor` is required; `revoked_at_unix` 0 is
//!   now, later than now + 300 s is INVALID_ARGUMENT `revoked_at_unix`;
//!   unknown serial or card is NOT_FOUND `serial` / `card_id`.
//! - **WatchStatus(after_sequence)** streams every change with a larger
//!   sequence, then live ones, with no gap and no duplicate; sequences start
//!   at 1 and are gapless. GOOD is sent when a certificate is stored
//!   (ISSUED), REVOKED when it is revoked (also for never-issued serials).
//!   Only durable (flushed) changes are sent. Resume with the last sequence
//!   received; a sequence beyond the feed is OUT_OF_RANGE `after_sequence`.
//!   On server shutdown the stream ends with UNAVAILABLE: reconnect and resume.
//! - **ListRevoked**: `after_sequence = 0` lists the issuer's revoked
//!   certificates ordered by serial bytes; `> 0` lists only later
//!   revocations, in feed-sequence order (delta CRLs). Entries past notAfter
//!   at `at_unix` (0 = now) are left out unless `include_expired`. Only
//!   revocations durable when the call starts are listed.
//! - **NextCrlNumber(scope)** is strictly increasing per scope, durable before
//!   it is returned, and carries the feed position taken in the same
//!   transaction: a CRL built from a ListRevoked made afterwards covers at
//!   least every revocation up to `feed_sequence`.
//! - **Approvals**: the approver must differ from the requester
//!   (FAILED_PRECONDITION `approver`); AWAITING -> APPROVED -> EXECUTED, each
//!   step idempotent.

mod convert;
mod error;
mod server;
mod service;
mod streams;
mod validate;
mod x509;

pub use error::RegistryError;
pub use server::{serve, serve_store};
pub use service::RegistryService;
