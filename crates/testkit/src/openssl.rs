//! The `openssl` command line, for checking what we build against an
//! independent implementation.

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("openssl");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args).output().unwrap_or_else(|e| panic!("openssl must be installed to run these tests: {e}"))
}

/// Runs openssl; returns (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = run(None, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs openssl, panicking with its output on failure; returns stdout.
pub fn openssl_ok(args: &[&str]) -> String {
    ok(run(None, args), args)
}

/// Runs openssl in `dir`, panicking with its output on failure; returns stdout.
pub fn openssl_ok_in(dir: &Path, args: &[&str]) -> String {
    ok(run(Some(dir), args), args)
}

fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl crl -text` of the CRL in `crl` (DER if `der`, else PEM), its
/// signature checked against the CA certificate(s) in `ca_file`:
/// (success, stdout + stderr; "verify OK" there when the signature is good).
pub fn crl_text(crl: &Path, der: bool, ca_file: &Path) -> (bool, String) {
    let (crl, ca_file) = (utf8(crl), utf8(ca_file));
    let mut args = vec!["crl"];
    if der {
        args.extend(["-inform", "DER"]);
    }
    args.extend(["-in", &crl, "-CAfile", &ca_file, "-noout", "-verify", "-text"]);
    openssl(&args)
}

/// An OCSP request for `cert` under `issuer`, without a nonce (RFC 5019), made
/// by `openssl ocsp -reqout` into `out`, which must succeed: the DER request.
pub fn ocsp_request_der(issuer: &Path, cert: &Path, out: &Path) -> Vec<u8> {
    let (issuer, cert, out_path) = (utf8(issuer), utf8(cert), utf8(out));
    openssl_ok(&["ocsp", "-issuer", &issuer, "-cert", &cert, "-no_nonce", "-reqout", &out_path]);
    std::fs::read(out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()))
}

fn utf8(p: &Path) -> String {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_owned()
}
