//! Replays every seed and every saved crash through its harness, on stable,
//! without libFuzzer or sanitizers:
//!
//!   cargo test --manifest-path fuzz/Cargo.toml
//!
//! A file under `regressions/<target>/` is an input that once crashed the
//! target; it must pass once the bug is fixed (the crate that had the bug
//! also gets a unit test of its own).

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        for p in paths {
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                || p.extension().is_some_and(|e| e == "md")
            {
                continue;
            }
            let data = std::fs::read(&p).unwrap();
            eprintln!("{target}: {}", p.display());
            harness(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for {target}");
}

#[test]
fn ocsp_request_der() {
    replay("ocsp_request_der", hpki_fuzz::ocsp_request_der);
}

#[test]
fn ocsp_get_path() {
    replay("ocsp_get_path", hpki_fuzz::ocsp_get_path);
}

#[test]
fn csr_reader() {
    replay("csr_reader", hpki_fuzz::csr_reader);
}

#[test]
fn issuance_validate() {
    replay("issuance_validate", hpki_fuzz::issuance_validate);
}

#[test]
fn revocation_validate() {
    replay("revocation_validate", hpki_fuzz::revocation_validate);
}

#[test]
fn serial_parsers() {
    replay("serial_parsers", hpki_fuzz::serial_parsers);
}

/// The seeds really reach the deep paths: the OCSP seeds name our CA and are
/// answered successfully; the valid application passes every check.
#[test]
fn seeds_reach_the_deep_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let der = std::fs::read(root.join("ocsp_request_der/sha256_one_no_nonce.der")).unwrap();
    let r = hpki_fuzz::responder();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let a = rt.block_on(r.respond(&der));
    assert_eq!(a.status, ocsp::metrics::AnswerStatus::Good, "seed not answered Good");
    let csr = std::fs::read(root.join("csr_reader/rsa2048.der")).unwrap();
    profile::csr::parse_and_verify(&csr, hpki_fuzz::MIN_RSA_BITS).unwrap();
    let app = std::fs::read(root.join("issuance_validate/valid_passport")).unwrap();
    let app = <proto::issuance::v1::NewCardApplication as prost::Message>::decode(&app[..]).unwrap();
    issuance::validate::check_application(&app, hpki_fuzz::TODAY, 6).unwrap();
}
