//! Extensions rcgen cannot write itself (certificatePolicies with a CPS
//! qualifier, subjectAltName directoryName, AIA, subjectKeyIdentifier for
//! end entities, subjectDirectoryAttributes), encoded with x509-cert and added
//! as rcgen custom extensions.

use const_oid::db::rfc5280;
use der::asn1::{Any, Ia5String, ObjectIdentifier, OctetString};
use der::Encode;
use rcgen::{CustomExtension, ExtendedKeyUsagePurpose};
use x509_cert::ext::pkix::certpolicy::{PolicyInformation, PolicyQualifierInfo};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, CertificatePolicies, FreshestCrl, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;

use crate::error::ProfileError;
use crate::names::oid_arcs;

pub fn custom(oid: ObjectIdentifier, content: Vec<u8>, critical: bool) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(&oid_arcs(oid), content);
    ext.set_criticality(critical);
    ext
}

/// Parses a dotted OID from config; the error names `field`.
pub fn parse_oid(value: &str, field: &str) -> Result<ObjectIdentifier, ProfileError> {
    ObjectIdentifier::new(value.trim())
        .map_err(|e| ProfileError::InvalidConfig(format!("{field} = {value:?} is not a dotted OID: {e}")))
}

/// Checks a URL from config can go in an IA5String GeneralName.
pub fn parse_url(value: &str, field: &str) -> Result<Ia5String, ProfileError> {
    if !value.contains("://") || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ProfileError::InvalidConfig(format!("{field} = {value:?} is not a URL")));
    }
    Ia5String::new(value)
        .map_err(|_| ProfileError::InvalidConfig(format!("{field} = {value:?} must be ASCII (IA5String)")))
}

/// certificatePolicies with one policy and, when given, a CPS URI qualifier.
pub fn certificate_policies(policy: ObjectIdentifier, cps_uri: Option<Ia5String>) -> Result<Vec<u8>, ProfileError> {
    let policy_qualifiers = match cps_uri {
        None => None,
        Some(uri) => Some(vec![PolicyQualifierInfo {
            policy_qualifier_id: rfc5280::ID_QT_CPS,
            qualifier: Some(Any::encode_from(&uri)?),
        }]),
    };
    let policies = CertificatePolicies(vec![PolicyInformation { policy_identifier: policy, policy_qualifiers }]);
    Ok(policies.to_der()?)
}

/// subjectAltName holding one directoryName.
pub fn subject_alt_name_directory(name: Name) -> Result<Vec<u8>, ProfileError> {
    Ok(SubjectAltName(vec![GeneralName::DirectoryName(name)]).to_der()?)
}

/// authorityInfoAccess with one OCSP responder URI.
pub fn authority_info_access_ocsp(url: Ia5String) -> Result<Vec<u8>, ProfileError> {
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(url),
    }]);
    Ok(aia.to_der()?)
}

/// freshestCRL (same syntax as cRLDistributionPoints) with one
/// distributionPoint whose fullName is the delta CRL's URI.
pub fn freshest_crl(url: Ia5String) -> Result<Vec<u8>, ProfileError> {
    let point = DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![GeneralName::UniformResourceIdentifier(url)])),
        reasons: None,
        crl_issuer: None,
    };
    Ok(FreshestCrl(vec![point]).to_der()?)
}

/// authorityKeyIdentifier with keyIdentifier `key_id` and also
/// authorityCertIssuer and authorityCertSerialNumber: the issuer and serial of
/// the issuing CA's certificate `ca_cert_der`, as the real MEDIS certificates
/// carry them (`[profile] authority_key_identifier_issuer_serial`).
pub fn authority_key_identifier_with_issuer_serial(key_id: &[u8], ca_cert_der: &[u8]) -> Result<Vec<u8>, ProfileError> {
    use der::Decode;
    let ca = x509_cert::Certificate::from_der(ca_cert_der)?;
    let tbs = ca.tbs_certificate();
    let aki = x509_cert::ext::pkix::AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(key_id)?),
        authority_cert_issuer: Some(vec![GeneralName::DirectoryName(tbs.issuer().clone())]),
        authority_cert_serial_number: Some(tbs.serial_number().clone()),
    };
    Ok(aki.to_der()?)
}

pub fn subject_key_identifier(key_id: &[u8]) -> Result<Vec<u8>, ProfileError> {
    Ok(SubjectKeyIdentifier(OctetString::new(key_id)?).to_der()?)
}

/// EKU purposes from config names ("clientAuth", "emailProtection") or dotted OIDs.
pub fn extended_key_usages(names: &[String], field: &str) -> Result<Vec<ExtendedKeyUsagePurpose>, ProfileError> {
    names.iter().map(|name| crate::policy::parse_eku(name, field).map(crate::policy::eku_purpose)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_with_and_without_cps() {
        let oid = ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.1.0.1");
        let with = certificate_policies(oid, Some(Ia5String::new("http://www.medis.or.jp/8_hpki/").unwrap())).unwrap();
        let without = certificate_policies(oid, None).unwrap();
        // SEQUENCE { SEQUENCE { OID } }
        assert_eq!(&without[..6], &[0x30, 0x10, 0x30, 0x0e, 0x06, 0x0c]);
        assert!(with.len() > without.len());
        let id_qt_cps = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x02, 0x01];
        assert!(with.windows(10).any(|w| w == id_qt_cps));
    }

    #[test]
    fn config_values_are_checked_with_the_field_name() {
        let err = parse_oid("1.2.x", "profile.signing_policy_oid").unwrap_err().to_string();
        assert!(err.contains("profile.signing_policy_oid"), "{err}");
        let err = parse_url("http://例え.jp/", "profile.ocsp_url").unwrap_err().to_string();
        assert!(err.contains("profile.ocsp_url"), "{err}");
        assert!(parse_url("not a url", "x").is_err());
        let err = extended_key_usages(&["serverAuthx".into()], "profile.authentication_eku").unwrap_err();
        assert!(err.to_string().contains("profile.authentication_eku"));
        assert_eq!(
            extended_key_usages(&["clientAuth".into(), "1.3.6.1.5.5.7.3.4".into()], "f").unwrap(),
            vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 4])]
        );
    }

    #[test]
    fn freshest_crl_is_one_full_name_uri() {
        let der = freshest_crl(Ia5String::new("http://h/d.crl").unwrap()).unwrap();
        // SEQUENCE { SEQUENCE { [0] { [0] { [6] "http://h/d.crl" } } } }
        let mut expected = vec![0x30, 0x16, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e];
        expected.extend_from_slice(b"http://h/d.crl");
        assert_eq!(der, expected);
    }

    #[test]
    fn ski_is_an_octet_string() {
        assert_eq!(subject_key_identifier(&[1, 2, 3]).unwrap(), vec![0x04, 0x03, 1, 2, 3]);
    }
}
