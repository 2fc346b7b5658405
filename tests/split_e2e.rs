//! End to end with the services split over processes, as a deployment that
//! runs them on separate hosts would: `hpki-ca registry`, `crl`, `revocation`,
//! `issuance` and `ocsp`, each its own process, each reaching the others over
//! mTLS. A card is issued and emergency-revoked; the CRL (fetched over HTTP) and
//! the OCSP responder say so to openssl; the CRL process signs the audit
//! checkpoints (it holds the HSM), and `audit verify` checks them.

mod common;

use std::time::{Duration, Instant};

use common::{http_get, ocsp_query, verify_chain, verify_with_crl, write_pem, write_pem_label, Ca};

#[test]
fn split_services_issue_revoke_publish_and_checkpoint() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 1\n");
    let registry = ca.spawn(&["registry"], &["registry"]).remove(0);
    let registry_url = ca.url(&registry);
    let crl = ca.spawn(&["crl", "--registry-url", &registry_url], &["crl", "crl-http"]);
    let (crl_grpc, crl_http) = (&crl[0], &crl[1]);
    let revocation = ca
        .spawn(&["revocation", "--registry-url", &registry_url, "--crl-url", &ca.url(crl_grpc)], &["revocation"])
        .remove(0);
    let issuance = ca.spawn(&["issuance", "--registry-url", &registry_url], &["issuance"]).remove(0);
    let issuance_url = ca.url(&issuance);
    let responder =
        ca.spawn(&["ocsp", "--registry-url", &registry_url, "--issuance-url", &issuance_url], &["ocsp"]).remove(0);

    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = common::submit(&ca, &rt, &issuance, "s-1", "910001", &dir).expect("issue through the split services");
    let sign = dir.join("s-sign.pem");
    write_pem(&sign, &card.signing_certificate);
    let sign_ca = ca.cert_path("sign-ca.pem");
    let (ok, out) = verify_chain(&ca, &sign_ca, &sign);
    assert!(ok, "{out}");

    let out = ca.emergency_revoke(&card.card_id, &revocation);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("CRL published"), "{text}");

    // The CRL process published it: openssl sees the card revoked with the CRL.
    let (status, _, body) = http_get(crl_http, "/crl/sign.crl");
    assert_eq!(status, 200);
    let crl_pem = dir.join("sign.crl.pem");
    write_pem_label(&crl_pem, "X509 CRL", &body);
    let (ok, out) = verify_with_crl(&ca, &sign_ca, &crl_pem, &sign);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // The OCSP process follows the registry's feed: revoked within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ocsp_query(&ca, &responder, "sign-ca.pem", &sign, &[]);
        if out.contains("Response verify OK") && out.contains(": revoked") {
            break;
        }
        assert!(Instant::now() < deadline, "OCSP did not say revoked: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The CRL process signs checkpoints by itself; the chain and their signatures verify.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = ca.cli(&["audit", "verify", "--url", &registry_url, "--without-record"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "audit verify: {text}{}", String::from_utf8_lossy(&out.stderr));
        let verified: u64 = text
            .split("checkpoints: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if verified >= 1 && text.contains(&format!("checkpoints: {verified} verified")) {
            break;
        }
        assert!(Instant::now() < deadline, "no automatic checkpoint from the CRL process: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    ca.take_children();
}
