//! The CRL publisher: full, delta and partitioned CRLs of the issuing CAs and
//! the root's ARL, signed by keys in the HSM, written to disk and served over
//! HTTP at the distribution points the certificates carry.
#![forbid(unsafe_code)]

pub mod arl;
pub mod arl_watch;
pub mod asn1;
pub mod builder;
pub mod entry;
pub mod error;
pub mod grpc;
pub mod http;
pub mod issuer;
pub mod layout;
pub mod published;
pub mod publisher;
pub mod repository;
pub mod schedule;
mod server;
pub mod source;
mod timefmt;

pub use arl::{publish_arl, PublishedArl};
pub use asn1::{OnlyContains, SignatureAlgorithm};
pub use builder::{build_crl, CrlEncoder, CrlSigner, CrlSpec, IssuingDistributionPoint, SignedCrl};
pub use entry::{CrlEntry, SerialNumber};
pub use error::CrlError;
pub use issuer::CaKey;
pub use published::{CrlInfo, CrlKind};
pub use publisher::{FollowingFull, Issuer, Urgent};
pub use repository::Repository;
pub use server::{serve, serve_publisher};

#[cfg(test)]
mod builder_tests;
#[cfg(test)]
mod publisher_tests;
#[cfg(test)]
mod testutil;
