//! End to end: real SoftHSM token, key ceremony, the real services on loopback,
//! a card issued over gRPC from openssl-made CSRs, judged by `openssl`.

mod common;

use std::path::Path;

use common::{openssl, openssl_csr, verify_chain, write_pem, Ca};
use proto::issuance::v1::*;
use time::{Duration, OffsetDateTime, UtcOffset};

/// The hcRole extension value of hpki-profile.md §4, as real HPKI certificates carry it.
const HC_ROLE_DER: &[u8] = &[
    0x30, 0x34, 0x30, 0x32, 0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01, 0x31, 0x28, 0x31, 0x26, 0x30, 0x24, 0xa0,
    0x22, 0x31, 0x20, 0xa0, 0x0c, 0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01, 0xa2, 0x10,
    0x0c, 0x0e, b'M', b'e', b'd', b'i', b'c', b'a', b'l', b' ', b'D', b'o', b'c', b't', b'o', b'r',
];

/// The institution's Japanese name: the O of the SAN directoryName.
const INSTITUTION_KANJI: &str = "文京医療クリニック";

fn today_jst() -> time::Date {
    OffsetDateTime::now_utc().to_offset(UtcOffset::from_hms(9, 0, 0).unwrap()).date()
}

fn days_ago(n: i64) -> String {
    (today_jst() - Duration::days(n)).to_string()
}

fn application(id: &str, licence: &str, sign_csr: Vec<u8>, auth_csr: Vec<u8>) -> NewCardApplication {
    NewCardApplication {
        application_id: id.into(),
        applicant: Some(Applicant {
            family_name_kanji: "神楽坂".into(),
            given_name_kanji: "三十四".into(),
            family_name_kana: "カグラザカ".into(),
            given_name_kana: "サンジュウシ".into(),
            family_name_latin: "Kagurazaka".into(),
            given_name_latin: "Sanjushi".into(),
            date_of_birth: "1980-04-01".into(),
        }),
        licence: Some(MedicalLicence { licence_number: licence.into(), registered_on: "2006-05-01".into() }),
        membership: Membership::NonMember as i32,
        contact: Some(ContactAddress {
            postal_code: "113-8621".into(),
            address: "東京都文京区本駒込2-28-16".into(),
            phone: "03-0000-0000".into(),
            email: "doctor@example.jp".into(),
        }),
        documents: Some(DocumentChecks {
            photo_taken_on: days_ago(30),
            resident_record_issued_on: days_ago(60),
            photo_id: Some(PhotoId {
                r#type: PhotoIdType::MyNumberCard as i32,
                expires_on: (today_jst() + Duration::days(900)).to_string(),
                issued_on: String::new(),
            }),
            licence_copy_checked: true,
            licence_back_endorsed: false,
            licence_back_copied: false,
        }),
        signing_csr: sign_csr,
        authentication_csr: auth_csr,
        application_date: String::new(),
        institution: "Bunkyo Medical Clinic".into(),
        institution_kanji: INSTITUTION_KANJI.into(),
        ra_operator: "ra-test".into(),
        card_pin: String::new(),
    }
}

