//! The OCSP responder.
#![forbid(unsafe_code)]

pub mod asn1;
pub mod encode;
mod error;
pub mod issuers;
pub mod request;
pub mod serial;
pub mod status;

pub use error::OcspError;
