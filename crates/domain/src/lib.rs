//! The CA's shared domain types: one Rust type per concept, with its codes,
//! names and serde form beside it. A leaf crate (serde only): the store, the
//! services and the CLI all use it; the proto conversions live in `proto`.

pub mod confirmation;
pub mod reason;

pub use confirmation::{ConfirmationMethod, IdentityConfirmation, ParseMethodError};
pub use reason::{ParseReasonError, RevocationReason};
