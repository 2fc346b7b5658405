//! One token per trust domain, with the services split over processes: the
//! OCSP process gets a config of its own whose only PIN file is the `ocsp`
//! token's (in a credentials folder holding nothing else; every other PIN file
//! is moved away before it starts), keeps its responder keys in that token,
//! gets its responder certificates from the issuance service (only a service
//! identity may ask), answers good and then revoked to openssl, and signs with
//! a responder certificate the registry returns (GetCertificate, kind
//! OCSP_RESPONDER) and `hpki-ca status` shows. Revoking that certificate makes
//! the responder roll over to a new key and certificate. A responder
//! certificate left half-done by a crash is resolved by issuance's restart
//! recovery, as a card's is.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ocsp_query, write_pem, Ca};
use config::TrustDomain;
use proto::issuance::v1 as iss;
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::registry::v1 as reg;

const DOMAINS: [&str; 5] = ["root", "issuing", "ocsp", "escrow", "audit"];

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

fn spki_of(der: &[u8]) -> Vec<u8> {
    let cert = <x509_cert::Certificate as der::Decode>::from_der(der).expect("a certificate");
    der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).expect("SPKI")
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

/// The labels of the objects of `kind` in the `domain` token, as pkcs11-tool
/// (a tool we did not write) lists them, logged in with `pin_file`.
fn token_labels(ca: &Ca, domain: &str, pin_file: &Path, kind: &str) -> Vec<String> {
    let pin = std::fs::read_to_string(pin_file).unwrap_or_else(|e| panic!("{}: {e}", pin_file.display()));
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", ca.state().join("hsm/softhsm2.conf"))
        .args(["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", &format!("hpki-{domain}")])
        .args(["--login", "--pin", pin.trim(), "--list-objects", "--type", kind])
        .output()
        .expect("pkcs11-tool");
    assert!(out.status.success(), "pkcs11-tool {domain}: {}", String::from_utf8_lossy(&out.stderr));
    let mut labels: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:").map(|l| l.trim().to_owned()))
        .collect();
    labels.sort();
    labels
}

async fn certificate(ca: &Ca, registry: &str, serial: &str) -> Result<reg::CertificateRecord, tonic::Status> {
    let mut client = ca.registry(registry).await;
    client.get_certificate(reg::GetCertificateRequest { serial: serial.to_owned() }).await.map(|r| r.into_inner())
}

