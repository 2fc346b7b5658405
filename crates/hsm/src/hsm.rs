//! Opening the token (load the module, find the token, log in) and getting it back
//! when it went away.
//!
//! An operation that fails with `Unavailable` marks the connection down; the next
//! operation (at most one attempt per `RETRY_GAP`) re-initialises the library, finds
//! the token again and logs in again. Until then every call fails fast with
//! `Unavailable`; nothing waits for the token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;

use crate::error::{from_pkcs11, rv_of, HsmError};
use crate::library;
use crate::login;
use crate::pool::SessionPool;
use crate::store_lock::{self, Access};

/// The shortest time between two reconnect attempts of one `Hsm`.
const RETRY_GAP: Duration = Duration::from_millis(200);

/// A logged-in token. Cheap to clone; all clones share one session pool and
/// reconnect together.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

struct Inner {
    token_label: String,
    module: PathBuf,
    /// Kept to log in again after a reconnect; zeroised on drop, never printed.
    pin: AuthPin,
    sessions: usize,
    pkcs11: Pkcs11,
    live: RwLock<Option<Arc<Live>>>,
    /// When the last reconnect was tried; also serialises attempts.
    last_attempt: Mutex<Option<Instant>>,
}

/// One logged-in connection, valid for one library epoch.
pub(crate) struct Live {
    epoch: u64,
    pool: SessionPool,
    down: AtomicBool,
}

impl Live {
    /// The library epoch this connection (and every handle found through it) belongs to.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    fn usable(&self, epoch: u64) -> bool {
        self.epoch == epoch && !self.down.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm").field("token_label", &self.inner.token_label).finish_non_exhaustive()
    }
}

impl Hsm {
    /// Loads the module, initialises it (OS locking), finds the token by label, logs in as User.
    ///
    /// `sessions` caps the pooled sessions (at least 1); one more session is held
    /// open for the login. If this process is already logged in to the token,
    /// CKR_USER_ALREADY_LOGGED_IN is accepted, but only with the same PIN.
    pub fn open(module: &Path, token_label: &str, user_pin: &str, sessions: usize) -> Result<Hsm, HsmError> {
        let pkcs11 = Pkcs11::new(module).map_err(|e| HsmError::Module(format!("loading {}: {e}", module.display())))?;
        let hsm = Hsm {
            inner: Arc::new(Inner {
                token_label: token_label.to_owned(),
                module: module.to_owned(),
                pin: AuthPin::new(user_pin.into()),
                sessions,
                pkcs11,
                live: RwLock::new(None),
                last_attempt: Mutex::new(None),
            }),
        };
        hsm.connect(true)?;
        tracing::info!(token = token_label, sessions, "HSM token opened");
        Ok(hsm)
    }

    /// The label of the token this handle is logged in to.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// Checks that the token is present and a pooled session is logged in (for
    /// health checks). Reconnects first if the token went away earlier.
    pub fn ping(&self) -> Result<(), HsmError> {
        self.with_live(Access::Shared, |live, s| {
            live.pool.check_token()?;
            let info = s.get_session_info().map_err(from_pkcs11)?;
            match info.session_state() {
                SessionState::RwUser | SessionState::RoUser => Ok(()),
                other => Err(HsmError::Unavailable(format!("session is not logged in ({other:?})"))),
            }
        })
    }

