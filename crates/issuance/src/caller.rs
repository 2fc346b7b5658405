//! Who is calling: the RA system's identity, from its client certificate.
//!
//! One function, [`caller_identity`], so that it can be swapped for the
//! identity the authorization layer puts into the request's extensions once
//! every RA system and person has a certificate of its own.

use der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// The identity of a caller without a client certificate (TLS off: the
/// development switch). All such callers share one count.
pub const ANONYMOUS: &str = "anonymous";

/// The caller's identity: the subject CN of its client certificate, else its
/// first URI SAN, else [`ANONYMOUS`] (TLS off, or a certificate without
/// either).
pub fn caller_identity<T>(request: &tonic::Request<T>) -> String {
    request
        .peer_certs()
        .and_then(|certs| certs.first().and_then(|leaf| identity_of_certificate(leaf.as_ref())))
        .unwrap_or_else(|| ANONYMOUS.to_owned())
}

/// Subject CN, else the first URI SAN, of a DER certificate.
pub fn identity_of_certificate(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let cn = tbs
        .subject()
        .iter()
        .find_map(|atv| (atv.oid == const_oid::db::rfc4519::CN).then(|| directory_string(&atv.value)).flatten());
    if let Some(cn) = cn.filter(|c| !c.trim().is_empty()) {
        return Some(cn);
    }
    let exts = tbs.extensions()?;
    let san = exts.iter().find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)?;
    let names = SubjectAltName::from_der(san.extn_value.as_bytes()).ok()?;
    names.0.iter().find_map(|n| match n {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str().to_owned()),
        _ => None,
    })
}

/// UTF8String, PrintableString or IA5String as text.
fn directory_string(value: &der::Any) -> Option<String> {
    use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    value
        .decode_as::<Utf8StringRef<'_>>()
        .map(|s| s.as_str().to_owned())
        .or_else(|_| value.decode_as::<PrintableStringRef<'_>>().map(|s| s.as_str().to_owned()))
        .or_else(|_| value.decode_as::<Ia5StringRef<'_>>().map(|s| s.as_str().to_owned()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, uri: Option<&str>) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "hpki-ca");
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        if let Some(uri) = uri {
            p.subject_alt_names = vec![rcgen::SanType::URI(rcgen::string::Ia5String::try_from(uri).unwrap())];
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_cn_names_the_caller_then_the_uri_san() {
        assert_eq!(
            identity_of_certificate(&cert(Some("ra-tokyo"), Some("urn:hpki-ca:role:ra"))).as_deref(),
            Some("ra-tokyo")
        );
        assert_eq!(
            identity_of_certificate(&cert(None, Some("urn:hpki-ca:role:ra"))).as_deref(),
            Some("urn:hpki-ca:role:ra")
        );
        assert_eq!(identity_of_certificate(&cert(None, None)), None);
        assert_eq!(identity_of_certificate(b"not a certificate"), None);
    }

    #[test]
    fn without_tls_the_caller_is_anonymous() {
        assert_eq!(caller_identity(&tonic::Request::new(())), ANONYMOUS);
    }
}
