//! The little X.509 the registry reads: a certificate's serial and its exact
//! tbsCertificate bytes, and the serial inside recorded to-be-signed bytes.
//! Decoding untrusted DER only ever returns errors, never panics.

use der::{Decode, Header, Reader, SliceReader, Tag};
use x509_cert::{Certificate, TbsCertificate};

use crate::error::RegistryError;

pub struct ParsedCertificate<'a> {
    pub serial: Vec<u8>,
    /// The tbsCertificate exactly as it appears inside the certificate.
    pub tbs_der: &'a [u8],
}

pub fn parse_certificate<'a>(field: &'static str, der: &'a [u8]) -> Result<ParsedCertificate<'a>, RegistryError> {
    let bad = |e: der::Error| RegistryError::invalid(field, format!("not a DER X.509 certificate: {e}"));
    let cert = Certificate::from_der(der).map_err(bad)?;
    // Sliced rather than re-encoded: what was signed is the bytes as they are.
    let tbs_der = first_element(der).map_err(bad)?;
    Ok(ParsedCertificate { serial: cert.tbs_certificate().serial_number().as_bytes().to_vec(), tbs_der })
}

/// The serial of DER to-be-signed bytes, which must be one whole tbsCertificate.
pub fn tbs_serial(field: &'static str, der: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let tbs = TbsCertificate::from_der(der)
        .map_err(|e| RegistryError::invalid(field, format!("not a DER tbsCertificate: {e}")))?;
    Ok(tbs.serial_number().as_bytes().to_vec())
}

/// The first TLV inside an outer SEQUENCE.
fn first_element(der: &[u8]) -> der::Result<&[u8]> {
    let mut reader = SliceReader::new(der)?;
    let outer = Header::decode(&mut reader)?;
    outer.tag().assert_eq(Tag::Sequence)?;
    reader.tlv_bytes()
}

#[cfg(test)]
mod tests {
    use der::Encode;

    use super::*;

    fn rcgen_cert(serial: &[u8]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["test".into()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn finds_the_serial_and_the_exact_tbs_bytes() {
        let serial = [0x12; 16];
        let der = rcgen_cert(&serial);
        let parsed = parse_certificate("certificate_der", &der).unwrap();
        assert_eq!(parsed.serial, serial);
        let reencoded = Certificate::from_der(&der).unwrap().tbs_certificate().to_der().unwrap();
        assert_eq!(parsed.tbs_der, reencoded.as_slice());
        assert_eq!(tbs_serial("tbs_der", parsed.tbs_der).unwrap(), serial);
    }

    #[test]
    fn garbage_truncated_or_trailing_bytes_are_errors() {
        let der = rcgen_cert(&[0x33; 16]);
        for bad in [&b""[..], b"\x30", b"\x30\x82\xff\xff", &der[..der.len() - 1], &[0xffu8; 40]] {
            let err = parse_certificate("certificate_der", bad).err().expect("must fail");
            assert!(err.to_string().starts_with("certificate_der: "), "{err}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_certificate("certificate_der", &trailing).is_err());
        assert!(tbs_serial("tbs_der", &der).is_err(), "a whole certificate is not a tbsCertificate");
    }

    #[test]
    fn every_truncation_of_a_certificate_is_rejected_without_panicking() {
        let der = rcgen_cert(&[0x44; 16]);
        for len in 0..der.len() {
            assert!(parse_certificate("certificate_der", &der[..len]).is_err());
            let _ = tbs_serial("tbs_der", &der[..len]);
        }
    }
}
