//! The operator console in a real browser (issue 15, "Done when"): Playwright
//! (PyPI, in `.venv`) driving Debian's `chromium` headless with the client
//! certificates of op-sato, op-ito, audit-kato and ra-tokyo, through
//! `tests/console_browser.py`. This test starts `hpki-ca run` with two-person
//! control, issues the card, runs the script (which asserts each step and
//! keeps a screenshot of it under `target/console-browser/`), then checks that
//! `openssl ocsp` and `openssl verify -crl_check` agree with the page and that
//! the audit log names both operators. Without Playwright or chromium it
//! fails, naming `make setup`: it never skips.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn the_loss_report_desk_in_chromium() {
    let repo = common::repo();
    let python = repo.join(".venv/bin/python");
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        python.exists() && chromium.exists(),
        "{} or {} is missing: run `make setup` (it installs chromium and Playwright)",
        python.display(),
        chromium.display()
    );
    let mut ca = common::console_ca();
    let addrs = ca.spawn(&["run"], &["issuance", "ocsp", "console", "crl-http", "registry"]);
    let (issuance, responder, console, crl_http, registry) = (&addrs[0], &addrs[1], &addrs[2], &addrs[3], &addrs[4]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let licence = "246810";
    let (card_id, sign_pem, _) = common::issue_card_pems(&ca, &rt, issuance, "browser-1", licence);

    let artifacts = repo.join("target/console-browser");
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new(&python)
        .arg(repo.join("tests/console_browser.py"))
        .env("CONSOLE", format!("https://{console}"))
        .env("TLS_DIR", ca.state().join("tls"))
        .env("CARD_ID", &card_id)
        .env("LICENCE", licence)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", chromium)
        .output()
        .expect("run tests/console_browser.py");
    common::assert_success(&out, "the browser test");
    for step in [
        "01-find-by-kana",
        "02-awaiting-approval",
        "03-self-approval-refused",
        "05-revoked",
        "06-audit-op-sato",
        "06-audit-op-ito",
        "06-audit-chain-verified",
        "08-missing-method",
        "09-operations",
    ] {
        let shot = artifacts.join(format!("{step}.png"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "no screenshot {}", shot.display());
    }

    // 5. openssl agrees with the page: OCSP revoked, and the CRL lists the card.
    common::assert_revoked_by_ocsp_and_crl(&ca, responder, crl_http, &sign_pem);

    // 6. The audit log has the entries under both names (the console is no actor).
    let entries = common::audit_log(&ca, &rt, registry);
    for person in ["op-sato", "op-ito"] {
        assert!(entries.iter().any(|e| e.actor == person), "no audit entry by {person}");
    }
    assert!(entries.iter().all(|e| e.actor != "console"));
    let out = ca.cli(&["--identity", "audit-kato", "audit", "verify", "--url", &ca.url(registry)]);
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stderr));
}
