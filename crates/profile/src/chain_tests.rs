//! A whole hierarchy built the way the CA does it (root self-signed, issuing
//! CAs and subscribers through tbs_certificate + sign + assemble_certificate),
//! checked with openssl and x509-cert.

use std::path::Path;

use der::{Decode, Tag, Tagged};
use rcgen::{KeyPair, PublicKeyData, SigningKey};
use time::macros::date;
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::tbs::RawTbs;
use crate::testutil::{
    default_cas, doctor, openssl, openssl_csr, openssl_rsa_key, policy, ISSUING_VALIDITY_YEARS, ROOT_VALIDITY_YEARS,
};
use crate::validity::{ca_validity, subscriber_validity};
use crate::{
    assemble_certificate, ca_params, csr, hcrole, subscriber_params, tbs_certificate, tbs_of_certificate, CertKind,
    IssuingCa, Policy, ProfileError,
};

fn pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Issues through the two-phase path: record TBS, sign it, assemble.
fn issue(
    params: &rcgen::CertificateParams,
    subject_key: &impl PublicKeyData,
    issuer: &IssuingCa,
    issuer_key: &KeyPair,
) -> Result<Vec<u8>, ProfileError> {
    let tbs = tbs_certificate(params, subject_key, issuer)?;
    let signature = issuer_key.sign(&tbs)?;
    let cert = assemble_certificate(&tbs, &signature)?;
    assert_eq!(tbs_of_certificate(&cert)?, tbs, "assembled certificate must carry the recorded TBS unchanged");
    issuer.verify_issued(&cert)?;
    Ok(cert)
}

struct Hierarchy {
    root_key: KeyPair,
    root: IssuingCa,
    sign_key: KeyPair,
    sign_ca: IssuingCa,
    auth_ca: IssuingCa,
}

/// The parameters of `doctor()`'s signing certificate under the hierarchy's
/// signing CA, valid for 5 years from `issued`.
fn doctor_signing(h: &Hierarchy, cfg: &Policy, issued: time::Date, serial: &[u8]) -> rcgen::CertificateParams {
    let (nb, na) = subscriber_validity(issued, 5, h.sign_ca.not_after());
    subscriber_params(cfg, CertKind::Signing, &doctor(), serial, nb, na, &h.sign_ca).unwrap()
}

/// Root and both issuing CAs with keys from `keygen`, as at the key ceremony.
fn hierarchy(keygen: impl Fn() -> KeyPair) -> Hierarchy {
    let cfg = default_cas();
    let now = OffsetDateTime::now_utc();

    let root_key = keygen();
    let (nb, na) = ca_validity(now, ROOT_VALIDITY_YEARS, None);
    let root_params = ca_params(&cfg.root, true, &[0x01], &root_key, nb, na).unwrap();
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root = IssuingCa::from_der(root_cert.der()).unwrap();

    let (nb, na) = ca_validity(now, ISSUING_VALIDITY_YEARS, Some(root.not_after()));
    let sign_key = keygen();
    let params = ca_params(&cfg.signing, false, &[0x02], &sign_key, nb, na).unwrap();
    let sign_ca = IssuingCa::from_der(&issue(&params, &sign_key, &root, &root_key).unwrap()).unwrap();

    let auth_key = keygen();
    let params = ca_params(&cfg.authentication, false, &[0x03], &auth_key, nb, na).unwrap();
    let auth_ca = IssuingCa::from_der(&issue(&params, &auth_key, &root, &root_key).unwrap()).unwrap();

    Hierarchy { root_key, root, sign_key, sign_ca, auth_ca }
}

fn ec_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn rsa_key() -> KeyPair {
    KeyPair::from_pem(&openssl_rsa_key(2048)).unwrap()
}

fn write(dir: &Path, name: &str, der: &[u8]) {
    std::fs::write(dir.join(name), pem(der)).unwrap();
}

