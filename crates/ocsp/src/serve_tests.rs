//! The whole responder (`serve`) against a real in-process registry: issuance
//! and revocation arrive over the status feed; two replicas follow it on their
//! own; openssl verifies over HTTP; metrics are served; the responder
//! certificates it issues or renews are in the registry's audit log (and, with
//! an in-memory log, an entry the registry does not take is sent again).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use store::{CertificateKind, ContactAddress, HolderDetails, Membership, NewApplication, Reservation, Serial, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::serve::{renew_loop, renew_window, ResponderAudit};
use crate::source::AuditEvent;
use crate::testkit::{test_ca, MapSource, RecordingAudit, TestCa};

fn application(n: u32) -> NewApplication {
    NewApplication {
        application_id: format!("app-{n}"),
        holder_id: String::new(),
        holder: HolderDetails {
            family_name_kanji: "医師".into(),
            given_name_kanji: "太郎".into(),
            family_name_kana: "イシ".into(),
            given_name_kana: "タロウ".into(),
            family_name_latin: "ISHI".into(),
            given_name_latin: "TARO".into(),
            date_of_birth: "1980-04-01".into(),
            licence_number: format!("L{n:06}"),
            licence_registered_on: "2006-05-01".into(),
            membership: Membership::Member,
            contact: ContactAddress {
                postal_code: "113-8621".into(),
                address: "東京都文京区本駒込2-28-16".into(),
                phone: "03-3946-2121".into(),
                email: "taro@example.jp".into(),
            },
            institution: String::new(),
        },
        application_json: "{}".into(),
        actor: "ra-test".into(),
        keys: Vec::new(),
    }
}

