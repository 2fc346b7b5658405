//! PKCS#10 requests: parsing, proof of possession and key checks.

use der::{Decode, Encode};
use spki::AlgorithmIdentifierRef;
use x509_cert::request::{CertReq, CertReqInfo};

use crate::keys::{self, KeyKind, KeyProblem, PublicKey, VerifyProblem};
use crate::tbs::RawSigned;

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("the CSR is not a valid PKCS#10 request (DER, or PEM \"CERTIFICATE REQUEST\"): {0}")]
    Encoding(String),
    #[error(
        "the CSR signature does not verify with the CSR's own public key (no proof of possession of the private key)"
    )]
    BadSignature,
    #[error("unsupported CSR signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("the RSA key has {bits} bits; at least {min} bits are required")]
    KeyTooSmall { bits: u32, min: u32 },
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
}

impl From<der::Error> for CsrError {
    fn from(e: der::Error) -> Self {
        CsrError::Encoding(e.to_string())
    }
}

impl From<KeyProblem> for CsrError {
    fn from(p: KeyProblem) -> Self {
        match p {
            KeyProblem::Encoding(m) => CsrError::Encoding(m),
            KeyProblem::Unsupported(m) => CsrError::UnsupportedKey(m),
        }
    }
}

/// A request whose signature verified with its own key, and whose key we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    key: PublicKey,
    subject_der: Vec<u8>,
}

impl VerifiedCsr {
    /// SubjectPublicKeyInfo DER exactly as in the request.
    pub fn subject_public_key_info_der(&self) -> &[u8] {
        &self.key.spki_der
    }

    /// "RSA 2048" or "EC P-256".
    pub fn key_description(&self) -> String {
        self.key.kind.description()
    }

    /// The subject Name DER the requester asked for. Informational only: the
    /// certificate subject comes from the registry, never from the CSR.
    pub fn requested_subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// RSA modulus size in bits, None for EC keys.
    pub fn rsa_bits(&self) -> Option<u32> {
        match self.key.kind {
            KeyKind::Rsa { bits } => Some(bits),
            KeyKind::EcP256 => None,
        }
    }
}

impl rcgen::PublicKeyData for VerifiedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.key.key_bytes
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.kind.rcgen_algorithm()
    }
}

/// Parses a PKCS#10 request (DER or PEM), checks its key and verifies its
/// self-signature (proof of possession).
pub fn parse_and_verify(input: &[u8], min_rsa_bits: u32) -> Result<VerifiedCsr, CsrError> {
    let der = to_der(input)?;
    // CertificationRequest (RFC 2986 §4): parsed whole with x509-cert for
    // strictness, and raw so the signature is checked over the bytes received.
    CertReq::from_der(&der)?;
    let req = RawSigned::parse(&der)?;
    let info = CertReqInfo::from_der(req.tbs)?;

    let spki_der = info.public_key.to_der()?;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der)?;
    let key = keys::parse_spki(&spki)?;
    // Size first: a small key is the clearer message, and ring would refuse it anyway.
    if let KeyKind::Rsa { bits } = key.kind {
        if bits < min_rsa_bits {
            return Err(CsrError::KeyTooSmall { bits, min: min_rsa_bits });
        }
    }
    let alg = AlgorithmIdentifierRef::from_der(req.signature_algorithm)?;
    keys::verify(&key, &alg, req.tbs, req.signature).map_err(|p| match p {
        VerifyProblem::Unsupported(m) => CsrError::UnsupportedAlgorithm(m),
        VerifyProblem::Bad => CsrError::BadSignature,
    })?;
    Ok(VerifiedCsr { key, subject_der: info.subject.to_der()? })
}

