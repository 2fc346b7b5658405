//! The token goes away and comes back, with real SoftHSM: its token folder is moved
//! aside (what SoftHSM sees when the storage behind a token disappears) and back.
//!
//! Each scenario re-runs this test binary as a child process with its own token,
//! because a reconnect re-initialises the PKCS#11 library for the whole process.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

use crate::testing;
use crate::{Hsm, HsmError, KeyAlgorithm};

const CHILD_ENV: &str = "HSM_OUTAGE_CHILD";

/// Runs `name` in a child process (`in_child` set) and gives None; in the child
/// itself, its token and the shared handle on it.
fn in_child(name: &str) -> Option<(&'static testing::TestToken, Hsm)> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Some((testing::shared_token(), testing::shared_hsm()));
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    None
}

struct Folder {
    tokens: PathBuf,
    aside: PathBuf,
}

impl Folder {
    fn of(t: &testing::TestToken) -> Folder {
        let dir = t.conf.parent().unwrap();
        Folder { tokens: dir.join("tokens"), aside: dir.join("tokens-away") }
    }

    /// The token disappears: its folder is moved away and an empty one takes its place.
    fn remove(&self) {
        std::fs::rename(&self.tokens, &self.aside).unwrap();
        std::fs::create_dir(&self.tokens).unwrap();
    }

    fn restore(&self) {
        std::fs::remove_dir_all(&self.tokens).unwrap();
        std::fs::rename(&self.aside, &self.tokens).unwrap();
    }
}

fn verifies(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key).verify(msg, sig).is_ok()
}

/// Retries `f` until it succeeds or `limit` passes.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Result<T, HsmError>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() < limit => {
                assert!(matches!(e, HsmError::Unavailable(_)), "while reconnecting: {e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("not back after {limit:?}: {e}"),
        }
    }
}

#[test]
fn a_token_that_goes_away_gives_unavailable_and_is_used_again_when_it_returns() {
    let Some((t, hsm)) =
        in_child("outage_tests::a_token_that_goes_away_gives_unavailable_and_is_used_again_when_it_returns")
    else {
        return;
    };
    // A second handle on the same token, as another service in the process would have.
    let other = Hsm::open(&t.module, &t.label, &t.user_pin, 1).unwrap();
    let key = hsm.generate_key_pair("outage-rsa", KeyAlgorithm::Rsa { bits: 2048 }).unwrap();
    let aes = hsm.generate_aes_key("outage-aes", 256).unwrap();
    let other_key = other.key("outage-rsa").unwrap();
    let before = key.sign(b"before").unwrap();
    assert!(verifies(key.public_key_bytes(), b"before", &before));
    let (iv, sealed) = aes.encrypt_gcm(b"123456", b"card-1").unwrap();

    let folder = Folder::of(t);
    folder.remove();
    // Every use fails fast and says the HSM is unavailable, also after reconnect attempts.
    for round in 0..3 {
        let started = Instant::now();
        assert!(matches!(key.sign(b"during"), Err(HsmError::Unavailable(_))), "round {round}");
        assert!(matches!(other_key.sign(b"during"), Err(HsmError::Unavailable(_))), "round {round}");
        assert!(matches!(aes.decrypt_gcm(&iv, &sealed, b"card-1"), Err(HsmError::Unavailable(_))));
        assert!(matches!(hsm.ping(), Err(HsmError::Unavailable(_))), "round {round}");
        assert!(matches!(hsm.find_key("outage-rsa"), Err(HsmError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(2), "calls must not hang while the token is away");
        std::thread::sleep(Duration::from_millis(250)); // past the reconnect gap
    }

    folder.restore();
    // The same handles work again: no reopening by the caller.
    let after = eventually(Duration::from_secs(5), || key.sign(b"after"));
    assert!(verifies(key.public_key_bytes(), b"after", &after), "signed with the same key after the return");
    let other_after = eventually(Duration::from_secs(5), || other_key.sign(b"other"));
    assert!(verifies(key.public_key_bytes(), b"other", &other_after));
    assert_eq!(aes.decrypt_gcm(&iv, &sealed, b"card-1").unwrap(), b"123456");
    hsm.ping().unwrap();
    other.ping().unwrap();
    assert_eq!(hsm.key("outage-rsa").unwrap().public_key_bytes(), key.public_key_bytes());
}

/// A token that comes back holding a different key under the same label (someone
/// re-initialised it) must not sign in the old key's name.
#[test]
fn a_token_that_returns_with_another_key_under_the_label_is_refused() {
    let Some((t, hsm)) = in_child("outage_tests::a_token_that_returns_with_another_key_under_the_label_is_refused")
    else {
        return;
    };
    let key = hsm.generate_key_pair("swapped", KeyAlgorithm::Rsa { bits: 2048 }).unwrap();
    key.sign(b"x").unwrap();
    let folder = Folder::of(t);
    folder.remove();
    assert!(matches!(key.sign(b"x"), Err(HsmError::Unavailable(_))));
    // A new token with the same label and PIN, holding another key labelled "swapped".
    testing::init_token(&t.conf, &t.label, &t.so_pin, &t.user_pin);
    eventually(Duration::from_secs(5), || hsm.ping());
    let impostor = hsm.generate_key_pair("swapped", KeyAlgorithm::Rsa { bits: 2048 }).unwrap();
    assert_ne!(impostor.public_key_bytes(), key.public_key_bytes());
    let err = key.sign(b"x").unwrap_err();
    assert!(matches!(err, HsmError::UnsupportedKey(_)), "{err:?}");
    assert!(err.to_string().contains("different key"), "{err}");
}
