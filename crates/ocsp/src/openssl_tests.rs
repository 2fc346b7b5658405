//! Interoperability with OpenSSL 3 and curl: requests made by `openssl ocsp`
//! decode; our responses verify with `openssl ocsp` (CAfile, VAfile) over POST
//! and GET; RFC 5019 headers; bad input gets malformedRequest.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::asn1::{CRLReason, OCSPResponseStatus};
use crate::http::{self, HttpState};
use crate::issuers::HashAlg;
use crate::request;
use crate::responder::tests::decode;
use crate::responder::{Responder, Settings};
use crate::status::CertState;
use crate::testkit::{test_ca, MapSource, TestCa};

/// RSA-2048, as the default configuration.
fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| test_ca(config::KeyAlgorithm::Rsa2048))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

use testkit::openssl::openssl;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Serves `responder` over HTTP on an ephemeral loopback port.
async fn serve_http(responder: Arc<Responder>, max_request_bytes: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state =
        Arc::new(HttpState { responder, ocsp_path: "/ocsp".into(), max_request_bytes, trusted_proxies: Vec::new() });
    tokio::spawn(async move { axum::serve(listener, http::router(state)).await });
    addr
}

struct Fixture {
    addr: SocketAddr,
    good: std::path::PathBuf,
    revoked: std::path::PathBuf,
    never: std::path::PathBuf,
    dir: tempfile::TempDir,
}

const GOOD: [u8; 3] = [0x10, 0x00, 0x01];
const REVOKED: [u8; 3] = [0x10, 0x00, 0x02];
const NEVER: [u8; 3] = [0x10, 0x00, 0x03];

async fn fixture(settings: Settings) -> Fixture {
    let c = ca();
    let source = Arc::new(MapSource::default());
    source.set(&GOOD, &c.label(0), CertState::Good);
    source.set(
        &REVOKED,
        &c.label(0),
        CertState::Revoked { at_unix: 1_750_000_000, reason: Some(CRLReason::KeyCompromise), invalidity_unix: None },
    );
    let (_, good) = c.issue_leaf(0, &GOOD);
    let (_, revoked) = c.issue_leaf(0, &REVOKED);
    // Signed by the CA but unknown to the registry: a certificate this CA never issued.
    let (_, never) = c.issue_leaf(0, &NEVER);
    let max = settings.max_items;
    let _ = max;
    let responder = Arc::new(c.responder(settings, source));
    let addr = serve_http(responder, c.cfg.ocsp.max_request_bytes).await;
    Fixture { addr, good, revoked, never, dir: tempfile::tempdir().unwrap() }
}

