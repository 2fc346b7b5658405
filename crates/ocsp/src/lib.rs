//! The OCSP responder (RFC 6960, RFC 5019 profile) of the HPKI CA.
//!
//! The hot path is a lookup: `Responder::lookup` decodes a request and, when a
//! pre-signed response for that serial is cached, returns it encoded, with no
//! signature and no I/O. Responses are signed (delegated responder certificate,
//! key in the HSM) when first asked for, when the registry's status feed says a
//! status changed, and in the background before they expire.
#![forbid(unsafe_code)]

pub mod asn1;
#[cfg(feature = "bench")]
pub mod bench_support;
mod cache;
pub mod encode;
mod error;
pub mod feed;
pub mod http;
pub mod issuers;
mod limits;
pub mod metrics;
pub mod request;
pub mod responder;
mod responder_cert;
mod serve;
pub mod serial;
pub mod signer;
pub mod source;
pub mod status;
#[cfg(test)]
mod openssl_tests;
#[cfg(test)]
mod serve_tests;
#[cfg(any(test, feature = "bench"))]
#[doc(hidden)]
pub mod testkit;

pub use error::OcspError;
pub use responder::{Answer, Responder, Step};
pub use responder_cert::{ensure_responder_certificates, Outcome, ResponderCertStatus};
pub use serve::{metrics_router, renew_window, serve};
