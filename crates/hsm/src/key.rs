//! A key pair in the token, usable as an rcgen signing key.

use std::fmt;
use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use sha2::{Digest, Sha256};

use cryptoki::session::Session;

use crate::algorithm::KeyAlgorithm;
use crate::ecdsa;
use crate::error::{from_pkcs11, HsmError};
use crate::handle::HandleCache;
use crate::hsm::{Hsm, Live};
use crate::keystore;
use crate::store_lock::Access;

/// A private key in the token plus its public half. Cheap to clone.
#[derive(Clone)]
pub struct HsmKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    hsm: Hsm,
    label: String,
    alg: KeyAlgorithm,
    // Token object handles are valid in every session of this process, until a reconnect.
    private: HandleCache,
    public_key: Vec<u8>,
    spki: Vec<u8>,
}

/// Everything needed to build an [`HsmKey`]; filled in by the keystore.
pub(crate) struct KeyParts {
    pub label: String,
    pub alg: KeyAlgorithm,
    /// The library epoch `private` was found in.
    pub epoch: u64,
    pub private: ObjectHandle,
    pub public_key: Vec<u8>,
    pub spki: Vec<u8>,
}

impl fmt::Debug for HsmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmKey")
            .field("label", &self.inner.label)
            .field("algorithm", &self.inner.alg)
            .finish_non_exhaustive()
    }
}

impl HsmKey {
    pub(crate) fn new(hsm: Hsm, parts: KeyParts) -> Self {
        HsmKey {
            inner: Arc::new(KeyInner {
                hsm,
                label: parts.label,
                alg: parts.alg,
                private: HandleCache::new(parts.epoch, parts.private),
                public_key: parts.public_key,
                spki: parts.spki,
            }),
        }
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.inner.alg
    }

    /// Signs the whole message and returns the signature in X.509 form: PKCS#1 v1.5
    /// bytes for RSA (CKM_SHA256_RSA_PKCS), a DER Ecdsa-Sig-Value for P-256.
    /// Blocking; uses a pooled session.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, HsmError> {
        match self.inner.alg {
            KeyAlgorithm::Rsa { .. } => {
                self.with_private(|s, private| s.sign(&Mechanism::Sha256RsaPkcs, private, msg).map_err(from_pkcs11))
            }
            KeyAlgorithm::EcdsaP256 => {
                // SoftHSM has no CKM_ECDSA_SHA256: hash here, sign the digest raw.
                let digest = Sha256::digest(msg);
                let raw =
                    self.with_private(|s, private| s.sign(&Mechanism::Ecdsa, private, &digest).map_err(from_pkcs11))?;
                ecdsa::raw_to_der(&raw)
            }
        }
    }

    /// Runs `f` with the private key's handle in the current library epoch.
    fn with_private<T>(&self, f: impl FnOnce(&Session, ObjectHandle) -> Result<T, HsmError>) -> Result<T, HsmError> {
        self.inner.hsm.with_live(Access::Shared, |live: &Live, s| {
            let private = self.inner.private.resolve(live.epoch(), || self.find_again(s))?;
            f(s, private)
        })
    }

    /// After a reconnect: the private key with our label, if it is still this key.
    /// A token that came back with another key under the label must not sign for us.
    fn find_again(&self, s: &Session) -> Result<ObjectHandle, HsmError> {
        let label = &self.inner.label;
        let privates = keystore::find_privates(s, label)?;
        if privates.is_empty() {
            return Err(HsmError::KeyNotFound(label.clone()));
        }
        // Usually one; two processes racing to generate a label can leave more.
        for private in privates {
            if keystore::load(s, label, private, 0)?.spki == self.inner.spki {
                tracing::info!(label = %label, "found the key again after a reconnect");
                return Ok(private);
            }
        }
        Err(HsmError::UnsupportedKey(format!(
            "the token came back with a different key labelled {label:?}; refusing to sign with it"
        )))
    }

    /// RSA: PKCS#1 RSAPublicKey DER. P-256: the bare 65-byte uncompressed point.
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.inner.public_key
    }

    /// DER SubjectPublicKeyInfo.
    pub fn subject_public_key_info_der(&self) -> Vec<u8> {
        self.inner.spki.clone()
    }

    #[cfg(test)]
    pub(crate) fn private_handle(&self) -> ObjectHandle {
        self.inner.private.current()
    }
}

impl rcgen::PublicKeyData for HsmKey {
    fn der_bytes(&self) -> &[u8] {
        self.public_key_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.inner.alg.rcgen_algorithm()
    }
}

