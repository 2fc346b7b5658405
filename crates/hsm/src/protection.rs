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
    /// CKA_MODIFIABLE: its attributes can still be changed (C_SetAttributeValue).
    pub modifiable: bool,
    /// CKA_COPYABLE: C_CopyObject may make a second object of it (with looser flags).
    pub copyable: bool,
    /// CKA_ALLOWED_MECHANISMS by name (e.g. "CKM_ECDSA"); empty when the token
    /// sets no list, which means every mechanism the key type allows.
    pub allowed_mechanisms: Vec<String>,
}

impl KeyProtection {
    /// The protection every CA key must have: sign only, secret never left the token,
    /// frozen (neither modifiable nor copyable) and limited to a list of mechanisms.
    pub fn is_ca_grade(&self) -> bool {
        self.ca_grade_problems().is_empty()
    }

    /// The protection the PIN escrow key must have: encrypt and decrypt only, secret
    /// never left the token, frozen and limited to a list of mechanisms.
    pub fn is_escrow_grade(&self) -> bool {
        self.escrow_grade_problems().is_empty()
    }

    /// Why this is not a CA-grade signing key (empty: it is). Each item names the
    /// attribute, e.g. "extractable (CKA_EXTRACTABLE = true)".
    pub fn ca_grade_problems(&self) -> Vec<String> {
        self.grade_problems(&[(self.sign, "CKA_SIGN", "cannot sign")], "has a use besides signing")
    }

    /// Why this is not an escrow-grade AES key (empty: it is).
    pub fn escrow_grade_problems(&self) -> Vec<String> {
        let uses = [(self.encrypt, "CKA_ENCRYPT", "cannot encrypt"), (self.decrypt, "CKA_DECRYPT", "cannot decrypt")];
        self.grade_problems(&uses, "has a use besides encryption")
    }

    /// Sealed, each of `uses` (value, attribute, problem if unset) set and every
    /// other use unset (`besides` is that problem).
    fn grade_problems(&self, uses: &[(bool, &str, &str)], besides: &str) -> Vec<String> {
        let mut out = self.sealing_problems();
        for &(value, attribute, problem) in uses {
            want(&mut out, value, true, attribute, problem);
        }
        let all = [
            (self.sign, "CKA_SIGN"),
            (self.verify, "CKA_VERIFY"),
            (self.encrypt, "CKA_ENCRYPT"),
            (self.decrypt, "CKA_DECRYPT"),
            (self.wrap, "CKA_WRAP"),
            (self.unwrap, "CKA_UNWRAP"),
            (self.derive, "CKA_DERIVE"),
        ];
        for (value, attribute) in all {
            if !uses.iter().any(|&(_, wanted, _)| wanted == attribute) {
                want(&mut out, value, false, attribute, besides);
            }
        }
        out
    }

    /// Sensitive, not extractable now or ever, the secret value does not come back,
    /// neither modifiable nor copyable, and an allowed-mechanism list.
    fn sealing_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        want(&mut out, self.sensitive, true, "CKA_SENSITIVE", "not sensitive");
        want(&mut out, self.extractable, false, "CKA_EXTRACTABLE", "extractable");
        want(&mut out, self.never_extractable, true, "CKA_NEVER_EXTRACTABLE", "was extractable once");
        if self.private_value_readable {
            out.push("its secret value can be read".into());
        }
        want(&mut out, self.modifiable, false, "CKA_MODIFIABLE", "modifiable");
        want(&mut out, self.copyable, false, "CKA_COPYABLE", "copyable");
        if self.allowed_mechanisms.is_empty() {
            out.push("no allowed-mechanism list (CKA_ALLOWED_MECHANISMS is empty: any mechanism)".into());
        }
        out
    }
}

fn want(out: &mut Vec<String>, value: bool, wanted: bool, attribute: &str, problem: &str) {
    if value != wanted {
        out.push(format!("{problem} ({attribute} = {value})"));
    }
}

/// Flags every private and secret key has.
const FLAGS: [AttributeType; 9] = [
    AttributeType::Sensitive,
    AttributeType::Extractable,
    AttributeType::NeverExtractable,
    AttributeType::Sign,
    AttributeType::Decrypt,
    AttributeType::Unwrap,
    AttributeType::Derive,
    AttributeType::Modifiable,
    AttributeType::Copyable,
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
    read_flags(session, private, &FLAGS, secret_attribute(alg))
}

