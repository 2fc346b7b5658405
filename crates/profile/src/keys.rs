//! Public keys we accept (RSA with PKCS#1 v1.5 signatures, EC P-256) and the
//! signature checks done with ring, shared by CSR proof-of-possession and by
//! the check of signatures made under an issuing CA.

use const_oid::db::rfc5912;
use der::asn1::{AnyRef, ObjectIdentifier, UintRef};
use der::{Decode, Encode, Sequence, Tag, Tagged};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

/// ring verifies RSA moduli up to this size.
const MAX_RSA_BITS: u32 = 8192;

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1)
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa { bits: u32 },
    EcP256,
}

impl KeyKind {
    pub(crate) fn description(self) -> String {
        match self {
            KeyKind::Rsa { bits } => format!("RSA {bits}"),
            KeyKind::EcP256 => "EC P-256".to_string(),
        }
    }

    /// The rcgen algorithm whose SPKI encoding matches this key
    /// (rsaEncryption with NULL parameters, or id-ecPublicKey on P-256).
    pub(crate) fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            KeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

/// A public key we know how to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) spki_der: Vec<u8>,
    /// subjectPublicKey BIT STRING contents: PKCS#1 RSAPublicKey or an uncompressed EC point.
    pub(crate) key_bytes: Vec<u8>,
    pub(crate) kind: KeyKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    Encoding(String),
    Unsupported(String),
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Encoding(m) | KeyProblem::Unsupported(m) => f.write_str(m),
        }
    }
}

impl From<der::Error> for KeyProblem {
    fn from(e: der::Error) -> Self {
        KeyProblem::Encoding(e.to_string())
    }
}

pub(crate) fn parse_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<PublicKey, KeyProblem> {
    let spki_der = spki.to_der()?;
    let key_bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| KeyProblem::Encoding("subjectPublicKey has unused bits".into()))?
        .to_vec();
    let alg = &spki.algorithm;
    let kind = if alg.oid == rfc5912::RSA_ENCRYPTION {
        if !params_absent_or_null(alg.parameters) {
            return Err(KeyProblem::Encoding("rsaEncryption parameters must be NULL".into()));
        }
        let rsa = RsaPublicKey::from_der(&key_bytes)?;
        let bits = uint_bits(rsa.modulus.as_bytes());
        let e = rsa.public_exponent.as_bytes();
        // ring accepts odd exponents from 3 up to 33 bits; say so here rather than
        // report a confusing signature failure later.
        let e_odd = e.last().is_some_and(|b| b & 1 == 1);
        if uint_bits(e) > 33 || uint_bits(e) < 2 || !e_odd {
            return Err(KeyProblem::Unsupported("RSA public exponent must be odd, 3 to 2^33".into()));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyProblem::Unsupported(format!("RSA modulus of {bits} bits is larger than {MAX_RSA_BITS}")));
        }
        KeyKind::Rsa { bits }
    } else if alg.oid == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = match alg.parameters {
            Some(p) if p.tag() == Tag::ObjectIdentifier => p.decode_as::<ObjectIdentifier>()?,
            _ => return Err(KeyProblem::Unsupported("EC key without a named curve (only P-256 is accepted)".into())),
        };
        if curve != rfc5912::SECP_256_R_1 {
            return Err(KeyProblem::Unsupported(format!(
                "EC curve {curve} (only P-256, 1.2.840.10045.3.1.7, is accepted)"
            )));
        }
        if key_bytes.len() != 65 || key_bytes.first() != Some(&0x04) {
            return Err(KeyProblem::Unsupported("EC P-256 point must be uncompressed (65 bytes starting 04)".into()));
        }
        KeyKind::EcP256
    } else {
        return Err(KeyProblem::Unsupported(format!(
            "public key algorithm {} (only RSA and EC P-256 are accepted)",
            alg.oid
        )));
    };
    Ok(PublicKey { spki_der, key_bytes, kind })
}

/// Significant bits of a big-endian unsigned integer.
pub(crate) fn uint_bits(bytes: &[u8]) -> u32 {
    let mut iter = bytes.iter().skip_while(|b| **b == 0);
    match iter.next() {
        None => 0,
        Some(first) => {
            let rest = u32::try_from(iter.count()).unwrap_or(u32::MAX / 16);
            rest.saturating_mul(8).saturating_add(8 - first.leading_zeros())
        }
    }
}

