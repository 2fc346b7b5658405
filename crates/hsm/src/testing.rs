//! A throw-away SoftHSM token for tests (feature `testing`).
//!
//! The token lives in a temp folder created once per process; `SOFTHSM2_CONF` is
//! pointed at it before the module is first initialised, because SoftHSM reads it
//! only then. Don't call [`crate::Hsm::open`] with another configuration in the same
//! test process before using this module.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::Hsm;

/// Where Debian's softhsm2 package installs the module; `HSM_TEST_MODULE` overrides it.
pub const DEFAULT_SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Label of the shared test token.
pub const TEST_TOKEN_LABEL: &str = "test-token";

/// Pool size of the shared Hsm.
const TEST_SESSIONS: usize = 4;

/// Everything a test needs to reach the shared token from outside (e.g. to start a
/// server binary as a child process with the same token).
#[derive(Debug)]
pub struct TestToken {
    /// The softhsm2.conf the token was created with (also exported as SOFTHSM2_CONF).
    pub conf: PathBuf,
    pub module: PathBuf,
    pub label: String,
    pub user_pin: String,
    pub so_pin: String,
    /// Kept for the whole process; a later test process deletes it (see
    /// `remove_stale_token_dirs`).
    _dir: tempfile::TempDir,
}

static TOKEN: OnceLock<TestToken> = OnceLock::new();
static HSM: OnceLock<Hsm> = OnceLock::new();
static LABELS: AtomicU64 = AtomicU64::new(0);

/// The process's test token, created on first use. Sets SOFTHSM2_CONF.
pub fn shared_token() -> &'static TestToken {
    TOKEN.get_or_init(create_token)
}

/// Creates (once per process) a temp folder with a softhsm2.conf and a token
/// initialised with softhsm2-util (label "test-token", random PINs), sets
/// SOFTHSM2_CONF, opens it and returns the shared Hsm.
///
/// Panics with a clear message if softhsm2-util or the module is missing.
pub fn shared_hsm() -> Hsm {
    HSM.get_or_init(|| {
        let t = shared_token();
        Hsm::open(&t.module, &t.label, &t.user_pin, TEST_SESSIONS).unwrap_or_else(|e| {
            panic!(
                "opening the test token failed: {e} (module {}; was the PKCS#11 module \
                 already initialised in this process with another SOFTHSM2_CONF?)",
                t.module.display()
            )
        })
    })
    .clone()
}

/// A private Hsm with a pool of `sessions` on the shared token, opened after the
/// shared one (which sets SOFTHSM2_CONF).
pub fn hsm_with_pool(sessions: usize) -> Hsm {
    let _shared = shared_hsm();
    let t = shared_token();
    Hsm::open(&t.module, &t.label, &t.user_pin, sessions).unwrap()
}

/// A unique key label for a test (prefix + counter + pid) so tests sharing the token
/// don't collide.
pub fn unique_label(prefix: &str) -> String {
    let n = LABELS.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{n}-{}", std::process::id())
}

fn create_token() -> TestToken {
    let module =
        std::env::var_os("HSM_TEST_MODULE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_SOFTHSM_MODULE));
    assert!(
        module.exists(),
        "SoftHSM module {} not found: install softhsm2 (make setup) or set HSM_TEST_MODULE",
        module.display()
    );
    remove_stale_token_dirs();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp folder for the test token: {e}"));
    let tokens = dir.path().join("tokens");
    fs::create_dir(&tokens).unwrap_or_else(|e| panic!("cannot create {}: {e}", tokens.display()));
    let conf = dir.path().join("softhsm2.conf");
    let conf_text = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
        tokens.display()
    );
    fs::write(&conf, conf_text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));

    let user_pin = random_digits(12);
    let so_pin = random_digits(12);
    init_token(&conf, TEST_TOKEN_LABEL, &so_pin, &user_pin);
    // Only now, before anyone calls C_Initialize through shared_hsm().
    std::env::set_var("SOFTHSM2_CONF", &conf);
    TestToken { conf, module, label: TEST_TOKEN_LABEL.to_owned(), user_pin, so_pin, _dir: dir }
}

/// Initialises a token labelled `label` in the first free slot of the SoftHSM
/// configuration `conf` (softhsm2-util --init-token --free), panicking with
/// softhsm2-util's message if that fails.
pub fn init_token(conf: &Path, label: &str, so_pin: &str, pin: &str) {
    let output = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", so_pin, "--pin", pin])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run softhsm2-util ({e}): install softhsm2 (`make setup` / apt-get install softhsm2)")
        });
    assert!(output.status.success(), "softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Token folders are named `hsm-test-<pid>-<random>`.
const DIR_PREFIX: &str = "hsm-test-";

/// Statics are never dropped, so each test process leaves its token folder behind.
/// Remove those whose process is gone (Linux: checked via /proc; elsewhere, keep all).
fn remove_stale_token_dirs() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path()); // best effort; another process may race us
        }
    }
}

/// Random decimal digits from the OS RNG (test PINs only).
fn random_digits(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("cannot read /dev/urandom: {e}"));
    // `% 10` is slightly biased (256 is not a multiple of 10); irrelevant for test PINs.
    bytes.iter().map(|b| char::from(b'0' + b % 10)).collect()
}

/// Generates a second key pair under `label` even when one exists: what two
/// processes generating the same label at the same moment leave behind.
pub fn generate_duplicate(hsm: &Hsm, label: &str, alg: crate::KeyAlgorithm) -> Result<crate::HsmKey, crate::HsmError> {
    hsm.generate_pair(label, alg, false)
}

/// Runs the test `test` of this test binary again in a child process, on the
/// shared token and with `env`, where nothing is logged in yet; asserts that it
/// passed, alone, and returns what it printed.
#[cfg(test)]
pub(crate) fn run_in_child(test: &str, env: &[(&str, &str)]) -> String {
    let t = shared_token();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test])
        .args(["--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .env("SOFTHSM2_CONF", &t.conf)
        .env("HSM_TEST_MODULE", &t.module)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "{stdout}");
    stdout
}

/// Four threads generate a key under one fresh label at once with `generate`;
/// asserts that one of them made it and three got `KeyExists`. Returns the label.
#[cfg(test)]
pub(crate) fn race_to_generate<T: Send + 'static>(generate: fn(&Hsm, &str) -> Result<T, crate::HsmError>) -> String {
    let hsm = shared_hsm();
    let label = unique_label("race");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (hsm, label) = (hsm.clone(), label.clone());
            std::thread::spawn(move || generate(&hsm, &label))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(results.iter().filter(|r| matches!(r, Err(crate::HsmError::KeyExists(_)))).count(), 3);
    label
}
