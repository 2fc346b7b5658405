//! Checkpoint verification keys: the public half of the HSM key
//! "audit-checkpoint", as SubjectPublicKeyInfo (the ceremony writes it as PEM
//! to `<cert_dir>/audit-checkpoint.pub.pem`).

use std::path::{Path, PathBuf};

use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1 as PRIME256V1};
use der::asn1::ObjectIdentifier;
use der::{Decode, Tag, Tagged};
use sha2::{Digest, Sha256};

/// A checkpoint key or record file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Pem { path: PathBuf, source: pem::PemError },
    #[error("{path}: a {tag:?} PEM block, not PUBLIC KEY")]
    NotPublicKey { path: PathBuf, tag: String },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
}

/// A SubjectPublicKeyInfo that cannot verify checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a SubjectPublicKeyInfo: {0}")]
    NotSpki(der::Error),
    #[error("subjectPublicKey has unused bits")]
    UnusedBits,
    #[error("EC parameters: {0}")]
    EcParameters(der::Error),
    #[error("EC key without a named curve")]
    NoNamedCurve,
    #[error("EC curve {0}: only P-256 is supported")]
    Curve(ObjectIdentifier),
    #[error("public key algorithm {0}: only RSA and EC P-256 are supported")]
    Algorithm(ObjectIdentifier),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcdsaP256,
}

/// A checkpoint verification key, from SubjectPublicKeyInfo.
#[derive(Debug, Clone)]
pub struct CheckpointKey {
    kind: KeyKind,
    /// RSAPublicKey DER, or the uncompressed P-256 point: what ring takes.
    public: Vec<u8>,
    spki_der: Vec<u8>,
    spki_sha256: String,
}

impl CheckpointKey {
    /// Reads an SPKI PEM file; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<CheckpointKey>, LoadError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Io { path: path.to_owned(), source: e }),
        };
        let block = pem::parse(&text).map_err(|source| LoadError::Pem { path: path.to_owned(), source })?;
        if block.tag() != "PUBLIC KEY" {
            return Err(LoadError::NotPublicKey { path: path.to_owned(), tag: block.tag().to_owned() });
        }
        CheckpointKey::from_spki_der(block.contents())
            .map(Some)
            .map_err(|source| LoadError::Key { path: path.to_owned(), source })
    }

    pub fn from_spki_der(der: &[u8]) -> Result<CheckpointKey, KeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(KeyError::NotSpki)?;
        let public = spki.subject_public_key.as_bytes().ok_or(KeyError::UnusedBits)?.to_vec();
        let alg = &spki.algorithm;
        let kind = if alg.oid == RSA_ENCRYPTION {
            KeyKind::Rsa
        } else if alg.oid == ID_EC_PUBLIC_KEY {
            let curve = match alg.parameters {
                Some(p) if p.tag() == Tag::ObjectIdentifier => {
                    p.decode_as::<ObjectIdentifier>().map_err(KeyError::EcParameters)?
                }
                _ => return Err(KeyError::NoNamedCurve),
            };
            if curve != PRIME256V1 {
                return Err(KeyError::Curve(curve));
            }
            KeyKind::EcdsaP256
        } else {
            return Err(KeyError::Algorithm(alg.oid));
        };
        Ok(CheckpointKey { kind, public, spki_der: der.to_vec(), spki_sha256: hex::encode(Sha256::digest(der)) })
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{
            UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256,
        };
        let alg: &'static dyn VerificationAlgorithm = match self.kind {
            KeyKind::Rsa => &RSA_PKCS1_2048_8192_SHA256,
            KeyKind::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, &self.public).verify(message, signature).is_ok()
    }

    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa => "rsa-pkcs1-sha256",
            KeyKind::EcdsaP256 => "ecdsa-p256-sha256",
        }
    }

    /// The SubjectPublicKeyInfo DER of this key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER, hex.
    pub fn spki_sha256(&self) -> &str {
        &self.spki_sha256
    }
}
