//! Responder behaviour with a stand-in registry: statuses, both CertID hashes,
//! the cache (hits, status changes, negative answers), signing bounds and failures.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use der::Decode;
use proto::registry::v1 as reg;

use crate::asn1::{BasicOCSPResponse, CRLReason, CertStatus, OCSPResponse, OCSPResponseStatus};
use crate::error::OcspError;
use crate::issuers::HashAlg;
use crate::metrics::{AnswerStatus, Metrics};
use crate::request::tests::build;
use crate::responder::{unix_now, Answer, IssuerSlot, Responder, Settings, Step};
use crate::signer::{ResponderIdentity, ResponseSigner};
use crate::source::CertificateSource;
use crate::status::CertState;
use crate::testkit::{test_ca, MapSource, TestCa};

/// One EC CA for the whole file (key generation is the slow part).
pub(crate) fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| test_ca(config::KeyAlgorithm::EcdsaP256))
}

/// What a response says: status, (serial, status) per SingleResponse, nonce extnValue.
pub(crate) struct Decoded {
    pub status: OCSPResponseStatus,
    pub singles: Vec<(Vec<u8>, CertStatus)>,
    pub nonce: Option<Vec<u8>>,
    pub next_update_minus_this: Option<u64>,
}

pub(crate) fn decode(der: &[u8]) -> Decoded {
    let r = OCSPResponse::from_der(der).unwrap();
    let Some(bytes) = r.response_bytes else {
        return Decoded { status: r.response_status, singles: vec![], nonce: None, next_update_minus_this: None };
    };
    let basic = BasicOCSPResponse::from_der(bytes.response.as_bytes()).unwrap();
    let data = basic.tbs_response_data;
    let span = data.responses.first().and_then(|s| {
        s.next_update.map(|n| n.to_unix_duration().as_secs() - s.this_update.to_unix_duration().as_secs())
    });
    Decoded {
        status: r.response_status,
        singles: data
            .responses
            .iter()
            .map(|s| (s.cert_id.serial_number.as_bytes().to_vec(), s.cert_status.clone()))
            .collect(),
        nonce: data.response_extensions.and_then(|e| e.first().map(|x| x.extn_value.as_bytes().to_vec())),
        next_update_minus_this: span,
    }
}

fn revoked_kc() -> CertState {
    CertState::Revoked { at_unix: 1_700_000_000, reason: Some(CRLReason::KeyCompromise), invalidity_unix: None }
}

fn responder(source: Arc<MapSource>) -> Arc<Responder> {
    Arc::new(ca().responder(ca().settings(), source))
}

/// A source that knows one certificate, good, under issuer `issuer`.
fn knowing_good(issuer: usize, serial: &[u8]) -> Arc<MapSource> {
    let source = Arc::new(MapSource::default());
    source.set(serial, &ca().label(issuer), CertState::Good);
    source
}

fn request(r: &Responder, issuer: usize, alg: HashAlg, serials: &[&[u8]], nonce: Option<&[u8]>) -> Vec<u8> {
    build(&r.issuers()[issuer].hashes, alg, serials, nonce)
}

fn hit(r: &Responder, der: &[u8]) -> Option<Answer> {
    match r.lookup(der) {
        Step::Done(a) => Some(a),
        Step::Work(_) => None,
    }
}

