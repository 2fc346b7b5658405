//! The crate's error type and the mapping from PKCS#11 return values.

use cryptoki::error::{Error as CkError, RvError};

/// Everything that can go wrong talking to the token.
///
/// Messages carry labels and PKCS#11 return codes, never a PIN.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("PKCS#11 module: {0}")]
    Module(String),
    /// No token with this label is present.
    #[error("no token labelled {0:?}")]
    TokenNotFound(String),
    /// C_Login failed (wrong or locked PIN, ...). Never contains the PIN.
    #[error("login failed: {0}")]
    Login(String),
    /// No private key (or, for the AES calls, no secret key) with this label.
    #[error("no key labelled {0:?}")]
    KeyNotFound(String),
    /// A private key (or, for the AES calls, a secret key) with this label already
    /// exists; nothing was generated.
    #[error("a key labelled {0:?} already exists")]
    KeyExists(String),
    /// More than one object matched where exactly one is required.
    #[error("ambiguous: {0}")]
    Ambiguous(String),
    /// The object exists but this crate cannot use it (type, curve, size, missing half).
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A key with this label exists but is not fit to be a CA key (or the escrow
    /// key): `reasons` lists each attribute, type or size that is wrong. Nothing
    /// was changed; such a key is never adopted.
    #[error("the existing key {label:?} is not CA-grade: {reasons}")]
    NotCaGrade { label: String, reasons: String },
    /// The caller passed something unusable (empty label, odd RSA size).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The token, device or session went away; reopening may help, retrying the same call won't.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    /// AES-GCM decryption failed: wrong key, IV or AAD, or the ciphertext or tag was
    /// altered (or is too short). Never contains plaintext, ciphertext or key material.
    #[error("decryption failed: {0}")]
    Decrypt(String),
    /// The signing threads ([`crate::Signers`]) could not run the call.
    #[error("signing threads: {0}")]
    Signers(&'static str),
    /// Data from the token could not be encoded or decoded.
    #[error("encoding: {0}")]
    Encoding(String),
}

impl HsmError {
    /// True for errors after which a session must not be reused.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self, HsmError::Unavailable(_))
    }
}

/// Maps a cryptoki error: device/session/token codes become `Unavailable`, the rest `Pkcs11`.
pub(crate) fn from_pkcs11(err: CkError) -> HsmError {
    match rv_of(&err) {
        Some(rv) if is_unavailable_rv(rv) => HsmError::Unavailable(err.to_string()),
        _ => HsmError::Pkcs11(err.to_string()),
    }
}

/// The PKCS#11 return value inside a cryptoki error, if it came from the module.
pub(crate) fn rv_of(err: &CkError) -> Option<RvError> {
    match err {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// CKR_DEVICE_*, CKR_SESSION_*, CKR_TOKEN_* and a finalised library: the session is dead.
fn is_unavailable_rv(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::DeviceRemoved
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::SessionHandleInvalid
            | RvError::SessionParallelNotSupported
            | RvError::SessionReadOnly
            | RvError::SessionExists
            | RvError::SessionReadOnlyExists
            | RvError::SessionReadWriteSoExists
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::TokenWriteProtected
            | RvError::CryptokiNotInitialized
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn device_and_session_errors_are_unavailable() {
        for rv in [
            RvError::DeviceRemoved,
            RvError::DeviceError,
            RvError::SessionHandleInvalid,
            RvError::SessionClosed,
            RvError::TokenNotPresent,
        ] {
            let e = from_pkcs11(CkError::Pkcs11(rv, Function::Sign));
            assert!(e.is_unavailable(), "{rv:?} should be Unavailable, got {e:?}");
        }
    }

    #[test]
    fn other_errors_are_pkcs11() {
        for rv in [RvError::KeyHandleInvalid, RvError::DataLenRange, RvError::GeneralError] {
            let e = from_pkcs11(CkError::Pkcs11(rv, Function::Sign));
            assert!(matches!(e, HsmError::Pkcs11(_)), "{rv:?} gave {e:?}");
        }
        assert!(matches!(from_pkcs11(CkError::NotSupported), HsmError::Pkcs11(_)));
    }
}
