//! Reading a key's protection attributes back from the token.

use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use crate::algorithm::KeyAlgorithm;
use crate::error::{from_pkcs11, HsmError};

/// What the token says about a private key or an AES secret key (used by audits and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProtection {
    pub sensitive: bool,
    pub extractable: bool,
    pub never_extractable: bool,
    pub sign: bool,
    /// CKA_VERIFY. Always false for private keys, which have no such attribute.
    pub verify: bool,
    /// CKA_ENCRYPT. Always false for private keys, which have no such attribute.
    pub encrypt: bool,
    pub decrypt: bool,
    /// CKA_WRAP. Always false for private keys, which have no such attribute.
    pub wrap: bool,
    pub unwrap: bool,
    pub derive: bool,
    /// True only if the secret value (CKA_PRIVATE_EXPONENT / CKA_VALUE) came back with bytes.
    pub private_value_readable: bool,
}

impl KeyProtection {
    /// The protection every CA key must have: sign only, secret never left the token.
    pub fn is_ca_grade(&self) -> bool {
        self.sealed()
            && self.sign
            && !self.verify
            && !self.encrypt
            && !self.decrypt
            && !self.wrap
            && !self.unwrap
            && !self.derive
    }

    /// The protection the PIN escrow key must have: encrypt and decrypt only, secret
    /// never left the token.
    pub fn is_escrow_grade(&self) -> bool {
        self.sealed()
            && self.encrypt
            && self.decrypt
            && !self.sign
            && !self.verify
            && !self.wrap
            && !self.unwrap
            && !self.derive
    }

    /// Sensitive, not extractable now or ever, and the secret value does not come back.
    fn sealed(&self) -> bool {
        self.sensitive && !self.extractable && self.never_extractable && !self.private_value_readable
    }
}

/// Flags every private and secret key has.
const FLAGS: [AttributeType; 7] = [
    AttributeType::Sensitive,
    AttributeType::Extractable,
    AttributeType::NeverExtractable,
    AttributeType::Sign,
    AttributeType::Decrypt,
    AttributeType::Unwrap,
    AttributeType::Derive,
];

/// Flags only public and secret keys have (asked for secret keys only).
const SECRET_KEY_FLAGS: [AttributeType; 3] = [AttributeType::Verify, AttributeType::Encrypt, AttributeType::Wrap];

/// The attribute holding the private key's secret for this algorithm.
pub(crate) fn secret_attribute(alg: KeyAlgorithm) -> AttributeType {
    match alg {
        KeyAlgorithm::Rsa { .. } => AttributeType::PrivateExponent,
        KeyAlgorithm::EcdsaP256 => AttributeType::Value,
    }
}

/// Protection of a private key (RSA or EC).
pub(crate) fn read(session: &Session, private: ObjectHandle, alg: KeyAlgorithm) -> Result<KeyProtection, HsmError> {
    let attrs = session.get_attributes(private, &FLAGS).map_err(from_pkcs11)?;
    let flag = |ty| flag(&attrs, ty);
    Ok(KeyProtection {
        sensitive: flag(AttributeType::Sensitive)?,
        extractable: flag(AttributeType::Extractable)?,
        never_extractable: flag(AttributeType::NeverExtractable)?,
        sign: flag(AttributeType::Sign)?,
        verify: false,
        encrypt: false,
        decrypt: flag(AttributeType::Decrypt)?,
        wrap: false,
        unwrap: flag(AttributeType::Unwrap)?,
        derive: flag(AttributeType::Derive)?,
        private_value_readable: secret_readable(session, private, secret_attribute(alg))?,
    })
}

/// Protection of a secret (AES) key; its secret is CKA_VALUE.
pub(crate) fn read_secret_key(session: &Session, key: ObjectHandle) -> Result<KeyProtection, HsmError> {
    let mut types = FLAGS.to_vec();
    types.extend(SECRET_KEY_FLAGS);
    let attrs = session.get_attributes(key, &types).map_err(from_pkcs11)?;
    let flag = |ty| flag(&attrs, ty);
    Ok(KeyProtection {
        sensitive: flag(AttributeType::Sensitive)?,
        extractable: flag(AttributeType::Extractable)?,
        never_extractable: flag(AttributeType::NeverExtractable)?,
        sign: flag(AttributeType::Sign)?,
        verify: flag(AttributeType::Verify)?,
        encrypt: flag(AttributeType::Encrypt)?,
        decrypt: flag(AttributeType::Decrypt)?,
        wrap: flag(AttributeType::Wrap)?,
        unwrap: flag(AttributeType::Unwrap)?,
        derive: flag(AttributeType::Derive)?,
        private_value_readable: secret_readable(session, key, AttributeType::Value)?,
    })
}

