//! Time bounds of the OCSP listener over real TCP: slow, silent and idle
//! clients are cut off within the read timeout while others are served; an
//! answer held up by the HSM (SoftHSM behind the `Controlled` signer) or the
//! registry becomes tryLater at the deadline; `[ocsp]` timings are honoured.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::asn1::CertStatus;
use crate::error::OcspError;
use crate::http::{self, HttpLimits};
use crate::issuers::HashAlg;
use crate::metrics::AnswerStatus;
use crate::request::tests::build;
use crate::responder::tests::{ca, controlled_responder, decode};
use crate::responder::{unix_now, Responder, Settings, Step};
use crate::source::{BoxFuture, CertificateSource};
use crate::status::CertState;
use crate::testkit::MapSource;

const TRY_LATER: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x03];

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(responder: Arc<Responder>, limits: HttpLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = crate::testkit::http_state(responder.clone());
        let (stop, rx) = watch::channel(false);
        let router = http::router_with_limits(state, limits);
        let metrics = Some(responder.metrics().clone());
        let max_connections = config::OcspConfig::default().max_connections;
        let task =
            tokio::spawn(crate::serve_http(listener, router, limits.read_timeout, max_connections, 0, metrics, rx));
        Server { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap();
    }
}

fn der_for(r: &Responder, serial: &[u8]) -> Vec<u8> {
    build(&r.issuers()[0].hashes, HashAlg::Sha1, &[serial], None)
}

fn post_head(len: usize) -> String {
    format!("POST /ocsp HTTP/1.1\r\nHost: ocsp\r\nContent-Type: application/ocsp-request\r\nContent-Length: {len}\r\n")
}

/// Reads until the server closes the connection (EOF or reset); fails the
/// test if it never does.
async fn read_until_closed(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        match read.expect("the server never closed the connection") {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole response (by its Content-Length) off a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((status, head_len, body_len)) = head(&raw) {
            if raw.len() >= head_len + body_len {
                return (status, raw[head_len..head_len + body_len].to_vec());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed mid-response: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
}

/// (status, head length with the blank line, Content-Length) once the head is in.
fn head(raw: &[u8]) -> Option<(u16, usize, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&raw[..end]);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let len = text
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
    Some((status, end, len))
}

/// One POST on a fresh connection: (HTTP status, body, time taken).
async fn post(addr: SocketAddr, der: &[u8]) -> (u16, Vec<u8>, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{}Connection: close\r\n\r\n", post_head(der.len())).into_bytes();
    req.extend_from_slice(der);
    s.write_all(&req).await.unwrap();
    let raw = read_until_closed(&mut s).await;
    let (status, head_len, _) = head(&raw).unwrap_or_else(|| panic!("no response: {raw:?}"));
    (status, raw[head_len..].to_vec(), started.elapsed())
}

/// Connects, sends `sent`, then waits: how long until the server hangs up, and what it said.
async fn stall_after(addr: SocketAddr, sent: Vec<u8>) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&sent).await.unwrap();
    let said = read_until_closed(&mut s).await;
    (started.elapsed(), said)
}

/// Slowloris: a header dribbled a byte every 50 ms, never finished.
async fn dribble(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let line = b"GET /ocsp/MEMwQTA HTTP/1.1\r\nHost: ocsp\r\nX-Padding: ";
        for b in line.iter().chain(std::iter::repeat(&b'a')) {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let said = read_until_closed(&mut rd).await;
    writer.abort();
    assert!(said.is_empty(), "no answer to half a request: {:?}", String::from_utf8_lossy(&said));
    started.elapsed()
}

/// A complete request kept alive, then nothing: time from its answer to the hang-up.
async fn idle_after_one_request(addr: SocketAddr, der: Vec<u8>) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{}\r\n", post_head(der.len())).into_bytes();
    req.extend_from_slice(&der);
    s.write_all(&req).await.unwrap();
    let (status, body) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(matches!(decode(&body).singles[0].1, CertStatus::Good(_)));
    let answered = Instant::now();
    assert!(read_until_closed(&mut s).await.is_empty());
    answered.elapsed()
}

