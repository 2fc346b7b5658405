//! Reading a private key's protection attributes back from the token.

use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use crate::algorithm::KeyAlgorithm;
use crate::error::{from_pkcs11, HsmError};

/// What the token says about a private key (used by audits and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProtection {
    pub sensitive: bool,
    pub extractable: bool,
    pub never_extractable: bool,
    pub sign: bool,
    pub decrypt: bool,
    pub unwrap: bool,
    pub derive: bool,
    /// True only if the secret value (CKA_PRIVATE_EXPONENT / CKA_VALUE) came back with bytes.
    pub private_value_readable: bool,
}

impl KeyProtection {
    /// The protection every CA key must have.
    pub fn is_ca_grade(&self) -> bool {
        self.sensitive
            && !self.extractable
            && self.never_extractable
            && self.sign
            && !self.decrypt
            && !self.unwrap
            && !self.derive
            && !self.private_value_readable
    }
}

const FLAGS: [AttributeType; 7] = [
    AttributeType::Sensitive,
    AttributeType::Extractable,
    AttributeType::NeverExtractable,
    AttributeType::Sign,
    AttributeType::Decrypt,
    AttributeType::Unwrap,
    AttributeType::Derive,
];

/// The attribute holding the private key's secret for this algorithm.
pub(crate) fn secret_attribute(alg: KeyAlgorithm) -> AttributeType {
    match alg {
        KeyAlgorithm::Rsa { .. } => AttributeType::PrivateExponent,
        KeyAlgorithm::EcdsaP256 => AttributeType::Value,
    }
}

pub(crate) fn read(
    session: &Session,
    private: ObjectHandle,
    alg: KeyAlgorithm,
) -> Result<KeyProtection, HsmError> {
    let attrs = session
        .get_attributes(private, &FLAGS)
        .map_err(from_pkcs11)?;
    // A missing flag is an error rather than a guess: this feeds security checks.
    let flag = |ty: AttributeType| -> Result<bool, HsmError> {
        attrs
            .iter()
            .find_map(|a| match (a, ty) {
                (Attribute::Sensitive(v), AttributeType::Sensitive)
                | (Attribute::Extractable(v), AttributeType::Extractable)
                | (Attribute::NeverExtractable(v), AttributeType::NeverExtractable)
                | (Attribute::Sign(v), AttributeType::Sign)
                | (Attribute::Decrypt(v), AttributeType::Decrypt)
                | (Attribute::Unwrap(v), AttributeType::Unwrap)
                | (Attribute::Derive(v), AttributeType::Derive) => Some(*v),
                _ => None,
            })
            .ok_or_else(|| HsmError::Pkcs11(format!("token did not return {ty}")))
    };
    Ok(KeyProtection {
        sensitive: flag(AttributeType::Sensitive)?,
        extractable: flag(AttributeType::Extractable)?,
        never_extractable: flag(AttributeType::NeverExtractable)?,
        sign: flag(AttributeType::Sign)?,
        decrypt: flag(AttributeType::Decrypt)?,
        unwrap: flag(AttributeType::Unwrap)?,
        derive: flag(AttributeType::Derive)?,
        private_value_readable: secret_readable(session, private, alg)?,
    })
}

/// Whether the secret came back with bytes. cryptoki returns Ok(empty) (or omits the
/// attribute) when the token answers CKR_ATTRIBUTE_SENSITIVE. Asked on its own so a
/// sensitive attribute cannot spoil the answers for the flags.
pub(crate) fn secret_readable(
    session: &Session,
    private: ObjectHandle,
    alg: KeyAlgorithm,
) -> Result<bool, HsmError> {
    let attrs = session
        .get_attributes(private, &[secret_attribute(alg)])
        .map_err(from_pkcs11)?;
    Ok(attrs.iter().any(|a| match a {
        Attribute::PrivateExponent(v) | Attribute::Value(v) => !v.is_empty(),
        _ => false,
    }))
}