#[test]
fn a_card_issued_over_grpc_verifies_with_openssl_and_carries_the_hpki_profile() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["registry", "issuance"]);
    let work = ca.dir.path().to_owned();
    let sign_csr = openssl_csr(&work, "sign", "rsa:2048");
    let auth_csr = openssl_csr(&work, "auth", "rsa:2048");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = rt
        .block_on(async {
            ca.issuance(&addrs[1])
                .await
                .submit_application(application("app-1", "123456", sign_csr.clone(), auth_csr.clone()))
                .await
        })
        .expect("issue")
        .into_inner();
    assert!(!card.replayed);
    assert!(card.holder_id.starts_with("JMA"), "{}", card.holder_id);
    let fee = card.fee.clone().unwrap();
    assert_eq!((fee.issuance_fee, fee.yearly_fee, fee.due_now), (5_000, 6_000, 11_000));

    let root = ca.cert_path("root-ca.pem");
    let sign_ca = ca.cert_path("sign-ca.pem");
    let auth_ca = ca.cert_path("auth-ca.pem");
    let sign = work.join("sign.pem");
    let auth = work.join("auth.pem");
    write_pem(&sign, &card.signing_certificate);
    write_pem(&auth, &card.authentication_certificate);

    for (ee, issuing) in [(&sign, &sign_ca), (&auth, &auth_ca)] {
        let (ok, out) = verify_chain(&ca, issuing, ee);
        assert!(ok && out.contains(": OK"), "openssl verify: {out}");
    }
    // The wrong issuing CA must not verify: the two CAs are distinct keys.
    let (ok, _) = verify_chain(&ca, &auth_ca, &sign);
    assert!(!ok, "signing certificate verified under the authentication CA");

    let x509_text = |cert: &Path| {
        let (ok, text) = openssl(&["x509", "-noout", "-text", "-nameopt", "utf8", "-in", cert.to_str().unwrap()]);
        assert!(ok, "{text}");
        text
    };
    let text = x509_text(&sign);
    for want in [
        "X509v3 Key Usage: critical",
        "Non Repudiation",
        "X509v3 Certificate Policies: critical",
        "Policy: 1.2.392.100495.1.5.1.1.0.1",
        "X509v3 CRL Distribution Points",
        "http://127.0.0.1:8081/crl/sign.crl",
        "OCSP - URI:http://127.0.0.1:8082/ocsp",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "CN=Sanjushi Kagurazaka",
        "serialNumber=JMA",
        "O=Bunkyo Medical Clinic",
        "sha256WithRSAEncryption",
    ] {
        assert!(text.contains(want), "signing certificate lacks {want:?}:\n{text}");
    }
    // The SAN directoryName carries the kanji names of the holder and the
    // institution (the subject has the Latin ones); openssl prints it as escaped UTF-8.
    let escaped = |s: &str| s.bytes().map(|b| format!("\\x{b:02X}")).collect::<String>();
    let (kanji, kanji_o) = (escaped("神楽坂\u{3000}三十四"), escaped(INSTITUTION_KANJI));
    assert!(text.contains(&format!("DirName:/C=JP/O={kanji_o}/CN={kanji}/serialNumber=JMA")), "SAN:\n{text}");
    assert!(!text.contains("Extended Key Usage"), "signing certificate must have no EKU:\n{text}");
    assert!(!text.contains("Basic Constraints"), "signing certificate must have no basicConstraints:\n{text}");
    assert!(!text.contains("Digital Signature"), "signing keyUsage is nonRepudiation only:\n{text}");

    let text = x509_text(&auth);
    for want in [
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "X509v3 Extended Key Usage",
        "TLS Web Client Authentication",
        "Policy: 1.2.392.100495.1.5.1.2.0.1",
        "http://127.0.0.1:8081/crl/auth.crl",
    ] {
        assert!(text.contains(want), "authentication certificate lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("Non Repudiation"), "{text}");

    // hcRole: subjectDirectoryAttributes (2.5.29.9) with the exact bytes of real HPKI certificates.
    for der in [&card.signing_certificate, &card.authentication_certificate] {
        assert!(der.windows(HC_ROLE_DER.len()).any(|w| w == HC_ROLE_DER), "hcRole extension not found byte-for-byte");
    }

    // Tools we did not write: Python cryptography verifies the signatures and
    // parses the extensions; pkilint finds nothing at WARNING or above.
    let venv = common::repo().join(".venv/bin");
    for (ee, issuing, kind) in [(&sign, &sign_ca, "signing"), (&auth, &auth_ca, "authentication")] {
        let out = std::process::Command::new(venv.join("python"))
            .arg(common::repo().join("tests/check_cert.py"))
            .args([ee.as_os_str(), issuing.as_os_str()])
            .args([kind, "Bunkyo Medical Clinic", INSTITUTION_KANJI])
            .output()
            .expect("python from .venv (run make setup)");
        common::assert_success(&out, &format!("check_cert.py {kind}"));
    }
    for cert in [&sign, &auth, &root, &sign_ca, &auth_ca] {
        testkit::pkilint::assert_clean("lint_pkix_cert", &[], cert);
    }

    // The same application id again is the same card, never a second one.
    let again = rt
        .block_on(async {
            ca.issuance(&addrs[1]).await.submit_application(application("app-1", "123456", sign_csr, auth_csr)).await
        })
        .expect("replay")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.card_id, card.card_id);
    assert_eq!(again.signing_serial, card.signing_serial);
    assert_eq!(again.signing_certificate, card.signing_certificate);

    // Same holder, new application id: already has an active card.
    let err = rt
        .block_on(async {
            let s = openssl_csr(&work, "s2", "rsa:2048");
            let a = openssl_csr(&work, "a2", "rsa:2048");
            ca.issuance(&addrs[1]).await.submit_application(application("app-2", "123456", s, a)).await
        })
        .expect_err("second card for the same holder");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

#[test]
fn separate_processes_reject_bad_applications_naming_the_field() {
    let mut ca = Ca::new("");
    let reg = ca.spawn(&["registry"], &["registry"]);
    let url = ca.url(&reg[0]);
    let iss = ca.spawn(&["issuance", "--registry-url", &url], &["issuance"]);
    let work = ca.dir.path().to_owned();
    let good_sign = openssl_csr(&work, "s", "rsa:2048");
    let good_auth = openssl_csr(&work, "a", "ec");
    let small = openssl_csr(&work, "small", "rsa:1024");
    let mut tampered = good_sign.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 0x01; // inside the signature: proof of possession fails

    let base = || application("bad", "654321", good_sign.clone(), good_auth.clone());
    let cases: Vec<(&str, NewCardApplication)> = vec![
        ("signing_csr", NewCardApplication { signing_csr: tampered.clone(), ..base() }),
        ("authentication_csr", NewCardApplication { authentication_csr: small.clone(), ..base() }),
        ("signing_csr", NewCardApplication { signing_csr: b"not a CSR".to_vec(), ..base() }),
        ("documents.photo_taken_on", {
            let mut a = base();
            a.documents.as_mut().unwrap().photo_taken_on = days_ago(200);
            a
        }),
        ("documents.resident_record_issued_on", {
            let mut a = base();
            a.documents.as_mut().unwrap().resident_record_issued_on = days_ago(190);
            a
        }),
        ("documents.photo_id.type", {
            let mut a = base();
            a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().r#type =
                PhotoIdType::MyNumberNotificationCard as i32;
            a
        }),
        ("documents.photo_id.expires_on", {
            let mut a = base();
            a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().expires_on = days_ago(1);
            a
        }),
        ("licence.licence_number", {
            let mut a = base();
            a.licence.as_mut().unwrap().licence_number.clear();
            a
        }),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = ca.issuance(&iss[0]).await;
        for (field, app) in cases {
            let err = c.submit_application(app).await.expect_err(field);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
            assert!(err.message().starts_with(field), "message {:?} does not name {field}", err.message());
        }
        // Nothing was recorded for the rejected application: a good one with the same id now succeeds.
        let card = c.submit_application(base()).await.expect("good application").into_inner();
        assert_eq!(card.fee.unwrap().due_now, 11_000);
        let fee = c.get_fee(GetFeeRequest { membership: Membership::Member as i32 }).await.unwrap().into_inner();
        assert_eq!((fee.issuance_fee, fee.yearly_fee, fee.renewal_fee), (0, 0, 5_000));
    });
}

