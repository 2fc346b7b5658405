//! One token per trust domain, with the services split over processes: the
//! OCSP process holds only the `ocsp` token's PIN (the others' PIN files are
//! moved away before it starts), gets its responder certificates from the
//! issuance service, answers good and then revoked to openssl, and signs with
//! a responder certificate the registry returns (GetCertificate, kind
//! OCSP_RESPONDER). Revoking that certificate makes the responder roll over to
//! a new key and certificate, and `hpki-ca status` shows it revoked.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{application, ocsp_query, write_pem, Ca};
use proto::registry::v1 as reg;

/// The responder certificate a response carried (`-resp_text`), DER.
fn responder_in(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start + "-----END CERTIFICATE-----".len();
    pem::parse(&text[start..end]).ok().map(|p| p.into_contents())
}

fn serial_of(der: &[u8]) -> String {
    let cert = <x509_cert::Certificate as der::Decode>::from_der(der).expect("a certificate");
    hex::encode(cert.tbs_certificate().serial_number().as_bytes())
}

/// Asks until `want` is the status and the response verifies; returns the output.
fn ocsp_until(ca: &Ca, responder: &str, cert: &Path, want: &str, also: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ocsp_query(ca, responder, "sign-ca.pem", cert, &["-resp_text"]);
        if out.contains("Response verify OK") && out.contains(&format!(": {want}")) && also(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "OCSP did not say {want}: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_ocsp_process_holds_only_its_token_and_serves_with_a_registry_issued_responder_certificate() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    let state = ca.state();
    for domain in ["root", "issuing", "ocsp", "escrow", "audit"] {
        let pin = state.join(format!("hsm/{domain}.pin"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pin).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{domain}.pin is owner-only");
    }
    let pin_texts: Vec<String> = ["root", "issuing", "ocsp", "escrow", "audit"]
        .iter()
        .map(|d| std::fs::read_to_string(state.join(format!("hsm/{d}.pin"))).unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = pin_texts.iter().collect();
    assert_eq!(distinct.len(), 5, "each token has its own PIN");

    let registry = ca.spawn(&["registry"], &["registry"]).remove(0);
    let registry_url = ca.url(&registry);
    let crl = ca.spawn(&["crl", "--registry-url", &registry_url], &["crl"]).remove(0);
    let revocation = ca
        .spawn(&["revocation", "--registry-url", &registry_url, "--crl-url", &ca.url(&crl)], &["revocation"])
        .remove(0);
    let issuance = ca.spawn(&["issuance", "--registry-url", &registry_url], &["issuance"]).remove(0);

    // The OCSP process starts with only the ocsp PIN there to read.
    let vault = ca.dir.path().join("vault");
    std::fs::create_dir(&vault).unwrap();
    let moved: Vec<(PathBuf, PathBuf)> = ["root", "issuing", "escrow", "audit"]
        .iter()
        .map(|d| (state.join(format!("hsm/{d}.pin")), vault.join(format!("{d}.pin"))))
        .collect();
    for (from, to) in &moved {
        std::fs::rename(from, to).unwrap();
    }
    let responder =
        ca.spawn(&["ocsp", "--registry-url", &registry_url, "--issuance-url", &ca.url(&issuance)], &["ocsp"]).remove(0);

    // A card, issued by the issuance process.
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = rt
        .block_on(async { ca.issuance(&issuance).await.submit_application(application("t-1", "930001", &dir)).await })
        .expect("issue through the split services")
        .into_inner();
    let sign = dir.join("t-sign.pem");
    write_pem(&sign, &card.signing_certificate);

    let good = ocsp_until(&ca, &responder, &sign, "good", |_| true);
    let used = responder_in(&good).expect("the response carries its responder certificate");
    let used_serial = serial_of(&used);
    assert_eq!(
        std::fs::read_to_string(ca.cert_path("ocsp-sign.pem")).map(|t| pem::parse(t).unwrap().into_contents()).unwrap(),
        used,
        "the certificate the OCSP process wrote is the one it signs with"
    );

    // The registry issued it: GetCertificate returns exactly that certificate.
    let record = rt.block_on(async {
        let mut registry = ca.registry(&registry).await;
        registry.get_certificate(reg::GetCertificateRequest { serial: used_serial.clone() }).await
    });
    let record = record.expect("GetCertificate knows the responder certificate").into_inner();
    assert_eq!(record.kind, reg::CertificateKind::OcspResponder as i32);
    assert_eq!(record.state, reg::CertificateState::Issued as i32);
    assert_eq!(record.card_id, "", "it belongs to no card");
    assert_eq!(record.certificate_der, used);
    assert_eq!(record.issuer_label, "sign-ca");

    // Revoked card: the responder (still only the ocsp PIN) says so.
    let out = ca.cli(&[
        "revoke",
        "--serial",
        &card.signing_serial,
        "--reason",
        "key-compromise",
        "--operator",
        "op-sato",
        "--url",
        &ca.url(&revocation),
    ]);
    assert!(out.status.success(), "revoke: {}", String::from_utf8_lossy(&out.stderr));
    ocsp_until(&ca, &responder, &sign, "revoked", |_| true);

    // Revoking the responder certificate itself: shown by `hpki-ca status`, and the
    // responder rolls over to a new one (also from the registry) at once.
    let out = ca.cli(&[
        "revoke",
        "--serial",
        &used_serial,
        "--reason",
        "key-compromise",
        "--operator",
        "op-sato",
        "--url",
        &ca.url(&revocation),
    ]);
    assert!(out.status.success(), "revoke responder: {}", String::from_utf8_lossy(&out.stderr));
    let out = ca.cli(&["status", "--serial", &used_serial, "--url", &ca.url(&revocation)]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.contains("ocsp-responder") && text.contains("revoked"), "{text}");
    let rolled = ocsp_until(&ca, &responder, &sign, "revoked", |out| {
        responder_in(out).is_some_and(|der| serial_of(&der) != used_serial)
    });
    let new = responder_in(&rolled).unwrap();
    let spki = |der: &[u8]| {
        let cert = <x509_cert::Certificate as der::Decode>::from_der(der).unwrap();
        der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap()
    };
    assert_ne!(spki(&new), spki(&used), "a new key for the new responder certificate");
    let record = rt.block_on(async {
        let mut registry = ca.registry(&registry).await;
        registry.get_certificate(reg::GetCertificateRequest { serial: serial_of(&new) }).await
    });
    assert_eq!(record.expect("the new one is in the registry too").into_inner().certificate_der, new);

    for (from, to) in &moved {
        std::fs::rename(to, from).unwrap();
    }
    ca.take_children();
}
