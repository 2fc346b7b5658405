//! Finding, generating and inspecting key pairs by label.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use crate::algorithm::{KeyAlgorithm, P256_PARAMS_DER};
use crate::error::{from_pkcs11, HsmError};
use crate::hsm::Hsm;
use crate::key::{HsmKey, KeyParts};
use crate::protection::{self, KeyProtection};
use crate::pubkey;
use crate::store_lock::Access;

/// Length of the random CKA_ID shared by both halves of a generated pair (and of AES keys).
pub(crate) const KEY_ID_LEN: u32 = 16;

/// RSA public exponent 65537.
const RSA_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

impl Hsm {
    /// Generates a key pair in the token. The private key is sensitive, never
    /// extractable and can only sign (decrypt/unwrap/derive are switched off
    /// explicitly because SoftHSM allows them by default). Both halves get the
    /// label and one random CKA_ID.
    ///
    /// Fails with `KeyExists` if a private key with this label exists; it never
    /// replaces or duplicates a key.
    pub fn generate_key_pair(&self, label: &str, alg: KeyAlgorithm) -> Result<HsmKey, HsmError> {
        self.generate_pair(label, alg, true)
    }

    /// `generate_key_pair`; with `refuse_existing` false it does not look for the
    /// label first (tests use it to make what two racing processes can leave behind).
    pub(crate) fn generate_pair(
        &self,
        label: &str,
        alg: KeyAlgorithm,
        refuse_existing: bool,
    ) -> Result<HsmKey, HsmError> {
        check_label(label)?;
        alg.validate()?;
        let existing: Option<FindFn> = refuse_existing.then_some(find_private);
        let parts = self.generate_fresh(label, existing, |s, id, epoch| {
            let (mechanism, key_type, pub_extra) = match alg {
                KeyAlgorithm::Rsa { bits } => (
                    Mechanism::RsaPkcsKeyPairGen,
                    KeyType::RSA,
                    vec![
                        Attribute::ModulusBits(Ulong::from(std::os::raw::c_ulong::from(bits))),
                        Attribute::PublicExponent(RSA_EXPONENT.to_vec()),
                    ],
                ),
                KeyAlgorithm::EcdsaP256 => {
                    (Mechanism::EccKeyPairGen, KeyType::EC, vec![Attribute::EcParams(P256_PARAMS_DER.to_vec())])
                }
            };
            let mut pub_template = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                Attribute::Modifiable(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ];
            pub_template.extend(pub_extra);
            let priv_template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                // Frozen: no flag can be loosened later, no looser copy made, and
                // the key serves its one signature mechanism only.
                Attribute::Modifiable(false),
                Attribute::Copyable(false),
                Attribute::AllowedMechanisms(vec![alg.sign_mechanism()]),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
            ];
            let (public, private) =
                s.generate_key_pair(&mechanism, &pub_template, &priv_template).map_err(from_pkcs11)?;
            read_public(s, label, key_type, private, public, epoch)
        })?;
        tracing::info!(label, algorithm = ?alg, "generated key pair in HSM");
        Ok(HsmKey::new(self.clone(), parts))
    }

    /// The skeleton of every key generation (key pairs and AES keys). Exclusive:
    /// SoftHSM needs it (see store_lock), and it makes "is the label free? then
    /// generate" atomic for every Hsm in this process; other processes can race
    /// (see `find_keys`). A label `existing` finds is `KeyExists`; otherwise
    /// `make` gets the session, a fresh random CKA_ID and the library epoch.
    pub(crate) fn generate_fresh<T>(
        &self,
        label: &str,
        existing: Option<FindFn>,
        make: impl FnOnce(&Session, Vec<u8>, u64) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        self.with_live(Access::Exclusive, |live, s| {
            if let Some(find) = existing {
                if find(s, label)?.is_some() {
                    return Err(HsmError::KeyExists(label.to_owned()));
                }
            }
            let id = s.generate_random_vec(KEY_ID_LEN).map_err(from_pkcs11)?;
            make(s, id, live.epoch())
        })
    }

    /// `f` on the one object `find` finds under `label` (with the library epoch),
    /// or Ok(None) when there is none.
    pub(crate) fn find_labelled<T>(
        &self,
        label: &str,
        find: FindFn,
        f: impl FnOnce(&Session, ObjectHandle, u64) -> Result<T, HsmError>,
    ) -> Result<Option<T>, HsmError> {
        check_label(label)?;
        self.with_live(Access::Shared, |live, s| match find(s, label)? {
            Some(handle) => f(s, handle, live.epoch()).map(Some),
            None => Ok(None),
        })
    }

    /// `f` on the one object `find` finds under `label`, or `KeyNotFound`.
    pub(crate) fn with_labelled<T>(
        &self,
        label: &str,
        find: FindFn,
        f: impl FnOnce(&Session, ObjectHandle) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        check_label(label)?;
        self.with_session(|s| {
            let handle = find(s, label)?.ok_or_else(|| HsmError::KeyNotFound(label.to_owned()))?;
            f(s, handle)
        })
    }

    /// Finds a private key and its public key by label. Ok(None) if absent.
    pub fn find_key(&self, label: &str) -> Result<Option<HsmKey>, HsmError> {
        let parts = self.find_labelled(label, find_private, |s, private, epoch| load(s, label, private, epoch))?;
        Ok(parts.map(|p| HsmKey::new(self.clone(), p)))
    }

    /// Every private key labelled `label`, with its public key. Usually one or
    /// none; two processes generating the same label at the same moment can leave
    /// two, which `find_key` refuses as ambiguous and this tells apart by their
    /// public keys.
    pub fn find_keys(&self, label: &str) -> Result<Vec<HsmKey>, HsmError> {
        check_label(label)?;
        let parts = self.with_live(Access::Shared, |live, s| {
            let mut out = Vec::new();
            for private in find_privates(s, label)? {
                out.push(load(s, label, private, live.epoch())?);
            }
            Ok(out)
        })?;
        Ok(parts.into_iter().map(|p| HsmKey::new(self.clone(), p)).collect())
    }

    /// Labels of the private keys in the token that start with `prefix`, sorted.
    /// (The OCSP responder keeps a key per rollover: `<label>` and `<label>.<n>`.)
    pub fn key_labels(&self, prefix: &str) -> Result<Vec<String>, HsmError> {
        let mut labels = self.with_session(|s| {
            let mut out = Vec::new();
            for h in s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)]).map_err(from_pkcs11)? {
                for a in s.get_attributes(h, &[AttributeType::Label]).map_err(from_pkcs11)? {
                    if let Attribute::Label(l) = a {
                        out.push(String::from_utf8_lossy(&l).into_owned());
                    }
                }
            }
            Ok(out)
        })?;
        labels.retain(|l| l.starts_with(prefix));
        labels.sort();
        labels.dedup();
        Ok(labels)
    }

    /// `find_key`, or `KeyNotFound`.
    pub fn key(&self, label: &str) -> Result<HsmKey, HsmError> {
        self.find_key(label)?.ok_or_else(|| HsmError::KeyNotFound(label.to_owned()))
    }

    /// The CA key labelled `label` if the token holds one fit to be a CA key of
    /// algorithm `alg` (Ok(None) when there is no key with this label), or
    /// `NotCaGrade` naming every problem: wrong type or size, extractable, not
    /// sensitive, modifiable, copyable, other uses than signing, no mechanism list.
    /// What the ceremony calls before it adopts an existing key.
    pub fn adopt_ca_key(&self, label: &str, alg: KeyAlgorithm) -> Result<Option<HsmKey>, HsmError> {
        adopt(
            label,
            self.find_key(label),
            |key| {
                (key.algorithm() != alg)
                    .then(|| format!("wrong type or size: {:?}, the configuration asks for {alg:?}", key.algorithm()))
            },
            || Ok(self.key_protection(label)?.ca_grade_problems()),
        )
    }

    /// Reads the private key's protection attributes back from the token.
    pub fn key_protection(&self, label: &str) -> Result<KeyProtection, HsmError> {
        self.with_labelled(label, find_private, |s, private| {
            let parts = load(s, label, private, 0)?;
            protection::read(s, private, parts.alg)
        })
    }
}