/// Verifies `ee` up to the root with openssl and returns `openssl x509 -text`.
fn openssl_check(dir: &Path, root: &IssuingCa, ca: &IssuingCa, ee: &[u8], name: &str) -> String {
    write(dir, "root.pem", root.certificate_der());
    write(dir, &format!("{name}-ca.pem"), ca.certificate_der());
    write(dir, &format!("{name}.pem"), ee);
    let ca_pem = format!("{name}-ca.pem");
    let ee_pem = format!("{name}.pem");
    let out = openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", &ca_pem, &ee_pem]);
    assert_eq!(out.trim(), format!("{ee_pem}: OK"));
    // Keep copies for a manual pkilint run when asked to.
    if let Some(keep) = std::env::var_os("PROFILE_KEEP_CERTS") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for f in ["root.pem", ca_pem.as_str(), ee_pem.as_str()] {
            std::fs::copy(dir.join(f), keep.join(f)).unwrap();
        }
    }
    openssl(dir, &["x509", "-noout", "-text", "-nameopt", "utf8,sep_comma_plus_space", "-in", &ee_pem])
}

/// openssl's text of a certificate says every one of `has` and none of `lacks`.
fn assert_text(text: &str, has: &[&str], lacks: &[&str]) {
    for want in has {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    for unwanted in lacks {
        assert!(!text.contains(unwanted), "{unwanted:?} present:\n{text}");
    }
}

fn escaped_utf8(s: &str) -> String {
    s.bytes().map(|b| if b < 0x80 { (b as char).to_string() } else { format!("\\x{b:02X}") }).collect()
}

#[test]
fn full_chain_signing_and_authentication_certificates() {
    let h = hierarchy(rsa_key);
    let cfg = policy();
    let (_, csr_der) = openssl_csr(&["-newkey", "rsa:2048"]);
    let key = csr::parse_and_verify(&csr_der, cfg.min_rsa_bits).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let (nb, na) = subscriber_validity(date!(2026 - 02 - 07), cfg.validity_years, h.sign_ca.not_after());
    let who = doctor();

    let params = subscriber_params(&cfg, CertKind::Signing, &who, &[0x10, 0x01], nb, na, &h.sign_ca).unwrap();
    let sign_ee = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &sign_ee, "sign-ee");
    println!("{text}");
    assert_text(
        &text,
        &[
            "Non Repudiation",
            "X509v3 Key Usage: critical",
            "X509v3 Certificate Policies: critical",
            "Policy: 1.2.392.100495.1.5.1.1.0.1",
            "CPS: http://127.0.0.1:8081/repository/",
            "X509v3 CRL Distribution Points",
            "URI:http://127.0.0.1:8081/crl/sign.crl",
            "OCSP - URI:http://127.0.0.1:8082/ocsp",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            "Subject: C=JP, O=MEDIS UNIVERSITY HOSPITAL, CN=Sanjushi Kagurazaka, serialNumber=JMA0000123",
            "Not Before: Feb  6 15:00:00 2026 GMT",
            "Not After : Feb  7 14:59:59 2031 GMT",
        ],
        &["Digital Signature", "Extended Key Usage", "Basic Constraints"],
    );
    // openssl prints a directoryName the old one-line way, escaping UTF-8 bytes as \xNN.
    // The SAN's O is the institution's kanji name, the subject's its Latin name.
    let kanji_cn = escaped_utf8("神楽坂\u{3000}三十四");
    let kanji_o = escaped_utf8("医療情報大学病院");
    assert!(text.contains(&format!("DirName:/C=JP/O={kanji_o}/CN={kanji_cn}/serialNumber=JMA0000123")), "{text}");
    let hc_role = hcrole::subject_directory_attributes("Medical Doctor").unwrap();
    assert!(sign_ee.windows(hc_role.len()).any(|w| w == hc_role));
    assert!(sign_ee.windows(4).any(|w| w == [0x03, 0x02, 0x06, 0x40]), "keyUsage nonRepudiation bits");

    let (nb, na) = subscriber_validity(date!(2026 - 02 - 07), cfg.validity_years, h.auth_ca.not_after());
    let params = subscriber_params(&cfg, CertKind::Authentication, &who, &[0x10, 0x02], nb, na, &h.auth_ca).unwrap();
    // The authentication CA key is not kept by `hierarchy`; sign with a CA
    // whose key we hold by issuing a second auth CA here.
    let auth_key = rsa_key();
    let ca_cfg = default_cas();
    let (cnb, cna) = ca_validity(OffsetDateTime::now_utc(), 20, Some(h.root.not_after()));
    let auth_ca_params = ca_params(&ca_cfg.authentication, false, &[0x04], &auth_key, cnb, cna).unwrap();
    let auth_ca = IssuingCa::from_der(&issue(&auth_ca_params, &auth_key, &h.root, &h.root_key).unwrap()).unwrap();
    assert_eq!(auth_ca.subject_der(), h.auth_ca.subject_der());
    let auth_ee = issue(&params, &key, &auth_ca, &auth_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &auth_ca, &auth_ee, "auth-ee");
    println!("{text}");
    assert_text(
        &text,
        &[
            "Digital Signature",
            "X509v3 Key Usage: critical",
            "TLS Web Client Authentication",
            "Policy: 1.2.392.100495.1.5.1.2.0.1",
            "X509v3 Certificate Policies: critical",
            "URI:http://127.0.0.1:8081/crl/auth.crl",
            "DirName:",
        ],
        &["Non Repudiation"],
    );
    assert!(auth_ee.windows(hc_role.len()).any(|w| w == hc_role));

    // String types of the subject as parsed by x509-cert.
    for ee in [&sign_ee, &auth_ee] {
        let cert = Certificate::from_der(ee).unwrap();
        let tags: Vec<(String, Tag)> =
            cert.tbs_certificate().subject().iter().map(|atv| (atv.oid.to_string(), atv.value.tag())).collect();
        assert_eq!(
            tags,
            vec![
                ("2.5.4.6".to_string(), Tag::PrintableString),
                ("2.5.4.10".to_string(), Tag::Utf8String),
                ("2.5.4.3".to_string(), Tag::Utf8String),
                ("2.5.4.5".to_string(), Tag::PrintableString),
            ]
        );
    }
}

