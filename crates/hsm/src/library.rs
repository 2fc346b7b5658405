//! The PKCS#11 library's process-wide state: C_Initialize happens once per process,
//! and re-initialising it (to get a token back after it went away) invalidates every
//! session and object handle of every `Hsm` in the process.
//!
//! So every operation holds this gate shared for its whole run, and a reconnect
//! holds it exclusively: no operation is ever in flight while the library is
//! finalised, and none can use a handle from before the re-initialisation, whose
//! number may by then name another session or key. The value is the epoch: how many
//! times this process re-initialised the library.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static LIBRARY: RwLock<u64> = RwLock::new(0);

/// Held by an operation for its whole run. Never take it twice on one thread: a
/// waiting reconnect would deadlock the second attempt.
pub(crate) fn shared() -> RwLockReadGuard<'static, u64> {
    LIBRARY.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held while reconnecting; waits for operations in flight to finish.
pub(crate) fn exclusive() -> RwLockWriteGuard<'static, u64> {
    LIBRARY.write().unwrap_or_else(PoisonError::into_inner)
}

/// The current epoch (takes and releases the gate).
pub(crate) fn epoch() -> u64 {
    *shared()
}
