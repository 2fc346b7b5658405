//! DigiCert's pkilint (PyPI, in the checkout's `.venv` from `make setup`), for
//! judging certificates, CRLs and OCSP responses with a linter we did not write.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The checkout's root (this crate is `crates/testkit`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A pkilint command of `.venv/bin` (`lint_pkix_cert`, `lint_crl`, `lint_ocsp_response`).
pub fn tool(name: &str) -> PathBuf {
    let path = repo().join(".venv/bin").join(name);
    assert!(path.exists(), "{} missing: run make setup (scripts/setup.sh)", path.display());
    path
}

/// Runs `<tool> lint <args> -s WARNING <file>` and asserts that it succeeded
/// and reported nothing at WARNING or above (pkilint prints findings only).
pub fn assert_clean(tool_name: &str, args: &[&str], file: &Path) {
    let out = Command::new(tool(tool_name))
        .arg("lint")
        .args(args)
        .args(["-s", "WARNING"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{tool_name}: {e}"));
    let (report, errors) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = format!("{report}{errors}");
    assert!(out.status.success(), "{tool_name} {}: {text}", file.display());
    assert!(report.trim().is_empty(), "{tool_name} {}: {text}", file.display());
    assert!(!errors.contains("ERROR") && !errors.contains("WARNING"), "{tool_name} {}: {text}", file.display());
}