#[test]
fn the_ceremony_is_repeatable_and_ca_keys_cannot_leave_the_token() {
    let ca = Ca::new("");
    let before: Vec<Vec<u8>> =
        ["root-ca.pem", "sign-ca.pem", "auth-ca.pem"].iter().map(|f| std::fs::read(ca.cert_path(f)).unwrap()).collect();
    let out = ca.cli(&["ceremony"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("key kept").count(),
        5,
        "root, signing, auth, PIN escrow and audit checkpoint keys (responder keys are the ocsp process's): {text}"
    );
    assert_eq!(text.matches("certificate kept").count(), 3, "{text}");
    let after: Vec<Vec<u8>> =
        ["root-ca.pem", "sign-ca.pem", "auth-ca.pem"].iter().map(|f| std::fs::read(ca.cert_path(f)).unwrap()).collect();
    assert_eq!(before, after);

    let root = ca.cert_path("root-ca.pem");
    for f in ["sign-ca.pem", "auth-ca.pem"] {
        let p = ca.cert_path(f);
        let (ok, out) = openssl(&["verify", "-CAfile", root.to_str().unwrap(), p.to_str().unwrap()]);
        assert!(ok, "{f}: {out}");
        let (_, text) = openssl(&["x509", "-noout", "-text", "-in", p.to_str().unwrap()]);
        assert!(text.contains("CA:TRUE, pathlen:0"), "{f}: {text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{f}: {text}");
    }

    // The ceremony made the root's ARL; `hpki-ca arl` revokes an issuing CA certificate in the next one.
    let arl = ca.state().join("crl/arl.crl");
    let arl_text = || testkit::openssl::crl_text(&arl, true, &root);
    let (ok, text) = arl_text();
    assert!(ok && text.contains("verify OK"), "{text}");
    assert!(text.contains("Issuing Distribution Point: critical") && text.contains("Only CA Certificates"), "{text}");
    let (_, serial) = openssl(&["x509", "-noout", "-serial", "-in", ca.cert_path("auth-ca.pem").to_str().unwrap()]);
    let serial = serial.trim().trim_start_matches("serial=").to_owned();
    let out = ca.cli(&["arl", "--revoke-serial", &serial, "--reason", "superseded"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, text) = arl_text();
    assert!(ok && text.contains(&serial) && text.contains("Superseded"), "{text}");

    // pkcs11-tool, a tool we did not write, sees each key in its own domain's token, logged in
    // with that token's PIN only: CA keys sign-only and never extractable.
    let conf = ca.state().join("hsm/softhsm2.conf");
    let list = |domain: &str, kind: &str| {
        let pin = std::fs::read_to_string(ca.state().join(format!("hsm/{domain}.pin"))).unwrap();
        let out = std::process::Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", &format!("hpki-{domain}")])
            .args(["--login", "--pin", pin.trim(), "--list-objects", "--type", kind])
            .output()
            .expect("pkcs11-tool");
        assert!(out.status.success(), "pkcs11-tool {domain}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (domain, labels) in
        [("root", &["root-ca"][..]), ("issuing", &["sign-ca", "auth-ca"][..]), ("audit", &["audit-checkpoint"][..])]
    {
        let listing = list(domain, "privkey");
        for label in labels {
            assert!(listing.contains(&format!("label:      {label}")), "{domain}: {listing}");
        }
        assert_eq!(
            listing.matches("label:").count(),
            labels.len(),
            "only its own keys in the {domain} token: {listing}"
        );
        assert_eq!(
            listing.matches("Access:     sensitive, always sensitive, never extractable, local").count(),
            labels.len(),
            "{listing}"
        );
        assert_eq!(listing.matches("Usage:      sign\n").count(), labels.len(), "CA keys must only sign:\n{listing}");
        assert!(!listing.to_lowercase().contains("decrypt"), "CA keys must only sign:\n{listing}");
    }
    // The ceremony leaves the ocsp token alone: the responder keys are the ocsp process's.
    assert!(!list("ocsp", "privkey").contains("label:"), "the ceremony wrote to the ocsp token");

    // The PIN escrow key, in the escrow token: AES, encrypt/decrypt only, never extractable.
    let listing = list("escrow", "secrkey");
    assert!(listing.contains("label:      pin-escrow"), "{listing}");
    assert!(listing.contains("Usage:      encrypt, decrypt\n"), "{listing}");
    assert!(listing.contains("never extractable"), "{listing}");
    assert!(!list("issuing", "secrkey").contains("label:"), "no escrow key next to the issuing CA keys");
}