#[tokio::test]
async fn good_revoked_unknown_and_unauthorized_with_both_hashes() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x01, 0x01], &ca().label(0), CertState::Good);
    source.set(&[0x01, 0x02], &ca().label(0), revoked_kc());
    // Issued by the *other* CA: unknown when asked under this one.
    source.set(&[0x01, 0x03], &ca().label(1), CertState::Good);
    let r = responder(source.clone());
    for alg in HashAlg::ALL {
        let good = decode(&r.respond(&request(&r, 0, alg, &[&[0x01, 0x01]], None)).await.der);
        assert_eq!(good.status, OCSPResponseStatus::Successful);
        assert!(matches!(good.singles[0].1, CertStatus::Good(_)), "{alg:?}");
        let revoked = decode(&r.respond(&request(&r, 0, alg, &[&[0x01, 0x02]], None)).await.der);
        match &revoked.singles[0].1 {
            CertStatus::Revoked(info) => {
                assert_eq!(info.revocation_reason, Some(CRLReason::KeyCompromise));
                assert_eq!(info.revocation_time.to_unix_duration().as_secs(), 1_700_000_000);
            }
            other => panic!("{other:?}"),
        }
        for serial in [&[0x01, 0x03][..], &[0x7e, 0x7e], &[0x01; 20]] {
            let unknown = decode(&r.respond(&request(&r, 0, alg, &[serial], None)).await.der);
            assert!(matches!(unknown.singles[0].1, CertStatus::Unknown(_)), "{serial:?}");
            assert_eq!(unknown.next_update_minus_this, Some(60), "unknown answers are short-lived");
        }
        let long = decode(&r.respond(&request(&r, 0, alg, &[&[0x01; 21]], None)).await.der);
        assert!(matches!(long.singles[0].1, CertStatus::Unknown(_)), "serials over 20 octets are never ours");
        assert_eq!(good.next_update_minus_this, Some(24 * 3600));
    }
    // Another issuer's hashes.
    let other = crate::issuers::IssuerHashes::new(b"someone", b"else");
    let foreign = build(&other, HashAlg::Sha1, &[&[1]], None);
    let a = r.respond(&foreign).await;
    assert_eq!(decode(&a.der).status, OCSPResponseStatus::Unauthorized);
    assert_eq!(a.status, AnswerStatus::Unauthorized);
    let a = r.respond(b"\x30\x03garbage").await;
    assert_eq!(&a.der[..], &[0x30, 0x03, 0x0a, 0x01, 0x01]);
}

#[tokio::test]
async fn the_second_request_is_a_cache_hit_without_registry_or_signature() {
    let source = knowing_good(1, &[0x02, 0x01]);
    let r = responder(source.clone());
    let der = request(&r, 1, HashAlg::Sha256, &[&[0x02, 0x01]], None);
    assert!(hit(&r, &der).is_none(), "first is a miss");
    let first = r.respond(&der).await;
    let second = hit(&r, &der).expect("second is a hit");
    assert_eq!(first.der, second.der);
    assert_eq!(second.caching, first.caching);
    assert!(second.caching.is_some());
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    // The SHA-1 CertID is cached on its own (the CertID is echoed as asked).
    let sha1 = request(&r, 1, HashAlg::Sha1, &[&[0x02, 0x01]], None);
    assert!(hit(&r, &sha1).is_none());
    r.respond(&sha1).await;
    assert!(hit(&r, &sha1).is_some());
    assert_eq!(source.calls.load(Ordering::SeqCst), 1, "the status was known");
}

fn change(r: &Responder, issuer: usize, serial: &[u8], seq: u64, state: CertState) -> reg::StatusChange {
    let (status, at, reason) = match state {
        CertState::Good => (reg::CertificateStatus::Good, 0, 0),
        CertState::Revoked { at_unix, .. } => {
            (reg::CertificateStatus::Revoked, at_unix, reg::RevocationReason::KeyCompromise as i32)
        }
        CertState::Unknown => (reg::CertificateStatus::Unspecified, 0, 0),
    };
    reg::StatusChange {
        sequence: seq,
        serial: hex::encode(serial),
        issuer_label: r.issuers()[issuer].label.clone(),
        status: status as i32,
        revoked_at_unix: at,
        reason,
        ..Default::default()
    }
}

