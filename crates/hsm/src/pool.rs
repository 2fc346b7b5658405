//! A bounded pool of PKCS#11 sessions.
//!
//! `Session` is Send but not Sync, so each operation checks one out, uses it alone and
//! gives it back. Sessions are opened lazily up to the cap; callers beyond it wait.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use crate::error::{from_pkcs11, HsmError};
use crate::store_lock::{self, Access};

pub(crate) struct SessionPool {
    pkcs11: Pkcs11,
    slot: Slot,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
    /// The login session. Never used for operations: login state belongs to the
    /// application and ends when its last session closes, so this one must outlive
    /// any pooled session we drop after an error.
    _anchor: Mutex<Session>,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions that exist: idle plus checked out (plus ones being opened).
    open: usize,
}

impl SessionPool {
    /// `anchor` must already be logged in. `max` is raised to 1 if 0.
    pub(crate) fn new(pkcs11: Pkcs11, slot: Slot, max: usize, anchor: Session) -> Self {
        SessionPool {
            pkcs11,
            slot,
            max: max.max(1),
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            returned: Condvar::new(),
            _anchor: Mutex::new(anchor),
        }
    }

    /// Runs `f` on a session of its own, holding the object-store lock as `access`
    /// says. A session that failed with an `Unavailable` error is closed instead of
    /// being reused.
    pub(crate) fn with_session<T>(
        &self,
        access: Access,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let mut lease = self.checkout()?;
        // Session first, then lock: see store_lock::lock.
        let guard = store_lock::lock(access);
        let result = lease.session.as_ref().map_or_else(|| Err(HsmError::Pkcs11("session lease is empty".into())), f);
        drop(guard);
        if matches!(&result, Err(e) if e.is_unavailable()) {
            lease.broken = true;
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Nothing panics while holding the lock, but don't turn a poisoned lock into a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkout(&self) -> Result<Lease<'_>, HsmError> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(Lease::new(self, session));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state); // opening a session can be slow; don't block returns meanwhile
                return match self.pkcs11.open_rw_session(self.slot) {
                    Ok(session) => Ok(Lease::new(self, session)),
                    Err(e) => {
                        self.forget_one();
                        Err(from_pkcs11(e))
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A session slot became free without a session going back to `idle`.
    fn forget_one(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.returned.notify_one();
    }

    fn give_back(&self, session: Session) {
        self.lock().idle.push(session);
        self.returned.notify_one();
    }

    /// Fails with `Unavailable` unless the slot still reports its token (a session can
    /// look fine after the token's objects are gone).
    ///
    /// Asked up to three times: SoftHSM answers CKR_GENERAL_ERROR now and then while
    /// another process logs in to the token and rewrites its file (measured: 2 in
    /// 250,000 calls during 950 logins by pkcs11-tool), and that is no outage.
    pub(crate) fn check_token(&self) -> Result<(), HsmError> {
        let mut tries = 0;
        loop {
            match self.pkcs11.get_token_info(self.slot) {
                Ok(_) => return Ok(()),
                Err(e) if tries == 2 => return Err(HsmError::Unavailable(format!("token info: {e}"))),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10 * tries));
                }
            }
        }
    }

    /// Drops the pool without closing its sessions: for a pool from an earlier library
    /// epoch, whose session handles may now name other sessions. Only called while no
    /// session is checked out (the library gate is held exclusively).
    pub(crate) fn abandon(self) {
        let state = self.state.into_inner().unwrap_or_else(PoisonError::into_inner);
        for session in state.idle {
            std::mem::forget(session);
        }
        std::mem::forget(self._anchor);
    }

    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.open, state.idle.len())
    }
}

/// A checked-out session; goes back to the pool (or is closed if broken) on drop,
/// including when the operation panicked.
struct Lease<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
    broken: bool,
}

impl<'a> Lease<'a> {
    fn new(pool: &'a SessionPool, session: Session) -> Self {
        Lease { pool, session: Some(session), broken: false }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if self.broken || std::thread::panicking() {
            tracing::warn!("closing a PKCS#11 session after an error");
            drop(session); // C_CloseSession; failures are only logged by cryptoki
            self.pool.forget_one();
        } else {
            self.pool.give_back(session);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::testing::hsm_with_pool;
    use crate::HsmError;

    #[test]
    fn sessions_open_lazily_and_are_reused() {
        let hsm = hsm_with_pool(3);
        assert_eq!(hsm.pool_counts(), (0, 0));
        hsm.ping().unwrap();
        hsm.ping().unwrap();
        assert_eq!(hsm.pool_counts(), (1, 1));
    }

    #[test]
    fn zero_sessions_means_one() {
        let hsm = hsm_with_pool(0);
        hsm.ping().unwrap();
        assert_eq!(hsm.pool_counts(), (1, 1));
    }

    #[test]
    fn never_more_sessions_than_the_cap() {
        let hsm = hsm_with_pool(2);
        let busy = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (hsm, busy, peak) = (hsm.clone(), busy.clone(), peak.clone());
                std::thread::spawn(move || {
                    hsm.with_session(|_| {
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        busy.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "6 waiting callers should fill a pool of 2");
        assert_eq!(hsm.pool_counts(), (2, 2));
    }

    #[test]
    fn unavailable_error_drops_the_session_and_the_pool_recovers() {
        let hsm = hsm_with_pool(1);
        hsm.ping().unwrap();
        let err = hsm.with_session(|_| Err::<(), _>(HsmError::Unavailable("simulated".into()))).unwrap_err();
        assert!(matches!(err, HsmError::Unavailable(_)));
        assert_eq!(hsm.pool_counts(), (0, 0));
        // Other errors keep the session.
        let _ = hsm.with_session(|_| Err::<(), _>(HsmError::Pkcs11("simulated".into())));
        assert_eq!(hsm.pool_counts(), (1, 1));
        hsm.ping().unwrap(); // a new session, still logged in
    }

    #[test]
    fn panic_inside_an_operation_frees_its_slot() {
        let hsm = hsm_with_pool(1);
        let caught =
            catch_unwind(AssertUnwindSafe(|| hsm.with_session(|_| -> Result<(), HsmError> { panic!("boom") })));
        assert!(caught.is_err());
        assert_eq!(hsm.pool_counts(), (0, 0));
        hsm.ping().unwrap(); // would block forever if the slot had leaked
    }
}