    /// Runs `f` on a pooled session; for operations that only read objects or use keys.
    pub(crate) fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, HsmError>) -> Result<T, HsmError> {
        self.with_live(Access::Shared, |_, s| f(s))
    }

    /// Runs `f` on a pooled session with the object store to itself; for operations
    /// that create, change or destroy objects.
    #[cfg(test)]
    pub(crate) fn with_session_exclusive<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        self.with_live(Access::Exclusive, |_, s| f(s))
    }

    /// Runs `f` on a pooled session of a live connection, reconnecting first if
    /// needed. An `Unavailable` result marks the connection down.
    pub(crate) fn with_live<T>(
        &self,
        access: Access,
        f: impl FnOnce(&Live, &Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let mut f = Some(f);
        // Another Hsm in this process may re-initialise the library between our
        // reconnect and taking the gate; then reconnect again (rarely more than once).
        for _ in 0..3 {
            self.ensure_connected()?;
            let gate = library::shared();
            let Some(live) = self.live().filter(|l| l.usable(*gate)) else { continue };
            let Some(f) = f.take() else { break };
            let result = match live.pool.with_session(access, |s| f(&live, s)) {
                // SoftHSM answers "object handle invalid" when its token folder has
                // gone; a destroyed key gives the same code with the token still there.
                Err(HsmError::Pkcs11(m)) if live.pool.check_token().is_err() => {
                    Err(HsmError::Unavailable(format!("{m} (and the token is gone)")))
                }
                other => other,
            };
            drop(gate);
            if let Err(e) = &result {
                if e.is_unavailable() && !live.down.swap(true, Ordering::SeqCst) {
                    tracing::warn!(token = %self.inner.token_label, error = %e, "HSM unavailable; will reconnect");
                }
            }
            return result;
        }
        Err(HsmError::Unavailable(format!("token {:?}: the library kept being re-initialised", self.inner.token_label)))
    }

    fn live(&self) -> Option<Arc<Live>> {
        self.inner.live.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn ensure_connected(&self) -> Result<(), HsmError> {
        let usable = || self.live().is_some_and(|l| l.usable(library::epoch()));
        if usable() {
            return Ok(());
        }
        let mut last = self.inner.last_attempt.lock().unwrap_or_else(PoisonError::into_inner);
        if usable() {
            return Ok(()); // another thread reconnected meanwhile
        }
        if last.is_some_and(|at| at.elapsed() < RETRY_GAP) {
            return Err(HsmError::Unavailable(format!(
                "token {:?} is unavailable (reconnecting at most every {} ms)",
                self.inner.token_label,
                RETRY_GAP.as_millis()
            )));
        }
        *last = Some(Instant::now());
        match self.connect(false) {
            Ok(()) => {
                tracing::info!(token = %self.inner.token_label, "HSM token reconnected");
                Ok(())
            }
            Err(HsmError::Unavailable(m)) => Err(HsmError::Unavailable(m)),
            Err(e) => Err(HsmError::Unavailable(format!("reconnecting to token {:?}: {e}", self.inner.token_label))),
        }
    }

    /// (Re)connects with the library gate held exclusively, so no operation is in
    /// flight. A connection that failed in the current epoch re-initialises the
    /// library (SoftHSM only sees a returned token after C_Finalize/C_Initialize); one
    /// left over from an earlier epoch is abandoned, never closed.
    fn connect(&self, first: bool) -> Result<(), HsmError> {
        let mut epoch = library::exclusive();
        let old = self.inner.live.write().unwrap_or_else(PoisonError::into_inner).take();
        let pkcs11 = &self.inner.pkcs11;
        let module = self.inner.module.display();
        if let Some(old) = old {
            let same_epoch = old.epoch == *epoch;
            match Arc::try_unwrap(old) {
                // Closes its sessions while their handles still mean them.
                Ok(old) if same_epoch => drop(old),
                Ok(old) => old.pool.abandon(),
                // Someone still holds it for a moment; never let its sessions be closed
                // later, when their handle numbers may name new sessions.
                Err(old) => std::mem::forget(old),
            }
            if same_epoch {
                if let Err(e) = pkcs11.clone().finalize() {
                    tracing::warn!(error = %e, "C_Finalize before reconnecting failed");
                }
                *epoch += 1;
            }
        }
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            // C_Initialize is once per process; another Hsm (or library) got there first.
            Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
            Err(e) => return Err(HsmError::Module(format!("initialising {module}: {e}"))),
        }
        match self.log_in(pkcs11) {
            Ok(pool) => {
                let live = Live { epoch: *epoch, pool, down: AtomicBool::new(false) };
                *self.inner.live.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(live));
                Ok(())
            }
            Err(e) => {
                // The library now holds the slot list of a moment without the token;
                // finalise so that the next attempt reads it afresh. Not on the first
                // open: other handles in the process may be using the library.
                if !first {
                    if let Err(e) = pkcs11.clone().finalize() {
                        tracing::warn!(error = %e, "C_Finalize after a failed reconnect failed");
                    }
                    *epoch += 1;
                }
                Err(e)
            }
        }
    }

    /// Finds the token, opens the login session and logs in: a new session pool.
    fn log_in(&self, pkcs11: &Pkcs11) -> Result<SessionPool, HsmError> {
        let label = &self.inner.token_label;
        let (slot, token_id) = find_token(pkcs11, label)?;
        let anchor = pkcs11.open_rw_session(slot).map_err(from_pkcs11)?;
        {
            // A successful C_Login rewrites the token's flags in the object store.
            let _store = store_lock::lock(Access::Exclusive);
            login::login(&anchor, &token_id, label, self.inner.pin.expose_secret())?;
        }
        Ok(SessionPool::new(pkcs11.clone(), slot, self.inner.sessions, anchor))
    }

    /// (sessions open, sessions idle) of the current connection's pool.
    #[cfg(test)]
    pub(crate) fn pool_counts(&self) -> (usize, usize) {
        self.live().map_or((0, 0), |l| l.pool.counts())
    }
}

