//! `hpki-ca config check` and the ceremony's URL confirmation (issue 17):
//! ports move through listeners and `[public]` base URLs only, a URL left
//! behind on another loopback port is warned about, and the ceremony writes
//! nothing until the URLs it bakes in are confirmed.

mod common;

use std::process::{Command, Stdio};

use common::{openssl, repo, BIN};

fn hpki(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out =
        Command::new(BIN).arg("--config").arg(config).args(args).stdin(Stdio::null()).output().expect("run hpki-ca");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn config_check_prints_the_certificate_urls_and_warns_on_a_port_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ca.toml");

    // The CRL listener moved, its public base URL did not.
    std::fs::write(&config, "[crl]\nhttp_listen = \"127.0.0.1:9181\"\n").unwrap();
    let (ok, out, err) = hpki(&config, &["config", "check"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("http_listen = \"127.0.0.1:9181\""), "the effective config is printed: {out}");
    assert!(out.contains("http://127.0.0.1:8081/crl/sign.crl  (profile.signing_crl_url)"), "{out}");
    assert!(
        err.contains(
            "warning: profile.signing_crl_url http://127.0.0.1:8081/crl/sign.crl names loopback port 8081, but \
             crl.http_listen is 127.0.0.1:9181"
        ),
        "{err}"
    );

    // Moved with its base URL: every certificate URL follows, no warning.
    std::fs::write(
        &config,
        "[crl]\nhttp_listen = \"127.0.0.1:9181\"\n[ocsp]\nlisten = \"127.0.0.1:9182\"\n\
         [public]\ncrl_base_url = \"http://127.0.0.1:9181\"\nocsp_base_url = \"http://127.0.0.1:9182\"\n\
         [registry]\nlisten = \"127.0.0.1:9151\"\n",
    )
    .unwrap();
    let (ok, out, err) = hpki(&config, &["config", "check"]);
    assert!(ok, "{out}{err}");
    assert!(!err.contains("warning"), "{err}");
    for url in [
        "http://127.0.0.1:9181/crl/sign.crl",
        "http://127.0.0.1:9181/crl/auth.crl",
        "http://127.0.0.1:9181/crl/arl.crl",
        "http://127.0.0.1:9182/ocsp",
    ] {
        assert!(out.contains(url), "{url} missing from:\n{out}");
    }
    assert!(!out.contains(":8081/") && !out.contains(":8082/"), "{out}");
    assert!(out.contains("issuance   -> registry https://127.0.0.1:9151"), "{out}");

    // A config the services would refuse makes the check fail.
    std::fs::write(&config, "[limits]\nmax_message_bytes = 0\n").unwrap();
    let (ok, _, err) = hpki(&config, &["config", "check"]);
    assert!(!ok && err.contains("limits.max_message_bytes"), "{err}");
    std::fs::write(&config, "[crl]\nexpired_retention_days = 1\ninterval_minutes = 2880\n").unwrap();
    let (ok, _, err) = hpki(&config, &["config", "check"]);
    assert!(!ok && err.contains("crl.expired_retention_days = 1"), "the CRL publisher's start checks too: {err}");
}

#[test]
fn the_ceremony_writes_nothing_until_its_urls_are_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ca.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[crl]\nhttp_listen = \"127.0.0.1:9281\"\n[public]\ncrl_base_url = \"http://127.0.0.1:9281\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = Command::new(repo().join("hsm-config/init-token.sh")).arg(&state).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (ok, out, err) = hpki(&config, &["ceremony"]);
    assert!(!ok, "no terminal and no --yes: refused\n{out}");
    assert!(err.contains("--yes"), "{err}");
    assert!(out.contains("http://127.0.0.1:9281/crl/arl.crl"), "the URLs are shown first: {out}");
    assert!(!state.join("ca").exists() && !state.join("tls").exists(), "nothing was written");

    let (ok, out, err) = hpki(&config, &["ceremony", "--yes"]);
    assert!(ok, "{out}{err}");
    let sign_ca = state.join("ca/sign-ca.pem");
    let (ok, text) = openssl(&["x509", "-in", sign_ca.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("URI:http://127.0.0.1:9281/crl/arl.crl"),
        "the CA certificate carries the derived URL:\n{text}"
    );

    // Everything exists now: a repeat keeps it all and needs no confirmation.
    let (ok, out, err) = hpki(&config, &["ceremony"]);
    assert!(ok, "{out}{err}");
}
