//! The OCSP responder (RFC 6960, RFC 5019 profile) of the HPKI CA.
//!
//! **The hot path is a lookup.** [`Responder::lookup`] decodes a request and,
//! when a pre-signed response for that CertID is cached, returns it encoded:
//! no signature, no I/O, no registry call. The cache (`cache`) is a sharded
//! `RwLock<HashMap>` from (issuer, serial) to the status we know and, per CertID
//! hash (SHA-1, SHA-256), the last response signed for it.
//!
//! Responses are signed with a delegated responder certificate per issuing CA
//! (key in the process's own `ocsp` token, certificate issued by the issuance
//! service from our CSR: `responder_cert`; ResponderID byKey, the certificate
//! carried in every response):
//! - when first asked for: a serial with no cached answer is looked up
//!   (status feed, or `GetCertificate` on a miss), signed and cached;
//!   serials the registry does not know are `unknown`, cached for
//!   `negative_ttl_seconds` (a minute);
//! - when its status changes: the registry's status feed (`feed`) makes the old
//!   response unservable at once and re-signs it in the background;
//! - before it expires: a background pass (every `refresh_interval_seconds`)
//!   re-signs responses `refresh_before_minutes` before their nextUpdate. If
//!   that fails, the old response is served until its nextUpdate.
//!
//! Signing is bounded: at most `max_inflight_signatures` at once (beyond it,
//! `tryLater` at once), and nonce echoes at most `nonce_signatures_per_second`
//! (beyond it, the cached response without the nonce).
//!
//! **Time is bounded too** (`serve_http`, `http::HttpLimits`): a connection
//! must send a request's headers within `read_timeout_ms` of connecting or of
//! its previous response, or it is closed (slowloris, silent and idle
//! keep-alive connections alike), and its body within as long again (408). An
//! answer still waiting on the registry or the HSM after `request_timeout_ms`
//! is `tryLater`; the signature under way keeps its in-flight slot until the
//! HSM returns and is cached for the next request.
//!
//! **Restarts and replicas.** The cache lives in memory, so a starting replica
//! follows the feed from sequence 0: replaying it sets the status of every
//! certificate ever issued or revoked without signing anything (responses are
//! signed when asked for). Statuses only move forward (unknown → good →
//! revoked), so replays and reordering are harmless. Each replica follows the
//! feed on its own; a broken stream resumes from the last sequence applied.
//!
//! Errors become OCSP statuses and HTTP statuses in one place
//! ([`OcspError::response_status`], [`OcspError::http_status`]).
#![forbid(unsafe_code)]

pub mod asn1;
#[cfg(feature = "bench")]
pub mod bench_support;
mod cache;
pub mod cache_refresh;
pub mod encode;
mod error;
pub mod feed;
pub mod http;
pub mod issuers;
mod keylocks;
mod limits;
pub mod metrics;
#[cfg(test)]
mod openssl_tests;
pub mod request;
pub mod responder;
mod responder_cert;
pub mod serial;
mod serve;
#[cfg(test)]
mod serve_tests;
pub mod signer;
pub mod source;
pub mod status;
#[cfg(any(test, feature = "bench"))]
#[doc(hidden)]
pub mod testkit;
#[cfg(test)]
mod timeout_tests;

pub use error::OcspError;
pub use responder::{Answer, Responder, Step};
pub use responder_cert::{
    ensure_each, ensure_responder_certificates, IssuanceAuthority, Outcome, RegistryState, ResponderAuthority,
    ResponderCertStatus,
};
pub use serve::{metrics_router, renew_window, serve, serve_http, serve_with};
