//! The whole chain's revocation, as relying parties that check every
//! certificate do it (`openssl verify -crl_check_all`, Java PKIX, CryptoAPI):
//! the root's ARL must be in scope for the root and for both issuing CAs
//! (issue 12, item 1: before, openssl said "different CRL scope"), and a card
//! revoked as lost fails while a good one passes.

mod common;

use common::{http_get, issue_card_pems, openssl, write_pem_label, Ca};

#[test]
fn openssl_crl_check_all_accepts_the_whole_chain_and_fails_a_lost_card() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["issuance", "revocation", "crl-http", "crl"]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cards = [("all-good", "820001"), ("all-lost", "820002")]
        .map(|(id, licence)| issue_card_pems(&ca, &rt, &addrs[0], id, licence));
    // The ceremony's ARL is fresh (90 days): its health service says so.
    let status = rt.block_on(async {
        let channel = ca.grpc(&addrs[3], "operator").await.expect("crl gRPC");
        let req = tonic_health::pb::HealthCheckRequest { service: "hpki.crl.v1.Arl".into() };
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(req)
            .await
            .expect("health")
            .into_inner()
            .status
    });
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    // And its time to nextUpdate is a metric of the distribution point.
    let (code, _, body) = http_get(&addrs[2], "/metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();
    let left: i64 = text
        .lines()
        .find(|l| l.starts_with("hpki_crl_seconds_to_next_update{path=\"/crl/arl.crl\",arl=\"true\"} "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ARL line in:\n{text}"));
    assert!((89 * 86_400..=90 * 86_400).contains(&left), "90 days by default: {left}");

    let out = ca.emergency_revoke(&cards[1].0, &addrs[1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let crl = |path: &str, name: &str| {
        let (status, _, body) = http_get(&addrs[2], path);
        assert_eq!(status, 200, "{path}");
        let file = dir.join(name);
        write_pem_label(&file, "X509 CRL", &body);
        file
    };
    let (arl, sign_crl, auth_crl) =
        (crl("/crl/arl.crl", "arl.pem"), crl("/crl/sign.crl", "sign.pem"), crl("/crl/auth.crl", "auth.pem"));
    let root = ca.cert_path("root-ca.pem");
    let p = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let verify = |issuing: &str, crl: &std::path::Path, cert: &std::path::Path| {
        let issuing = ca.cert_path(issuing);
        openssl(&[
            "verify",
            "-crl_check_all",
            "-CAfile",
            &p(&root),
            "-untrusted",
            &p(&issuing),
            "-CRLfile",
            &p(&arl),
            "-CRLfile",
            &p(crl),
            &p(cert),
        ])
    };
    for (issuing, crl, cert) in [("sign-ca.pem", &sign_crl, &cards[0].1), ("auth-ca.pem", &auth_crl, &cards[0].2)] {
        let (ok, text) = verify(issuing, crl, cert);
        assert!(ok && text.contains(": OK"), "good card, {issuing}: {text}");
    }
    for (issuing, crl, cert) in [("sign-ca.pem", &sign_crl, &cards[1].1), ("auth-ca.pem", &auth_crl, &cards[1].2)] {
        let (ok, text) = verify(issuing, crl, cert);
        assert!(!ok && text.contains("certificate revoked"), "lost card, {issuing}: {text}");
    }

    // The CPS qualifier every card carries names the repository on the
    // distribution point; a relying party that takes the root and the signing
    // CA from there verifies the good card with them.
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", &p(&cards[0].1)]);
    assert!(ok, "{text}");
    let cps = text.lines().find_map(|l| l.trim().strip_prefix("CPS: ")).unwrap_or_else(|| panic!("no CPS in:\n{text}"));
    let after_scheme = cps.split_once("://").map_or(cps, |(_, rest)| rest);
    let path = &after_scheme[after_scheme.find('/').unwrap_or_else(|| panic!("no path in {cps}"))..];
    let (status, _, index) = http_get(&addrs[2], path);
    assert_eq!(status, 200, "{cps}");
    let index = String::from_utf8_lossy(&index);
    assert!(index.contains("root-ca.crt") && index.contains("signing-ca.pem"), "{index}");
    let fetched = |name: &str| {
        let (status, _, body) = http_get(&addrs[2], &format!("{path}{name}"));
        assert_eq!(status, 200, "{path}{name}");
        let file = dir.join(format!("repository-{name}"));
        std::fs::write(&file, body).unwrap();
        file
    };
    let (root, signing) = (fetched("root-ca.pem"), fetched("signing-ca.pem"));
    let (ok, text) = openssl(&["verify", "-CAfile", &p(&root), "-untrusted", &p(&signing), &p(&cards[0].1)]);
    assert!(ok && text.contains(": OK"), "with the repository's certificates: {text}");
}