/// One boolean flag from `attrs`. A missing flag is an error rather than a guess:
/// this feeds security checks.
fn flag(attrs: &[Attribute], ty: AttributeType) -> Result<bool, HsmError> {
    attrs
        .iter()
        .find_map(|a| match (a, ty) {
            (Attribute::Sensitive(v), AttributeType::Sensitive)
            | (Attribute::Extractable(v), AttributeType::Extractable)
            | (Attribute::NeverExtractable(v), AttributeType::NeverExtractable)
            | (Attribute::Sign(v), AttributeType::Sign)
            | (Attribute::Verify(v), AttributeType::Verify)
            | (Attribute::Encrypt(v), AttributeType::Encrypt)
            | (Attribute::Decrypt(v), AttributeType::Decrypt)
            | (Attribute::Wrap(v), AttributeType::Wrap)
            | (Attribute::Unwrap(v), AttributeType::Unwrap)
            | (Attribute::Derive(v), AttributeType::Derive) => Some(*v),
            _ => None,
        })
        .ok_or_else(|| HsmError::Pkcs11(format!("token did not return {ty}")))
}

/// Whether the secret came back with bytes. cryptoki returns Ok(empty) (or omits the
/// attribute) when the token answers CKR_ATTRIBUTE_SENSITIVE. Asked on its own so a
/// sensitive attribute cannot spoil the answers for the flags.
pub(crate) fn secret_readable(session: &Session, key: ObjectHandle, secret: AttributeType) -> Result<bool, HsmError> {
    let attrs = session.get_attributes(key, &[secret]).map_err(from_pkcs11)?;
    Ok(attrs.iter().any(|a| match a {
        Attribute::PrivateExponent(v) | Attribute::Value(v) => !v.is_empty(),
        _ => false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> KeyProtection {
        KeyProtection {
            sensitive: true,
            extractable: false,
            never_extractable: true,
            sign: false,
            verify: false,
            encrypt: false,
            decrypt: false,
            wrap: false,
            unwrap: false,
            derive: false,
            private_value_readable: false,
        }
    }

    #[test]
    fn grades_need_exactly_their_usages() {
        let ca = KeyProtection { sign: true, ..sealed() };
        let escrow = KeyProtection { encrypt: true, decrypt: true, ..sealed() };
        assert!(ca.is_ca_grade() && !ca.is_escrow_grade());
        assert!(escrow.is_escrow_grade() && !escrow.is_ca_grade());
        assert!(!sealed().is_ca_grade() && !sealed().is_escrow_grade());
        assert!(!KeyProtection { decrypt: false, ..escrow.clone() }.is_escrow_grade());
    }

    #[test]
    fn any_loosened_flag_fails_both_grades() {
        let ca = KeyProtection { sign: true, ..sealed() };
        let escrow = KeyProtection { encrypt: true, decrypt: true, ..sealed() };
        let loosen: [fn(&mut KeyProtection); 10] = [
            |p| p.sensitive = false,
            |p| p.extractable = true,
            |p| p.never_extractable = false,
            |p| p.private_value_readable = true,
            |p| p.wrap = true,
            |p| p.unwrap = true,
            |p| p.derive = true,
            |p| p.verify = true,
            |p| p.sign = !p.sign,
            |p| p.encrypt = !p.encrypt,
        ];
        for (i, f) in loosen.iter().enumerate() {
            let mut c = ca.clone();
            f(&mut c);
            assert!(!c.is_ca_grade(), "change {i}: {c:?}");
            let mut e = escrow.clone();
            f(&mut e);
            assert!(!e.is_escrow_grade(), "change {i}: {e:?}");
        }
    }
}
