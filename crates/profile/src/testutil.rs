//! Test helpers: openssl-made keys and CSRs in temporary folders.

/// Runs openssl in `dir`, panicking with its output on failure; returns stdout.
pub(crate) use testkit::openssl::openssl_ok_in as openssl;

/// `openssl req -new -nodes -subj /CN=x <extra>`; returns (PEM, DER).
/// `extra` must include the `-newkey` choice; a later `-subj` overrides.
pub(crate) fn openssl_csr(extra: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=x", "-keyout", "k.pem", "-out", "r.pem"];
    args.extend_from_slice(extra);
    openssl(dir.path(), &args);
    openssl(dir.path(), &["req", "-in", "r.pem", "-outform", "DER", "-out", "r.der"]);
    let pem = std::fs::read_to_string(dir.path().join("r.pem")).unwrap();
    let der = std::fs::read(dir.path().join("r.der")).unwrap();
    (pem, der)
}

/// A fresh RSA key as PKCS#8 PEM (what rcgen::KeyPair::from_pem accepts).
pub(crate) fn openssl_rsa_key(bits: u32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let bits_opt = format!("rsa_keygen_bits:{bits}");
    openssl(dir.path(), &["genpkey", "-algorithm", "RSA", "-pkeyopt", &bits_opt, "-out", "k.pem"]);
    std::fs::read_to_string(dir.path().join("k.pem")).unwrap()
}
