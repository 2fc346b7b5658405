//! CA certificates: the issuing CA as loaded from its certificate, and the
//! parameters of CA certificates made at the key ceremony.

use std::path::{Path, PathBuf};

use const_oid::db::rfc5280;
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DistinguishedName, IsCa, KeyIdMethod, KeyUsagePurpose,
    PublicKeyData,
};
use time::OffsetDateTime;
use x509_cert::ext::pkix::{BasicConstraints as X509BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use x509_cert::Certificate;

use crate::error::ProfileError;
use crate::extensions;
use crate::keys::{self, PublicKey, VerifyProblem};
use crate::names;
use crate::policy::CaProfile;
use crate::serial::serial_number;
use crate::tbs;
use crate::validity::truncate_to_second;

/// An issuing CA loaded from its certificate: everything needed to issue
/// under it without its private key.
#[derive(Debug, Clone)]
pub struct IssuingCa {
    cert_der: Vec<u8>,
    /// The subject Name exactly as encoded in the certificate.
    subject_der: Vec<u8>,
    /// The same name for rcgen, with the same order and string types.
    distinguished_name: DistinguishedName,
    key: PublicKey,
    ski: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// A CA certificate file that could not be loaded. Callers word the `Read`
/// case themselves (what the file is, what to run to make it); the services
/// that start from the file do so with [`CaFileError::at_start`].
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read CA certificate {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Invalid(#[from] ProfileError),
}

impl CaFileError {
    /// The error of a service that cannot start without the file: `Read` as
    /// `unreadable("cannot read <what> <path>: <cause> (run the key ceremony
    /// first: hpki-ca ceremony)")`, `Invalid` as the service's `ProfileError`.
    pub fn at_start<E: From<ProfileError>>(self, what: &str, unreadable: impl FnOnce(String) -> E) -> E {
        match self {
            CaFileError::Read { path, source } => unreadable(format!(
                "cannot read {what} {}: {source} (run the key ceremony first: hpki-ca ceremony)",
                path.display()
            )),
            CaFileError::Invalid(e) => e.into(),
        }
    }
}

fn bad_ca(msg: impl Into<String>) -> ProfileError {
    ProfileError::InvalidCaCertificate(msg.into())
}

impl IssuingCa {
    pub fn from_der(der: &[u8]) -> Result<IssuingCa, ProfileError> {
        let cert = Certificate::from_der(der).map_err(|e| bad_ca(format!("not an X.509 certificate: {e}")))?;
        let tbs_der = tbs::tbs_of_certificate(der)?;
        let raw = tbs::RawTbs::parse(&tbs_der)?;
        let tbs_cert = cert.tbs_certificate();

        let distinguished_name =
            names::rcgen_dn_from_x509(tbs_cert.subject()).map_err(|e| bad_ca(format!("subject name: {e}")))?;

        let spki_der = tbs_cert.subject_public_key_info().to_der()?;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der)?;
        let key = keys::parse_spki(&spki).map_err(|p| bad_ca(format!("public key: {p}")))?;

        let ski = match tbs_cert.get_extension::<SubjectKeyIdentifier>()? {
            Some((_, ski)) => ski.0.as_bytes().to_vec(),
            None => {
                return Err(bad_ca("no subjectKeyIdentifier extension (needed for the AKI of issued certificates)"))
            }
        };
        match tbs_cert.get_extension::<X509BasicConstraints>()? {
            Some((_, bc)) if bc.ca => {}
            _ => return Err(bad_ca("basicConstraints does not say CA:TRUE")),
        }
        if let Some((_, ku)) = tbs_cert.get_extension::<KeyUsage>()? {
            if !ku.key_cert_sign() {
                return Err(bad_ca("keyUsage lacks keyCertSign"));
            }
        }
        let validity = tbs_cert.validity();
        let to_time = |t: x509_cert::time::Time| {
            let secs = i64::try_from(t.to_unix_duration().as_secs()).map_err(|_| bad_ca("validity out of range"))?;
            OffsetDateTime::from_unix_timestamp(secs).map_err(|_| bad_ca("validity out of range"))
        };
        let ca = IssuingCa {
            cert_der: der.to_vec(),
            subject_der: raw.subject.to_vec(),
            distinguished_name,
            key,
            ski,
            not_before: to_time(validity.not_before)?,
            not_after: to_time(validity.not_after)?,
        };
        ca.check_name_round_trip()?;
        Ok(ca)
    }

    pub fn from_pem(pem: &str) -> Result<IssuingCa, ProfileError> {
        let parsed = pem::parse(pem).map_err(|e| bad_ca(format!("PEM: {e}")))?;
        if parsed.tag() != "CERTIFICATE" {
            return Err(bad_ca(format!("PEM label is \"{}\", expected \"CERTIFICATE\"", parsed.tag())));
        }
        Self::from_der(parsed.contents())
    }

    /// Reads and parses a PEM CA certificate file.
    pub fn read_pem_file(path: &Path) -> Result<IssuingCa, CaFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CaFileError::Read { path: path.to_owned(), source })?;
        Ok(Self::from_pem(&text)?)
    }

    /// Whether this certificate's public key is the one in `spki_der`
    /// (SubjectPublicKeyInfo DER, as an HSM key reports it).
    pub fn certifies(&self, spki_der: &[u8]) -> bool {
        self.key.spki_der == spki_der
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The subject Name DER, byte-identical to the certificate's.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    pub fn distinguished_name(&self) -> &DistinguishedName {
        &self.distinguished_name
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub fn subject_key_identifier(&self) -> &[u8] {
        &self.ski
    }

    pub fn subject_public_key_info_der(&self) -> &[u8] {
        &self.key.spki_der
    }

    /// "RSA 2048" or "EC P-256".
    pub fn key_description(&self) -> String {
        self.key.kind.description()
    }

    /// The algorithm this CA signs with: sha256WithRSAEncryption or ecdsa-with-SHA256.
    pub fn signature_algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.kind.rcgen_algorithm()
    }

    /// Params for `rcgen::Issuer::new(ca.issuer_params(), key)`: the CA's name,
    /// its SKI (so the AKI of issued certificates matches) and key usages.
    pub fn issuer_params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = self.distinguished_name.clone();
        params.key_identifier_method = KeyIdMethod::PreSpecified(self.ski.clone());
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    /// Checks that `cert_der` names this CA as issuer and that its signature
    /// verifies with this CA's key (for example before storing what an HSM returned).
    pub fn verify_issued(&self, cert_der: &[u8]) -> Result<(), ProfileError> {
        let parts = tbs::RawSigned::parse(cert_der)?;
        let raw = tbs::RawTbs::parse(parts.tbs)?;
        if raw.issuer != self.subject_der.as_slice() {
            return Err(bad_ca("the certificate's issuer is not this CA's subject"));
        }
        let alg = spki::AlgorithmIdentifierRef::from_der(parts.signature_algorithm)?;
        keys::verify(&self.key, &alg, parts.tbs, parts.signature).map_err(|p| match p {
            VerifyProblem::Bad => ProfileError::BadSignature,
            VerifyProblem::Unsupported(m) => ProfileError::Der(m),
        })
    }

    /// rcgen writes the issuer from `distinguished_name`; make sure that gives
    /// back exactly the CA's subject bytes, or chains would break silently.
    fn check_name_round_trip(&self) -> Result<(), ProfileError> {
        let mut probe = CertificateParams::default();
        probe.serial_number = Some(rcgen::SerialNumber::from_slice(&[1]));
        let tbs_der = tbs::capture_tbs(&probe, self, self)?;
        if tbs::RawTbs::parse(&tbs_der)?.issuer != self.subject_der.as_slice() {
            return Err(bad_ca("its subject name cannot be reproduced byte-for-byte as an issuer name"));
        }
        Ok(())
    }
}