fn to_der(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    let first = input.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(CsrError::Encoding("empty input".into())),
        Some(b'-') => {
            let pem = pem::parse(input).map_err(|e| CsrError::Encoding(format!("PEM: {e}")))?;
            match pem.tag() {
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(pem.into_contents()),
                other => Err(CsrError::Encoding(format!("PEM label is \"{other}\", expected \"CERTIFICATE REQUEST\""))),
            }
        }
        Some(_) => Ok(input.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    fn flip_last_byte(mut der: Vec<u8>) -> Vec<u8> {
        if let Some(b) = der.last_mut() {
            *b ^= 0x01;
        }
        der
    }

    #[test]
    fn rsa_2048_csr_passes_as_der_and_pem() {
        let (pem, der) = testutil::openssl_csr(&["-newkey", "rsa:2048"]);
        let from_der = parse_and_verify(&der, 2048).unwrap();
        assert_eq!(from_der.key_description(), "RSA 2048");
        assert_eq!(from_der.rsa_bits(), Some(2048));
        let from_pem = parse_and_verify(pem.as_bytes(), 2048).unwrap();
        assert_eq!(from_pem, from_der);
        // The SPKI is kept byte-for-byte from the request.
        assert!(der
            .windows(from_der.subject_public_key_info_der().len())
            .any(|w| w == from_der.subject_public_key_info_der()));
        // rcgen re-derives the same SPKI from der_bytes + algorithm.
        use rcgen::PublicKeyData;
        assert_eq!(from_der.subject_public_key_info(), from_der.subject_public_key_info_der());
    }

    #[test]
    fn new_certificate_request_pem_label_is_accepted() {
        let (pem, _) = testutil::openssl_csr(&["-newkey", "rsa:2048"]);
        let relabelled = pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
        parse_and_verify(relabelled.as_bytes(), 2048).unwrap();
    }

    #[test]
    fn wrong_pem_label_is_an_encoding_error() {
        let (pem, _) = testutil::openssl_csr(&["-newkey", "rsa:2048"]);
        let relabelled = pem.replace("CERTIFICATE REQUEST", "CERTIFICATE");
        let err = parse_and_verify(relabelled.as_bytes(), 2048).unwrap_err();
        assert!(matches!(err, CsrError::Encoding(ref m) if m.contains("CERTIFICATE")), "{err}");
    }

    #[test]
    fn p256_csr_from_openssl_and_rcgen_passes() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        let csr = parse_and_verify(&der, 2048).unwrap();
        assert_eq!(csr.key_description(), "EC P-256");
        assert_eq!(csr.rsa_bits(), None);

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let req = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
        let csr = parse_and_verify(req.der(), 2048).unwrap();
        assert_eq!(csr.key_description(), "EC P-256");
        use rcgen::PublicKeyData;
        assert_eq!(csr.der_bytes(), key.der_bytes());
    }

    #[test]
    fn flipped_signature_byte_is_bad_signature() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "rsa:2048"]);
        let err = parse_and_verify(&flip_last_byte(der), 2048).unwrap_err();
        assert!(matches!(err, CsrError::BadSignature), "{err}");

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let req = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
        // Flipping inside the ECDSA signature may also break its DER; both must be rejected.
        let err = parse_and_verify(&flip_last_byte(req.der().to_vec()), 2048).unwrap_err();
        assert!(matches!(err, CsrError::BadSignature), "{err}");
    }

    #[test]
    fn flipped_byte_in_the_signed_part_is_bad_signature() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "rsa:2048", "-subj", "/CN=abc"]);
        let pos = der.windows(3).position(|w| w == b"abc").unwrap();
        let mut tampered = der.clone();
        tampered[pos] = b'x';
        assert!(matches!(parse_and_verify(&tampered, 2048), Err(CsrError::BadSignature)));
    }

    #[test]
    fn rsa_1024_is_too_small() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "rsa:1024"]);
        let err = parse_and_verify(&der, 2048).unwrap_err();
        assert!(matches!(err, CsrError::KeyTooSmall { bits: 1024, min: 2048 }), "{err}");
        assert!(err.to_string().contains("1024") && err.to_string().contains("2048"));
        // An operator who lowers the minimum gets ring's legacy verifier.
        assert_eq!(parse_and_verify(&der, 1024).unwrap().key_description(), "RSA 1024");
    }

    #[test]
    fn p384_key_is_unsupported() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]);
        let err = parse_and_verify(&der, 2048).unwrap_err();
        assert!(matches!(err, CsrError::UnsupportedKey(ref m) if m.contains("1.3.132.0.34")), "{err}");
    }

    #[test]
    fn rsa_pss_signature_is_an_unsupported_algorithm() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "rsa:2048", "-sigopt", "rsa_padding_mode:pss"]);
        let err = parse_and_verify(&der, 2048).unwrap_err();
        assert!(matches!(err, CsrError::UnsupportedAlgorithm(ref m) if m.contains("PSS")), "{err}");
    }

    #[test]
    fn sha1_signature_is_an_unsupported_algorithm() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "rsa:2048", "-sha1"]);
        let err = parse_and_verify(&der, 2048).unwrap_err();
        assert!(matches!(err, CsrError::UnsupportedAlgorithm(ref m) if m.contains("sha1")), "{err}");
    }

    #[test]
    fn sha512_rsa_signature_passes() {
        let (_, der) = testutil::openssl_csr(&["-newkey", "rsa:2048", "-sha512"]);
        parse_and_verify(&der, 2048).unwrap();
    }

    #[test]
    fn garbage_is_an_encoding_error() {
        for input in [&b""[..], b"   ", b"hello", b"\x30\x03\x02\x01", b"-----BEGIN CERTIFICATE REQUEST-----\n!!\n"] {
            let err = parse_and_verify(input, 2048).unwrap_err();
            assert!(matches!(err, CsrError::Encoding(_)), "{input:?}: {err}");
        }
    }

    #[test]
    fn truncated_or_extended_input_never_panics_and_is_rejected() {
        let (pem, der) = testutil::openssl_csr(&["-newkey", "rsa:2048"]);
        for n in 0..der.len() {
            assert!(parse_and_verify(&der[..n], 2048).is_err(), "prefix {n} accepted");
        }
        // Cut before the END line: a PEM missing only its last newline is still whole.
        for n in (0..pem.len() - 35).step_by(7) {
            assert!(parse_and_verify(&pem.as_bytes()[..n], 2048).is_err(), "PEM prefix {n}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(parse_and_verify(&trailing, 2048), Err(CsrError::Encoding(_))));
    }
}
