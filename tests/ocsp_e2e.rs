//! End to end: the OCSP responder in real processes (the all-in-one launcher
//! plus a second replica), judged by `openssl ocsp`: good for a fresh card,
//! revoked with the reason after an emergency revocation on both replicas,
//! unknown for a serial never issued, GET and POST, garbage survives.

mod common;

use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

use common::{ocsp_query, openssl, write_pem, Ca};

/// `openssl ocsp` (POST, with a nonce) against a responder; returns (verified, status line for the cert, whole output).
fn ask(ca: &Ca, responder: &str, cert: &Path, issuer: &str) -> (bool, String, String) {
    let out = ocsp_query(ca, responder, issuer, cert, &[]);
    let line = out.lines().find(|l| l.starts_with(cert.to_str().unwrap())).unwrap_or("").to_owned();
    (out.contains("Response verify OK"), line, out)
}

#[test]
fn openssl_sees_good_then_revoked_on_two_replicas_and_unknown_for_a_stranger() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "revocation", "ocsp"]);
    let (registry, issuance, revocation, ocsp_a) = (&addrs[0], &addrs[1], &addrs[2], addrs[3].clone());
    let replica =
        ca.spawn(&["ocsp", "--registry-url", &ca.url(registry), "--issuance-url", &ca.url(issuance)], &["ocsp"]);
    let ocsp_b = replica[0].clone();
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = common::submit(&ca, &rt, issuance, "o-1", "700001", &dir).expect("issue");
    let sign = dir.join("o-sign.pem");
    let auth = dir.join("o-auth.pem");
    write_pem(&sign, &card.signing_certificate);
    write_pem(&auth, &card.authentication_certificate);

    // Good from the moment of issuance, on both replicas, POST and GET.
    for responder in [&ocsp_a, &ocsp_b] {
        for (cert, issuer) in [(&sign, "sign-ca.pem"), (&auth, "auth-ca.pem")] {
            let (ok, line, out) = ask(&ca, responder, cert, issuer);
            assert!(ok && line.ends_with(": good"), "{responder} POST: {out}");
        }
    }

    // A serial this CA never issued: a certificate from a throwaway CA with the same issuer name and key is not
    // at hand, so ask by serial number under the real issuer.
    let url = format!("http://{ocsp_a}/ocsp");
    let (_, out) = openssl(&[
        "ocsp",
        "-issuer",
        ca.cert_path("sign-ca.pem").to_str().unwrap(),
        "-serial",
        "0x0badc0ffee0badc0ffee",
        "-url",
        &url,
        "-CAfile",
        ca.cert_path("root-ca.pem").to_str().unwrap(),
    ]);
    assert!(out.contains("Response verify OK") && out.contains("0x0badc0ffee0badc0ffee: unknown"), "{out}");

    // Emergency revocation; both replicas flip to revoked (keyCompromise) within a second.
    let out = ca.cli(&[
        "emergency-revoke",
        "--card",
        &card.card_id,
        "--confirmed-by",
        "op-a",
        "--method",
        "phone",
        "--url",
        &ca.url(revocation),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let returned = Instant::now();
    for responder in [&ocsp_a, &ocsp_b] {
        let deadline = returned + StdDuration::from_secs(1);
        loop {
            let (ok, line, out) = ask(&ca, responder, &sign, "sign-ca.pem");
            if ok && line.ends_with(": revoked") {
                assert!(out.contains("Reason: keyCompromise"), "{out}");
                break;
            }
            assert!(Instant::now() < deadline, "{responder} still says {line:?} a second after the revocation:\n{out}");
            std::thread::sleep(StdDuration::from_millis(50));
        }
    }

    // The GET form (RFC 5019), through curl-free plain HTTP: base64 of the DER request in the path.
    let req = dir.join("req.der");
    testkit::openssl::ocsp_request_der(&ca.cert_path("auth-ca.pem"), &auth, &req);
    let b64 = std::process::Command::new("openssl")
        .args(["base64", "-A", "-in", req.to_str().unwrap()])
        .output()
        .unwrap()
        .stdout;
    let path: String = String::from_utf8(b64).unwrap().replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let (status, headers, body) = common::http_get(&ocsp_b, &format!("/ocsp/{path}"));
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/ocsp-response"), "{headers:?}");
    assert!(
        headers.iter().any(|(k, v)| k == "cache-control" && v.contains("max-age=") && v.contains("public")),
        "{headers:?}"
    );
    assert!(
        headers.iter().any(|(k, _)| k == "etag") && headers.iter().any(|(k, _)| k == "last-modified"),
        "{headers:?}"
    );
    let resp = dir.join("get.der");
    std::fs::write(&resp, body).unwrap();
    let (ok, out) = openssl(&[
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-issuer",
        ca.cert_path("auth-ca.pem").to_str().unwrap(),
        "-cert",
        auth.to_str().unwrap(),
        "-CAfile",
        ca.cert_path("root-ca.pem").to_str().unwrap(),
        "-no_nonce",
    ]);
    assert!(ok && out.contains("Response verify OK") && out.contains(": revoked"), "{out}");

    // Garbage gets malformedRequest (status 1) and the process lives on.
    for garbage in [&b"not an OCSP request"[..], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..], &[][..]] {
        let (status, body) = post(&ocsp_a, garbage);
        assert_eq!(status, 200);
        assert_eq!(body, vec![0x30, 0x03, 0x0a, 0x01, 0x01], "malformedRequest");
    }
    let (ok, line, out) = ask(&ca, &ocsp_a, &sign, "sign-ca.pem");
    assert!(ok && line.ends_with(": revoked"), "after garbage: {out}");
}

fn post(addr: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST /ocsp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}