pub(crate) fn check_label(label: &str) -> Result<(), HsmError> {
    if label.is_empty() {
        return Err(HsmError::InvalidArgument("key label is empty".into()));
    }
    Ok(())
}

/// A lookup of the one object of some class under a label.
pub(crate) type FindFn = fn(&Session, &str) -> Result<Option<ObjectHandle>, HsmError>;

pub(crate) fn find_one(s: &Session, template: &[Attribute], what: &str) -> Result<Option<ObjectHandle>, HsmError> {
    match s.find_objects(template).map_err(from_pkcs11)?.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        more => Err(HsmError::Ambiguous(format!("{} objects match {what}", more.len()))),
    }
}

/// Every private key labelled `label`.
pub(crate) fn find_privates(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, HsmError> {
    s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Label(label.as_bytes().to_vec())])
        .map_err(from_pkcs11)
}

pub(crate) fn find_private(s: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    find_one(
        s,
        &[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Label(label.as_bytes().to_vec())],
        &format!("private key {label:?}"),
    )
}

/// Builds the key from its private handle: type and CKA_ID from the private key,
/// the public key found by CKA_ID (by label if the key has no ID). `epoch` is the
/// library epoch of the session.
pub(crate) fn load(s: &Session, label: &str, private: ObjectHandle, epoch: u64) -> Result<KeyParts, HsmError> {
    let attrs = s.get_attributes(private, &[AttributeType::KeyType, AttributeType::Id]).map_err(from_pkcs11)?;
    let mut key_type = None;
    let mut id = Vec::new();
    for attr in attrs {
        match attr {
            Attribute::KeyType(kt) => key_type = Some(kt),
            Attribute::Id(v) => id = v,
            _ => {}
        }
    }
    let key_type = key_type.ok_or_else(|| HsmError::Pkcs11(format!("private key {label:?} has no CKA_KEY_TYPE")))?;
    let link = if id.is_empty() { Attribute::Label(label.as_bytes().to_vec()) } else { Attribute::Id(id) };
    let template = [Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::KeyType(key_type), link];
    let public = find_one(s, &template, &format!("the public key of {label:?}"))?
        .ok_or_else(|| HsmError::UnsupportedKey(format!("no public key object for {label:?}")))?;
    read_public(s, label, key_type, private, public, epoch)
}

