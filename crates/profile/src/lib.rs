//! The content of every certificate the HPKI physician-card CA issues:
//! subscriber signing and authentication certificates (hpki-profile.md §2–§3),
//! hcRole (§4), CA certificates for the key ceremony, CSR checks, and the
//! two-phase signing that lets the registry record a TBSCertificate before the
//! HSM signs it.
#![forbid(unsafe_code)]

mod ca;
pub mod csr;
pub mod distribution;
mod error;
pub mod extensions;
pub mod hcrole;
mod keys;
pub mod names;
pub mod policy;
pub mod responder;
mod serial;
mod subscriber;
mod tbs;
pub mod validity;

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod testutil;

pub use ca::{ca_params, CaFileError, IssuingCa};
pub use csr::{CsrError, VerifiedCsr};
pub use distribution::crl_partition;
pub use error::ProfileError;
pub use policy::{CaProfile, CertUrl, HcRole, KindPolicy, Policy};
pub use responder::responder_params;
pub use serial::serial_number;
pub use subscriber::{subscriber_params, Subscriber};
pub use tbs::{add_subject_key_identifier, assemble_certificate, tbs_certificate, tbs_of_certificate};

/// Which of the two subscriber certificates on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// 署名用: nonRepudiation only.
    Signing,
    /// 認証用(人): digitalSignature, optional EKU.
    Authentication,
}
