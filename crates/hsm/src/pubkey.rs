//! Public key encodings built from token attributes.

use const_oid::db::rfc5912;
use der::asn1::{AnyRef, BitStringRef, Null, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};

use crate::algorithm::{KeyAlgorithm, P256_PARAMS_DER};
use crate::error::HsmError;

/// Length of an uncompressed P-256 point: 0x04 || X || Y.
pub(crate) const P256_POINT_LEN: usize = 65;

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

#[derive(Sequence)]
struct AlgorithmIdentifier<'a> {
    algorithm: ObjectIdentifier,
    parameters: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct SubjectPublicKeyInfo<'a> {
    algorithm: AlgorithmIdentifier<'a>,
    subject_public_key: BitStringRef<'a>,
}

fn enc(what: &str) -> impl Fn(der::Error) -> HsmError + '_ {
    move |e| HsmError::Encoding(format!("{what}: {e}"))
}

/// RSAPublicKey DER from CKA_MODULUS / CKA_PUBLIC_EXPONENT (unsigned big-endian).
pub(crate) fn rsa_public_key_der(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, HsmError> {
    if modulus.iter().all(|b| *b == 0) || exponent.iter().all(|b| *b == 0) {
        return Err(HsmError::Encoding("RSA public key attribute is empty".into()));
    }
    RsaPublicKey {
        modulus: UintRef::new(modulus).map_err(enc("RSA modulus"))?,
        public_exponent: UintRef::new(exponent).map_err(enc("RSA exponent"))?,
    }
    .to_der()
    .map_err(enc("RSAPublicKey"))
}

/// Bit length of a big-endian modulus, ignoring leading zero bytes.
pub(crate) fn rsa_modulus_bits(modulus: &[u8]) -> u32 {
    let Some(pos) = modulus.iter().position(|b| *b != 0) else {
        return 0;
    };
    let significant = u32::try_from(modulus.len() - pos).unwrap_or(u32::MAX / 8);
    significant * 8 - modulus[pos].leading_zeros()
}

/// The bare uncompressed point from CKA_EC_POINT.
///
/// PKCS#11 says the attribute is a DER OCTET STRING around the point (SoftHSM does
/// this); some older modules return the bare point, which we also accept.
pub(crate) fn p256_point_from_attribute(attr: &[u8]) -> Result<Vec<u8>, HsmError> {
    let is_point = |p: &[u8]| p.len() == P256_POINT_LEN && p[0] == 0x04;
    if let Ok(os) = <&OctetStringRef>::from_der(attr) {
        if is_point(os.as_bytes()) {
            return Ok(os.as_bytes().to_vec());
        }
    }
    if is_point(attr) {
        return Ok(attr.to_vec());
    }
    Err(HsmError::Encoding(format!("CKA_EC_POINT ({} bytes) is not an uncompressed P-256 point", attr.len())))
}

/// SubjectPublicKeyInfo DER for `public_key` (RSAPublicKey DER or the bare EC point).
pub(crate) fn spki_der(alg: KeyAlgorithm, public_key: &[u8]) -> Result<Vec<u8>, HsmError> {
    let algorithm = match alg {
        KeyAlgorithm::Rsa { .. } => AlgorithmIdentifier {
            algorithm: rfc5912::RSA_ENCRYPTION,
            // RFC 3279: rsaEncryption parameters MUST be NULL, not absent.
            parameters: Some(AnyRef::from(Null)),
        },
        KeyAlgorithm::EcdsaP256 => AlgorithmIdentifier {
            algorithm: rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from_der(&P256_PARAMS_DER).map_err(enc("curve OID"))?),
        },
    };
    SubjectPublicKeyInfo {
        algorithm,
        subject_public_key: BitStringRef::from_bytes(public_key).map_err(enc("public key"))?,
    }
    .to_der()
    .map_err(enc("SubjectPublicKeyInfo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_public_key_is_pkcs1() {
        // n = 0x80 01 (high bit: needs a pad), e = 65537 with a redundant leading zero.
        let der = rsa_public_key_der(&[0x80, 0x01], &[0x00, 0x01, 0x00, 0x01]).unwrap();
        assert_eq!(der, [0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]);
        assert!(rsa_public_key_der(&[], &[1, 0, 1]).is_err());
        assert!(rsa_public_key_der(&[0x80], &[0]).is_err());
    }

    #[test]
    fn modulus_bits() {
        assert_eq!(rsa_modulus_bits(&[0x80; 256]), 2048);
        assert_eq!(rsa_modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(rsa_modulus_bits(&[0, 0]), 0);
    }

    #[test]
    fn ec_point_is_unwrapped_from_octet_string() {
        let mut point = vec![0x04];
        point.extend([0xab; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&point);
        assert_eq!(p256_point_from_attribute(&wrapped).unwrap(), point);
        // A bare point is accepted too, even one whose bytes look like a DER header.
        let mut tricky = vec![0x04, 0x3f];
        tricky.extend([0x11; 63]);
        assert_eq!(p256_point_from_attribute(&tricky).unwrap(), tricky);
    }

    #[test]
    fn bad_ec_points_are_rejected() {
        // Compressed point inside an OCTET STRING.
        let mut compressed = vec![0x04, 0x21, 0x02];
        compressed.extend([0x11; 32]);
        assert!(matches!(p256_point_from_attribute(&compressed), Err(HsmError::Encoding(_))));
        // Trailing garbage after the OCTET STRING.
        let mut trailing = vec![0x04, 0x41, 0x04];
        trailing.extend([0x11; 64]);
        trailing.push(0);
        assert!(p256_point_from_attribute(&trailing).is_err());
        assert!(p256_point_from_attribute(&[]).is_err());
    }

    #[test]
    fn spki_headers() {
        let rsa = spki_der(KeyAlgorithm::Rsa { bits: 2048 }, &[0x30, 0x00]).unwrap();
        // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING }
        assert_eq!(
            &rsa[2..17],
            &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00]
        );
        let ec = spki_der(KeyAlgorithm::EcdsaP256, &[0x04; 65]).unwrap();
        let mut want = vec![0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        want.extend(P256_PARAMS_DER);
        want.extend([0x03, 0x42, 0x00]);
        assert_eq!(&ec[..want.len()], &want[..]);
        assert_eq!(ec.len(), 91);
    }
}
