//! Opening the token: load the module, find the token, log in once.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;

use crate::error::{from_pkcs11, rv_of, HsmError};
use crate::login;
use crate::pool::SessionPool;
use crate::store_lock::{self, Access};

/// A logged-in token. Cheap to clone; all clones share one session pool.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

struct Inner {
    token_label: String,
    pool: SessionPool,
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
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            // C_Initialize is once per process; another Hsm (or library) got there first.
            Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
            Err(e) => return Err(HsmError::Module(format!("initialising {}: {e}", module.display()))),
        }
        let (slot, token_id) = find_token(&pkcs11, token_label)?;
        let anchor = pkcs11.open_rw_session(slot).map_err(from_pkcs11)?;
        {
            // A successful C_Login rewrites the token's flags in the object store.
            let _store = store_lock::lock(Access::Exclusive);
            login::login(&anchor, &token_id, token_label, user_pin)?;
        }
        tracing::info!(token = token_label, sessions, "HSM token opened");
        Ok(Hsm {
            inner: Arc::new(Inner {
                token_label: token_label.to_owned(),
                pool: SessionPool::new(pkcs11, slot, sessions, anchor),
            }),
        })
    }

    /// The label of the token this handle is logged in to.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// Checks that a pooled session works and is still logged in (for health checks).
    pub fn ping(&self) -> Result<(), HsmError> {
        self.with_session(|s| {
            let info = s.get_session_info().map_err(from_pkcs11)?;
            match info.session_state() {
                SessionState::RwUser | SessionState::RoUser => Ok(()),
                other => Err(HsmError::Unavailable(format!("session is not logged in ({other:?})"))),
            }
        })
    }

    /// Runs `f` on a pooled session; for operations that only read objects or use keys.
    pub(crate) fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, HsmError>) -> Result<T, HsmError> {
        self.inner.pool.with_session(Access::Shared, f)
    }

    /// Runs `f` on a pooled session with the object store to itself; for operations
    /// that create, change or destroy objects.
    pub(crate) fn with_session_exclusive<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        self.inner.pool.with_session(Access::Exclusive, f)
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SessionPool {
        &self.inner.pool
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
    use std::process::Command;

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
        let _shared = testing::shared_hsm();
        let t = testing::shared_token();
        let again = Hsm::open(&t.module, &t.label, &t.user_pin, 1).unwrap();
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
        let t = testing::shared_token();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "hsm::tests::wrong_pin_is_rejected_by_a_fresh_process"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD_PIN_ENV, WRONG_PIN)
            .env("SOFTHSM2_CONF", &t.conf)
            .env("HSM_TEST_MODULE", &t.module)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("child got: login failed"), "{stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
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
