//! The key types the CA can hold in the token.

use crate::error::HsmError;

/// DER of the prime256v1 OID (1.2.840.10045.3.1.7), as CKA_EC_PARAMS wants it.
pub(crate) const P256_PARAMS_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Smallest and largest RSA sizes accepted; ring (and most verifiers) reject < 2048.
const RSA_MIN_BITS: u32 = 2048;
const RSA_MAX_BITS: u32 = 8192;

/// Algorithm of a key pair in the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA, signing with PKCS#1 v1.5 and SHA-256.
    Rsa { bits: u32 },
    /// ECDSA on NIST P-256 with SHA-256.
    EcdsaP256,
}

/// The algorithm `[ca] key_algorithm` (and the like) names.
impl From<config::KeyAlgorithm> for KeyAlgorithm {
    fn from(a: config::KeyAlgorithm) -> KeyAlgorithm {
        match a {
            config::KeyAlgorithm::Rsa2048 => KeyAlgorithm::Rsa { bits: 2048 },
            config::KeyAlgorithm::Rsa3072 => KeyAlgorithm::Rsa { bits: 3072 },
            config::KeyAlgorithm::Rsa4096 => KeyAlgorithm::Rsa { bits: 4096 },
            config::KeyAlgorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        }
    }
}

impl KeyAlgorithm {
    /// Rejects sizes we would not want a CA key to have.
    pub(crate) fn validate(self) -> Result<(), HsmError> {
        match self {
            KeyAlgorithm::Rsa { bits } if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || bits % 8 != 0 => {
                Err(HsmError::InvalidArgument(format!(
                    "RSA key size {bits} (want a multiple of 8 in {RSA_MIN_BITS}..={RSA_MAX_BITS})"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The one PKCS#11 mechanism [`crate::HsmKey::sign`] uses with such a key: its
    /// CKA_ALLOWED_MECHANISMS list. (ECDSA keys sign a SHA-256 digest made outside.)
    pub(crate) fn sign_mechanism(self) -> cryptoki::mechanism::MechanismType {
        match self {
            KeyAlgorithm::Rsa { .. } => cryptoki::mechanism::MechanismType::SHA256_RSA_PKCS,
            KeyAlgorithm::EcdsaP256 => cryptoki::mechanism::MechanismType::ECDSA,
        }
    }

    /// The matching rcgen signature algorithm.
    pub(crate) fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_sizes_are_checked() {
        assert!(KeyAlgorithm::Rsa { bits: 2048 }.validate().is_ok());
        assert!(KeyAlgorithm::Rsa { bits: 4096 }.validate().is_ok());
        assert!(matches!(KeyAlgorithm::Rsa { bits: 1024 }.validate(), Err(HsmError::InvalidArgument(_))));
        assert!(KeyAlgorithm::Rsa { bits: 2049 }.validate().is_err());
        assert!(KeyAlgorithm::Rsa { bits: 16384 }.validate().is_err());
        assert!(KeyAlgorithm::EcdsaP256.validate().is_ok());
    }
}