/// Reads the public half and derives the algorithm and encodings.
fn read_public(
    s: &Session,
    label: &str,
    key_type: KeyType,
    private: ObjectHandle,
    public: ObjectHandle,
    epoch: u64,
) -> Result<KeyParts, HsmError> {
    let (alg, public_key) = if key_type == KeyType::RSA {
        let [n, e] = public_values(s, public, [AttributeType::Modulus, AttributeType::PublicExponent])?;
        let bits = pubkey::rsa_modulus_bits(&n);
        let alg = KeyAlgorithm::Rsa { bits };
        alg.validate().map_err(|_| HsmError::UnsupportedKey(format!("{label:?} is RSA-{bits}")))?;
        (alg, pubkey::rsa_public_key_der(&n, &e)?)
    } else if key_type == KeyType::EC {
        let [params, point] = public_values(s, public, [AttributeType::EcParams, AttributeType::EcPoint])?;
        if params != P256_PARAMS_DER {
            return Err(HsmError::UnsupportedKey(format!("{label:?} is not on P-256")));
        }
        (KeyAlgorithm::EcdsaP256, pubkey::p256_point_from_attribute(&point)?)
    } else {
        return Err(HsmError::UnsupportedKey(format!("{label:?} has key type {key_type}")));
    };
    let spki = pubkey::spki_der(alg, &public_key)?;
    Ok(KeyParts { label: label.to_owned(), alg, epoch, private, public_key, spki })
}

/// Two byte-string attributes of a public key (RSA modulus and exponent, EC
/// parameters and point), in the order asked; empty when the token leaves one out.
fn public_values(s: &Session, public: ObjectHandle, types: [AttributeType; 2]) -> Result<[Vec<u8>; 2], HsmError> {
    let mut values = [Vec::new(), Vec::new()];
    for attr in s.get_attributes(public, &types).map_err(from_pkcs11)? {
        let slot = types.iter().position(|t| *t == attr.attribute_type());
        if let (Some(i), Attribute::Modulus(v) | Attribute::PublicExponent(v))
        | (Some(i), Attribute::EcParams(v) | Attribute::EcPoint(v)) = (slot, attr)
        {
            values[i] = v;
        }
    }
    Ok(values)
}

