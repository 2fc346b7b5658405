//! The whole responder (`serve`) against a real in-process registry: issuance
//! and revocation arrive over the status feed; two replicas follow it on their
//! own; openssl verifies over HTTP; metrics are served; the running responder
//! renews a certificate that falls due and rolls over one that is revoked
//! (responder certificates come from a stand-in for the issuance service).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use store::{Serial, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use std::sync::Arc;

// The workspace's test kit crate, not this crate's `testkit` module.
use ::testkit::registry::revoke_cert;

use crate::testkit::{issue_through_store, test_ca, DirectAuthority, TestCa};

/// Issues a real certificate under CA 0 through the store (reserve, record, store).
fn issue(store: &Store, ca: &TestCa, n: usize) -> (Serial, std::path::PathBuf) {
    issue_through_store(store, ca, "app", n, "test")
}

struct Replica {
    http: SocketAddr,
    metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::OcspError>>,
}

async fn replica(ca: &TestCa, registry: SocketAddr) -> Replica {
    replica_with(ca, ca.cfg.clone(), registry).await
}

async fn replica_with(ca: &TestCa, cfg: config::Config, registry: SocketAddr) -> Replica {
    replica_of(ca, cfg, registry, Arc::new(DirectAuthority::new(ca))).await
}

async fn replica_of(
    ca: &TestCa,
    mut cfg: config::Config,
    registry: SocketAddr,
    authority: Arc<DirectAuthority>,
) -> Replica {
    cfg.ocsp.registry_url = format!("http://{registry}");
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, metrics_addr) = (http.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let hsm = ca.hsm.clone();
    let task = tokio::spawn(async move {
        crate::serve_with(&cfg, hsm, tls::GrpcKit::default(), authority, http, metrics, async {
            let _ = rx.await;
        })
        .await
    });
    Replica { http: http_addr, metrics: metrics_addr, stop: Some(tx), task }
}

/// A test CA (ECDSA P-256), a store in a temporary folder with a first
/// certificate issued, and the registry over that store on a free port.
struct Setup {
    ca: TestCa,
    _db: tempfile::TempDir,
    store: Store,
    first: (Serial, std::path::PathBuf),
    registry_addr: SocketAddr,
    /// Stops the registry.
    reg_stop: oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("db")).unwrap();
    let first = issue(&store, &ca, 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_addr = listener.local_addr().unwrap();
    let (reg_stop, reg_rx) = oneshot::channel::<()>();
    tokio::spawn(registry::serve_store(store.clone(), "JMA".into(), tls::GrpcKit::default(), listener, async {
        let _ = reg_rx.await;
    }));
    Setup { ca, _db: db, store, first, registry_addr, reg_stop }
}