/// The one slot whose token carries `label`, and an id for the token (label + serial).
fn find_token(pkcs11: &Pkcs11, label: &str) -> Result<(Slot, String), HsmError> {
    let mut found = Vec::new();
    for slot in pkcs11.get_slots_with_token().map_err(from_pkcs11)? {
        let info = pkcs11.get_token_info(slot).map_err(from_pkcs11)?;
        if info.token_initialized() && info.label() == label {
            found.push((slot, format!("{label}/{}", info.serial_number())));
        }
    }
    match found.as_slice() {
        [] => Err(HsmError::TokenNotFound(label.to_owned())),
        [one] => Ok(one.clone()),
        more => Err(HsmError::Ambiguous(format!("{} tokens are labelled {label:?}", more.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    /// Set in the child process of `wrong_pin_is_rejected_by_a_fresh_process`.
    const CHILD_PIN_ENV: &str = "HSM_TEST_CHILD_WRONG_PIN";
    const WRONG_PIN: &str = "31415926535"; // test PINs are 12 digits, so never equal

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Hsm>();
        assert_send_sync::<crate::HsmKey>();
    }

    #[test]
    fn open_with_the_right_pin_twice_works_and_is_logged_in() {
        let again = testing::hsm_with_pool(1);
        again.ping().unwrap();
        assert_eq!(again.token_label(), "test-token");
        assert!(format!("{again:?}").contains("test-token"));
    }

    #[test]
    fn wrong_pin_in_process_is_a_login_error_without_the_pin() {
        let _shared = testing::shared_hsm(); // token already logged in by this process
        let t = testing::shared_token();
        let err = Hsm::open(&t.module, &t.label, WRONG_PIN, 1).unwrap_err();
        assert!(matches!(err, HsmError::Login(_)), "{err:?}");
        assert!(!err.to_string().contains(WRONG_PIN), "{err}");
        assert!(!format!("{err:?}").contains(WRONG_PIN), "{err:?}");
        assert!(!err.to_string().contains(&t.user_pin), "{err}");
    }

    /// Runs itself in a child process, where nothing is logged in yet, so the token
    /// itself rejects the PIN (CKR_PIN_INCORRECT). One attempt only: no lockout risk.
    #[test]
    fn wrong_pin_is_rejected_by_a_fresh_process() {
        if let Some(pin) = std::env::var_os(CHILD_PIN_ENV) {
            let pin = pin.to_string_lossy().into_owned();
            let module = std::env::var_os("HSM_TEST_MODULE").unwrap();
            let err = Hsm::open(Path::new(&module), testing::TEST_TOKEN_LABEL, &pin, 1).unwrap_err();
            println!("child got: {err}");
            assert!(matches!(err, HsmError::Login(_)), "{err:?}");
            assert!(err.to_string().contains("PinIncorrect") || err.to_string().contains("PIN is incorrect"), "{err}");
            assert!(!err.to_string().contains(&pin), "{err}");
            return;
        }
        let stdout = testing::run_in_child(
            "hsm::tests::wrong_pin_is_rejected_by_a_fresh_process",
            &[(CHILD_PIN_ENV, WRONG_PIN)],
        );
        assert!(stdout.contains("child got: login failed"), "{stdout}");
    }

    #[test]
    fn missing_token_label_is_token_not_found() {
        let _shared = testing::shared_hsm();
        let t = testing::shared_token();
        let err = Hsm::open(&t.module, "no-such-token", &t.user_pin, 1).unwrap_err();
        assert!(matches!(&err, HsmError::TokenNotFound(l) if l == "no-such-token"), "{err:?}");
    }

    #[test]
    fn missing_module_is_a_module_error() {
        let err = Hsm::open(Path::new("/nonexistent/libpkcs11.so"), "x", "1234", 1).unwrap_err();
        assert!(matches!(err, HsmError::Module(_)), "{err:?}");
        assert!(!err.to_string().contains("1234"), "{err}");
    }
}