#[test]
fn ocsp_disabled_means_no_aia() {
    let h = hierarchy(ec_key);
    let cfg = Policy { ocsp_url: None, ..policy() };
    let key = ec_key();
    let params = doctor_signing(&h, &cfg, date!(2026 - 04 - 01), &[0x20]);
    let ee = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "sign-ee-ec");
    assert_text(&text, &["ecdsa-with-SHA256"], &["Authority Information Access", "OCSP"]);
}

#[test]
fn issuer_field_equals_ca_subject_byte_for_byte() {
    let h = hierarchy(ec_key);
    let key = ec_key();
    let params = doctor_signing(&h, &policy(), date!(2026 - 04 - 01), &[0x21]);
    let ee = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();

    let ca_tbs = tbs_of_certificate(h.sign_ca.certificate_der()).unwrap();
    let ca_subject = RawTbs::parse(&ca_tbs).unwrap().subject;
    let ee_tbs = tbs_of_certificate(&ee).unwrap();
    assert_eq!(RawTbs::parse(&ee_tbs).unwrap().issuer, ca_subject);
    assert_eq!(h.sign_ca.subject_der(), ca_subject);
}

#[test]
fn ca_with_foreign_string_types_and_two_ous_keeps_its_subject() {
    // An openssl-made CA with two OUs (like the MHLW root), a BMPString and an
    // IA5String attribute: the issued certificate's issuer must match exactly.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ca.cnf"),
        "[req]\ndistinguished_name=dn\nprompt=no\nstring_mask=default\nutf8=yes\n[dn]\nC=JP\nL=東京\n\
         O=Ministry of Health, Labour and Welfare\n\
         0.OU=Director-General for Policy Planning and Evaluation\n1.OU=MHLW HPKI Root CA V2\n\
         emailAddress=ca@example.jp\n\
         [ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
    )
    .unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-config",
            "ca.cnf",
            "-extensions",
            "ext",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
        ],
    );
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let ca = IssuingCa::from_pem(&ca_pem).unwrap();
    assert_eq!(ca.key_description(), "EC P-256");
    let name = x509_cert::name::Name::from_der(ca.subject_der()).unwrap();
    let tags: Vec<Tag> = name.iter().map(|atv| atv.value.tag()).collect();
    assert_eq!(
        tags,
        [
            Tag::PrintableString,
            Tag::BmpString,
            Tag::PrintableString,
            Tag::PrintableString,
            Tag::PrintableString,
            Tag::Ia5String
        ]
    );
    assert_eq!(ca.distinguished_name().iter().count(), 6);

    let key = ec_key();
    let cfg = policy();
    let (nb, na) = subscriber_validity(crate::validity::today_jst(), 5, ca.not_after());
    let params = subscriber_params(&cfg, CertKind::Authentication, &doctor(), &[0x22], nb, na, &ca).unwrap();
    let tbs = tbs_certificate(&params, &key, &ca).unwrap();
    assert_eq!(RawTbs::parse(&tbs).unwrap().issuer, ca.subject_der());
    // Sign with openssl's key through `openssl dgst`, then verify the chain.
    std::fs::write(dir.path().join("tbs.der"), &tbs).unwrap();
    openssl(dir.path(), &["dgst", "-sha256", "-sign", "ca.key", "-out", "sig.der", "tbs.der"]);
    let sig = std::fs::read(dir.path().join("sig.der")).unwrap();
    let ee = assemble_certificate(&tbs, &sig).unwrap();
    ca.verify_issued(&ee).unwrap();
    write(dir.path(), "ee.pem", &ee);
    let out = openssl(dir.path(), &["verify", "-CAfile", "ca.pem", "ee.pem"]);
    assert_eq!(out.trim(), "ee.pem: OK");
}