fn within(took: Duration, timeout: Duration, what: &str) {
    // Never before the timeout (the client's clock starts first); not much after.
    assert!(took >= timeout - Duration::from_millis(20), "{what}: cut off after {took:?}, before {timeout:?}");
    assert!(took < timeout + Duration::from_millis(1500), "{what}: held for {took:?} (timeout {timeout:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_clients_are_cut_off_while_others_are_served() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x0a, 0x01], &ca().label(0), CertState::Good);
    let r = Arc::new(ca().responder(ca().settings(), source));
    let read_timeout = Duration::from_millis(400);
    let server = Server::start(r.clone(), HttpLimits { read_timeout, request_timeout: Duration::from_secs(5) }).await;
    let addr = server.addr;
    let der = der_for(&r, &[0x0a, 0x01]);
    assert_eq!(r.respond(&der).await.status, AnswerStatus::Good, "cached before the clock matters");

    let half_head = tokio::spawn(stall_after(addr, b"POST /ocsp HTTP/1.1\r\nHost: ocsp\r\nContent-Le".to_vec()));
    let nothing = tokio::spawn(stall_after(addr, Vec::new()));
    let dribbling = tokio::spawn(dribble(addr));
    let idle = tokio::spawn(idle_after_one_request(addr, der.clone()));
    let mut half_body = post_head(100).into_bytes();
    half_body.extend_from_slice(b"\r\n0123456789");
    let slow_body = tokio::spawn(stall_after(addr, half_body));

    // Meanwhile everyone else is answered at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..10 {
        let (status, body, took) = post(addr, &der).await;
        assert_eq!(status, 200);
        assert!(matches!(decode(&body).singles[0].1, CertStatus::Good(_)));
        assert!(took < read_timeout, "a well-behaved client waited {took:?} behind the stalled ones");
    }

    let (took, said) = half_head.await.unwrap();
    assert!(said.is_empty(), "closed without an answer: {:?}", String::from_utf8_lossy(&said));
    within(took, read_timeout, "half the headers");
    let (took, said) = nothing.await.unwrap();
    assert!(said.is_empty());
    within(took, read_timeout, "nothing sent");
    within(dribbling.await.unwrap(), read_timeout, "headers a byte at a time");
    within(idle.await.unwrap(), read_timeout, "idle keep-alive");
    let (took, said) = slow_body.await.unwrap();
    let text = String::from_utf8_lossy(&said);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    within(took, read_timeout, "half the body");

    assert_eq!(r.metrics().read_timeouts.load(Ordering::SeqCst), 5);
    // Still serving after all that.
    assert_eq!(post(addr, &der).await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_held_past_the_deadline_gets_try_later_and_is_cached_when_done() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x0b, 0x01], &ca().label(0), CertState::Good);
    source.set(&[0x0b, 0x02], &ca().label(0), CertState::Good);
    let (r, signer) = controlled_responder(ca().settings(), source);
    let deadline = Duration::from_millis(300);
    let server =
        Server::start(r.clone(), HttpLimits { read_timeout: Duration::from_secs(5), request_timeout: deadline }).await;
    let cached = der_for(&r, &[0x0b, 0x02]);
    assert_eq!(post(server.addr, &cached).await.0, 200);

    signer.set_hold(true);
    let der = der_for(&r, &[0x0b, 0x01]);
    let (status, body, took) = post(server.addr, &der).await;
    assert_eq!((status, body.as_slice()), (200, &TRY_LATER[..]), "tryLater, in a 200 (RFC 6960 A.1)");
    within(took, deadline, "held signature");
    assert_eq!(signer.waiting.load(Ordering::SeqCst), 1, "the HSM is still busy with it");
    assert_eq!(r.inflight(), 1, "and it keeps its signing slot until the HSM returns");
    assert_eq!(r.metrics().deadline_exceeded.load(Ordering::SeqCst), 1);
    assert_eq!(r.metrics().responses(AnswerStatus::TryLater), 1);
    // Cached answers need no HSM.
    let (status, body, took) = post(server.addr, &cached).await;
    assert_eq!(status, 200);
    assert!(matches!(decode(&body).singles[0].1, CertStatus::Good(_)));
    assert!(took < deadline, "a hit waited {took:?}");

    // The HSM comes back: the signature the client gave up on lands in the cache.
    signer.set_hold(false);
    let start = Instant::now();
    while r.inflight() > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the held signature never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Step::Done(a) = r.lookup(&der) else { panic!("the late signature was not cached") };
    assert_eq!(a.status, AnswerStatus::Good);
    let (status, body, _) = post(server.addr, &der).await;
    assert_eq!((status, body), (200, a.der.to_vec()));
    server.stop().await;
}

/// A registry that never answers.
struct Stalled;

