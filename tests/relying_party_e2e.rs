//! End to end: the relying-party examples in `examples/relying-party` (openssl,
//! Java, Python) run against a running CA, as a pharmacy or a hospital would
//! run them: a good card is valid with the role Medical Doctor, a card revoked
//! through the emergency path is revoked with its reason (keyCompromise), and
//! Java with its PKIX defaults rejects every card certificate (the warning in
//! docs/relying-parties.md).
//!
//! The examples take the URLs from the certificates, so the CA's `[public]`
//! base URLs point at two listeners of this test (port 0, bound before the
//! ceremony), which forward to the CA's CRL and OCSP listeners, as a
//! deployment's public front would.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{issue_card_pems, Ca};

/// Forwards every connection to `listener` to `target`, both ways, until either side closes.
fn forward(listener: TcpListener, target: String) {
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(&target) else { continue };
            for (mut from, mut to) in
                [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

fn examples() -> PathBuf {
    common::repo().join("examples/relying-party")
}

fn venv_python() -> PathBuf {
    common::repo().join(".venv/bin/python")
}

/// What each example needs; a missing tool fails the test (never a skip).
fn missing_tools() -> Vec<String> {
    let runs = |program: &Path, args: &[&str], want: &str| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(want))
            .unwrap_or(false)
    };
    let mut missing = Vec::new();
    if !runs(Path::new("openssl"), &["version"], "OpenSSL") {
        missing.push("openssl".to_owned());
    }
    if !runs(Path::new("curl"), &["--version"], "curl") {
        missing.push("curl".to_owned());
    }
    // `java Verify.java` (source-file mode) needs a JDK: the jdk.compiler module.
    if !runs(Path::new("java"), &["--list-modules"], "jdk.compiler") {
        missing.push("java 11+ with jdk.compiler (a JDK, e.g. openjdk-17-jdk-headless)".to_owned());
    }
    if !runs(&venv_python(), &["-c", "import cryptography, pyhanko_certvalidator; print('ok')"], "ok") {
        missing.push(".venv with cryptography and pyhanko-certvalidator".to_owned());
    }
    missing
}