#[test]
fn rsa_two_phase_equals_direct_rcgen_signing_byte_for_byte() {
    let h = hierarchy(rsa_key);
    let (_, csr_der) = openssl_csr(&["-newkey", "rsa:2048"]);
    let key = csr::parse_and_verify(&csr_der, 2048).unwrap();
    let mut params = doctor_signing(&h, &policy(), date!(2026 - 02 - 07), &[0x30]);

    let two_phase = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();
    crate::add_subject_key_identifier(&mut params, &key).unwrap();
    let issuer = rcgen::Issuer::new(h.sign_ca.issuer_params(), &h.sign_key);
    let direct = params.signed_by(&key, &issuer).unwrap();
    assert_eq!(two_phase, direct.der().to_vec());
}

#[test]
fn ecdsa_two_phase_matches_direct_structure_and_accepts_raw_signatures() {
    let h = hierarchy(ec_key);
    let key = ec_key();
    let mut params = doctor_signing(&h, &policy(), date!(2026 - 02 - 07), &[0x31]);
    let tbs = tbs_certificate(&params, &key, &h.sign_ca).unwrap();

    crate::add_subject_key_identifier(&mut params, &key).unwrap();
    let issuer = rcgen::Issuer::new(h.sign_ca.issuer_params(), &h.sign_key);
    let direct = params.signed_by(&key, &issuer).unwrap();
    // ECDSA signatures are randomised: compare everything but the signature.
    assert_eq!(tbs_of_certificate(direct.der()).unwrap(), tbs);

    // PKCS#11 CKM_ECDSA returns r||s; assemble_certificate converts it to DER.
    let der_sig = h.sign_key.sign(&tbs).unwrap();
    let raw = ecdsa_raw(&der_sig);
    let cert = assemble_certificate(&tbs, &raw).unwrap();
    h.sign_ca.verify_issued(&cert).unwrap();
    assert_eq!(cert, assemble_certificate(&tbs, &der_sig).unwrap());
}

/// DER ECDSA-Sig-Value → 64-byte r||s.
fn ecdsa_raw(der_sig: &[u8]) -> Vec<u8> {
    #[derive(der::Sequence)]
    struct Sig<'a> {
        r: der::asn1::UintRef<'a>,
        s: der::asn1::UintRef<'a>,
    }
    let sig = Sig::from_der(der_sig).unwrap();
    let mut out = vec![0u8; 64];
    let (r, s) = (sig.r.as_bytes(), sig.s.as_bytes());
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s.len()..].copy_from_slice(s);
    out
}

#[test]
fn wrong_signature_is_caught_by_verify_issued() {
    let h = hierarchy(ec_key);
    let key = ec_key();
    let params = doctor_signing(&h, &policy(), date!(2026 - 02 - 07), &[0x32]);
    let tbs = tbs_certificate(&params, &key, &h.sign_ca).unwrap();
    // Signed by the root key instead of the signing CA key.
    let sig = h.root_key.sign(&tbs).unwrap();
    let cert = assemble_certificate(&tbs, &sig).unwrap();
    assert!(matches!(h.sign_ca.verify_issued(&cert), Err(ProfileError::BadSignature)));
    // And a certificate from another CA is refused by name.
    assert!(matches!(h.auth_ca.verify_issued(&cert), Err(ProfileError::InvalidCaCertificate(_))));
    // An end-entity certificate cannot be loaded as an issuing CA.
    let err = IssuingCa::from_der(&cert).unwrap_err();
    assert!(matches!(err, ProfileError::InvalidCaCertificate(ref m) if m.contains("CA:TRUE")), "{err}");
}