pub(crate) fn params_absent_or_null(params: Option<AnyRef<'_>>) -> bool {
    match params {
        None => true,
        Some(p) => p.tag() == Tag::Null && p.value().is_empty(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VerifyProblem {
    /// The algorithm is not one we accept, or does not fit the key.
    Unsupported(String),
    Bad,
}

/// Verifies `signature` over `message` with `key` under the signature
/// algorithm `alg` (sha256/384/512WithRSAEncryption or ecdsa-with-SHA256).
pub(crate) fn verify(
    key: &PublicKey,
    alg: &AlgorithmIdentifierRef<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyProblem> {
    let ring_alg: &'static dyn VerificationAlgorithm = match key.kind {
        KeyKind::Rsa { bits } => {
            // Keys under 2048 bits only get here when the operator lowered
            // min_rsa_bits; ring then needs its legacy variants.
            let legacy = bits < 2048;
            let chosen: Option<&'static dyn VerificationAlgorithm> = match (alg.oid, legacy) {
                (o, false) if o == rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
                (o, false) if o == rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
                (o, false) if o == rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
                (o, true) if o == rfc5912::SHA_256_WITH_RSA_ENCRYPTION => {
                    Some(&signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY)
                }
                (o, true) if o == rfc5912::SHA_512_WITH_RSA_ENCRYPTION => {
                    Some(&signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY)
                }
                _ => None,
            };
            let Some(chosen) = chosen else {
                return Err(VerifyProblem::Unsupported(format!(
                    "signature algorithm {} with an RSA {bits} key (accepted: sha256/384/512WithRSAEncryption)",
                    name_of(alg.oid)
                )));
            };
            if !params_absent_or_null(alg.parameters) {
                return Err(VerifyProblem::Unsupported(format!(
                    "{} with parameters other than NULL",
                    name_of(alg.oid)
                )));
            }
            chosen
        }
        KeyKind::EcP256 => {
            if alg.oid != rfc5912::ECDSA_WITH_SHA_256 {
                return Err(VerifyProblem::Unsupported(format!(
                    "signature algorithm {} with an EC P-256 key (accepted: ecdsa-with-SHA256)",
                    name_of(alg.oid)
                )));
            }
            if alg.parameters.is_some() {
                return Err(VerifyProblem::Unsupported("ecdsa-with-SHA256 must have no parameters".into()));
            }
            &signature::ECDSA_P256_SHA256_ASN1
        }
    };
    UnparsedPublicKey::new(ring_alg, &key.key_bytes).verify(message, signature).map_err(|_| VerifyProblem::Bad)
}

/// A readable name for the signature algorithms people are likely to send.
pub(crate) fn name_of(oid: ObjectIdentifier) -> String {
    const KNOWN: [(&str, &str); 9] = [
        ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
        ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
        ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
        ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
        ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
        ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
        ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
        ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
        ("1.3.101.112", "Ed25519"),
    ];
    let dotted = oid.to_string();
    match KNOWN.iter().find(|(o, _)| *o == dotted) {
        Some((_, name)) => format!("{name} ({dotted})"),
        None => dotted,
    }
}

/// SHA-1 of the subjectPublicKey BIT STRING contents: RFC 5280 §4.2.1.2
/// method (1). SHA-1 is used because pkilint recognises only this method.
pub(crate) fn key_identifier(key_bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key_bytes).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_bits_counts_significant_bits() {
        assert_eq!(uint_bits(&[]), 0);
        assert_eq!(uint_bits(&[0, 0]), 0);
        assert_eq!(uint_bits(&[1]), 1);
        assert_eq!(uint_bits(&[0x01, 0x00, 0x01]), 17);
        assert_eq!(uint_bits(&[0x00, 0x80, 0, 0]), 24);
    }

    #[test]
    fn key_identifier_is_sha1_of_the_key_bytes() {
        // SHA-1("abc")
        assert_eq!(
            key_identifier(b"abc"),
            [
                0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c,
                0xd0, 0xd8, 0x9d
            ]
        );
    }

    #[test]
    fn names_known_algorithms() {
        assert_eq!(name_of(rfc5912::SHA_256_WITH_RSA_ENCRYPTION), "sha256WithRSAEncryption (1.2.840.113549.1.1.11)");
        assert_eq!(name_of(ObjectIdentifier::new_unwrap("1.2.3")), "1.2.3");
    }
}
