//! A CA certificate with the HSM key that signs its CRLs.

use std::path::Path;

use time::OffsetDateTime;

use crate::builder::CrlSpec;
use crate::error::CrlError;

/// An issuing CA (or the root) and its key in the token.
#[derive(Debug, Clone)]
pub struct CaKey {
    pub ca: profile::IssuingCa,
    pub key: hsm::HsmKey,
}

impl CaKey {
    /// Loads the CA certificate (PEM) and its key by label, refusing a
    /// certificate whose public key is not the HSM key's.
    pub fn load(hsm: &hsm::Hsm, cert_path: &Path, key_label: &str) -> Result<CaKey, CrlError> {
        let ca = profile::IssuingCa::read_pem_file(cert_path)
            .map_err(|e| e.at_start("CA certificate", CrlError::FailedPrecondition))?;
        let key = hsm.key(key_label)?;
        CaKey::new(ca, key).map_err(|e| match e {
            CrlError::FailedPrecondition(m) => CrlError::FailedPrecondition(format!("{}: {m}", cert_path.display())),
            other => other,
        })
    }

    /// Pairs a CA with its key after checking they belong together.
    pub fn new(ca: profile::IssuingCa, key: hsm::HsmKey) -> Result<CaKey, CrlError> {
        if !ca.certifies(&key.subject_public_key_info_der()) {
            return Err(CrlError::FailedPrecondition(format!(
                "the CA certificate does not certify the HSM key labelled {:?}",
                key.label()
            )));
        }
        Ok(CaKey { ca, key })
    }

    /// A full-CRL spec with this CA as issuer (subject bytes and SKI).
    pub fn spec(&self, this_update: OffsetDateTime, next_update: OffsetDateTime, crl_number: u64) -> CrlSpec {
        CrlSpec {
            issuer: self.ca.subject_der().to_vec(),
            authority_key_identifier: self.ca.subject_key_identifier().to_vec(),
            this_update,
            next_update,
            crl_number,
            delta_crl_indicator: None,
            issuing_distribution_point: None,
            freshest_crl: None,
            expired_certs_on_crl: None,
        }
    }
}