fn ocsp_client(f: &Fixture, cert: &Path, extra: &[&str]) -> String {
    let url = format!("http://{}/ocsp", f.addr);
    let ca_pem = ca().ca_path(0);
    let mut args = vec!["ocsp", "-issuer", p(&ca_pem)];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-cert", p(cert), "-url", &url, "-CAfile", p(&ca_pem), "-timeout", "10"]);
    let (ok, text) = openssl(&args);
    assert!(ok, "openssl ocsp failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_verifies_good_revoked_and_unknown_over_post() {
    let f = fixture(ca().settings()).await;
    for hash in [&[][..], &["-sha256"][..]] {
        let mut extra = hash.to_vec();
        extra.push("-no_nonce");
        let text = ocsp_client(&f, &f.good, &extra);
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(&format!("{}: good", p(&f.good))), "{text}");
        let text = ocsp_client(&f, &f.revoked, &extra);
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(&format!("{}: revoked", p(&f.revoked))), "{text}");
        assert!(text.contains("Reason: keyCompromise"), "{text}");
        let text = ocsp_client(&f, &f.never, &extra);
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(&format!("{}: unknown", p(&f.never))), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_from_openssl_are_echoed_in_echo_mode() {
    let f = fixture(Settings { nonce: config::NonceMode::Echo, ..ca().settings() }).await;
    let text = ocsp_client(&f, &f.good, &[]);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(!text.contains("WARNING"), "the nonce must come back: {text}");
    assert!(text.contains(": good"), "{text}");
    // Several certificates in one request, nonce echoed.
    let url = format!("http://{}/ocsp", f.addr);
    let ca_pem = ca().ca_path(0);
    let (ok, text) = openssl(&[
        "ocsp",
        "-issuer",
        p(&ca_pem),
        "-cert",
        p(&f.good),
        "-cert",
        p(&f.revoked),
        "-cert",
        p(&f.never),
        "-url",
        &url,
        "-CAfile",
        p(&ca_pem),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK") && !text.contains("WARNING"), "{text}");
    assert!(text.contains(": good") && text.contains(": revoked") && text.contains(": unknown"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_issuers_get_unauthorized_and_garbage_gets_malformed() {
    let f = fixture(ca().settings()).await;
    let other_key = f.dir.path().join("other.key");
    let other = f.dir.path().join("other.pem");
    let (ok, text) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=other",
        "-days",
        "2",
        "-keyout",
        p(&other_key),
        "-out",
        p(&other),
    ]);
    assert!(ok, "{text}");
    let url = format!("http://{}/ocsp", f.addr);
    let (_, text) =
        openssl(&["ocsp", "-issuer", p(&other), "-serial", "0x01", "-url", &url, "-CAfile", p(&other), "-no_nonce"]);
    assert!(text.contains("unauthorized (6)"), "{text}");

    for body in [&b"not DER at all"[..], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[]] {
        let file = f.dir.path().join("garbage");
        std::fs::write(&file, body).unwrap();
        let out = curl(&[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", p(&file)),
            "-H",
            "Content-Type: application/ocsp-request",
            &url,
        ]);
        assert_eq!(out.status, 200);
        assert_eq!(out.body, vec![0x30, 0x03, 0x0a, 0x01, 0x01], "malformedRequest");
    }
    // Over the body limit (8 KiB), declared or chunked. (A far larger body is
    // answered before it is read, and the connection closed: curl then reports
    // a send failure rather than the answer.)
    let big = f.dir.path().join("big");
    std::fs::write(&big, vec![0x30; 9_000]).unwrap();
    let out = curl(&["-X", "POST", "--data-binary", &format!("@{}", p(&big)), &url]);
    assert_eq!(out.body, vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
    let out =
        curl(&["-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", &format!("@{}", p(&big)), &url]);
    assert_eq!(out.body, vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
    std::fs::write(&big, vec![0x30; 10_000_000]).unwrap();
    let _ = run(Command::new("curl").args(["-s", "--max-time", "10", "--data-binary", &format!("@{}", p(&big)), &url]));
    // Bad GET encodings.
    for path in ["/ocsp/%%%", "/ocsp/!!!!", "/", "/ocsp/"] {
        let out = curl(&[&format!("http://{}{path}", f.addr)]);
        assert_eq!(out.body, vec![0x30, 0x03, 0x0a, 0x01, 0x01], "{path}");
    }
    let out = curl(&["-X", "POST", "--data-binary", "x", &format!("http://{}/elsewhere", f.addr)]);
    assert_eq!(out.status, 404);
    let out = curl(&["-X", "PUT", &url]);
    assert_eq!(out.status, 405);
    // The server lives on.
    assert!(ocsp_client(&f, &f.good, &["-no_nonce"]).contains(": good"));
}

struct CurlOut {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn curl(args: &[&str]) -> CurlOut {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let headers = dir.path().join("headers");
    let (ok, text) =
        run(Command::new("curl").args(["-sS", "-o", p(&body), "-D", p(&headers), "--max-time", "10"]).args(args));
    assert!(ok, "curl {args:?}: {text}");
    let headers = std::fs::read_to_string(&headers).unwrap();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    CurlOut { status, headers, body: std::fs::read(&body).unwrap_or_default() }
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_form_has_rfc5019_headers_and_etag_gets_304() {
    use base64::Engine;
    let f = fixture(ca().settings()).await;
    let ca_pem = ca().ca_path(0);
    let req = f.dir.path().join("req.der");
    let (ok, text) = openssl(&["ocsp", "-issuer", p(&ca_pem), "-cert", p(&f.revoked), "-no_nonce", "-reqout", p(&req)]);
    assert!(ok, "{text}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    for prefix in ["", "/ocsp"] {
        let url = format!("http://{}{prefix}/{}", f.addr, url_encode(&b64));
        let out = curl(&[&url]);
        assert_eq!(out.status, 200, "{}", out.headers);
        assert_eq!(header(&out.headers, "content-type"), Some("application/ocsp-response"));
        let cc = header(&out.headers, "cache-control").unwrap();
        let max_age: i64 = cc.strip_prefix("max-age=").unwrap().split(',').next().unwrap().parse().unwrap();
        assert!((24 * 3600 - 5..=24 * 3600).contains(&max_age), "{cc}");
        assert!(cc.ends_with(", public, no-transform, must-revalidate"), "{cc}");
        assert!(header(&out.headers, "last-modified").unwrap().ends_with(" GMT"));
        assert!(header(&out.headers, "expires").unwrap().ends_with(" GMT"));
        let etag = header(&out.headers, "etag").unwrap().to_owned();
        assert_eq!(etag.len(), 26);
        let resp = f.dir.path().join("resp.der");
        std::fs::write(&resp, &out.body).unwrap();
        let (_, text) = openssl(&[
            "ocsp",
            "-respin",
            p(&resp),
            "-issuer",
            p(&ca_pem),
            "-cert",
            p(&f.revoked),
            "-CAfile",
            p(&ca_pem),
            "-no_nonce",
        ]);
        assert!(text.contains("Response verify OK") && text.contains(": revoked"), "{text}");
        let again = curl(&["-H", &format!("If-None-Match: {etag}"), &url]);
        assert_eq!(again.status, 304, "{}", again.headers);
        assert!(again.body.is_empty());
        assert_eq!(header(&again.headers, "etag"), Some(etag.as_str()));
        let other = curl(&["-H", "If-None-Match: \"nope\"", &url]);
        assert_eq!(other.status, 200);
        // Unescaped base64 ('/' and '+' left as they are) works too.
        let raw = curl(&[&format!("http://{}{prefix}/{b64}", f.addr)]);
        assert_eq!(raw.body, out.body);
    }
    // POST answers are not for HTTP caches.
    let url = format!("http://{}/ocsp", f.addr);
    let out = curl(&["--data-binary", &format!("@{}", p(&req)), "-H", "Content-Type: application/ocsp-request", &url]);
    assert_eq!(header(&out.headers, "cache-control"), Some("no-cache"));
    assert!(header(&out.headers, "etag").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_parses_and_verifies_a_saved_response_with_cafile_and_vafile() {
    let f = fixture(ca().settings()).await;
    let _ = f.addr;
    let c = ca();
    let ca_pem = c.ca_path(0);
    let source = Arc::new(MapSource::default());
    source.set(
        &REVOKED,
        &c.label(0),
        CertState::Revoked { at_unix: 1_750_000_000, reason: Some(CRLReason::KeyCompromise), invalidity_unix: None },
    );
    source.set(&GOOD, &c.label(0), CertState::Good);
    let r = c.responder(c.settings(), source);
    let hashes = r.issuers()[0].hashes.clone();
    for (serial, status, alg) in
        [(REVOKED, "revoked", HashAlg::Sha1), (GOOD, "good", HashAlg::Sha256), (NEVER, "unknown", HashAlg::Sha1)]
    {
        let answer = r.respond(&request::tests::build(&hashes, alg, &[&serial], None)).await;
        let resp = f.dir.path().join(format!("{status}.der"));
        std::fs::write(&resp, &answer.der).unwrap();
        let (ok, text) = openssl(&["ocsp", "-respin", p(&resp), "-resp_text", "-noverify"]);
        assert!(ok, "{text}");
        assert!(text.contains("Response Type: Basic OCSP Response"), "{text}");
        assert!(text.contains("Responder Id: "), "{text}");
        assert!(text.contains(&format!("Cert Status: {status}")), "{text}");
        if status == "revoked" {
            assert!(text.contains("Revocation Reason: keyCompromise (0x1)"), "{text}");
        }
        let serial_arg = format!("0x{}", hex::encode(serial));
        let hash_arg = if alg == HashAlg::Sha256 { "-sha256" } else { "-sha1" };
        for trust in [["-CAfile", p(&ca_pem)], ["-VAfile", p(&c.responder_path(0))]] {
            let (_, text) = openssl(&[
                "ocsp",
                "-respin",
                p(&resp),
                trust[0],
                trust[1],
                "-issuer",
                p(&ca_pem),
                hash_arg,
                "-serial",
                &serial_arg,
                "-no_nonce",
            ]);
            assert!(text.contains("Response verify OK"), "{trust:?}: {text}");
            assert!(text.contains(&format!("{serial_arg}: {status}")), "{text}");
        }
    }
}

#[test]
fn requests_written_by_openssl_decode() {
    let c = ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = c.ca_path(1);
    let r = c.responder(c.settings(), Arc::new(MapSource::default()));
    let hashes: Vec<_> = r.issuers().iter().map(|s| s.hashes.clone()).collect();
    for (flags, alg, nonce) in [
        (&[][..], HashAlg::Sha1, true),
        (&["-no_nonce"][..], HashAlg::Sha1, false),
        (&["-sha256"][..], HashAlg::Sha256, true),
        (&["-sha256", "-no_nonce"][..], HashAlg::Sha256, false),
    ] {
        let req = dir.path().join("req.der");
        let mut args = vec!["ocsp", "-issuer", p(&ca_pem)];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-serial", "0x0a0b0c", "-serial", "0x7f", "-serial", "0x00ff01", "-reqout", p(&req)]);
        let (ok, text) = openssl(&args);
        assert!(ok, "{text}");
        let der = std::fs::read(&req).unwrap();
        let parsed = request::parse(&der, 8, &hashes).unwrap();
        assert_eq!(parsed.items.len(), 3, "{flags:?}");
        assert!(parsed.items.iter().all(|i| i.issuer == 1 && i.alg == alg), "{flags:?}");
        assert_eq!(parsed.items[0].serial, &[0x0a, 0x0b, 0x0c]);
        assert_eq!(parsed.items[1].serial, &[0x7f]);
        assert_eq!(parsed.items[2].serial, &[0x00, 0xff, 0x01], "DER content octets, as in the certificate");
        assert_eq!(parsed.nonce.is_some(), nonce, "{flags:?}");
        // Every truncation is malformed, never a panic.
        for n in 0..der.len() {
            assert!(request::parse(&der[..n], 8, &hashes).is_err());
        }
        // Too many.
        assert!(matches!(request::parse(&der, 2, &hashes), Err(crate::OcspError::Malformed(_))));
    }
    let decoded = decode(&crate::encode::error_response(OCSPResponseStatus::TryLater));
    assert_eq!(decoded.status, OCSPResponseStatus::TryLater);
}

/// RFC 9654 nonce lengths, as openssl sees them: 0 and 129 octets are
/// malformedRequest; 1 to 128 are echoed in echo mode (openssl checks the
/// echo against its request); in ignore mode they get the cached answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_lengths_follow_rfc_9654() {
    for mode in [config::NonceMode::Echo, config::NonceMode::Ignore] {
        let f = fixture(Settings { nonce: mode, nonce_per_second: 1000, ..ca().settings() }).await;
        let hashes = &issuer_hashes();
        let url = format!("http://{}/ocsp", f.addr);
        for len in [0usize, 1, 16, 32, 33, 128, 129] {
            let nonce = vec![0xa5; len];
            let der = request::encode_request(hashes, HashAlg::Sha1, &[&GOOD], Some(&nonce)).unwrap();
            let req = f.dir.path().join(format!("req-{len}.der"));
            std::fs::write(&req, &der).unwrap();
            let (_, text) = openssl(&["ocsp", "-reqin", p(&req), "-url", &url, "-resp_text", "-noverify"]);
            let what = format!("{mode:?}, nonce of {len} octets:\n{text}");
            match (len, mode) {
                (0 | 129, _) => assert!(text.contains("malformedrequest"), "{what}"),
                (_, config::NonceMode::Echo) => {
                    assert!(text.contains("OCSP Response Status: successful"), "{what}");
                    assert!(text.contains("OCSP Nonce"), "{what}");
                    assert!(!text.contains("WARNING"), "openssl matched the echo: {what}");
                }
                (_, config::NonceMode::Ignore) => {
                    assert!(text.contains("OCSP Response Status: successful"), "{what}");
                    assert!(!text.contains("OCSP Nonce"), "{what}");
                }
            }
        }
    }
}

fn issuer_hashes() -> crate::issuers::IssuerHashes {
    let r = ca().responder(ca().settings(), Arc::new(MapSource::default()));
    r.issuers()[0].hashes.clone()
}
