//! The delegated responder that signs: its key (in the HSM), certificate, the
//! byKey ResponderID and the certs field every response carries.

use const_oid::db::rfc5912;
use std::sync::Arc;

use der::{Decode, Encode};
use x509_cert::Certificate;

use crate::encode;
use crate::error::OcspError;
use crate::issuers::sha1;

/// Something that signs ResponseData (blocking). The HSM key in production;
/// tests wrap it to fail or stall on purpose.
pub trait ResponseSigner: Send + Sync + 'static {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, OcspError>;
}

impl ResponseSigner for hsm::HsmKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, OcspError> {
        Ok(hsm::HsmKey::sign(self, msg)?)
    }
}

/// A responder certificate with the key that signs for it.
pub struct ResponderIdentity {
    signer: Arc<dyn ResponseSigner>,
    key_hash: [u8; 20],
    signature_algorithm: Vec<u8>,
    tail: Box<[u8]>,
    cert_der: Vec<u8>,
    not_after: i64,
}

impl std::fmt::Debug for ResponderIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponderIdentity")
            .field("key_hash", &hex::encode(self.key_hash))
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ResponderIdentity {
    /// `cert_der` must certify the signer's key (checked by the caller that loads both).
    pub fn new(cert_der: Vec<u8>, signer: Arc<dyn ResponseSigner>) -> Result<ResponderIdentity, OcspError> {
        let cert = Certificate::from_der(&cert_der)
            .map_err(|e| OcspError::Certificates(format!("responder certificate: {e}")))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        let key_bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| OcspError::Certificates("responder public key has unused bits".into()))?;
        let signature_algorithm = if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
            spki::AlgorithmIdentifierRef {
                oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(der::asn1::AnyRef::NULL),
            }
            .to_der()?
        } else if spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY {
            spki::AlgorithmIdentifierRef { oid: rfc5912::ECDSA_WITH_SHA_256, parameters: None }.to_der()?
        } else {
            return Err(OcspError::Certificates(format!(
                "responder key algorithm {} is neither RSA nor EC",
                spki.algorithm.oid
            )));
        };
        let not_after = i64::try_from(tbs.validity().not_after.to_unix_duration().as_secs())
            .map_err(|_| OcspError::Certificates("responder notAfter out of range".into()))?;
        Ok(ResponderIdentity {
            signer,
            key_hash: sha1(key_bits),
            signature_algorithm,
            tail: encode::certs_field(&[&cert_der])?.into_boxed_slice(),
            cert_der,
            not_after,
        })
    }

    /// SHA-1 of the responder's public key: the byKey ResponderID.
    pub fn key_hash(&self) -> &[u8; 20] {
        &self.key_hash
    }

    /// The `certs` field of every response we sign.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Responses must not outlive the certificate that vouches for them.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Signs `tbs` (blocking) and returns the response body (see `encode::signed_body`).
    pub fn sign_body(&self, tbs: &[u8]) -> Result<Vec<u8>, OcspError> {
        let signature = self.signer.sign(tbs)?;
        encode::signed_body(tbs, &self.signature_algorithm, &signature)
    }
}