impl rcgen::SigningKey for HsmKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        HsmKey::sign(self, msg).map_err(|e| {
            // rcgen's error carries no detail, so keep it in the log.
            tracing::error!(key = %self.inner.label, error = %e, "HSM signing failed");
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, PublicKeyData};
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256};

    use super::*;
    use crate::testing::{shared_hsm, unique_label};

    const RSA2048: KeyAlgorithm = KeyAlgorithm::Rsa { bits: 2048 };

    fn verify(key: &HsmKey, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn ring::signature::VerificationAlgorithm = match key.algorithm() {
            KeyAlgorithm::Rsa { .. } => &RSA_PKCS1_2048_8192_SHA256,
            KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, key.public_key_bytes()).verify(msg, sig).is_ok()
    }

    #[test]
    fn signatures_verify_with_ring() {
        let hsm = shared_hsm();
        let msg = vec![0x5a; 300]; // about a TBSCertificate
        for alg in [RSA2048, KeyAlgorithm::Rsa { bits: 3072 }, KeyAlgorithm::EcdsaP256] {
            let key = hsm.generate_key_pair(&unique_label("sign"), alg).unwrap();
            let sig = key.sign(&msg).unwrap();
            assert!(verify(&key, &msg, &sig), "{alg:?} signature did not verify");
            assert!(!verify(&key, b"another message", &sig), "{alg:?} verified the wrong message");
            match alg {
                KeyAlgorithm::Rsa { bits } => assert_eq!(sig.len() * 8, bits as usize),
                KeyAlgorithm::EcdsaP256 => assert_eq!(sig[0], 0x30, "DER SEQUENCE expected"),
            }
        }
    }

    #[test]
    fn ecdsa_signatures_are_randomised_and_all_verify() {
        // Many signatures hit every r/s shape: leading zeros and high bits.
        let key = shared_hsm().generate_key_pair(&unique_label("ec-many"), KeyAlgorithm::EcdsaP256).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..200u32 {
            let msg = i.to_be_bytes();
            let sig = key.sign(&msg).unwrap();
            assert!(verify(&key, &msg, &sig), "signature {i} did not verify");
            seen.insert(sig.len());
        }
        assert!(seen.len() > 1, "expected some signatures with padded or short INTEGERs: {seen:?}");
    }

    #[test]
    fn spki_matches_rcgen_and_the_public_key() {
        let hsm = shared_hsm();
        for alg in [RSA2048, KeyAlgorithm::EcdsaP256] {
            let key = hsm.generate_key_pair(&unique_label("spki"), alg).unwrap();
            let ours = key.subject_public_key_info_der();
            assert_eq!(ours, PublicKeyData::subject_public_key_info(&key), "{alg:?}");
            assert!(ours.ends_with(key.public_key_bytes()));
        }
    }

    #[test]
    fn concurrent_signing_verifies() {
        // A small pool of its own, so 8 threads really contend for 3 sessions.
        let hsm = crate::testing::hsm_with_pool(3);
        let keys = [
            hsm.generate_key_pair(&unique_label("conc-rsa"), RSA2048).unwrap(),
            hsm.generate_key_pair(&unique_label("conc-ec"), KeyAlgorithm::EcdsaP256).unwrap(),
        ];
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let keys = keys.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let key = &keys[(t + i) % 2];
                        let msg = format!("thread {t} message {i}");
                        let sig = key.sign(msg.as_bytes()).unwrap();
                        assert!(verify(key, msg.as_bytes(), &sig), "{t}/{i} {:?}", key.algorithm());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(hsm.pool_counts().0 <= 3);
    }

    #[test]
    fn rcgen_sign_maps_errors_to_remote_key_error() {
        let hsm = shared_hsm();
        let key = hsm.generate_key_pair(&unique_label("rc-err"), KeyAlgorithm::EcdsaP256).unwrap();
        // Destroy the private object behind the key's back: signing must fail cleanly.
        let private = key.private_handle();
        hsm.with_session_exclusive(|s| s.destroy_object(private).map_err(from_pkcs11)).unwrap();
        assert!(matches!(HsmKey::sign(&key, b"x"), Err(HsmError::Pkcs11(_))));
        let err = rcgen::SigningKey::sign(&key, b"x").unwrap_err();
        assert!(matches!(err, rcgen::Error::RemoteKeyError), "{err:?}");
    }

    #[test]
    fn rcgen_self_signed_ca_verifies_with_openssl() {
        let hsm = shared_hsm();
        let dir = tempfile::tempdir().unwrap();
        for (alg, sig_name) in [(RSA2048, "sha256WithRSAEncryption"), (KeyAlgorithm::EcdsaP256, "ecdsa-with-SHA256")] {
            let key = hsm.generate_key_pair(&unique_label("ca"), alg).unwrap();
            let mut params = CertificateParams::default();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            let path = dir.path().join(format!("{}.pem", key.label()));
            std::fs::write(&path, cert.pem()).unwrap();

            let text = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&path).output().unwrap();
            assert!(text.status.success());
            let text = String::from_utf8_lossy(&text.stdout);
            assert!(text.contains(sig_name), "{alg:?}: {text}");
            assert!(text.contains("CA:TRUE"), "{alg:?}: {text}");

            let verified = Command::new("openssl").arg("verify").arg("-CAfile").arg(&path).arg(&path).output().unwrap();
            let out = String::from_utf8_lossy(&verified.stdout);
            assert!(
                verified.status.success() && out.trim_end().ends_with(": OK"),
                "{alg:?}: {out} {}",
                String::from_utf8_lossy(&verified.stderr)
            );
        }
    }
}
