//! The CA's shared domain types: one Rust type per concept, with its codes,
//! names and serde form beside it. A leaf crate (serde, hex, rand): the store,
//! the services and the CLI all use it; the proto conversions live in `proto`.

pub mod confirmation;
pub mod reason;
pub mod serial;

pub use confirmation::{ConfirmationMethod, IdentityConfirmation, ParseMethodError};
pub use reason::{ParseReasonError, RevocationReason};
pub use serial::{Serial, SerialParseError, MAX_SERIAL_LEN, SERIAL_LEN};