/// Runs one example; (exit code, stdout and stderr).
fn run(program: &str, args: &[&Path], extra: &[&str]) -> (i32, String) {
    let mut cmd = match program {
        "openssl" => {
            let mut c = Command::new("sh");
            c.arg(examples().join("verify.sh"));
            c
        }
        "java" => {
            let mut c = Command::new("java");
            c.arg(examples().join("Verify.java"));
            c
        }
        "python" => {
            let mut c = Command::new(venv_python());
            c.arg(examples().join("verify.py"));
            c
        }
        other => panic!("no example for {other}"),
    };
    let out = cmd.args(args).args(extra).output().unwrap_or_else(|e| panic!("run the {program} example: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A running CA whose public URLs reach it, with a good card and a lost one
/// (emergency-revoked): the certificate files and the CA certificates.
struct Cards {
    ca: Ca,
    root: PathBuf,
    sign_ca: PathBuf,
    auth_ca: PathBuf,
    /// (signing, authentication) certificate files.
    good: (PathBuf, PathBuf),
    lost: (PathBuf, PathBuf),
    /// The CRL publisher's gRPC address.
    crl_grpc: String,
}

fn good_and_lost_cards(extra_config: &str) -> Cards {
    let missing = missing_tools();
    assert!(missing.is_empty(), "relying-party tools missing: {missing:?}; run `make setup` (as root)");

    let crl_front = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ocsp_front = TcpListener::bind("127.0.0.1:0").expect("bind");
    let public = format!(
        "[public]\ncrl_base_url = \"http://{}\"\nocsp_base_url = \"http://{}\"\n{extra_config}",
        crl_front.local_addr().unwrap(),
        ocsp_front.local_addr().unwrap()
    );
    let mut ca = Ca::new(&public);
    let addrs = ca.spawn(&["run"], &["issuance", "revocation", "crl-http", "ocsp", "crl"]);
    let (issuance, revocation) = (&addrs[0], &addrs[1]);
    forward(crl_front, addrs[2].clone());
    forward(ocsp_front, addrs[3].clone());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cards: Vec<_> = [("good", "810001"), ("lost", "810002")]
        .map(|(id, licence)| issue_card_pems(&ca, &rt, issuance, id, licence))
        .into();
    let out = ca.emergency_revoke(&cards[1].0, revocation);
    assert!(out.status.success(), "emergency-revoke: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let published =
        if extra_config.contains("delta_crls = true") { "delta CRL published" } else { "full CRL published" };
    assert!(text.contains(published), "{text}");

    let (root, sign_ca, auth_ca) =
        (ca.cert_path("root-ca.pem"), ca.cert_path("sign-ca.pem"), ca.cert_path("auth-ca.pem"));
    let lost = cards.pop().expect("lost card");
    let good = cards.pop().expect("good card");
    let crl_grpc = addrs[4].clone();
    Cards { ca, root, sign_ca, auth_ca, good: (good.1, good.2), lost: (lost.1, lost.2), crl_grpc }
}

#[test]
fn each_example_finds_a_good_card_valid_and_an_emergency_revoked_card_revoked_with_its_reason() {
    let c = good_and_lost_cards("");
    let (root, sign_ca, auth_ca) = (&c.root, &c.sign_ca, &c.auth_ca);
    let (good_sign, good_auth) = (c.good.0.as_path(), c.good.1.as_path());
    let (lost_sign, lost_auth) = (c.lost.0.as_path(), c.lost.1.as_path());

    for (program, extra) in [
        ("openssl", &[][..]),
        ("python", &[][..]),
        ("python", &["--crl"][..]),
        ("java", &[][..]),
        ("java", &["--crl"][..]),
    ] {
        // The CRL-only modes differ in revocation alone: one good certificate is enough.
        let good = if extra.is_empty() {
            &[(good_sign, sign_ca), (good_auth, auth_ca)][..]
        } else {
            &[(good_sign, sign_ca)][..]
        };
        // The program's verdict on `cert` is `exit` with a text starting `verdict`, naming the role.
        let judged = |cert: &Path, issuing: &Path, exit: i32, verdict: &str, card: &str| {
            let (code, text) = run(program, &[cert, issuing, root], extra);
            println!("{program} {extra:?} {}:\n{text}", cert.display());
            assert!(
                code == exit && text.starts_with(verdict),
                "{program} {extra:?}, {card} card {}: {text}",
                cert.display()
            );
            assert!(text.contains("role: Medical Doctor"), "{program} {extra:?}: {text}");
            text
        };
        for &(cert, issuing) in good {
            judged(cert, issuing, 0, "valid", "good");
        }
        for (cert, issuing) in [(lost_sign, sign_ca), (lost_auth, auth_ca)] {
            let text = judged(cert, issuing, 1, "revoked: keyCompromise at ", "revoked");
            if program == "java" {
                // Who said so: the delegated OCSP responder by default, the issuing CA's CRL with --crl.
                assert_eq!(text.contains("OCSP Responder"), extra.is_empty(), "{program} {extra:?}: {text}");
            }
        }
    }

    // The root is the pin: another root (the CA's own TLS root) makes the good card invalid.
    let stranger = c.ca.state().join("tls/ca.pem");
    for program in ["openssl", "python", "java"] {
        let (code, text) = run(program, &[good_sign, sign_ca, &stranger], &[]);
        assert!(code == 2 && text.starts_with("invalid: "), "{program} with another root: {text}");
    }

    // Java's defaults reject the good card: the reason docs/relying-parties.md gives.
    let (code, text) = run("java", &[good_sign, sign_ca, root], &["--defaults"]);
    assert!(
        code == 2
            && text.contains("INVALID_POLICY")
            && text.contains("critical policy qualifiers present in certificate"),
        "Java with PKIX defaults: {text}"
    );
}

#[test]
fn with_delta_crls_every_example_sees_an_emergency_revocation_java_through_the_full_crl_that_follows() {
    let c = good_and_lost_cards("[profile]\ndelta_crls = true\n");
    let (root, sign_ca) = (&c.root, &c.sign_ca);
    let lost = [c.lost.0.as_path(), sign_ca, root];
    // openssl and Python read the delta CRL, which lists the lost card first.
    let (code, text) = run("openssl", &lost, &[]);
    assert!(code == 1 && text.starts_with("revoked: keyCompromise at ") && text.contains("(OCSP and CRL)"), "{text}");
    let (code, text) = run("python", &lost, &["--crl"]);
    assert!(
        code == 1 && text.starts_with("revoked: keyCompromise at ") && text.contains("CRL"),
        "python --crl: {text}"
    );
    let (code, text) = run("java", &lost, &[]);
    assert!(code == 1 && text.starts_with("revoked: keyCompromise at "), "java (OCSP): {text}");
    // Java's PKIX reads full CRLs only; the emergency path publishes a full CRL
    // right after the delta (issue 17), so CRL-only Java sees the lost card too,
    // within a few seconds at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (code, text) = loop {
        let (code, text) = run("java", &lost, &["--crl"]);
        if code == 1 || std::time::Instant::now() > deadline {
            break (code, text);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        code == 1 && text.starts_with("revoked: keyCompromise at "),
        "java --crl after an emergency revocation with deltas on: {text}"
    );
    let (code, text) = run("python", &[&c.good.0, sign_ca, root], &["--crl"]);
    assert!(code == 0 && text.starts_with("valid"), "python --crl, good card: {text}");

    // A delta a second or more newer than that full CRL, which alone lists the
    // lost card: openssl without -extended_crl would take the delta for the
    // full CRL and find the card good there.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = c.ca.cli(&["publish-crl", "--kind", "delta", "--url", &c.ca.url(&c.crl_grpc)]);
    assert!(out.status.success(), "publish-crl: {}", String::from_utf8_lossy(&out.stderr));
    let (code, text) = run("openssl", &lost, &[]);
    assert!(code == 1 && text.contains("(OCSP and CRL)"), "openssl, newer delta: {text}");
    let (code, text) = run("python", &lost, &["--crl"]);
    assert!(code == 1 && text.starts_with("revoked: keyCompromise at "), "python --crl, newer delta: {text}");
}

#[test]
fn without_an_ocsp_url_as_on_real_hpki_cards_each_example_judges_by_the_crls() {
    let c = good_and_lost_cards("[profile]\nocsp_enabled = false\n");
    let (root, sign_ca) = (&c.root, &c.sign_ca);
    let (ok, aia) = common::openssl(&["x509", "-in", c.good.0.to_str().unwrap(), "-noout", "-ocsp_uri"]);
    assert!(ok && aia.trim().is_empty(), "no AIA expected: {aia}");
    for program in ["openssl", "python", "java"] {
        let (code, text) = run(program, &[&c.good.0, sign_ca, root], &[]);
        assert!(code == 0 && text.starts_with("valid"), "{program} without OCSP, good card: {text}");
        let (code, text) = run(program, &[&c.lost.0, sign_ca, root], &[]);
        assert!(
            code == 1 && text.starts_with("revoked: keyCompromise at "),
            "{program} without OCSP, lost card: {text}"
        );
        assert!(!text.contains("OCSP"), "{program} without OCSP names OCSP: {text}");
    }
}