impl CertificateSource for Stalled {
    fn certificate(&self, _serial_hex: String) -> BoxFuture<'_, Result<Option<(String, CertState)>, OcspError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_registry_that_never_answers_gives_try_later_at_the_deadline() {
    let r = Arc::new(ca().responder(ca().settings(), Arc::new(Stalled)));
    let deadline = Duration::from_millis(200);
    for serials in [&[&[0x0c, 0x01][..]][..], &[&[0x0c, 0x02][..], &[0x0c, 0x03]]] {
        let der = build(&r.issuers()[0].hashes, HashAlg::Sha256, serials, None);
        let started = Instant::now();
        let a = r.respond_within(&der, deadline).await;
        assert_eq!((a.status, &a.der[..]), (AnswerStatus::TryLater, &TRY_LATER[..]), "{serials:?}");
        within(started.elapsed(), deadline, "stalled registry");
        assert_eq!(r.inflight(), 0, "a lookup given up frees its slot");
    }
    assert_eq!(r.metrics().deadline_exceeded.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_negative_ttl_comes_from_the_config() {
    let source = Arc::new(MapSource::default());
    let mut cfg = ca().cfg.ocsp.clone();
    cfg.negative_ttl_seconds = 5;
    let r = Arc::new(ca().responder(Settings::from_config(&cfg), source.clone()));
    let serial = [0x0d, 0x01];
    let der = der_for(&r, &serial);
    let now = unix_now();
    let Step::Work(w) = r.lookup_at(&der, now) else { panic!("miss expected") };
    let a = r.work(w, now).await;
    assert_eq!(a.status, AnswerStatus::Unknown);
    assert_eq!(decode(&a.der).next_update_minus_this, Some(5), "nextUpdate of unknown is the configured TTL");
    assert!(matches!(r.lookup_at(&der, now + 4), Step::Done(_)), "still believed");
    source.set(&serial, &ca().label(0), CertState::Good);
    let Step::Work(w) = r.lookup_at(&der, now + 5) else { panic!("unknown is believed for 5 s, not 60") };
    assert_eq!(r.work(w, now + 5).await.status, AnswerStatus::Good);
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_loop_re_signs_due_responses_and_drops_expired_negatives_at_its_interval() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x0e, 0x01], &ca().label(0), CertState::Good);
    // Responses live 2 s and are due 1 s in; unknown is believed for 1 s.
    let settings = Settings { next_update_secs: 2, refresh_before_secs: 1, negative_ttl_secs: 1, ..ca().settings() };
    let r = Arc::new(ca().responder(settings, source));
    let good = der_for(&r, &[0x0e, 0x01]);
    let first = r.respond(&good).await.caching.unwrap();
    assert_eq!(r.respond(&der_for(&r, &[0x0e, 0x02])).await.status, AnswerStatus::Unknown);
    assert_eq!(r.cache().len().0, 2);
    let refresher = tokio::spawn(crate::serve::refresh_loop(r.clone(), Duration::from_millis(50)));
    let start = Instant::now();
    loop {
        let resigned = matches!(r.lookup(&good), Step::Done(a) if a.caching.is_some_and(|c| c.etag != first.etag));
        if resigned && r.cache().len().0 == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(4), "no refresh within 4 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
}

#[tokio::test]
async fn serve_refuses_bad_ocsp_timings_before_listening() {
    let mut cfg = ca().cfg.clone();
    cfg.ocsp.request_timeout_ms = 0;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = crate::serve(&cfg, ca().hsm.clone(), tls::GrpcKit::default(), http, metrics, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, OcspError::Config(_)), "{err}");
    assert!(err.to_string().contains("ocsp.request_timeout_ms"), "{err}");
    let limits = HttpLimits::from_config(&config::OcspConfig { read_timeout_ms: 250, ..Default::default() });
    assert_eq!((limits.read_timeout, limits.request_timeout), (Duration::from_millis(250), Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_signature_past_the_deadline_falls_back_to_the_cached_response() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x0f, 0x01], &ca().label(0), CertState::Good);
    let settings = Settings { nonce: config::NonceMode::Echo, nonce_per_second: 100, ..ca().settings() };
    let (r, signer) = controlled_responder(settings, source);
    let plain = der_for(&r, &[0x0f, 0x01]);
    let cached = r.respond(&plain).await;
    signer.set_hold(true);
    let with_nonce = build(&r.issuers()[0].hashes, HashAlg::Sha1, &[&[0x0f, 0x01]], Some(&[7; 16]));
    let a = r.respond_within(&with_nonce, Duration::from_millis(200)).await;
    assert_eq!(a.der, cached.der, "the pre-signed answer, without the nonce, rather than tryLater");
    assert_eq!(r.metrics().deadline_exceeded.load(Ordering::SeqCst), 1);
    signer.set_hold(false);
}
