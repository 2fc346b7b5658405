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
