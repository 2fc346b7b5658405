//! Errors of the profile crate. Messages name the offending config field or
//! input so an operator can fix it without reading the code.

use crate::csr::CsrError;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Csr(#[from] CsrError),

    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),

    #[error("DER encoding or decoding failed: {0}")]
    Der(String),

    /// A config value is unusable; the message starts with the field name.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// Subscriber data cannot be put in a certificate (empty name, bad characters, too long).
    #[error("invalid subscriber data: {0}")]
    InvalidSubscriber(String),

    /// The validity period is empty or exceeds the issuing CA's.
    #[error("invalid validity period: {0}")]
    InvalidValidity(String),

    #[error("invalid certificate serial number: {0}")]
    InvalidSerial(String),

    /// The issuing CA certificate cannot be used to issue under.
    #[error("unusable CA certificate: {0}")]
    InvalidCaCertificate(String),

    /// A signature over a certificate does not verify with the CA key.
    #[error("certificate signature does not verify with the CA public key")]
    BadSignature,
}

impl From<der::Error> for ProfileError {
    fn from(e: der::Error) -> Self {
        ProfileError::Der(e.to_string())
    }
}