/// The CA's own key, as the subject key of the probe certificate and of tests.
impl PublicKeyData for IssuingCa {
    fn der_bytes(&self) -> &[u8] {
        &self.key.key_bytes
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.kind.rcgen_algorithm()
    }
}

/// rcgen params of a CA certificate for the key ceremony (root when
/// `is_root`, else an issuing CA signed by the root). `ca` was checked when it
/// was built.
pub fn ca_params(
    ca: &CaProfile,
    is_root: bool,
    serial: &[u8],
    ca_public_key: &impl PublicKeyData,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, ProfileError> {
    let label = &ca.label;
    let mut params = CertificateParams::default();
    params.distinguished_name = names::to_rcgen_dn(&ca.subject)
        .map_err(|e| ProfileError::InvalidConfig(format!("CA {label:?} subject: {e}")))?;
    params.serial_number = Some(serial_number(serial)?);
    params.not_before = truncate_to_second(not_before);
    params.not_after = truncate_to_second(not_after);
    check_period(params.not_before, params.not_after)?;
    params.is_ca = IsCa::Ca(if is_root { BasicConstraints::Unconstrained } else { BasicConstraints::Constrained(0) });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // rcgen writes the SKI of CA certificates from this method.
    params.key_identifier_method = KeyIdMethod::PreSpecified(keys::key_identifier(ca_public_key.der_bytes()));
    params.use_authority_key_identifier_extension = !is_root;

    if let Some(oid) = ca.policy_oid {
        let value = extensions::certificate_policies(oid, None)?;
        // Critical, as on the real MEDIS issuing CAs.
        params.custom_extensions.push(extensions::custom(rfc5280::ID_CE_CERTIFICATE_POLICIES, value, true));
    }
    if let (false, Some(url)) = (is_root, &ca.crl_url) {
        params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.to_string()] }];
    }
    Ok(params)
}

pub(crate) fn check_period(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<(), ProfileError> {
    if not_before >= not_after {
        return Err(ProfileError::InvalidValidity(format!(
            "not_after {not_after} is not later than not_before {not_before}"
        )));
    }
    Ok(())
}