#[test]
fn ca_certificates_have_the_ceremony_profile() {
    let h = hierarchy(ec_key);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "root.pem", h.root.certificate_der());
    write(dir.path(), "sign-ca.pem", h.sign_ca.certificate_der());
    let out = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "sign-ca.pem"]);
    assert_eq!(out.trim(), "sign-ca.pem: OK");
    let root = openssl(dir.path(), &["x509", "-noout", "-text", "-in", "root.pem"]);
    assert!(root.contains("CA:TRUE") && !root.contains("pathlen"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(!root.contains("Authority Key Identifier"), "{root}");
    assert!(!root.contains("CRL Distribution Points"), "{root}");
    let ca = openssl(dir.path(), &["x509", "-noout", "-text", "-in", "sign-ca.pem"]);
    assert!(ca.contains("CA:TRUE, pathlen:0"), "{ca}");
    assert!(ca.contains("X509v3 Certificate Policies: critical"), "{ca}");
    assert!(ca.contains("Policy: 1.2.392.100495.1.5.1.1.3.1"), "{ca}");
    assert!(ca.contains("URI:http://127.0.0.1:8081/crl/arl.crl"), "{ca}");
    assert!(ca.contains("X509v3 Authority Key Identifier"), "{ca}");
    // SKI is SHA-1 of the key, and the issuing CA's AKI is the root's SKI.
    assert_eq!(h.sign_ca.subject_key_identifier(), crate::keys::key_identifier(h.sign_key.der_bytes()));
    assert_eq!(h.root.subject_key_identifier(), crate::keys::key_identifier(h.root_key.der_bytes()));
    let root_ski = h.root.subject_key_identifier();
    assert!(h.sign_ca.certificate_der().windows(root_ski.len()).any(|w| w == root_ski));
    assert!(h.sign_ca.not_after() <= h.root.not_after());
}

#[test]
fn bad_config_is_reported_by_field() {
    // A Policy is typed: bad values are refused when it is built, naming the key.
    use crate::policy::parse_eku;
    use crate::{CaProfile, CertUrl, HcRole, KindPolicy};
    let check = |err: ProfileError, field: &str| {
        assert!(matches!(err, ProfileError::InvalidConfig(_)), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    };
    check(
        KindPolicy::parse_policy_oid("not-an-oid", "profile.signing_policy_oid").unwrap_err(),
        "profile.signing_policy_oid",
    );
    check(
        KindPolicy::parse_crl_url("", "profile.authentication_crl_url").unwrap_err(),
        "profile.authentication_crl_url",
    );
    check(CertUrl::parse("nope", "profile.ocsp_url").unwrap_err(), "profile.ocsp_url");
    check(HcRole::new("").unwrap_err(), "profile.hc_role");
    check(parse_eku("serverAuthentication", "profile.authentication_eku").unwrap_err(), "profile.authentication_eku");

    let mut subject: Vec<(&str, &str)> =
        vec![("C", "JP"), ("O", "Japan Medical Association"), ("OU", "JMA HPKI CA"), ("CN", "x")];
    subject.push(("Email", "x"));
    let err = CaProfile::new("sign-ca", subject, "1.2.392.100495.1.5.1.1.3.1", "").unwrap_err().to_string();
    assert!(err.contains("sign-ca") && err.contains("Email"), "{err}");
}

#[test]
fn bad_subscriber_data_and_validity_are_refused() {
    let h = hierarchy(ec_key);
    let cfg = policy();
    let (nb, na) = subscriber_validity(date!(2026 - 02 - 07), 5, h.sign_ca.not_after());
    let mut who = doctor();
    who.holder_id = "JMA_0001".into(); // '_' is not a PrintableString character
    let err = subscriber_params(&cfg, CertKind::Signing, &who, &[1], nb, na, &h.sign_ca).unwrap_err();
    assert!(matches!(err, ProfileError::InvalidSubscriber(ref m) if m.contains("holder_id")), "{err}");
    let mut who = doctor();
    who.family_name_kanji = " ".into();
    assert!(subscriber_params(&cfg, CertKind::Signing, &who, &[1], nb, na, &h.sign_ca).is_err());

    let late = h.sign_ca.not_after() + time::Duration::seconds(1);
    let err = subscriber_params(&cfg, CertKind::Signing, &doctor(), &[1], nb, late, &h.sign_ca).unwrap_err();
    assert!(matches!(err, ProfileError::InvalidValidity(_)), "{err}");
    let err = subscriber_params(&cfg, CertKind::Signing, &doctor(), &[1], na, nb, &h.sign_ca).unwrap_err();
    assert!(matches!(err, ProfileError::InvalidValidity(_)), "{err}");
    let err = subscriber_params(&cfg, CertKind::Signing, &doctor(), &[0], nb, na, &h.sign_ca).unwrap_err();
    assert!(matches!(err, ProfileError::InvalidSerial(_)), "{err}");
}

#[test]
fn no_institution_means_no_o() {
    let h = hierarchy(ec_key);
    let cfg = policy();
    let mut who = doctor();
    who.institution = None;
    who.institution_kanji = None;
    let (nb, na) = subscriber_validity(date!(2026 - 02 - 07), 5, h.sign_ca.not_after());
    let params = subscriber_params(&cfg, CertKind::Signing, &who, &[0x40], nb, na, &h.sign_ca).unwrap();
    let key = ec_key();
    let ee = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();
    let cert = Certificate::from_der(&ee).unwrap();
    assert_eq!(cert.tbs_certificate().subject().to_string(), "SERIALNUMBER=JMA0000123,CN=Sanjushi Kagurazaka,C=JP");
    let dir = tempfile::tempdir().unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "no-o");
    assert!(text.contains("DirName:/C=JP/CN=\\x"), "{text}");
}

#[test]
fn assembly_inputs_are_checked() {
    assert!(assemble_certificate(b"garbage", &[1, 2, 3]).is_err());
    assert!(tbs_of_certificate(b"").is_err());
    let h = hierarchy(ec_key);
    let der = h.sign_ca.certificate_der();
    for n in 0..der.len() {
        assert!(tbs_of_certificate(&der[..n]).is_err());
        assert!(IssuingCa::from_der(&der[..n]).is_err());
    }
    let tbs = tbs_of_certificate(der).unwrap();
    assert!(assemble_certificate(&tbs, &[]).is_err());
    assert!(assemble_certificate(&tbs, &[0x30, 0x01]).is_err(), "neither DER nor r||s");
    assert!(IssuingCa::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
}

/// With partitions and deltas on, the CRLDP is the partition's URL (chosen
/// from the serial) and freshestCRL (non-critical) points at that partition's
/// delta CRL; openssl still verifies the chain.
#[test]
fn partition_crl_distribution_point_and_freshest_crl() {
    let h = hierarchy(ec_key);
    let cfg = Policy { crl_partitions: 4, delta_crls: true, ..policy() };
    let subject_key = ec_key();
    let dir = tempfile::tempdir().unwrap();
    let (nb, na) = subscriber_validity(date!(2026 - 02 - 07), 5, h.sign_ca.not_after());
    // Last 8 octets 0x...0b = 11: 11 % 4 + 1 = partition 4.
    let serial = [0x10, 0, 0, 0, 0, 0, 0, 0, 0x0b];
    assert_eq!(crate::crl_partition(&serial, 4), 4);
    let params = subscriber_params(&cfg, CertKind::Signing, &doctor(), &serial, nb, na, &h.sign_ca).unwrap();
    let ee = issue(&params, &subject_key, &h.sign_ca, &h.sign_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "part-ee");
    assert_text(
        &text,
        &[
            "X509v3 CRL Distribution Points",
            "URI:http://127.0.0.1:8081/crl/sign-p4.crl",
            "X509v3 Freshest CRL:",
            "URI:http://127.0.0.1:8081/crl/sign-p4-delta.crl",
        ],
        &["URI:http://127.0.0.1:8081/crl/sign.crl", "X509v3 Freshest CRL: critical"],
    );

    // Deltas without partitions: freshestCRL is the CA's delta CRL.
    let cfg = Policy { delta_crls: true, ..policy() };
    let params = subscriber_params(&cfg, CertKind::Signing, &doctor(), &serial, nb, na, &h.sign_ca).unwrap();
    let ee = issue(&params, &subject_key, &h.sign_ca, &h.sign_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "delta-ee");
    assert_text(
        &text,
        &["URI:http://127.0.0.1:8081/crl/sign.crl", "URI:http://127.0.0.1:8081/crl/sign-delta.crl"],
        &[],
    );

    // Both off (the default): no freshestCRL, the CA's CRL.
    let params = subscriber_params(&policy(), CertKind::Signing, &doctor(), &serial, nb, na, &h.sign_ca).unwrap();
    let ee = issue(&params, &subject_key, &h.sign_ca, &h.sign_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "plain-ee");
    assert_text(&text, &[], &["Freshest CRL", "sign-p"]);
}

/// `[profile] authority_key_identifier_issuer_serial`: the AKI also names the
/// signing CA certificate's issuer (the root's DN) and serial, as the real
/// MEDIS certificates do; openssl still builds and verifies the path.
#[test]
fn authority_key_identifier_can_name_the_issuing_ca_certificate_by_issuer_and_serial() {
    let h = hierarchy(rsa_key);
    let cfg = Policy { authority_key_identifier_issuer_serial: true, ..policy() };
    let (_, csr_der) = openssl_csr(&["-newkey", "rsa:2048"]);
    let key = csr::parse_and_verify(&csr_der, cfg.min_rsa_bits).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (nb, na) = subscriber_validity(date!(2026 - 02 - 07), cfg.validity_years, h.sign_ca.not_after());
    let params = subscriber_params(&cfg, CertKind::Signing, &doctor(), &[0x10, 0x03], nb, na, &h.sign_ca).unwrap();
    let ee = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "aki-ee");
    assert_eq!(text.matches("X509v3 Authority Key Identifier").count(), 1, "{text}");
    assert!(text.contains("DirName:/C=JP/O=Japan Medical Association/OU=JMA HPKI Root CA"), "{text}");

    let cert = Certificate::from_der(&ee).unwrap();
    let ext =
        cert.tbs_certificate().extensions().unwrap().iter().find(|e| e.extn_id.to_string() == "2.5.29.35").unwrap();
    let aki = x509_cert::ext::pkix::AuthorityKeyIdentifier::from_der(ext.extn_value.as_bytes()).unwrap();
    let ca = Certificate::from_der(h.sign_ca.certificate_der()).unwrap();
    assert_eq!(aki.key_identifier.unwrap().as_bytes(), h.sign_ca.subject_key_identifier());
    assert_eq!(aki.authority_cert_serial_number.as_ref(), Some(ca.tbs_certificate().serial_number()));
    assert!(!ext.critical);

    // The default: keyIdentifier only.
    let plain = policy();
    let params = subscriber_params(&plain, CertKind::Signing, &doctor(), &[0x10, 0x04], nb, na, &h.sign_ca).unwrap();
    let ee = issue(&params, &key, &h.sign_ca, &h.sign_key).unwrap();
    let text = openssl_check(dir.path(), &h.root, &h.sign_ca, &ee, "aki-plain");
    assert!(!text.contains("DirName:/C=JP/O=Japan Medical Association/OU=JMA HPKI Root CA"), "{text}");
}

#[test]
fn read_pem_file_and_certifies() {
    let h = hierarchy(ec_key);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sign-ca.pem", h.sign_ca.certificate_der());
    let ca = IssuingCa::read_pem_file(&dir.path().join("sign-ca.pem")).unwrap();
    assert_eq!(ca.certificate_der(), h.sign_ca.certificate_der());
    assert!(ca.certifies(h.sign_ca.subject_public_key_info_der()));
    assert!(!ca.certifies(h.root.subject_public_key_info_der()));

    let missing = dir.path().join("missing.pem");
    match IssuingCa::read_pem_file(&missing).unwrap_err() {
        crate::CaFileError::Read { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other}"),
    }
    std::fs::write(dir.path().join("key.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .unwrap();
    assert!(matches!(
        IssuingCa::read_pem_file(&dir.path().join("key.pem")),
        Err(crate::CaFileError::Invalid(ProfileError::InvalidCaCertificate(_)))
    ));
}
