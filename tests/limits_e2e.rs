//! End to end: the `[limits]` of every listener. With a small configured
//! `max_message_bytes`, an oversized Issuance or Registry call is refused with
//! OUT_OF_RANGE (what tonic answers for a message over the limit) while a
//! normal call on the same server still succeeds (the process lives on); the
//! CRL HTTP server refuses an oversized body.

mod common;

use common::{application_with_csrs as application, openssl_csr, Ca};
use proto::registry::v1::get_card_request::Key;
use proto::registry::v1::GetCardRequest;

const LIMITS: &str = "[limits]\nmax_message_bytes = 65536\nhttp_body_bytes = 4096\n";

fn assert_too_large(status: &tonic::Status, what: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::OutOfRange,
        "{what}: tonic answers an over-limit request with OUT_OF_RANGE: {status:?}"
    );
    assert!(
        status.message().contains("too large") && status.message().contains("65536"),
        "{what}: the message should say the limit was exceeded: {:?}",
        status.message()
    );
}

#[test]
fn oversized_grpc_messages_are_refused_and_the_services_live_on() {
    let mut ca = Ca::new(LIMITS);
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "crl-http"]);
    let work = ca.dir.path().to_owned();
    let sign_csr = openssl_csr(&work, "sign", "rsa:2048");
    let auth_csr = openssl_csr(&work, "auth", "rsa:2048");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut issuance = ca.issuance(&addrs[1]).await;
        let mut registry = ca.registry(&addrs[0]).await;

        // 100 KiB of CSR: over the 64 KiB limit, refused before any work is done.
        let huge = vec![0x30u8; 100 * 1024];
        let err = issuance
            .submit_application(application("app-big", "111111", huge, auth_csr.clone()))
            .await
            .expect_err("an oversized application must be refused");
        assert_too_large(&err, "issuance");

        // The same server (and connection) still issues a normal application.
        let card = issuance
            .submit_application(application("app-1", "123456", sign_csr.clone(), auth_csr.clone()))
            .await
            .expect("a normal application after the oversized one")
            .into_inner();
        assert!(!card.card_id.is_empty());
        assert!(!card.signing_certificate.is_empty());

        // Registry: an oversized key is refused, a normal lookup answers.
        let err = registry
            .get_card(GetCardRequest { key: Some(Key::CardId("x".repeat(100 * 1024))) })
            .await
            .expect_err("an oversized registry call must be refused");
        assert_too_large(&err, "registry");
        let got = registry
            .get_card(GetCardRequest { key: Some(Key::CardId(card.card_id.clone())) })
            .await
            .expect("a normal registry call after the oversized one")
            .into_inner();
        assert_eq!(got.card.map(|c| c.card_id), Some(card.card_id.clone()));

        // A fresh connection (a new channel, so a new TLS handshake) works too: the process lives on.
        let mut again = ca.issuance(&addrs[1]).await;
        let replay = again
            .submit_application(application("app-1", "123456", sign_csr, auth_csr))
            .await
            .expect("replay on a new connection")
            .into_inner();
        assert!(replay.replayed);
        assert_eq!(replay.card_id, card.card_id);
    });

    // CRL HTTP: a body over http_body_bytes is refused with 413; GETs still work.
    let (status, body) = http_raw(&addrs[2], "POST /crl/sign.crl HTTP/1.1", "Content-Length: 100000\r\n");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let (status, _) = http_raw(&addrs[2], "GET /crl/sign.crl HTTP/1.1", "");
    assert!(status == 200 || status == 404, "GET after the refused body: {status}");
}

/// One request with `Connection: close`, headers only; the status and body.
fn http_raw(addr: &str, request_line: &str, extra: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    write!(s, "{request_line}\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n").expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status line");
    (status, raw[split + 4..].to_vec())
}

/// OCSP through its HTTP listener: misses from one client address beyond its
/// bucket (burst 3, refilling at 1 per second) are answered tryLater, while
/// the pre-signed answer for an issued certificate keeps being served; the
/// metrics count the tryLater answers by reason.
#[test]
fn a_flood_of_ocsp_misses_gets_try_later_while_cached_answers_flow() {
    let mut ca = Ca::new("");
    // The helper writes the [ocsp] table itself: add the buckets to it.
    let text = std::fs::read_to_string(&ca.config).unwrap();
    let buckets = "[ocsp]\nlive_signs_per_second = 1\nlive_signs_burst = 100\n\
                   per_client_live_signs_per_second = 1\nper_client_live_signs_burst = 3\n";
    assert!(text.contains("[ocsp]\n"), "{text}");
    std::fs::write(&ca.config, text.replacen("[ocsp]\n", buckets, 1)).unwrap();
    let addrs = ca.spawn(&["run"], &["issuance", "ocsp", "ocsp-metrics"]);
    let (iss, ocsp, metrics) = (&addrs[0], &addrs[1], &addrs[2]);
    let work = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = rt
        .block_on(async {
            let (s, a) = (openssl_csr(&work, "sign", "rsa:2048"), openssl_csr(&work, "auth", "rsa:2048"));
            ca.issuance(iss).await.submit_application(application("app-1", "123456", s, a)).await
        })
        .expect("issue card")
        .into_inner();
    let cert = work.join("sign.pem");
    common::write_pem(&cert, &card.signing_certificate);
    let issuer = ca.cert_path("sign-ca.pem");
    let url = format!("http://{ocsp}/ocsp");
    let ask = |what: &[&str]| {
        let mut args = vec!["ocsp", "-issuer", issuer.to_str().unwrap(), "-url", &url, "-no_nonce", "-noverify"];
        args.extend(what);
        common::openssl(&args).1
    };
    // The first answer may need a signature (one token); from then on it is cached.
    let good = ask(&["-cert", cert.to_str().unwrap()]);
    assert!(good.contains(": good"), "{good}");

    let started = std::time::Instant::now();
    let mut later = 0;
    let mut unknown = 0;
    for i in 0..10 {
        let serial = format!("0x0badc0ffee{i:04x}");
        let out = ask(&["-serial", &serial]);
        if out.contains("trylater") {
            later += 1;
        } else {
            assert!(out.contains(": unknown"), "{out}");
            unknown += 1;
        }
        let cached = ask(&["-cert", cert.to_str().unwrap()]);
        assert!(cached.contains(": good"), "the cached answer stopped flowing: {cached}");
    }
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(unknown <= 3 + refill, "{unknown} misses signed beyond the bucket");
    assert!(later >= 10 - 3 - refill && later > 0, "{later} tryLater of 10");

    let (status, _, body) = common::http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    let counted = text
        .lines()
        .find_map(|l| l.strip_prefix("ocsp_trylater_total{reason=\"client_live_sign_rate\"} "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    assert_eq!(counted, Some(later), "{text}");
}