/// The key a lookup found, if it is of the wanted kind (`wrong_kind` says how
/// not) and its protection has no `protection_problems`; `NotCaGrade` naming
/// every problem (or a key of an unsupported type) otherwise; Ok(None) when
/// there is no key. The adoption check of CA and escrow keys alike.
pub(crate) fn adopt<K>(
    label: &str,
    found: Result<Option<K>, HsmError>,
    wrong_kind: impl FnOnce(&K) -> Option<String>,
    protection_problems: impl FnOnce() -> Result<Vec<String>, HsmError>,
) -> Result<Option<K>, HsmError> {
    let not_grade = |reasons: String| HsmError::NotCaGrade { label: label.to_owned(), reasons };
    let key = match found {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(None),
        Err(HsmError::UnsupportedKey(why)) => return Err(not_grade(format!("wrong key type: {why}"))),
        Err(e) => return Err(e),
    };
    let mut reasons: Vec<String> = wrong_kind(&key).into_iter().collect();
    reasons.extend(protection_problems()?);
    if reasons.is_empty() {
        Ok(Some(key))
    } else {
        Err(not_grade(reasons.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{shared_hsm, unique_label};

    const RSA2048: KeyAlgorithm = KeyAlgorithm::Rsa { bits: 2048 };

    fn objects_labelled(hsm: &Hsm, label: &str) -> usize {
        hsm.with_session(|s| s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())]).map_err(from_pkcs11))
            .unwrap()
            .len()
    }

    #[test]
    fn generated_keys_have_the_requested_algorithm() {
        let hsm = shared_hsm();
        let rsa = hsm.generate_key_pair(&unique_label("gen-rsa"), RSA2048).unwrap();
        assert_eq!(rsa.algorithm(), RSA2048);
        assert_eq!(rsa.public_key_bytes()[0], 0x30); // SEQUENCE { n, e }
        let ec = hsm.generate_key_pair(&unique_label("gen-ec"), KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(ec.algorithm(), KeyAlgorithm::EcdsaP256);
        assert_eq!(ec.public_key_bytes().len(), 65);
        assert_eq!(ec.public_key_bytes()[0], 0x04);
        // One private and one public object each, nothing else.
        assert_eq!(objects_labelled(&hsm, rsa.label()), 2);
        assert_eq!(objects_labelled(&hsm, ec.label()), 2);
    }

    #[test]
    fn both_halves_share_a_random_id() {
        let hsm = shared_hsm();
        let label = unique_label("ids");
        hsm.generate_key_pair(&label, KeyAlgorithm::EcdsaP256).unwrap();
        let ids: Vec<Vec<u8>> = hsm
            .with_session(|s| {
                let found = s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())]).map_err(from_pkcs11)?;
                let mut ids = Vec::new();
                for h in found {
                    for a in s.get_attributes(h, &[AttributeType::Id]).map_err(from_pkcs11)? {
                        if let Attribute::Id(id) = a {
                            ids.push(id);
                        }
                    }
                }
                Ok(ids)
            })
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0].len(), KEY_ID_LEN as usize);
    }

    #[test]
    fn find_key_returns_the_same_public_key() {
        let hsm = shared_hsm();
        for alg in [RSA2048, KeyAlgorithm::EcdsaP256] {
            let label = unique_label("find");
            let made = hsm.generate_key_pair(&label, alg).unwrap();
            let found = hsm.find_key(&label).unwrap().unwrap();
            assert_eq!(found.label(), label);
            assert_eq!(found.algorithm(), alg);
            assert_eq!(found.public_key_bytes(), made.public_key_bytes());
            assert_eq!(found.subject_public_key_info_der(), made.subject_public_key_info_der());
            assert_eq!(hsm.key(&label).unwrap().public_key_bytes(), made.public_key_bytes());
        }
    }

    #[test]
    fn two_keys_under_one_label_are_told_apart_by_their_public_keys() {
        let hsm = shared_hsm();
        let label = unique_label("twice");
        assert!(hsm.find_keys(&label).unwrap().is_empty());
        // What two processes generating the same label at once leave behind.
        let first = hsm.generate_pair(&label, KeyAlgorithm::EcdsaP256, true).unwrap();
        let second = hsm.generate_pair(&label, KeyAlgorithm::EcdsaP256, false).unwrap();
        assert!(matches!(hsm.find_key(&label), Err(HsmError::Ambiguous(_))));
        let mut found: Vec<Vec<u8>> =
            hsm.find_keys(&label).unwrap().iter().map(|k| k.subject_public_key_info_der()).collect();
        found.sort();
        let mut made = vec![first.subject_public_key_info_der(), second.subject_public_key_info_der()];
        made.sort();
        assert_eq!(found, made);
        // Each signs with its own private key.
        for key in [&first, &second] {
            let sig = key.sign(b"m").unwrap();
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key.public_key_bytes())
                .verify(b"m", &sig)
                .unwrap();
        }
    }

    #[test]
    fn key_labels_lists_private_keys_by_prefix() {
        let hsm = shared_hsm();
        let base = unique_label("listed");
        assert!(hsm.key_labels(&base).unwrap().is_empty());
        hsm.generate_key_pair(&base, KeyAlgorithm::EcdsaP256).unwrap();
        hsm.generate_key_pair(&format!("{base}.2"), KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(hsm.key_labels(&base).unwrap(), [base.clone(), format!("{base}.2")]);
    }

    #[test]
    fn absent_key_is_none_or_key_not_found() {
        let hsm = shared_hsm();
        let label = unique_label("absent");
        assert!(hsm.find_key(&label).unwrap().is_none());
        assert!(matches!(hsm.key(&label), Err(HsmError::KeyNotFound(l)) if l == label));
        assert!(matches!(hsm.key_protection(&label), Err(HsmError::KeyNotFound(_))));
    }

    #[test]
    fn existing_label_is_key_exists_and_the_old_key_survives() {
        let hsm = shared_hsm();
        for alg in [RSA2048, KeyAlgorithm::EcdsaP256] {
            let label = unique_label("exists");
            let old = hsm.generate_key_pair(&label, alg).unwrap();
            // Same or different algorithm: both refused.
            for again in [alg, RSA2048, KeyAlgorithm::EcdsaP256] {
                let err = hsm.generate_key_pair(&label, again).unwrap_err();
                assert!(matches!(&err, HsmError::KeyExists(l) if *l == label), "{err:?}");
            }
            assert_eq!(objects_labelled(&hsm, &label), 2);
            let found = hsm.key(&label).unwrap();
            assert_eq!(found.public_key_bytes(), old.public_key_bytes());
            assert!(!old.sign(b"still here").unwrap().is_empty());
        }
    }

    #[test]
    fn concurrent_generation_with_one_label_makes_one_key() {
        let hsm = shared_hsm();
        let label =
            crate::testing::race_to_generate(|hsm, label| hsm.generate_key_pair(label, KeyAlgorithm::EcdsaP256));
        assert_eq!(objects_labelled(&hsm, &label), 2);
    }

    #[test]
    fn protection_is_ca_grade() {
        let hsm = shared_hsm();
        for alg in [RSA2048, KeyAlgorithm::EcdsaP256] {
            let label = unique_label("prot");
            hsm.generate_key_pair(&label, alg).unwrap();
            let p = hsm.key_protection(&label).unwrap();
            let sealed = KeyProtection::sealed_for_tests(&alg.sign_mechanism().to_string());
            assert_eq!(p, KeyProtection { sign: true, ..sealed }, "{alg:?}");
            assert!(p.is_ca_grade());
            assert!(!p.is_escrow_grade());
        }
    }

    #[test]
    fn ca_keys_are_frozen_and_limited_to_their_mechanism() {
        let hsm = shared_hsm();
        for alg in [RSA2048, KeyAlgorithm::EcdsaP256] {
            let key = hsm.generate_key_pair(&unique_label("frozen"), alg).unwrap();
            let private = key.private_handle();
            let p = hsm.key_protection(key.label()).unwrap();
            let names: Vec<&str> = p.allowed_mechanisms.iter().map(String::as_str).collect();
            let want = if alg == RSA2048 { "CKM_SHA256_RSA_PKCS" } else { "CKM_ECDSA" };
            assert_eq!(names, [want], "{alg:?}");
            assert!(!p.modifiable && !p.copyable, "{p:?}");
            // The one mechanism signs ...
            assert!(!key.sign(b"allowed").unwrap().is_empty());
            hsm.with_session_exclusive(|s| {
                // ... any other is refused by the token (SoftHSM honours the list) ...
                let other = if alg == RSA2048 { Mechanism::RsaPkcs } else { Mechanism::EcdsaSha256 };
                let refused = s.sign(&other, private, &[0u8; 32]);
                assert!(refused.is_err(), "{alg:?}: {other:?} was allowed");
                // ... no flag can be changed and no copy made.
                for change in
                    [Attribute::Sign(false), Attribute::Label(b"renamed".to_vec()), Attribute::Extractable(true)]
                {
                    let what = format!("{change:?}");
                    assert!(s.update_attributes(private, &[change]).is_err(), "{alg:?}: C_SetAttributeValue {what}");
                }
                match s.copy_object(private, &[Attribute::Token(false)]) {
                    Ok(h) => {
                        let _ = s.destroy_object(h);
                        panic!("{alg:?}: the CA key was copied");
                    }
                    Err(e) => {
                        assert_eq!(crate::error::rv_of(&e), Some(cryptoki::error::RvError::ActionProhibited), "{e}")
                    }
                }
                Ok(())
            })
            .unwrap();
            assert!(hsm.adopt_ca_key(key.label(), alg).unwrap().is_some());
        }
    }

    /// A key pair as `pkcs11-tool --keypairgen` or a careless script would make it:
    /// SoftHSM's defaults (modifiable, copyable, no mechanism list), here also
    /// extractable and not sensitive.
    fn weak_ec_key(hsm: &Hsm, label: &str) {
        hsm.with_session_exclusive(|s| {
            let public = [
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(P256_PARAMS_DER.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(b"weak".to_vec()),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Sign(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(b"weak".to_vec()),
            ];
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private).map_err(from_pkcs11)?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_weak_key_with_the_right_label_is_not_adopted_and_the_reasons_are_named() {
        let hsm = shared_hsm();
        let label = unique_label("weak");
        weak_ec_key(&hsm, &label);
        let err = hsm.adopt_ca_key(&label, KeyAlgorithm::EcdsaP256).unwrap_err();
        let HsmError::NotCaGrade { label: l, reasons } = &err else { panic!("{err:?}") };
        assert_eq!(l, &label);
        for want in [
            "not sensitive (CKA_SENSITIVE = false)",
            "extractable (CKA_EXTRACTABLE = true)",
            "modifiable (CKA_MODIFIABLE = true)",
            "copyable (CKA_COPYABLE = true)",
            "CKA_ALLOWED_MECHANISMS is empty",
        ] {
            assert!(reasons.contains(want), "missing {want:?} in {reasons}");
        }
        // A good key of another algorithm than configured: wrong type/size.
        let ec = hsm.generate_key_pair(&unique_label("other-alg"), KeyAlgorithm::EcdsaP256).unwrap();
        let err = hsm.adopt_ca_key(ec.label(), RSA2048).unwrap_err().to_string();
        assert!(err.contains("wrong type or size") && err.contains("EcdsaP256"), "{err}");
        // No key: nothing to adopt.
        assert!(hsm.adopt_ca_key(&unique_label("none"), RSA2048).unwrap().is_none());
    }

    #[test]
    fn private_values_cannot_be_read_directly() {
        let hsm = shared_hsm();
        for (alg, secret) in
            [(RSA2048, AttributeType::PrivateExponent), (KeyAlgorithm::EcdsaP256, AttributeType::Value)]
        {
            let key = hsm.generate_key_pair(&unique_label("secret"), alg).unwrap();
            let private = key.private_handle();
            let attrs = hsm.with_session(|s| s.get_attributes(private, &[secret]).map_err(from_pkcs11)).unwrap();
            for a in &attrs {
                match a {
                    Attribute::PrivateExponent(v) | Attribute::Value(v) => {
                        assert!(v.is_empty(), "{alg:?}: {} secret bytes came back", v.len())
                    }
                    other => panic!("unexpected attribute {other:?}"),
                }
            }
            // Even asking for the RSA prime factors gives nothing.
            if alg == RSA2048 {
                let primes = hsm
                    .with_session(|s| {
                        s.get_attributes(private, &[AttributeType::Prime1, AttributeType::Prime2]).map_err(from_pkcs11)
                    })
                    .unwrap();
                assert!(
                    primes.iter().all(|a| matches!(a,
                    Attribute::Prime1(v) | Attribute::Prime2(v) if v.is_empty())),
                    "{primes:?}"
                );
            }
        }
    }

    #[test]
    fn bad_arguments_are_rejected_before_touching_the_token() {
        let hsm = shared_hsm();
        assert!(matches!(hsm.generate_key_pair("", KeyAlgorithm::EcdsaP256), Err(HsmError::InvalidArgument(_))));
        let label = unique_label("small");
        assert!(matches!(
            hsm.generate_key_pair(&label, KeyAlgorithm::Rsa { bits: 1024 }),
            Err(HsmError::InvalidArgument(_))
        ));
        assert_eq!(objects_labelled(&hsm, &label), 0);
        assert!(matches!(hsm.find_key(""), Err(HsmError::InvalidArgument(_))));
    }
}
