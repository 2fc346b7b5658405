//! AES secret keys in the token and AES-GCM encryption with them (the PIN escrow key).
//!
//! The key is generated inside the token, sensitive and never extractable; data goes
//! in and out through CKM_AES_GCM, the key never does.

use std::fmt;
use std::sync::Arc;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use crate::error::{from_pkcs11, HsmError};
use crate::handle::HandleCache;
use crate::hsm::Hsm;
use crate::keystore::{check_label, find_one};
use crate::protection::{self, KeyProtection};
use crate::store_lock::Access;

/// Length of the AES-GCM IV (nonce) that [`AesKey::encrypt_gcm`] generates.
pub const GCM_IV_LEN: usize = 12;

/// Length of the AES-GCM authentication tag appended to every ciphertext.
pub const GCM_TAG_LEN: usize = 16;

const GCM_TAG_BITS: u32 = 128;
const _: () = assert!(GCM_TAG_BITS as usize == GCM_TAG_LEN * 8);

/// An AES secret key in the token. Cheap to clone; holds no key material.
#[derive(Clone)]
pub struct AesKey {
    inner: Arc<AesInner>,
}

struct AesInner {
    hsm: Hsm,
    label: String,
    bits: u32,
    // Token object handles are valid in every session of this process, until a reconnect.
    handle: HandleCache,
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AesKey")
            .field("label", &self.inner.label)
            .field("bits", &self.inner.bits)
            .finish_non_exhaustive()
    }
}

impl Hsm {
    /// Generates an AES key of `bits` (128, 192 or 256) in the token: token object,
    /// private, sensitive, never extractable, encrypt and decrypt only (wrap, unwrap,
    /// derive, sign and verify are switched off explicitly), not copyable and not
    /// modifiable, with the label and a random CKA_ID.
    ///
    /// Fails with `KeyExists` if a secret key with this label exists; it never replaces
    /// or duplicates a key. A key pair with the same label does not count (and does not
    /// get in the way of [`Hsm::find_key`]).
    pub fn generate_aes_key(&self, label: &str, bits: u32) -> Result<AesKey, HsmError> {
        check_label(label)?;
        let len = aes_key_len(bits)?;
        // Exclusive and refusing a taken label, like key-pair generation.
        let (epoch, handle) = self.generate_fresh(label, Some(find_secret), |s, id, epoch| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(Ulong::from(std::os::raw::c_ulong::from(len))),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                // No second copy with looser flags, no flipping flags later.
                Attribute::Copyable(false),
                Attribute::Modifiable(false),
                Attribute::AllowedMechanisms(vec![cryptoki::mechanism::MechanismType::AES_GCM]),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
            ];
            Ok((epoch, s.generate_key(&Mechanism::AesKeyGen, &template).map_err(from_pkcs11)?))
        })?;
        tracing::info!(label, bits, "generated AES key in HSM");
        Ok(AesKey::new(self.clone(), label, bits, epoch, handle))
    }

    /// Finds an AES key by label. Ok(None) if there is no secret key with this label;
    /// `UnsupportedKey` if there is one but it is not AES.
    pub fn find_aes_key(&self, label: &str) -> Result<Option<AesKey>, HsmError> {
        let found = self.find_labelled(label, find_secret, |s, handle, epoch| {
            aes_bits(s, label, handle).map(|bits| (bits, epoch, handle))
        })?;
        Ok(found.map(|(bits, epoch, handle)| AesKey::new(self.clone(), label, bits, epoch, handle)))
    }

    /// `find_aes_key`, or `KeyNotFound`.
    pub fn aes_key(&self, label: &str) -> Result<AesKey, HsmError> {
        self.find_aes_key(label)?.ok_or_else(|| HsmError::KeyNotFound(label.to_owned()))
    }

    /// The escrow key labelled `label` if the token holds one fit for it (AES of
    /// `bits`, sensitive, never extractable, encrypt/decrypt only, frozen, with a
    /// mechanism list); Ok(None) when there is none; `NotCaGrade` naming every
    /// problem otherwise. What the ceremony calls before it adopts an existing key.
    pub fn adopt_escrow_key(&self, label: &str, bits: u32) -> Result<Option<AesKey>, HsmError> {
        crate::keystore::adopt(
            label,
            self.find_aes_key(label),
            |key| (key.bits() != bits).then(|| format!("wrong size: AES-{}, not AES-{bits}", key.bits())),
            || Ok(self.aes_key_protection(label)?.escrow_grade_problems()),
        )
    }

    /// Reads the AES key's protection attributes back from the token.
    /// `private_value_readable` says whether CKA_VALUE came back with bytes.
    pub fn aes_key_protection(&self, label: &str) -> Result<KeyProtection, HsmError> {
        self.with_labelled(label, find_secret, |s, handle| {
            aes_bits(s, label, handle)?;
            protection::read_secret_key(s, handle)
        })
    }
}

