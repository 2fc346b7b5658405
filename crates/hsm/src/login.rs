//! Logging in once per process, and keeping a wrong PIN from slipping through.
//!
//! PKCS#11 login state belongs to the application, not the session: once this process
//! is logged in, C_Login answers CKR_USER_ALREADY_LOGGED_IN *without checking the PIN*
//! (measured on SoftHSM 2.6). So that a second `Hsm::open` with a wrong PIN still
//! fails, we remember a salted SHA-256 of the PIN that logged in and compare. (Anyone
//! who can read this process's memory can already use the logged-in token.)

use std::sync::{Mutex, PoisonError};

use cryptoki::error::RvError;
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

use crate::error::{from_pkcs11, rv_of, HsmError};

const SALT_LEN: usize = 16;

struct Verified {
    /// Token label + serial number; the same token reached via another path matches.
    token: String,
    salt: [u8; SALT_LEN],
    digest: [u8; 32],
}

static VERIFIED: Mutex<Vec<Verified>> = Mutex::new(Vec::new());

fn digest(salt: &[u8], pin: &str) -> [u8; 32] {
    Sha256::new().chain_update(salt).chain_update(pin.as_bytes()).finalize().into()
}

/// Logs `session`'s application in as User on the token identified by `token`
/// (label + serial). `label` is only used in messages.
pub(crate) fn login(session: &Session, token: &str, label: &str, pin: &str) -> Result<(), HsmError> {
    let auth = AuthPin::new(pin.into()); // zeroised on drop
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) => remember(session, token, pin),
        Err(e) if rv_of(&e) == Some(RvError::UserAlreadyLoggedIn) => check(token, label, pin),
        Err(e) => {
            // cryptoki's message names the function and return code, never the PIN.
            let msg = format!("token {label:?}: {e}");
            match from_pkcs11(e) {
                HsmError::Unavailable(_) => Err(HsmError::Unavailable(msg)),
                _ => Err(HsmError::Login(msg)),
            }
        }
    }
}

/// Records the PIN that the token just accepted.
fn remember(session: &Session, token: &str, pin: &str) -> Result<(), HsmError> {
    let mut salt = [0u8; SALT_LEN];
    session.generate_random_slice(&mut salt).map_err(from_pkcs11)?;
    let entry = Verified { token: token.to_owned(), salt, digest: digest(&salt, pin) };
    let mut verified = VERIFIED.lock().unwrap_or_else(PoisonError::into_inner);
    verified.retain(|v| v.token != token);
    verified.push(entry);
    Ok(())
}

/// Already logged in: accept only the PIN that logged in (or any PIN if the login
/// was done by code outside this crate, which we cannot check).
fn check(token: &str, label: &str, pin: &str) -> Result<(), HsmError> {
    let verified = VERIFIED.lock().unwrap_or_else(PoisonError::into_inner);
    match verified.iter().find(|v| v.token == token) {
        Some(v) if digest(&v.salt, pin) != v.digest => {
            Err(HsmError::Login(format!("token {label:?}: PIN differs from the one this process is logged in with")))
        }
        Some(_) => Ok(()),
        None => {
            tracing::warn!(token = label, "token was already logged in outside this crate; PIN not checked");
            Ok(())
        }
    }
}
