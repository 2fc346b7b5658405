//! The delegated OCSP responder certificate profile (RFC 6960 §4.2.2.2): issued
//! by an issuing CA to the OCSP responder of that CA, with id-kp-OCSPSigning,
//! id-pkix-ocsp-nocheck, a critical keyUsage of digitalSignature only, no CA
//! bit, authority and subject key identifiers and a short validity. The subject
//! is the issuing CA's name with CN "<CA CN> OCSP Responder".
//!
//! Issuance, the only signer of end-entity certificates, builds it from the OCSP
//! process's CSR; the key stays in the OCSP process's token.

use const_oid::db::rfc6960;
use rcgen::{CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use time::OffsetDateTime;

use crate::{IssuingCa, ProfileError};

/// The CN of the responder of `ca`: "<CA CN> OCSP Responder" (`fallback` when the
/// CA's name has no CN).
pub fn responder_common_name(ca: &IssuingCa, fallback: &str) -> String {
    let cn = match ca.distinguished_name().get(&DnType::CommonName) {
        Some(DnValue::Utf8String(s)) => s.clone(),
        Some(DnValue::PrintableString(s)) => s.as_str().to_owned(),
        _ => fallback.to_owned(),
    };
    format!("{cn} OCSP Responder")
}

/// The parameters of a responder certificate of `ca` with serial `serial`, valid
/// from `not_before` to `not_after` (which must end within the CA's validity).
pub fn responder_params(
    ca: &IssuingCa,
    fallback_cn: &str,
    serial: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, ProfileError> {
    if not_after <= not_before {
        return Err(ProfileError::InvalidValidity(format!(
            "responder certificate: {not_after} is not after {not_before}"
        )));
    }
    if not_after > ca.not_after() {
        return Err(ProfileError::InvalidValidity(format!(
            "responder certificate ends {not_after}, after its issuing CA ({})",
            ca.not_after()
        )));
    }
    let mut params = CertificateParams::default();
    let mut dn = ca.distinguished_name().clone();
    dn.push(DnType::CommonName, DnValue::Utf8String(responder_common_name(ca, fallback_cn)));
    params.distinguished_name = dn;
    params.serial_number = Some(crate::serial_number(serial)?);
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    // rcgen writes keyUsage critical.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions.push(crate::extensions::custom(rfc6960::ID_PKIX_OCSP_NOCHECK, vec![0x05, 0x00], false));
    Ok(params)
}