impl AesKey {
    fn new(hsm: Hsm, label: &str, bits: u32, epoch: u64, handle: ObjectHandle) -> Self {
        let handle = HandleCache::new(epoch, handle);
        AesKey { inner: Arc::new(AesInner { hsm, label: label.to_owned(), bits, handle }) }
    }

    /// Runs `f` with the key's handle in the current library epoch; after a reconnect
    /// the key is found again by label and must still be AES of the same size.
    fn with_handle<T>(&self, f: impl FnOnce(&Session, ObjectHandle) -> Result<T, HsmError>) -> Result<T, HsmError> {
        let label = &self.inner.label;
        self.inner.hsm.with_live(Access::Shared, |live, s| {
            let handle = self.inner.handle.resolve(live.epoch(), || {
                let handle = find_secret(s, label)?.ok_or_else(|| HsmError::KeyNotFound(label.clone()))?;
                match aes_bits(s, label, handle)? {
                    bits if bits == self.inner.bits => Ok(handle),
                    bits => Err(HsmError::UnsupportedKey(format!(
                        "the token came back with AES-{bits} under {label:?}, not AES-{}",
                        self.inner.bits
                    ))),
                }
            })?;
            f(s, handle)
        })
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Key size in bits (128, 192 or 256).
    pub fn bits(&self) -> u32 {
        self.inner.bits
    }

    /// Encrypts with CKM_AES_GCM under a fresh random 12-byte IV from the token's RNG
    /// and a 128-bit tag. `aad` is authenticated, not encrypted: pass what the
    /// ciphertext belongs to (the card id), and the same value to
    /// [`AesKey::decrypt_gcm`]. Returns the IV and ciphertext‖tag (plaintext length
    /// + 16 bytes); store both. Blocking; uses a pooled session.
    ///
    /// Random 96-bit IVs are safe for up to 2^32 encryptions under one key.
    pub fn encrypt_gcm(&self, plaintext: &[u8], aad: &[u8]) -> Result<([u8; GCM_IV_LEN], Vec<u8>), HsmError> {
        self.with_handle(|s, handle| {
            let mut iv = [0u8; GCM_IV_LEN];
            s.generate_random_slice(&mut iv).map_err(from_pkcs11)?;
            let ciphertext = {
                let params = gcm_params(&mut iv, aad)?;
                s.encrypt(&Mechanism::AesGcm(params), handle, plaintext).map_err(from_pkcs11)?
            };
            if ciphertext.len() != plaintext.len() + GCM_TAG_LEN {
                return Err(HsmError::Pkcs11(format!(
                    "AES-GCM returned {} bytes for {} bytes of input (expected the tag appended)",
                    ciphertext.len(),
                    plaintext.len()
                )));
            }
            Ok((iv, ciphertext))
        })
    }

    /// Decrypts what [`AesKey::encrypt_gcm`] returned. A wrong key, IV or AAD, or any
    /// altered bit of the ciphertext or tag gives `HsmError::Decrypt` and no plaintext.
    /// Blocking; uses a pooled session.
    pub fn decrypt_gcm(&self, iv: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut iv: [u8; GCM_IV_LEN] =
            iv.try_into().map_err(|_| HsmError::Decrypt(format!("IV is {} bytes, expected {GCM_IV_LEN}", iv.len())))?;
        if ciphertext.len() < GCM_TAG_LEN {
            return Err(HsmError::Decrypt(format!(
                "ciphertext is {} bytes, shorter than the {GCM_TAG_LEN}-byte tag",
                ciphertext.len()
            )));
        }
        let plaintext = self.with_handle(|s, handle| {
            let params = gcm_params(&mut iv, aad)?;
            s.decrypt(&Mechanism::AesGcm(params), handle, ciphertext).map_err(decrypt_error)
        })?;
        if plaintext.len() != ciphertext.len() - GCM_TAG_LEN {
            return Err(HsmError::Pkcs11(format!(
                "AES-GCM returned {} bytes for {} bytes of ciphertext",
                plaintext.len(),
                ciphertext.len()
            )));
        }
        Ok(plaintext)
    }

    #[cfg(test)]
    pub(crate) fn handle(&self) -> ObjectHandle {
        self.inner.handle.current()
    }
}

/// Key length in bytes (CKA_VALUE_LEN) for a key size in bits.
fn aes_key_len(bits: u32) -> Result<u32, HsmError> {
    match bits {
        128 | 192 | 256 => Ok(bits / 8),
        other => Err(HsmError::InvalidArgument(format!("AES keys are 128, 192 or 256 bits, not {other}"))),
    }
}

fn gcm_params<'a>(iv: &'a mut [u8], aad: &'a [u8]) -> Result<GcmParams<'a>, HsmError> {
    let tag_bits = Ulong::from(std::os::raw::c_ulong::from(GCM_TAG_BITS));
    GcmParams::new(iv, aad, tag_bits).map_err(|e| HsmError::InvalidArgument(format!("GCM parameters: {e}")))
}

/// A failed C_Decrypt (after a successful C_DecryptInit) with an authentication-type
/// code is `Decrypt`: SoftHSM 2.6 answers a tag mismatch with CKR_GENERAL_ERROR, the
/// standard says CKR_ENCRYPTED_DATA_INVALID. Everything else maps as usual. The
/// message never carries the data.
fn decrypt_error(err: CkError) -> HsmError {
    match err {
        CkError::Pkcs11(
            RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange | RvError::GeneralError,
            Function::Decrypt,
        ) => HsmError::Decrypt("authentication failed (wrong key, IV or AAD, or altered ciphertext)".into()),
        other => from_pkcs11(other),
    }
}

/// The one secret key with this label (any key type): the object class is part of
/// the search, so key pairs with the same label are not found.
fn find_secret(s: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    find_one(
        s,
        &[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.as_bytes().to_vec())],
        &format!("secret key {label:?}"),
    )
}

