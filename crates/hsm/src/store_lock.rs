//! A process-wide lock around the token's object store.
//!
//! SoftHSM's file object store is not safe when an object is being created while other
//! threads read objects: C_GenerateKeyPair then fails at random with CKR_GENERAL_ERROR
//! or CKR_TEMPLATE_INCONSISTENT (SoftHSMv2 issue #573; measured here on 2.6.1, about
//! 1 run in 8 of this crate's tests). Calls that write the token take this lock
//! exclusively, everything else shares it, so signers never wait on each other.
//! It is static because every `Hsm` in the process shares one loaded module. Other
//! processes (pkcs11-tool, softhsm2-util) are not covered.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static STORE: RwLock<()> = RwLock::new(());

/// Whether an operation may change token objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads objects or uses keys (find, get attributes, sign).
    Shared,
    /// Creates, changes or destroys objects, or logs in (which rewrites token flags).
    Exclusive,
}

pub(crate) enum StoreGuard {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// Take this only while already holding a session (never the other way round): a
/// writer waiting for a session while readers wait for the lock would deadlock.
pub(crate) fn lock(access: Access) -> StoreGuard {
    match access {
        Access::Shared => StoreGuard::Shared(STORE.read().unwrap_or_else(PoisonError::into_inner)),
        Access::Exclusive => StoreGuard::Exclusive(STORE.write().unwrap_or_else(PoisonError::into_inner)),
    }
}
