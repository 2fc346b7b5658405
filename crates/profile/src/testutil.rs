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

/// The physician of the tests, with a hospital in both scripts.
pub(crate) fn doctor() -> crate::Subscriber {
    crate::Subscriber {
        holder_id: "JMA0000123".into(),
        given_name_latin: "Sanjushi".into(),
        family_name_latin: "Kagurazaka".into(),
        given_name_kanji: "三十四".into(),
        family_name_kanji: "神楽坂".into(),
        institution: Some("MEDIS UNIVERSITY HOSPITAL".into()),
        institution_kanji: Some("医療情報大学病院".into()),
    }
}

/// The policy of the default config (`[profile]` with `[public]` on loopback).
pub(crate) fn policy() -> crate::Policy {
    let url = |u: &str| crate::CertUrl::parse(u, "test").unwrap();
    crate::Policy {
        signing: crate::KindPolicy {
            policy_oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.1.0.1"),
            crl_url: url("http://127.0.0.1:8081/crl/sign.crl"),
        },
        authentication: crate::KindPolicy {
            policy_oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.2.0.1"),
            crl_url: url("http://127.0.0.1:8081/crl/auth.crl"),
        },
        cps_uri: Some(url("http://127.0.0.1:8081/repository/")),
        crl_partitions: 0,
        delta_crls: false,
        ocsp_url: Some(url("http://127.0.0.1:8082/ocsp")),
        authentication_eku: vec![crate::policy::parse_eku("clientAuth", "test").unwrap()],
        hc_role: crate::HcRole::new("Medical Doctor").unwrap(),
        validity_years: 5,
        min_rsa_bits: 2048,
        authority_key_identifier_issuer_serial: false,
    }
}

/// The default config's three CAs (`[ca.root]`, `[ca.signing]`, `[ca.authentication]`).
pub(crate) struct DefaultCas {
    pub root: crate::CaProfile,
    pub signing: crate::CaProfile,
    pub authentication: crate::CaProfile,
}

pub(crate) const ROOT_VALIDITY_YEARS: u32 = 30;
pub(crate) const ISSUING_VALIDITY_YEARS: u32 = 20;

pub(crate) fn default_cas() -> DefaultCas {
    let jma = [("C", "JP"), ("O", "Japan Medical Association")];
    let issuing = |cn: &'static str| [jma[0], jma[1], ("OU", "JMA HPKI CA"), ("CN", cn)];
    let arl = "http://127.0.0.1:8081/crl/arl.crl";
    DefaultCas {
        root: crate::CaProfile::new("root-ca", [jma[0], jma[1], ("OU", "JMA HPKI Root CA")], "", arl).unwrap(),
        signing: crate::CaProfile::new(
            "sign-ca",
            issuing("HPKI-01-JMACASignCA-forNonRepudiation"),
            "1.2.392.100495.1.5.1.1.3.1",
            arl,
        )
        .unwrap(),
        authentication: crate::CaProfile::new(
            "auth-ca",
            issuing("HPKI-01-JMACAAuthCA-forAuthentication-forIndividual"),
            "1.2.392.100495.1.5.1.2.3.1",
            arl,
        )
        .unwrap(),
    }
}