/// Checks that the secret key is AES and returns its size in bits.
fn aes_bits(s: &Session, label: &str, handle: ObjectHandle) -> Result<u32, HsmError> {
    let attrs = s.get_attributes(handle, &[AttributeType::KeyType, AttributeType::ValueLen]).map_err(from_pkcs11)?;
    let mut key_type = None;
    let mut len = None;
    for attr in attrs {
        match attr {
            Attribute::KeyType(kt) => key_type = Some(kt),
            Attribute::ValueLen(l) => len = Some(usize::from(l)),
            _ => {}
        }
    }
    match key_type {
        Some(kt) if kt == KeyType::AES => {}
        Some(kt) => return Err(HsmError::UnsupportedKey(format!("secret key {label:?} has key type {kt}, not AES"))),
        None => return Err(HsmError::Pkcs11(format!("secret key {label:?} has no CKA_KEY_TYPE"))),
    }
    match len {
        Some(16) => Ok(128),
        Some(24) => Ok(192),
        Some(32) => Ok(256),
        Some(l) => Err(HsmError::UnsupportedKey(format!("AES key {label:?} is {l} bytes long"))),
        None => Err(HsmError::Pkcs11(format!("AES key {label:?} has no CKA_VALUE_LEN"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::keystore::KEY_ID_LEN;
    use crate::testing::{self, shared_hsm, unique_label};
    use crate::KeyAlgorithm;

    const PIN: &[u8] = b"1234";
    const CARD: &[u8] = b"card-0001";

    /// Set in the child process of `escrowed_pin_decrypts_in_a_new_process`.
    const CHILD_ENV: &str = "HSM_TEST_AES_CHILD";
    const CHILD_PIN_ENV: &str = "HSM_TEST_AES_CHILD_USER_PIN";
    const CHILD_PLAINTEXT: &[u8] = b"908172";

    fn assert_send_sync<T: Send + Sync>() {}

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn objects_labelled(hsm: &Hsm, label: &str) -> Vec<ObjectClass> {
        hsm.with_session(|s| {
            let mut classes = Vec::new();
            for h in s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())]).map_err(from_pkcs11)? {
                for a in s.get_attributes(h, &[AttributeType::Class]).map_err(from_pkcs11)? {
                    if let Attribute::Class(c) = a {
                        classes.push(c);
                    }
                }
            }
            Ok(classes)
        })
        .unwrap()
    }

    /// Asserts a Decrypt error whose texts carry none of `secrets`.
    fn assert_decrypt_error(result: Result<Vec<u8>, HsmError>, secrets: &[&[u8]], what: &str) {
        let err = match result {
            Ok(pt) => panic!("{what}: decrypted to {} bytes", pt.len()),
            Err(e) => e,
        };
        assert!(matches!(err, HsmError::Decrypt(_)), "{what}: {err:?}");
        for text in [err.to_string(), format!("{err:?}")] {
            for secret in secrets {
                let secret = String::from_utf8_lossy(secret);
                assert!(!text.contains(&*secret), "{what}: {text}");
            }
        }
    }

    #[test]
    fn handles_are_send_sync_and_debug_shows_no_secrets() {
        assert_send_sync::<AesKey>();
        let key = shared_hsm().generate_aes_key(&unique_label("dbg"), 256).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.label()) && debug.contains("256"), "{debug}");
        assert!(!debug.contains("handle"), "{debug}");
    }

    #[test]
    fn round_trip_for_several_sizes() {
        let key = shared_hsm().generate_aes_key(&unique_label("rt"), 256).unwrap();
        let long: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        let big = vec![0x42u8; 5000];
        for plaintext in [&b""[..], PIN, &long, &big] {
            let (iv, ct) = key.encrypt_gcm(plaintext, CARD).unwrap();
            assert_eq!(ct.len(), plaintext.len() + GCM_TAG_LEN);
            assert_ne!(iv, [0u8; GCM_IV_LEN]);
            if !plaintext.is_empty() {
                assert_ne!(&ct[..plaintext.len()], plaintext);
            }
            // No 4-byte run of the plaintext shows up in the ciphertext (the PIN is 4 bytes).
            for w in plaintext.windows(4) {
                assert!(!contains(&ct, w), "{} bytes: {w:?} leaked", plaintext.len());
            }
            assert_eq!(key.decrypt_gcm(&iv, &ct, CARD).unwrap(), plaintext);
        }
    }

    #[test]
    fn every_encryption_gets_a_fresh_iv() {
        let key = shared_hsm().generate_aes_key(&unique_label("iv"), 256).unwrap();
        let (mut ivs, mut cts) = (HashSet::new(), HashSet::new());
        for _ in 0..50 {
            let (iv, ct) = key.encrypt_gcm(PIN, CARD).unwrap();
            assert!(ivs.insert(iv), "IV repeated");
            assert!(cts.insert(ct.clone()), "ciphertext repeated");
            assert!(!contains(&ct, PIN));
            assert_eq!(key.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
        }
    }

    #[test]
    fn any_change_is_a_decrypt_error_without_data() {
        // One session only, so the failures below all hit the session that must keep working.
        let hsm = testing::hsm_with_pool(1);
        let key = hsm.generate_aes_key(&unique_label("tamper"), 256).unwrap();
        let other = hsm.generate_aes_key(&unique_label("tamper-other"), 256).unwrap();
        let (iv, ct) = key.encrypt_gcm(PIN, CARD).unwrap();
        let secrets: [&[u8]; 2] = [PIN, testing::shared_token().user_pin.as_bytes()];

        assert_decrypt_error(key.decrypt_gcm(&iv, &ct, b"card-0002"), &secrets, "other aad");
        assert_decrypt_error(key.decrypt_gcm(&iv, &ct, b""), &secrets, "empty aad");
        assert_decrypt_error(other.decrypt_gcm(&iv, &ct, CARD), &secrets, "other key");
        for bit in 0..GCM_IV_LEN * 8 {
            let mut bad = iv;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_decrypt_error(key.decrypt_gcm(&bad, &ct, CARD), &secrets, "iv bit");
        }
        // Every bit of the ciphertext (first 4 bytes) and of the tag (last 16).
        for bit in 0..ct.len() * 8 {
            let mut bad = ct.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let what = if bit / 8 < PIN.len() { "ciphertext bit" } else { "tag bit" };
            assert_decrypt_error(key.decrypt_gcm(&iv, &bad, CARD), &secrets, what);
        }
        assert_decrypt_error(key.decrypt_gcm(&iv, &ct[..ct.len() - 1], CARD), &secrets, "cut");
        assert_decrypt_error(key.decrypt_gcm(&iv, &ct[1..], CARD), &secrets, "cut front");
        assert_decrypt_error(key.decrypt_gcm(&iv, &ct[..15], CARD), &secrets, "short");
        assert_decrypt_error(key.decrypt_gcm(&iv, &[], CARD), &secrets, "empty");
        let mut longer = ct.clone();
        longer.push(0);
        assert_decrypt_error(key.decrypt_gcm(&iv, &longer, CARD), &secrets, "longer");
        assert_decrypt_error(key.decrypt_gcm(&iv[..11], &ct, CARD), &secrets, "iv 11");
        assert_decrypt_error(key.decrypt_gcm(&[0; 16], &ct, CARD), &secrets, "iv 16");

        // The failures left the (only) session usable.
        assert_eq!(hsm.pool_counts(), (1, 1));
        assert_eq!(key.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
    }

    #[test]
    fn all_key_sizes_work_and_are_reported() {
        let hsm = shared_hsm();
        for bits in [128, 192, 256] {
            let label = unique_label("size");
            let key = hsm.generate_aes_key(&label, bits).unwrap();
            assert_eq!(key.bits(), bits);
            assert_eq!(hsm.aes_key(&label).unwrap().bits(), bits);
            let (iv, ct) = key.encrypt_gcm(PIN, CARD).unwrap();
            assert_eq!(key.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
        }
    }

    #[test]
    fn escrow_key_protection() {
        let hsm = shared_hsm();
        let label = unique_label("prot");
        hsm.generate_aes_key(&label, 256).unwrap();
        let p = hsm.aes_key_protection(&label).unwrap();
        assert_eq!(p, KeyProtection { encrypt: true, decrypt: true, ..KeyProtection::sealed_for_tests("CKM_AES_GCM") });
        assert!(p.is_escrow_grade());
        assert!(!p.is_ca_grade());
    }

    #[test]
    fn a_weak_escrow_key_is_not_adopted() {
        let hsm = shared_hsm();
        let label = unique_label("weak-escrow");
        hsm.with_session_exclusive(|s| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(Ulong::from(std::os::raw::c_ulong::from(32u32))),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ];
            s.generate_key(&Mechanism::AesKeyGen, &template).map_err(from_pkcs11)?;
            Ok(())
        })
        .unwrap();
        let err = hsm.adopt_escrow_key(&label, 256).unwrap_err().to_string();
        for want in ["CKA_EXTRACTABLE = true", "CKA_MODIFIABLE = true", "CKA_COPYABLE = true", "CKA_ALLOWED_MECHANISMS"]
        {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        let good = hsm.generate_aes_key(&unique_label("good-escrow"), 256).unwrap();
        assert!(hsm.adopt_escrow_key(good.label(), 256).unwrap().is_some());
        assert!(hsm.adopt_escrow_key(good.label(), 128).unwrap_err().to_string().contains("wrong size"));
    }

    #[test]
    fn escrow_key_value_cannot_be_read_wrapped_copied_or_unlocked() {
        let hsm = shared_hsm();
        let key = hsm.generate_aes_key(&unique_label("sealed"), 256).unwrap();
        let handle = key.handle();
        hsm.with_session_exclusive(|s| {
            // CKA_VALUE: no bytes (cryptoki turns CKR_ATTRIBUTE_SENSITIVE into an empty or missing value).
            let attrs = s.get_attributes(handle, &[AttributeType::Value]).map_err(from_pkcs11)?;
            for a in &attrs {
                match a {
                    Attribute::Value(v) => assert!(v.is_empty(), "{} key bytes came back", v.len()),
                    other => panic!("unexpected attribute {other:?}"),
                }
            }
            let flags = s
                .get_attributes(
                    handle,
                    &[
                        AttributeType::AlwaysSensitive,
                        AttributeType::Copyable,
                        AttributeType::Modifiable,
                        AttributeType::Token,
                        AttributeType::Private,
                        AttributeType::Id,
                    ],
                )
                .map_err(from_pkcs11)?;
            for a in &flags {
                match a {
                    Attribute::AlwaysSensitive(v) | Attribute::Token(v) | Attribute::Private(v) => {
                        assert!(*v, "{a:?}")
                    }
                    Attribute::Copyable(v) | Attribute::Modifiable(v) => assert!(!*v, "{a:?}"),
                    Attribute::Id(id) => assert_eq!(id.len(), KEY_ID_LEN as usize),
                    other => panic!("unexpected attribute {other:?}"),
                }
            }
            assert_eq!(flags.len(), 6, "{flags:?}");

            // A session AES-256 key with `attributes` besides.
            let session_key = |attributes: &[Attribute]| {
                let mut template =
                    vec![Attribute::Token(false), Attribute::ValueLen(Ulong::from(std::os::raw::c_ulong::from(32u32)))];
                template.extend_from_slice(attributes);
                s.generate_key(&Mechanism::AesKeyGen, &template).map_err(from_pkcs11)
            };
            // Wrapping it out under a key we would know is refused.
            let wrapping =
                session_key(&[Attribute::Wrap(true), Attribute::Unwrap(true), Attribute::Extractable(true)])?;
            let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, wrapping, handle);
            // Control: the same wrapping key does wrap an extractable key.
            let loose = session_key(&[Attribute::Extractable(true)])?;
            let control = s.wrap_key(&Mechanism::AesKeyWrap, wrapping, loose);
            s.destroy_object(loose).map_err(from_pkcs11)?;
            s.destroy_object(wrapping).map_err(from_pkcs11)?;
            match wrapped {
                Ok(bytes) => panic!("escrow key was wrapped into {} bytes", bytes.len()),
                Err(e) => assert_eq!(crate::error::rv_of(&e), Some(RvError::KeyUnextractable), "{e}"),
            }
            assert_eq!(control.map_err(from_pkcs11)?.len(), 40);

            // Flags cannot be loosened, and no looser copy can be made.
            for loosen in [
                Attribute::Extractable(true),
                Attribute::Sensitive(false),
                Attribute::Wrap(true),
                Attribute::Label(b"renamed".to_vec()),
            ] {
                let what = format!("{loosen:?}");
                assert!(s.update_attributes(handle, &[loosen]).is_err(), "C_SetAttributeValue {what} succeeded");
            }
            // A plain copy (which SoftHSM would otherwise allow) and a relabelled session copy.
            for template in [vec![], vec![Attribute::Token(false), Attribute::Label(b"copy".to_vec())]] {
                match s.copy_object(handle, &template) {
                    Ok(h) => {
                        let _ = s.destroy_object(h);
                        panic!("the escrow key was copied with {template:?}");
                    }
                    Err(e) => assert_eq!(crate::error::rv_of(&e), Some(RvError::ActionProhibited), "{e}"),
                }
            }
            Ok(())
        })
        .unwrap();
        // Still what it was.
        assert!(hsm.aes_key_protection(key.label()).unwrap().is_escrow_grade());
    }

    #[test]
    fn existing_label_is_key_exists_and_the_old_key_still_decrypts() {
        let hsm = shared_hsm();
        let label = unique_label("exists");
        let old = hsm.generate_aes_key(&label, 256).unwrap();
        let (iv, ct) = old.encrypt_gcm(PIN, CARD).unwrap();
        for bits in [256, 128] {
            let err = hsm.generate_aes_key(&label, bits).unwrap_err();
            assert!(matches!(&err, HsmError::KeyExists(l) if *l == label), "{err:?}");
        }
        assert_eq!(objects_labelled(&hsm, &label), vec![ObjectClass::SECRET_KEY]);
        assert_eq!(old.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
        let found = hsm.aes_key(&label).unwrap();
        assert_eq!(found.bits(), 256);
        assert_eq!(found.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
        let (iv2, ct2) = found.encrypt_gcm(PIN, CARD).unwrap();
        assert_eq!(old.decrypt_gcm(&iv2, &ct2, CARD).unwrap(), PIN);
    }

    #[test]
    fn concurrent_generation_with_one_label_makes_one_key() {
        let hsm = shared_hsm();
        let label = crate::testing::race_to_generate(|hsm, label| hsm.generate_aes_key(label, 256));
        assert_eq!(objects_labelled(&hsm, &label).len(), 1);
    }

    #[test]
    fn concurrent_encrypt_and_decrypt() {
        // A small pool of its own, so 8 threads really contend for 3 sessions.
        let hsm = testing::hsm_with_pool(3);
        let key = hsm.generate_aes_key(&unique_label("conc"), 256).unwrap();
        let signer = hsm.generate_key_pair(&unique_label("conc-sign"), KeyAlgorithm::EcdsaP256).unwrap();
        let mut threads: Vec<_> = (0..8)
            .map(|t| {
                let (key, signer) = (key.clone(), signer.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let pin = format!("{t}{i:04}");
                        let card = format!("card-{t}-{i}");
                        let (iv, ct) = key.encrypt_gcm(pin.as_bytes(), card.as_bytes()).unwrap();
                        assert_eq!(key.decrypt_gcm(&iv, &ct, card.as_bytes()).unwrap(), pin.as_bytes());
                        assert!(matches!(key.decrypt_gcm(&iv, &ct, b"card-other"), Err(HsmError::Decrypt(_))));
                        if i % 5 == 0 {
                            assert!(!signer.sign(card.as_bytes()).unwrap().is_empty());
                        }
                    }
                })
            })
            .collect();
        // Key generation meanwhile takes the exclusive lock; nothing may break.
        let generator = {
            let hsm = hsm.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let k = hsm.generate_aes_key(&unique_label("conc-gen"), 128).unwrap();
                    let (iv, ct) = k.encrypt_gcm(PIN, CARD).unwrap();
                    assert_eq!(k.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
                }
            })
        };
        threads.push(generator);
        for t in threads {
            t.join().unwrap();
        }
        assert!(hsm.pool_counts().0 <= 3);
    }

    #[test]
    fn same_label_as_a_key_pair_does_not_confuse_the_lookups() {
        let hsm = shared_hsm();
        // Key pair first, then AES; and AES first, then key pair.
        for pair_first in [true, false] {
            let label = unique_label("shared-label");
            let (pair, aes) = if pair_first {
                let pair = hsm.generate_key_pair(&label, KeyAlgorithm::EcdsaP256).unwrap();
                assert!(hsm.find_aes_key(&label).unwrap().is_none());
                assert!(matches!(hsm.aes_key(&label), Err(HsmError::KeyNotFound(_))));
                (pair, hsm.generate_aes_key(&label, 256).unwrap())
            } else {
                let aes = hsm.generate_aes_key(&label, 256).unwrap();
                assert!(hsm.find_key(&label).unwrap().is_none());
                assert!(matches!(hsm.key_protection(&label), Err(HsmError::KeyNotFound(_))));
                let pair = hsm.generate_key_pair(&label, KeyAlgorithm::EcdsaP256).unwrap();
                (pair, aes)
            };
            let mut classes = objects_labelled(&hsm, &label);
            classes.sort_by_key(|c| std::os::raw::c_ulong::from(*c));
            assert_eq!(classes, vec![ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY]);
            let found = hsm.key(&label).unwrap();
            assert_eq!(found.public_key_bytes(), pair.public_key_bytes());
            assert!(!found.sign(b"tbs").unwrap().is_empty());
            assert!(hsm.key_protection(&label).unwrap().is_ca_grade());
            let found_aes = hsm.aes_key(&label).unwrap();
            let (iv, ct) = aes.encrypt_gcm(PIN, CARD).unwrap();
            assert_eq!(found_aes.decrypt_gcm(&iv, &ct, CARD).unwrap(), PIN);
            assert!(hsm.aes_key_protection(&label).unwrap().is_escrow_grade());
            // And each generator still refuses its own kind only.
            assert!(matches!(hsm.generate_aes_key(&label, 256), Err(HsmError::KeyExists(_))));
            assert!(matches!(hsm.generate_key_pair(&label, KeyAlgorithm::EcdsaP256), Err(HsmError::KeyExists(_))));
            assert_eq!(objects_labelled(&hsm, &label).len(), 3);
        }
    }

    #[test]
    fn absent_key_is_none_or_key_not_found() {
        let hsm = shared_hsm();
        let label = unique_label("absent");
        assert!(hsm.find_aes_key(&label).unwrap().is_none());
        assert!(matches!(hsm.aes_key(&label), Err(HsmError::KeyNotFound(l)) if l == label));
        assert!(matches!(hsm.aes_key_protection(&label), Err(HsmError::KeyNotFound(_))));
    }

    #[test]
    fn a_secret_key_that_is_not_aes_is_unsupported() {
        let hsm = shared_hsm();
        let label = unique_label("generic");
        hsm.with_session_exclusive(|s| {
            s.generate_key(
                &Mechanism::GenericSecretKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::ValueLen(Ulong::from(std::os::raw::c_ulong::from(32u32))),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
            )
            .map_err(from_pkcs11)
        })
        .unwrap();
        for err in [
            hsm.find_aes_key(&label).unwrap_err(),
            hsm.aes_key(&label).unwrap_err(),
            hsm.aes_key_protection(&label).unwrap_err(),
        ] {
            assert!(matches!(err, HsmError::UnsupportedKey(_)), "{err:?}");
        }
        // The label is taken by a secret key all the same: no AES key next to it.
        assert!(matches!(hsm.generate_aes_key(&label, 256), Err(HsmError::KeyExists(_))));
        assert_eq!(objects_labelled(&hsm, &label), vec![ObjectClass::SECRET_KEY]);
    }

    #[test]
    fn bad_arguments_are_rejected_before_touching_the_token() {
        let hsm = shared_hsm();
        assert!(matches!(hsm.generate_aes_key("", 256), Err(HsmError::InvalidArgument(_))));
        for bits in [0, 64, 100, 255, 257, 384, 512] {
            let label = unique_label("bits");
            assert!(matches!(hsm.generate_aes_key(&label, bits), Err(HsmError::InvalidArgument(_))), "{bits}");
            assert!(objects_labelled(&hsm, &label).is_empty());
        }
        assert!(matches!(hsm.find_aes_key(""), Err(HsmError::InvalidArgument(_))));
        assert!(matches!(hsm.aes_key_protection(""), Err(HsmError::InvalidArgument(_))));
    }

    #[test]
    fn a_destroyed_key_fails_cleanly() {
        let hsm = shared_hsm();
        let key = hsm.generate_aes_key(&unique_label("gone"), 256).unwrap();
        let (iv, ct) = key.encrypt_gcm(PIN, CARD).unwrap();
        let handle = key.handle();
        hsm.with_session_exclusive(|s| s.destroy_object(handle).map_err(from_pkcs11)).unwrap();
        assert!(matches!(key.encrypt_gcm(PIN, CARD), Err(HsmError::Pkcs11(_))));
        // Not reported as tampering: the key is gone, not the data.
        assert!(matches!(key.decrypt_gcm(&iv, &ct, CARD), Err(HsmError::Pkcs11(_))));
        assert!(hsm.find_aes_key(key.label()).unwrap().is_none());
    }

    /// The escrow must outlive the process: a child process opens the token afresh,
    /// finds the key by label and decrypts what this process encrypted.
    #[test]
    fn escrowed_pin_decrypts_in_a_new_process() {
        if let Some(job) = std::env::var_os(CHILD_ENV) {
            let job = job.to_string_lossy().into_owned();
            let parts: Vec<&str> = job.split(':').collect();
            let (label, iv, ct) = (parts[0], unhex(parts[1]), unhex(parts[2]));
            let module = std::env::var_os("HSM_TEST_MODULE").unwrap();
            let pin = std::env::var(CHILD_PIN_ENV).unwrap();
            let hsm = Hsm::open(Path::new(&module), testing::TEST_TOKEN_LABEL, &pin, 1).unwrap();
            let key = hsm.aes_key(label).unwrap();
            assert_eq!(key.decrypt_gcm(&iv, &ct, CARD).unwrap(), CHILD_PLAINTEXT);
            assert!(matches!(key.decrypt_gcm(&iv, &ct, b"card-other"), Err(HsmError::Decrypt(_))));
            println!("child decrypted the escrow");
            return;
        }
        let hsm = shared_hsm();
        let t = testing::shared_token();
        let key = hsm.generate_aes_key(&unique_label("restart"), 256).unwrap();
        let (iv, ct) = key.encrypt_gcm(CHILD_PLAINTEXT, CARD).unwrap();
        let job = format!("{}:{}:{}", key.label(), hex(&iv), hex(&ct));
        let stdout = testing::run_in_child(
            "aes::tests::escrowed_pin_decrypts_in_a_new_process",
            &[(CHILD_ENV, job.as_str()), (CHILD_PIN_ENV, t.user_pin.as_str())],
        );
        assert!(stdout.contains("child decrypted the escrow"), "{stdout}");
    }
}