#[test]
fn the_ocsp_process_holds_only_its_token_and_serves_with_a_registry_issued_responder_certificate() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    let state = ca.state();
    let pin_path = |d: &str| state.join(format!("hsm/{d}.pin"));
    for domain in DOMAINS {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(pin_path(domain)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{domain}.pin is owner-only");
    }
    let pins: std::collections::BTreeSet<String> =
        DOMAINS.iter().map(|d| std::fs::read_to_string(pin_path(d)).unwrap()).collect();
    assert_eq!(pins.len(), 5, "each token has its own PIN");

    let registry = ca.spawn(&["registry"], &["registry"]).remove(0);
    let registry_url = ca.url(&registry);
    let crl = ca.spawn(&["crl", "--registry-url", &registry_url], &["crl"]).remove(0);
    let revocation = ca
        .spawn(&["revocation", "--registry-url", &registry_url, "--crl-url", &ca.url(&crl)], &["revocation"])
        .remove(0);
    let issuance = ca.spawn(&["issuance", "--registry-url", &registry_url], &["issuance"]).remove(0);
    let issuance_url = ca.url(&issuance);

    // The OCSP process's own config, as deploy/config/ocsp.toml: its one PIN file is
    // in a credentials folder holding nothing else, and every PIN under the state
    // folder (its own included) is moved away before it starts.
    let credentials = ca.dir.path().join("ocsp-credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(pin_path("ocsp"), credentials.join("ocsp.pin")).unwrap();
    let vault = ca.dir.path().join("vault");
    std::fs::create_dir(&vault).unwrap();
    let moved: Vec<(PathBuf, PathBuf)> =
        DOMAINS.iter().map(|d| (pin_path(d), vault.join(format!("{d}.pin")))).collect();
    for (from, to) in &moved {
        std::fs::rename(from, to).unwrap();
    }
    let ocsp_config = ca.dir.path().join("ocsp.toml");
    let shared = std::fs::read_to_string(&ca.config).unwrap();
    assert!(!shared.contains("[hsm"), "the shared config names no token: {shared}");
    std::fs::write(
        &ocsp_config,
        format!("{shared}\n[hsm.tokens.ocsp]\npin_file = \"{}\"\n", credentials.join("ocsp.pin").display()),
    )
    .unwrap();
    let cfg = config::Config::load(&ocsp_config).unwrap();
    assert_eq!(cfg.token_pin_path(TrustDomain::Ocsp), credentials.join("ocsp.pin"));
    assert!(cfg.token_pin_path(TrustDomain::Ocsp).exists());
    for domain in TrustDomain::ALL.into_iter().filter(|d| *d != TrustDomain::Ocsp) {
        let path = cfg.token_pin_path(domain);
        assert!(!path.exists(), "the {domain} PIN {} is readable by the OCSP process", path.display());
    }
    let readable: Vec<_> = std::fs::read_dir(&credentials).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(readable, ["ocsp.pin"], "its credentials are the ocsp PIN alone");
    let config_arg = ocsp_config.to_str().unwrap().to_owned();
    let responder = ca
        .spawn_command(
            &["--config", &config_arg, "ocsp", "--registry-url", &registry_url, "--issuance-url", &issuance_url],
            &["ocsp"],
        )
        .remove(0);

    // A card, issued by the issuance process.
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = common::submit(&ca, &rt, &issuance, "t-1", "930001", &dir).expect("issue through the split services");
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

    // Its keys are in the ocsp token, none in the issuing token (which holds the CA keys alone).
    let ocsp_keys = token_labels(&ca, "ocsp", &credentials.join("ocsp.pin"), "privkey");
    assert_eq!(ocsp_keys, ["ocsp-auth", "ocsp-sign"], "the responder keys, in the ocsp token");
    let issuing_keys = token_labels(&ca, "issuing", &vault.join("issuing.pin"), "privkey");
    assert_eq!(issuing_keys, ["auth-ca", "sign-ca"], "only the CA keys in the issuing token");

    // The registry issued it: GetCertificate returns exactly that certificate.
    let record = rt.block_on(certificate(&ca, &registry, &used_serial));
    let record = record.expect("GetCertificate knows the responder certificate");
    assert_eq!(record.kind, reg::CertificateKind::OcspResponder as i32);
    assert_eq!(record.state, reg::CertificateState::Issued as i32);
    assert_eq!(record.card_id, "", "it belongs to no card");
    assert_eq!(record.certificate_der, used);
    assert_eq!(record.issuer_label, "sign-ca");
    let status = |serial: &str| {
        let out = ca.cli(&["status", "--serial", serial, "--url", &ca.url(&revocation)]);
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = status(&used_serial);
    let line = text.lines().find(|l| l.contains(&used_serial)).unwrap_or_else(|| panic!("serial not shown: {text}"));
    assert!(line.starts_with("ocsp-responder") && line.contains(" good "), "{text}");

    // Only our OCSP process may ask for responder certificates: RA systems, operators,
    // auditors and the other services are refused by the transport before issuance sees
    // the request, while ocsp's reaches it (and this garbage CSR is refused by issuance).
    let asks = |role: &'static str| {
        let ca = &ca;
        let issuance = &issuance;
        rt.block_on(async move {
            let mut client = IssuanceClient::new(ca.grpc(issuance, role).await.unwrap());
            let req = iss::ResponderCertificateRequest { issuer: "signing".into(), csr: b"not a CSR".to_vec() };
            client.issue_responder_certificate(req).await.map(|_| ()).unwrap_err()
        })
    };
    for role in ["ra", "operator", "auditor", "issuance", "crl"] {
        let refused = asks(role);
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{role}: {refused:?}");
    }
    let reached = asks("ocsp");
    assert_eq!(reached.code(), tonic::Code::InvalidArgument, "{reached:?}");
    assert!(reached.message().contains("csr"), "{reached:?}");

    // The operator who revokes is named by a certificate of their own.
    ca.ensure_identity("op-sato", "operator");
    // Revoked card: the responder (still with only the ocsp PIN) says so.
    let revoke = |serial: &str| {
        let out = ca.cli(&[
            "revoke",
            "--serial",
            serial,
            "--reason",
            "key-compromise",
            "--operator",
            "op-sato",
            "--url",
            &ca.url(&revocation),
        ]);
        assert!(out.status.success(), "revoke {serial}: {}", String::from_utf8_lossy(&out.stderr));
    };
    revoke(&card.signing_serial);
    ocsp_until(&ca, &responder, &sign, "revoked", |_| true);

    // Revoking the responder certificate itself: `hpki-ca status` shows it, and the
    // responder rolls over to a new key and certificate, also from the registry.
    revoke(&used_serial);
    let text = status(&used_serial);
    let line = text.lines().find(|l| l.contains(&used_serial)).unwrap_or_else(|| panic!("serial not shown: {text}"));
    assert!(line.starts_with("ocsp-responder") && line.contains(" revoked ") && line.contains("op-sato"), "{text}");
    let rolled = ocsp_until(&ca, &responder, &sign, "revoked", |out| {
        responder_in(out).is_some_and(|der| serial_of(&der) != used_serial)
    });
    let new = responder_in(&rolled).unwrap();
    assert_ne!(spki_of(&new), spki_of(&used), "a new key for the new responder certificate");
    let record = rt.block_on(certificate(&ca, &registry, &serial_of(&new)));
    let record = record.expect("the new one is in the registry too");
    assert_eq!((record.certificate_der, record.state), (new.clone(), reg::CertificateState::Issued as i32));
    let ocsp_keys = token_labels(&ca, "ocsp", &credentials.join("ocsp.pin"), "privkey");
    assert_eq!(ocsp_keys.len(), 3, "the rollover key is in the ocsp token too: {ocsp_keys:?}");
    assert!(ocsp_keys.iter().any(|l| l.starts_with("ocsp-sign.")), "{ocsp_keys:?}");

    // A crash of issuance between recording and storing a responder certificate
    // (PRECERT), or before recording (RESERVED), is resolved by the restart
    // recovery of the next issuance process, as for a card.
    let (precert, reserved) = rt.block_on(async {
        let mut client = ca.registry(&registry).await;
        let reserve = || reg::ReserveSerialRequest {
            card_id: String::new(),
            kind: reg::CertificateKind::OcspResponder as i32,
            issuer_label: "sign-ca".into(),
            not_before_unix: unix(&new, |v| v.not_before),
            not_after_unix: unix(&new, |v| v.not_after),
        };
        let precert = client.reserve_serial(reserve()).await.expect("reserve").into_inner().serial;
        let current = certificate(&ca, &registry, &serial_of(&new)).await.unwrap();
        let tbs_der = common::with_serial(&current.tbs_der, &current.serial, &precert);
        client
            .record_tbs(reg::RecordTbsRequest { serial: precert.clone(), tbs_der, crl_scope: None })
            .await
            .expect("RecordTbs");
        let reserved = client.reserve_serial(reserve()).await.expect("reserve").into_inner().serial;
        (precert, reserved)
    });
    for (from, to) in &moved {
        std::fs::rename(to, from).unwrap();
    }
    let _second = ca.spawn(&["issuance", "--registry-url", &registry_url], &["issuance"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (signed, abandoned) = loop {
        let (p, r) = rt.block_on(async {
            (
                certificate(&ca, &registry, &precert).await.unwrap(),
                certificate(&ca, &registry, &reserved).await.unwrap(),
            )
        });
        if p.state == reg::CertificateState::Issued as i32 && r.state == reg::CertificateState::Abandoned as i32 {
            break (p, r);
        }
        assert!(Instant::now() < deadline, "recovery left the responder records: {p:?} {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((signed.kind, abandoned.kind), (reg::CertificateKind::OcspResponder as i32, signed.kind));
    let recovered = dir.join("recovered-responder.pem");
    write_pem(&recovered, &signed.certificate_der);
    let (ok, text) = common::verify_responder_cert(&ca, &recovered);
    assert!(ok, "the recovered responder certificate was signed by the issuing CA: {text}");
    assert_eq!(serial_of(&signed.certificate_der), precert);
    ca.take_children();
}

/// A validity bound of a certificate, in Unix seconds.
fn unix(der: &[u8], bound: impl Fn(&x509_cert::time::Validity) -> x509_cert::time::Time) -> i64 {
    let cert = <x509_cert::Certificate as der::Decode>::from_der(der).expect("a certificate");
    let secs = bound(cert.tbs_certificate().validity()).to_unix_duration().as_secs();
    i64::try_from(secs).expect("in range")
}