/// `openssl ocsp` for `cert` (issued by CA 0) against the responder at `at`, with
/// `extra` options: openssl's stdout and stderr.
fn ocsp_query(ca: &TestCa, cert: &std::path::Path, at: SocketAddr, extra: &[&str]) -> String {
    let ca_pem = ca.ca_path(0);
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer", ca_pem.to_str().unwrap(), "-cert", cert.to_str().unwrap()])
        .args(["-url", &format!("http://{at}/ocsp"), "-CAfile", ca_pem.to_str().unwrap(), "-no_nonce", "-timeout", "5"])
        .args(extra)
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ocsp(ca: &TestCa, cert: &std::path::Path, at: SocketAddr) -> String {
    ocsp_query(ca, cert, at, &[])
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_follow_the_feed_from_issuance_to_revocation() {
    let Setup { ca, _db, store, first: (first_serial, first), registry_addr, reg_stop } = setup().await;

    let mut replicas = vec![replica(&ca, registry_addr).await, replica(&ca, registry_addr).await];
    for r in &replicas {
        until("a good answer", Duration::from_secs(20), || {
            let text = ocsp(&ca, &first, r.http);
            text.contains("Response verify OK") && text.contains(": good")
        })
        .await;
    }
    // Issued after the replicas started: good at once, from the feed.
    let (_, second) = issue(&store, &ca, 2);
    for r in &replicas {
        until("the new certificate", Duration::from_secs(5), || ocsp(&ca, &second, r.http).contains(": good")).await;
    }
    // Never issued.
    let (_, never) = ca.issue_leaf(0, &[0x55, 0x66, 0x77]);
    assert!(ocsp(&ca, &never, replicas[0].http).contains(": unknown"));

    // Emergency revocation through the registry: both replicas flip.
    let mut client = RegistryClient::connect(format!("http://{registry_addr}")).await.unwrap();
    client.revoke_certificate(revoke_cert(&first_serial.to_hex(), reg::RevocationReason::KeyCompromise)).await.unwrap();
    for r in &replicas {
        let took = until("revoked", Duration::from_secs(5), || {
            let text = ocsp(&ca, &first, r.http);
            text.contains(": revoked") && text.contains("Reason: keyCompromise") && text.contains("Response verify OK")
        })
        .await;
        assert!(took < Duration::from_secs(2), "propagation took {took:?}");
    }

    // Garbage does not hurt.
    let garbage = Command::new("curl")
        .args(["-s", "--data-binary", "garbage", &format!("http://{}/", replicas[0].http)])
        .output()
        .unwrap();
    assert_eq!(garbage.stdout, vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
    assert!(ocsp(&ca, &second, replicas[0].http).contains(": good"));

    // Metrics.
    let m = Command::new("curl").args(["-s", &format!("http://{}/metrics", replicas[0].metrics)]).output().unwrap();
    let text = String::from_utf8_lossy(&m.stdout);
    let value = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(-1.0)
    };
    assert!(value("ocsp_responses_total{status=\"revoked\"}") >= 1.0, "{text}");
    assert!(value("ocsp_responses_total{status=\"malformed\"}") >= 1.0, "{text}");
    assert_eq!(value("ocsp_feed_sequence"), 3.0, "two GOOD and one REVOKED: {text}");
    assert_eq!(value("ocsp_feed_connected"), 1.0, "{text}");
    assert!(value("ocsp_signing_seconds_count") >= 1.0, "{text}");
    assert!(value("ocsp_cache_hits_total") >= 0.0, "{text}");

    // A cache refresh that names a feed sequence this replica has not applied
    // gets 503 (the cache then asks another replica), one it has is answered.
    let code = |seq: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("{}: {seq}", crate::http::MIN_SEQUENCE))
            .arg(format!("http://{}/MAoGCCqGSIb3DQEBAQ==", replicas[0].http))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let start = std::time::Instant::now();
    assert_eq!(code("4"), "503");
    assert!(start.elapsed() >= crate::http::CATCH_UP, "answered 503 before waiting for the feed");
    assert_ne!(code("3"), "503");

    for r in &mut replicas {
        let _ = r.stop.take().unwrap().send(());
    }
    for r in replicas {
        r.task.await.unwrap().unwrap();
    }
    let _ = reg_stop.send(());
}

/// (serial hex, SHA-256 hex) of the responder certificate `i` on disk now.
fn responder_on_disk(ca: &TestCa, i: usize) -> (String, Vec<u8>) {
    let text = std::fs::read_to_string(ca.responder_path(i)).unwrap();
    let der = pem::parse(text).unwrap().into_contents();
    let cert = <x509_cert::Certificate as der::Decode>::from_der(&der).unwrap();
    (hex::encode(cert.tbs_certificate().serial_number().as_bytes()), der)
}

/// The responder certificate in the response openssl got (`-resp_text`), as PEM lines.
fn served_responder(text: &str) -> String {
    text.lines()
        .skip_while(|l| !l.contains("BEGIN CERTIFICATE"))
        .take_while(|l| !l.contains("END CERTIFICATE"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ocsp_with_text(ca: &TestCa, cert: &std::path::Path, at: SocketAddr) -> String {
    ocsp_query(ca, cert, at, &["-resp_text"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_running_responder_renews_a_due_certificate_and_rolls_over_a_revoked_one() {
    let Setup { ca, _db, first: (_, first), registry_addr, reg_stop, .. } = setup().await;

    // Due before the start: renewed by the starting responder through the authority.
    let short = ca.make_responder_due(0);
    let authority = Arc::new(DirectAuthority::new(&ca));
    let mut cfg = ca.cfg.clone();
    cfg.ocsp.renewal_check_seconds = 1;
    let mut r = replica_of(&ca, cfg, registry_addr, authority.clone()).await;
    until("a good answer", Duration::from_secs(20), || ocsp(&ca, &first, r.http).contains(": good")).await;
    assert_eq!(authority.issued(), 1, "only the due certificate was asked for");
    let (renewed_serial, renewed) = responder_on_disk(&ca, 0);
    assert_ne!(renewed, short);
    let text = ocsp_with_text(&ca, &first, r.http);
    let served = served_responder(&text);
    let on_disk = pem::encode(&pem::Pem::new("CERTIFICATE", renewed.clone()));
    assert!(
        on_disk.replace("\r", "").contains(served.lines().nth(1).unwrap_or("?")),
        "serves the renewed one:\n{text}"
    );

    // Revoked (as the registry would say): a new key and certificate, served.
    authority.revoke(&renewed_serial);
    until("the rollover", Duration::from_secs(20), || responder_on_disk(&ca, 0).0 != renewed_serial).await;
    let (rolled_serial, rolled) = responder_on_disk(&ca, 0);
    let spki = |der: &[u8]| {
        let cert = <x509_cert::Certificate as der::Decode>::from_der(der).unwrap();
        der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap()
    };
    assert_ne!(spki(&rolled), spki(&renewed), "a rollover uses a new key");
    let rolled_pem = pem::encode(&pem::Pem::new("CERTIFICATE", rolled)).replace("\r", "");
    until("the new certificate served", Duration::from_secs(10), || {
        let text = ocsp_with_text(&ca, &first, r.http);
        text.contains(": good") && rolled_pem.contains(served_responder(&text).lines().nth(1).unwrap_or("?"))
    })
    .await;
    assert_ne!(rolled_serial, renewed_serial);

    let _ = r.stop.take().unwrap().send(());
    r.task.await.unwrap().unwrap();
    let _ = reg_stop.send(());
}