/// Issues a real certificate under CA 0 through the store (reserve, record, store).
fn issue(store: &Store, ca: &TestCa, n: u32) -> (Serial, std::path::PathBuf) {
    let card = store.begin_application(&application(n), "JMA").unwrap().view.card.card_id;
    let now = crate::responder::unix_now();
    let rec = store
        .reserve_serial(
            &Reservation {
                card_id: card,
                kind: CertificateKind::Signing,
                issuer_label: ca.label(0),
                not_before_unix: now - 3600,
                not_after_unix: now + 86400 * 365,
            },
            "test",
        )
        .unwrap();
    let (der, path) = ca.issue_leaf(0, rec.serial.as_bytes());
    let tbs = profile::tbs_of_certificate(&der).unwrap();
    store.record_tbs(&rec.serial, &tbs, "test").unwrap();
    store.store_certificate(&rec.serial, &der, &tbs, "test").unwrap();
    (rec.serial, path)
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

async fn replica_with(ca: &TestCa, mut cfg: config::Config, registry: SocketAddr) -> Replica {
    cfg.ocsp.registry_url = format!("http://{registry}");
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, metrics_addr) = (http.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let hsm = ca.hsm.clone();
    let task = tokio::spawn(async move {
        crate::serve(&cfg, hsm.clone(), hsm, http, metrics, async {
            let _ = rx.await;
        })
        .await
    });
    Replica { http: http_addr, metrics: metrics_addr, stop: Some(tx), task }
}

fn ocsp(ca: &TestCa, cert: &std::path::Path, at: SocketAddr) -> String {
    let ca_pem = ca.ca_path(0);
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer", ca_pem.to_str().unwrap(), "-cert", cert.to_str().unwrap()])
        .args(["-url", &format!("http://{at}/ocsp"), "-CAfile", ca_pem.to_str().unwrap(), "-no_nonce", "-timeout", "5"])
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
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
    let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("db")).unwrap();
    let (first_serial, first) = issue(&store, &ca, 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_addr = listener.local_addr().unwrap();
    let (reg_stop, reg_rx) = oneshot::channel::<()>();
    tokio::spawn(registry::serve_store(store.clone(), "JMA".into(), listener, async {
        let _ = reg_rx.await;
    }));

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
    client
        .revoke_certificate(reg::RevokeCertificateRequest {
            serial: first_serial.to_hex(),
            reason: reg::RevocationReason::KeyCompromise as i32,
            actor: "op-test".into(),
            note: "lost".into(),
            ..Default::default()
        })
        .await
        .unwrap();
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

    for r in &mut replicas {
        let _ = r.stop.take().unwrap().send(());
    }
    for r in replicas {
        r.task.await.unwrap().unwrap();
    }
    let _ = reg_stop.send(());
}

/// (serial hex, SHA-256 hex) of the responder certificate `i` on disk now.
fn responder_on_disk(ca: &TestCa, i: usize) -> (String, String) {
    let text = std::fs::read_to_string(ca.responder_path(i)).unwrap();
    let der = pem::parse(text).unwrap().into_contents();
    let cert = <x509_cert::Certificate as der::Decode>::from_der(&der).unwrap();
    (hex::encode(cert.tbs_certificate().serial_number().as_bytes()), hex::encode(Sha256::digest(&der)))
}

fn responder_entries(store: &Store) -> Vec<store::AuditRecord> {
    let all = store.list_audit(0, None).unwrap();
    all.into_iter().filter(|e| e.action == store::actions::OCSP_RESPONDER_CERTIFICATE).collect()
}

/// The entry names the certificate now on disk for CA `i`, renewed by the responder.
fn assert_names_the_renewed_certificate(ca: &TestCa, i: usize, subject: &str, detail_json: &str, short: &[u8]) {
    let detail: Value = serde_json::from_str(detail_json).unwrap();
    let (serial, sha256) = responder_on_disk(ca, i);
    assert_eq!(subject, ca.label(i), "{detail}");
    assert_eq!(detail["issuer_label"], ca.label(i).as_str(), "{detail}");
    assert_eq!(detail["ca"], ["signing", "authentication"][i], "{detail}");
    assert_eq!(detail["outcome"], "renewed", "{detail}");
    assert_eq!(detail["serial"], serial.as_str(), "{detail}");
    assert_eq!(detail["sha256"], sha256.as_str(), "{detail}");
    assert_ne!(detail["sha256"], hex::encode(Sha256::digest(short)).as_str(), "not the certificate made due");
    let key_label = [&ca.cfg.ocsp.signing_responder_key_label, &ca.cfg.ocsp.authentication_responder_key_label][i];
    assert_eq!(detail["key_label"], key_label.as_str(), "{detail}");
    assert!(detail["subject"].as_str().unwrap().contains("OCSP Responder"), "{detail}");
    assert!(detail["issuer"].as_str().unwrap().contains("C=JP"), "{detail}");
    // The configured 30 days, in RFC 3339 as on the certificate.
    let text = std::fs::read_to_string(ca.responder_path(i)).unwrap();
    let not_after = crate::responder_cert::not_after_of(&pem::parse(text).unwrap().into_contents()).unwrap();
    let days = (not_after - time::OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days), "{days} days");
    assert_eq!(detail["not_after"], not_after.format(&time::format_description::well_known::Rfc3339).unwrap().as_str());
    assert!(detail["not_before"].as_str().unwrap().ends_with('Z'), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responder_certificates_the_running_responder_renews_are_in_the_registrys_audit_log() {
    let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("db")).unwrap();
    let (_, first) = issue(&store, &ca, 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_addr = listener.local_addr().unwrap();
    let (reg_stop, reg_rx) = oneshot::channel::<()>();
    tokio::spawn(registry::serve_store(store.clone(), "JMA".into(), listener, async {
        let _ = reg_rx.await;
    }));

    // Due before the start: renewed by the starting responder.
    let short_auth = ca.make_responder_due(1);
    let mut cfg = ca.cfg.clone();
    cfg.ocsp.renewal_check_seconds = 1;
    let mut r = replica_with(&ca, cfg, registry_addr).await;
    until("a good answer", Duration::from_secs(20), || ocsp(&ca, &first, r.http).contains(": good")).await;
    until("the start's audit entry", Duration::from_secs(10), || responder_entries(&store).len() == 1).await;
    let entries = responder_entries(&store);
    assert_eq!(entries[0].actor, "ocsp-responder");
    assert_names_the_renewed_certificate(&ca, 1, &entries[0].subject, &entries[0].detail_json, &short_auth);

    // Due while it runs: the renewal check renews it and appends the entry.
    let short_sign = ca.make_responder_due(0);
    until("the renewal's audit entry", Duration::from_secs(20), || responder_entries(&store).len() == 2).await;
    let entries = responder_entries(&store);
    assert_eq!(entries[1].actor, "ocsp-responder");
    assert_names_the_renewed_certificate(&ca, 0, &entries[1].subject, &entries[1].detail_json, &short_sign);
    // Valid certificates are kept and not logged again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(responder_entries(&store).len(), 2);
    assert!(store.verify_audit_chain().unwrap() >= 2);

    let _ = r.stop.take().unwrap().send(());
    r.task.await.unwrap().unwrap();
    let _ = reg_stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_the_registry_does_not_take_is_offered_again_until_it_does() {
    let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
    let sink = Arc::new(RecordingAudit::default());
    sink.down.store(true, Ordering::SeqCst);
    let audit = Arc::new(ResponderAudit::new(sink.clone()));
    let responder = Arc::new(ca.responder(ca.settings(), Arc::new(MapSource::default())));
    let short = ca.make_responder_due(1);
    let task = tokio::spawn(renew_loop(
        responder,
        ca.cfg.clone(),
        (ca.hsm.clone(), ca.hsm.clone()),
        renew_window(&ca.cfg.ocsp),
        Duration::from_millis(200),
        audit.clone(),
    ));
    // Renewed, offered, refused for now, and offered again: nothing lost, nothing logged yet.
    until("repeated attempts", Duration::from_secs(20), || sink.attempts.load(Ordering::SeqCst) >= 3).await;
    assert!(sink.entries().is_empty());
    assert_eq!(audit.pending(), 1);
    assert_ne!(responder_on_disk(&ca, 1).1, hex::encode(Sha256::digest(&short)), "renewed on disk");

    sink.down.store(false, Ordering::SeqCst);
    until("the delivered entry", Duration::from_secs(10), || !sink.entries().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let entries = sink.entries();
    assert_eq!(entries.len(), 1, "sent once, and kept certificates are no news: {entries:?}");
    assert_eq!(audit.pending(), 0);
    assert_eq!(entries[0].actor, "ocsp-responder");
    assert_eq!(entries[0].action, store::actions::OCSP_RESPONDER_CERTIFICATE);
    assert_names_the_renewed_certificate(&ca, 1, &entries[0].subject, &entries[0].detail_json, &short);
    task.abort();
}

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        actor: "ocsp-responder".into(),
        action: store::actions::OCSP_RESPONDER_CERTIFICATE.into(),
        subject: format!("ca-{n}"),
        detail_json: "{}".into(),
    }
}

#[tokio::test]
async fn undelivered_entries_are_bounded_oldest_first_and_a_refused_one_does_not_block_the_rest() {
    let sink = Arc::new(RecordingAudit::default());
    let audit = ResponderAudit::new(sink.clone());
    sink.down.store(true, Ordering::SeqCst);
    for n in 0..70 {
        audit.push(event(n));
    }
    assert_eq!(audit.flush().await, 64, "a registry away keeps them");
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 1, "stops at the first not taken");
    sink.down.store(false, Ordering::SeqCst);
    assert_eq!(audit.flush().await, 0);
    let subjects: Vec<String> = sink.entries().into_iter().map(|e| e.subject).collect();
    assert_eq!(subjects, (6..70).map(|n| format!("ca-{n}")).collect::<Vec<_>>(), "in order, the 6 oldest dropped");

    // Refused outright: logged and dropped, the next one still goes.
    sink.refuse.store(true, Ordering::SeqCst);
    audit.push(event(100));
    assert_eq!(audit.flush().await, 0);
    sink.refuse.store(false, Ordering::SeqCst);
    audit.push(event(101));
    assert_eq!(audit.flush().await, 0);
    assert_eq!(sink.entries().last().unwrap().subject, "ca-101");
    assert_eq!(sink.entries().len(), 65);
}