/// Protection of a secret (AES) key; its secret is CKA_VALUE.
pub(crate) fn read_secret_key(session: &Session, key: ObjectHandle) -> Result<KeyProtection, HsmError> {
    let mut types = FLAGS.to_vec();
    types.extend(SECRET_KEY_FLAGS);
    read_flags(session, key, &types, AttributeType::Value)
}

/// Protection from the flags in `types`; a flag of `SECRET_KEY_FLAGS` left out
/// of `types` is false (private keys have no such attribute).
fn read_flags(
    session: &Session,
    key: ObjectHandle,
    types: &[AttributeType],
    secret: AttributeType,
) -> Result<KeyProtection, HsmError> {
    let attrs = session.get_attributes(key, types).map_err(from_pkcs11)?;
    let flag = |ty| flag(&attrs, ty);
    let secret_key_flag = |ty| if types.contains(&ty) { flag(ty) } else { Ok(false) };
    Ok(KeyProtection {
        sensitive: flag(AttributeType::Sensitive)?,
        extractable: flag(AttributeType::Extractable)?,
        never_extractable: flag(AttributeType::NeverExtractable)?,
        sign: flag(AttributeType::Sign)?,
        verify: secret_key_flag(AttributeType::Verify)?,
        encrypt: secret_key_flag(AttributeType::Encrypt)?,
        decrypt: flag(AttributeType::Decrypt)?,
        wrap: secret_key_flag(AttributeType::Wrap)?,
        unwrap: flag(AttributeType::Unwrap)?,
        derive: flag(AttributeType::Derive)?,
        private_value_readable: secret_readable(session, key, secret)?,
        modifiable: flag(AttributeType::Modifiable)?,
        copyable: flag(AttributeType::Copyable)?,
        allowed_mechanisms: allowed_mechanisms(session, key)?,
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
            | (Attribute::Derive(v), AttributeType::Derive)
            | (Attribute::Modifiable(v), AttributeType::Modifiable)
            | (Attribute::Copyable(v), AttributeType::Copyable) => Some(*v),
            _ => None,
        })
        .ok_or_else(|| HsmError::Pkcs11(format!("token did not return {ty}")))
}

/// CKA_ALLOWED_MECHANISMS by name; empty when the token has no list for the key.
pub(crate) fn allowed_mechanisms(session: &Session, key: ObjectHandle) -> Result<Vec<String>, HsmError> {
    let attrs = session.get_attributes(key, &[AttributeType::AllowedMechanisms]).map_err(from_pkcs11)?;
    Ok(attrs
        .into_iter()
        .flat_map(|a| match a {
            Attribute::AllowedMechanisms(list) => list,
            _ => Vec::new(),
        })
        .map(|m| m.to_string())
        .collect())
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
impl KeyProtection {
    /// Sealed, with no use at all and only `mechanism` allowed: tests add the
    /// uses a key should have and compare the whole.
    pub(crate) fn sealed_for_tests(mechanism: &str) -> KeyProtection {
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
            modifiable: false,
            copyable: false,
            allowed_mechanisms: vec![mechanism.to_owned()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> KeyProtection {
        KeyProtection::sealed_for_tests("CKM_ECDSA")
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
    fn problems_name_the_attribute() {
        let weak = KeyProtection { sign: true, extractable: true, modifiable: true, copyable: true, ..sealed() };
        let problems = weak.ca_grade_problems().join("; ");
        for want in ["CKA_EXTRACTABLE = true", "CKA_MODIFIABLE = true", "CKA_COPYABLE = true"] {
            assert!(problems.contains(want), "{problems}");
        }
        assert!(!problems.contains("CKA_SENSITIVE"), "{problems}");
    }

    #[test]
    fn any_loosened_flag_fails_both_grades() {
        let ca = KeyProtection { sign: true, ..sealed() };
        let escrow = KeyProtection { encrypt: true, decrypt: true, ..sealed() };
        let loosen: [fn(&mut KeyProtection); 13] = [
            |p| p.modifiable = true,
            |p| p.copyable = true,
            |p| p.allowed_mechanisms.clear(),
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