async fn wait_for_hit(r: &Responder, der: &[u8], want: AnswerStatus) -> Answer {
    for _ in 0..500 {
        if let Some(a) = hit(r, der) {
            if a.status == want {
                return a;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no cached {want:?} answer");
}

#[tokio::test]
async fn a_status_change_from_the_feed_re_signs_the_cached_response() {
    let source = knowing_good(0, &[0x03, 0x01]);
    let r = responder(source.clone());
    let der = request(&r, 0, HashAlg::Sha1, &[&[0x03, 0x01]], None);
    assert_eq!(r.respond(&der).await.status, AnswerStatus::Good);
    crate::feed::apply(&r, &change(&r, 0, &[0x03, 0x01], 5, revoked_kc()));
    // The old `good` is never served again, and the re-signed `revoked` arrives in the cache.
    assert!(hit(&r, &der).is_none_or(|a| a.status == AnswerStatus::Revoked));
    let a = wait_for_hit(&r, &der, AnswerStatus::Revoked).await;
    assert!(matches!(decode(&a.der).singles[0].1, CertStatus::Revoked(_)));
    assert_eq!(r.metrics().feed_sequence.load(Ordering::SeqCst), 5);
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    // A late GOOD (replayed or reordered) does not undo a revocation.
    crate::feed::apply(&r, &change(&r, 0, &[0x03, 0x01], 6, CertState::Good));
    assert_eq!(hit(&r, &der).unwrap().status, AnswerStatus::Revoked);
}

#[tokio::test]
async fn a_negative_answer_is_cached_briefly_and_replaced_by_good_from_the_feed() {
    let source = Arc::new(MapSource::default());
    let r = responder(source.clone());
    let serial = [0x04, 0x01];
    let der = request(&r, 0, HashAlg::Sha256, &[&serial], None);
    assert_eq!(r.respond(&der).await.status, AnswerStatus::Unknown);
    assert_eq!(hit(&r, &der).unwrap().status, AnswerStatus::Unknown, "negative answers are cached");
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    // Issued now: the feed's GOOD replaces the negative answer at once.
    crate::feed::apply(&r, &change(&r, 0, &serial, 1, CertState::Good));
    assert!(hit(&r, &der).is_none(), "the unknown answer is no longer served");
    assert_eq!(r.respond(&der).await.status, AnswerStatus::Good);
    assert_eq!(source.calls.load(Ordering::SeqCst), 1, "the feed said it all");
    // Without the feed, the registry is asked again once the negative answer expires.
    let other = [0x04, 0x02];
    let der2 = request(&r, 0, HashAlg::Sha256, &[&other], None);
    let now = unix_now();
    let Step::Work(w) = r.lookup_at(&der2, now) else { panic!("miss expected") };
    assert_eq!(r.work(w, now).await.status, AnswerStatus::Unknown);
    source.set(&other, &ca().label(0), CertState::Good);
    let later = now + 61;
    let Step::Work(w) = r.lookup_at(&der2, later) else { panic!("the negative answer expired") };
    assert_eq!(r.work(w, later).await.status, AnswerStatus::Good);
    assert_eq!(r.cache().purge_negative(later), 0);
}

/// A signer that can be told to fail, or to wait until released.
pub(crate) struct Controlled {
    inner: hsm::HsmKey,
    pub(crate) fail: AtomicBool,
    hold: Mutex<bool>,
    released: Condvar,
    /// Signatures held at the moment.
    pub(crate) waiting: AtomicUsize,
}

impl Controlled {
    fn new(inner: hsm::HsmKey) -> Arc<Controlled> {
        Arc::new(Controlled {
            inner,
            fail: AtomicBool::new(false),
            hold: Mutex::new(false),
            released: Condvar::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    pub(crate) fn set_hold(&self, hold: bool) {
        *self.hold.lock().unwrap() = hold;
        self.released.notify_all();
    }
}

impl ResponseSigner for Controlled {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, OcspError> {
        let mut held = self.hold.lock().unwrap();
        while *held {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            held = self.released.wait(held).unwrap();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        drop(held);
        if self.fail.load(Ordering::SeqCst) {
            return Err(OcspError::Hsm(hsm::HsmError::Unavailable("test: HSM gone".into())));
        }
        self.inner.sign(msg).map_err(OcspError::from)
    }
}

/// A responder whose signatures go through [`Controlled`] (the one of CA 0 is returned).
pub(crate) fn controlled_responder(
    settings: Settings,
    source: Arc<dyn CertificateSource>,
) -> (Arc<Responder>, Arc<Controlled>) {
    let c = ca();
    let loaded = crate::responder_cert::load(&c.cfg, &c.hsm).unwrap();
    let mut signer = None;
    let slots = loaded
        .into_iter()
        .map(|l| {
            let s = Controlled::new(l.responder_key.clone());
            signer.get_or_insert_with(|| s.clone());
            let id = ResponderIdentity::new(l.responder_cert, s).unwrap();
            IssuerSlot::new(l.name, l.label, crate::issuers::IssuerHashes::from_ca(&l.ca), id)
        })
        .collect();
    let r = Arc::new(Responder::new(settings, slots, source, Arc::new(Metrics::default())));
    (r, signer.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_cap_requests_get_try_later_at_once() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x05, 0x01], &ca().label(0), CertState::Good);
    source.set(&[0x05, 0x02], &ca().label(0), CertState::Good);
    source.set(&[0x05, 0x03], &ca().label(0), CertState::Good);
    let settings = Settings { max_inflight: 1, ..ca().settings() };
    let (r, signer) = controlled_responder(settings, source);
    // Cached before the HSM stalls: still served.
    let cached = request(&r, 0, HashAlg::Sha1, &[&[0x05, 0x03]], None);
    r.respond(&cached).await;
    signer.set_hold(true);
    let first = request(&r, 0, HashAlg::Sha1, &[&[0x05, 0x01]], None);
    let r2 = r.clone();
    let stalled = tokio::spawn(async move { r2.respond(&first).await });
    while signer.waiting.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(r.inflight(), 1);
    let started = std::time::Instant::now();
    let second = r.respond(&request(&r, 0, HashAlg::Sha1, &[&[0x05, 0x02]], None)).await;
    assert_eq!(second.status, AnswerStatus::TryLater);
    assert_eq!(&second.der[..], &[0x30, 0x03, 0x0a, 0x01, 0x03]);
    assert!(started.elapsed() < std::time::Duration::from_millis(500), "fail fast");
    assert_eq!(r.respond(&cached).await.status, AnswerStatus::Good, "hits need no signature");
    signer.set_hold(false);
    assert_eq!(stalled.await.unwrap().status, AnswerStatus::Good);
    assert_eq!(r.inflight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_signing_fails_the_last_valid_response_is_served_until_it_expires() {
    let source = knowing_good(0, &[0x06, 0x01]);
    let (r, signer) = controlled_responder(ca().settings(), source);
    let der = request(&r, 0, HashAlg::Sha256, &[&[0x06, 0x01]], None);
    let first = r.respond(&der).await;
    let caching = first.caching.unwrap();
    signer.fail.store(true, Ordering::SeqCst);
    // Due for refresh (6 h before nextUpdate by default): the re-signature fails.
    let refresh_time = caching.next_update - 6 * 3600;
    let (ok, failed) = r.refresh_due(refresh_time, 100, 2).await;
    assert_eq!((ok, failed), (0, 1));
    assert_eq!(r.metrics().refresh_failures.load(Ordering::SeqCst), 1);
    // Still served, byte for byte, up to its nextUpdate...
    let Step::Done(a) = r.lookup_at(&der, caching.next_update - 1) else { panic!("expected a hit") };
    assert_eq!(a.der, first.der);
    // ...and not after: a fresh signature is needed and fails, so tryLater.
    let Step::Work(w) = r.lookup_at(&der, caching.next_update) else { panic!("expired responses are not served") };
    assert_eq!(r.work(w, caching.next_update).await.status, AnswerStatus::TryLater);
    // The HSM is back: the refresh works and replaces the response.
    signer.fail.store(false, Ordering::SeqCst);
    assert_eq!(r.refresh_due(refresh_time, 100, 2).await, (1, 0));
    let renewed = hit(&r, &der).unwrap();
    assert_ne!(renewed.caching.unwrap().etag, caching.etag);
}

#[tokio::test]
async fn the_registry_being_down_gives_try_later_then_recovers() {
    let source = knowing_good(0, &[0x07, 0x01]);
    source.fail.store(true, Ordering::SeqCst);
    let r = responder(source.clone());
    let der = request(&r, 0, HashAlg::Sha1, &[&[0x07, 0x01]], None);
    assert_eq!(r.respond(&der).await.status, AnswerStatus::TryLater);
    source.fail.store(false, Ordering::SeqCst);
    assert_eq!(r.respond(&der).await.status, AnswerStatus::Good);
}

#[tokio::test]
async fn several_certificates_get_one_response_with_an_answer_each() {
    let source = Arc::new(MapSource::default());
    source.set(&[0x08, 0x01], &ca().label(1), CertState::Good);
    source.set(&[0x08, 0x02], &ca().label(1), revoked_kc());
    let r = responder(source);
    let der = request(&r, 1, HashAlg::Sha256, &[&[0x08, 0x01], &[0x08, 0x02], &[0x08, 0x03]], None);
    let a = r.respond(&der).await;
    assert!(a.caching.is_none(), "signed for this request only");
    assert_eq!(a.status, AnswerStatus::Revoked, "the most severe status is counted");
    let d = decode(&a.der);
    assert_eq!(d.singles.len(), 3);
    assert_eq!(d.singles[0].0, vec![0x08, 0x01]);
    assert!(matches!(d.singles[0].1, CertStatus::Good(_)));
    assert!(matches!(d.singles[1].1, CertStatus::Revoked(_)));
    assert!(matches!(d.singles[2].1, CertStatus::Unknown(_)));
    let nine: Vec<Vec<u8>> = (0..9u8).map(|i| vec![0x08, i + 1]).collect();
    let refs: Vec<&[u8]> = nine.iter().map(|v| v.as_slice()).collect();
    let too_many = request(&r, 1, HashAlg::Sha256, &refs, None);
    assert_eq!(r.respond(&too_many).await.status, AnswerStatus::Malformed);
}

#[tokio::test]
async fn nonces_are_echoed_within_the_rate_then_the_cached_response_is_served() {
    let source = knowing_good(0, &[0x09, 0x01]);
    let settings = Settings { nonce: config::NonceMode::Echo, nonce_per_second: 2, ..ca().settings() };
    let r = Arc::new(ca().responder(settings, source.clone()));
    let plain = request(&r, 0, HashAlg::Sha1, &[&[0x09, 0x01]], None);
    let cached = r.respond(&plain).await;
    for i in 0..2u8 {
        let nonce = [i + 1; 16];
        let a = r.respond(&request(&r, 0, HashAlg::Sha1, &[&[0x09, 0x01]], Some(&nonce))).await;
        let d = decode(&a.der);
        assert_eq!(d.nonce.unwrap(), [&[0x04, 16][..], &nonce].concat(), "echoed byte for byte");
        assert!(a.caching.is_none());
    }
    // Over the rate: the cached response, without the nonce.
    let a = r.respond(&request(&r, 0, HashAlg::Sha1, &[&[0x09, 0x01]], Some(&[9; 16]))).await;
    assert_eq!(a.der, cached.der);
    assert!(decode(&a.der).nonce.is_none());
    // Ignore mode never signs for a nonce.
    let ignoring = responder(source);
    let first = ignoring.respond(&plain).await;
    let with_nonce = ignoring.respond(&request(&r, 0, HashAlg::Sha1, &[&[0x09, 0x01]], Some(&[5; 16]))).await;
    assert_eq!(first.der, with_nonce.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_misses_gets_try_later_while_cached_answers_keep_flowing() {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};
    let source = knowing_good(0, &[0x0a, 0x01]);
    // Known serials not signed yet (misses), and serials nobody issued (unknown).
    for i in 0..16u8 {
        source.set(&[0x0b, i], &ca().label(0), CertState::Good);
    }
    // Slow refill (1 per second), so the bursts decide: 4 per client, 8 in all.
    let settings = Settings {
        live_per_second: 1,
        live_burst: 8,
        client_live_per_second: 1,
        client_live_burst: 4,
        ..ca().settings()
    };
    let r = Arc::new(ca().responder(settings, source));
    let cached = request(&r, 0, HashAlg::Sha256, &[&[0x0a, 0x01]], None);
    let first = r.respond(&cached).await;
    assert_eq!(first.status, AnswerStatus::Good);
    let started = Instant::now();
    let deadline = Duration::from_secs(5);

    // One client floods: misses (half known, half unknown) and a multi-CertID
    // request, each followed by the cached request, which keeps being served.
    let flooder: IpAddr = "192.0.2.7".parse().unwrap();
    let mut statuses = Vec::new();
    for i in 0..32u8 {
        let miss = match i % 3 {
            0 => request(&r, 0, HashAlg::Sha256, &[&[0x0b, i / 2]], None),
            1 => request(&r, 0, HashAlg::Sha256, &[&[0x0c, i]], None),
            _ => request(&r, 0, HashAlg::Sha1, &[&[0x0a, 0x01], &[0x0c, i]], None),
        };
        statuses.push(r.respond_for(&miss, deadline, Some(flooder)).await.status);
        let hit = r.respond_for(&cached, deadline, Some(flooder)).await;
        assert_eq!(hit.status, AnswerStatus::Good, "a cached answer needs no token");
        assert_eq!(hit.der, first.der);
    }
    let refill = started.elapsed().as_secs() as usize + 1;
    let later = statuses.iter().filter(|s| **s == AnswerStatus::TryLater).count();
    let signed = statuses.len() - later;
    assert!((4..=4 + refill).contains(&signed), "{signed} signed: {statuses:?}");
    assert!(later >= 32 - 4 - refill, "{statuses:?}");
    assert_eq!(r.metrics().try_later("client_live_sign_rate"), later as u64);
    assert_eq!(r.metrics().try_later("live_sign_rate"), 0);

    // Other clients have their own buckets, but the global one runs dry:
    // 1 + the flooder's went out of 8.
    let mut global_limited = 0;
    for c in 0..6u8 {
        let client: IpAddr = format!("198.51.100.{c}").parse().unwrap();
        let miss = request(&r, 0, HashAlg::Sha256, &[&[0x0d, c]], None);
        if r.respond_for(&miss, deadline, Some(client)).await.status == AnswerStatus::TryLater {
            global_limited += 1;
        }
    }
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(global_limited >= 6usize.saturating_sub(3 + refill), "{global_limited}");
    assert!(global_limited >= 1, "the global bucket must run dry");
    assert_eq!(r.metrics().try_later("live_sign_rate"), global_limited as u64);
    // The cached answer still flows, for anyone.
    assert_eq!(r.respond_for(&cached, deadline, Some("203.0.113.9".parse().unwrap())).await.der, first.der);

    let text = r.metrics().render(&crate::metrics::Gauges {
        cache_entries: 0,
        cached_responses: 0,
        inflight_signatures: 0,
        now_ms: 0,
    });
    assert!(text.contains(&format!("ocsp_trylater_total{{reason=\"client_live_sign_rate\"}} {later}")), "{text}");
    assert!(text.contains(&format!("ocsp_trylater_total{{reason=\"live_sign_rate\"}} {global_limited}")), "{text}");
}
