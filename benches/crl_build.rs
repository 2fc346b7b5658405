//! Time and peak memory to build and sign a CRL with 10k, 100k and 1M
//! entries, the entries arriving as the registry streams them (hex serials,
//! reasons) and the TBSCertList signed by an RSA-2048 key in SoftHSM.
//!
//! `cargo bench --bench crl_build` (needs softhsm2). Prints criterion's timings,
//! then a table of time and peak heap per size and how both grow, then the
//! emergency timing: with delta CRLs on and 1M entries already revoked, the
//! time from EmergencyRevoke to the delta and to the full CRL being served
//! over HTTP (registry, revocation service and CRL publisher in process, over
//! loopback gRPC). `CRL_BENCH_EMERGENCY_ENTRIES` changes the 1M.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto::registry::v1::{RevocationReason, RevokedEntry};
use time::OffsetDateTime;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

/// The i-th entry as the registry streams it: a 16-octet positive serial in hex.
fn registry_entry(i: u64) -> RevokedEntry {
    let mut serial = [0u8; 16];
    let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    serial[..8].copy_from_slice(&mixed.to_be_bytes());
    serial[8..].copy_from_slice(&i.to_be_bytes());
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let reason = match i % 4 {
        0 => RevocationReason::KeyCompromise,
        1 => RevocationReason::Superseded,
        2 => RevocationReason::CessationOfOperation,
        _ => RevocationReason::AffiliationChanged,
    };
    RevokedEntry {
        serial: hex::encode(serial),
        revoked_at_unix: 1_700_000_000 + i as i64,
        reason: reason as i32,
        not_after_unix: 1_900_000_000,
        sequence: i + 1,
        invalidity_date_unix: 0,
    }
}

struct Fixture {
    key: hsm::HsmKey,
    spec: crl::CrlSpec,
}

fn fixture() -> Fixture {
    let key = hsm::testing::shared_hsm()
        .generate_key_pair(&hsm::testing::unique_label("bench-ca"), hsm::KeyAlgorithm::Rsa { bits: 2048 })
        .expect("SoftHSM key");
    // A plausible issuer Name: SEQUENCE { SET { SEQUENCE { C=JP } } ... }.
    let issuer = vec![
        0x30, 0x1d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'J', b'P', 0x31, 0x0e, 0x30,
        0x0c, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x05, b'H', b'P', b'K', b'I', b'!',
    ];
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("time");
    let spec = crl::CrlSpec {
        issuer,
        authority_key_identifier: vec![0x42; 20],
        this_update: now,
        next_update: now + time::Duration::hours(48),
        crl_number: 1,
        delta_crl_indicator: None,
        issuing_distribution_point: None,
        freshest_crl: None,
        expired_certs_on_crl: None,
    };
    Fixture { key, spec }
}

/// Streams `n` registry entries into the encoder, then signs: what one full
/// CRL publication costs apart from the network. `hint` sizes the buffer up
/// front, as the publisher does from the previous CRL's entry count.
fn build(f: &Fixture, n: u64, hint: bool) -> crl::SignedCrl {
    let expected = if hint { n as usize } else { 0 };
    let mut encoder = crl::CrlEncoder::with_capacity(&f.spec, crl::CrlSigner::signature_algorithm(&f.key), expected)
        .expect("encoder");
    for i in 0..n {
        let entry = crl::CrlEntry::from_registry(&registry_entry(i)).expect("entry");
        encoder.push(&entry).expect("push");
    }
    encoder.finish(&f.key).expect("sign")
}

fn bench_build(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("crl_build");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    for n in SIZES {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| b.iter(|| black_box(build(&f, n, true))));
    }
    group.finish();
    report(&f);
}

/// One more run per size outside criterion: best-of-3 time and peak heap,
/// with the buffer sized from a hint (as the publisher does) and without.
fn report(f: &Fixture) {
    let mut rows = Vec::new();
    for n in SIZES {
        let mut best = Duration::MAX;
        let mut peaks = [0usize; 2];
        let mut size = 0;
        for (slot, hint) in [(0, true), (1, false)] {
            for _ in 0..3 {
                let base = LIVE.load(Ordering::Relaxed);
                PEAK.store(base, Ordering::Relaxed);
                let start = Instant::now();
                let crl = build(f, n, hint);
                if hint {
                    best = best.min(start.elapsed());
                }
                peaks[slot] = peaks[slot].max(PEAK.load(Ordering::Relaxed) - base);
                size = crl.der.len();
                drop(black_box(crl));
            }
        }
        rows.push((n, best, peaks, size));
    }
    println!("\nCRL build + sign (RSA-2048 in SoftHSM), entries streamed as the registry sends them:");
    println!(
        "{:>10} {:>10} {:>10} {:>16} {:>16} {:>10}",
        "entries", "time", "ns/entry", "peak heap (hint)", "peak (no hint)", "CRL size"
    );
    for (n, t, peaks, size) in &rows {
        println!(
            "{:>10} {:>8.1}ms {:>10.0} {:>14.1}MB {:>14.1}MB {:>8.1}MB",
            n,
            t.as_secs_f64() * 1e3,
            t.as_nanos() as f64 / *n as f64,
            peaks[0] as f64 / 1e6,
            peaks[1] as f64 / 1e6,
            *size as f64 / 1e6
        );
    }
    for w in rows.windows(2) {
        let ((n0, t0, p0, _), (n1, t1, p1, _)) = (w[0], w[1]);
        println!(
            "{}k -> {}k entries (x{}): time x{:.1}, peak heap x{:.1} (no hint x{:.1})",
            n0 / 1000,
            n1 / 1000,
            n1 / n0,
            t1.as_secs_f64() / t0.as_secs_f64(),
            p1[0] as f64 / p0[0] as f64,
            p1[1] as f64 / p0[1] as f64
        );
    }
}

fn bench_emergency(_c: &mut Criterion) {
    emergency::run();
}

criterion_group!(benches, bench_build, bench_emergency);
criterion_main!(benches);

/// EmergencyRevoke to the delta and the full CRL served over HTTP.
mod emergency {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use proto::registry::v1 as reg;
    use proto::registry::v1::registry_client::RegistryClient;
    use proto::revocation::v1 as rev;
    use proto::revocation::v1::revocation_client::RevocationClient;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Targets from the issue: delta < 1 s, full < 5 s.
    const DELTA_TARGET: Duration = Duration::from_secs(1);
    const FULL_TARGET: Duration = Duration::from_secs(5);
    /// Every wait of the bench stops here, so it always ends.
    const STAGE_LIMIT: Duration = Duration::from_secs(180);

    pub fn run() {
        let entries =
            std::env::var("CRL_BENCH_EMERGENCY_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        match rt.block_on(async { tokio::time::timeout(STAGE_LIMIT * 4, measure(entries)).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => println!("\nemergency timing failed: {e}"),
            Err(_) => println!("\nemergency timing gave up after {:?}", STAGE_LIMIT * 4),
        }
    }

    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn measure(entries: u64) -> Result<(), Error> {
        let dir = tempfile::tempdir()?;
        let mut cfg = config::Config { state_dir: dir.path().join("state"), ..Default::default() };
        cfg.profile.delta_crls = true;
        let (sign, auth) = pki(&mut cfg)?;

        // The registry, with `entries` revocations of the signing CA already recorded.
        let db = store::Store::open(&dir.path().join("db"))?;
        let started = Instant::now();
        let label = cfg.ca.signing.key_label.clone();
        let s = db.clone();
        tokio::task::spawn_blocking(move || {
            s.bench_import_revoked(&store::BenchImport {
                issuer_label: label,
                count: entries,
                not_before_unix: 1_767_193_200,
                not_after_unix: 4_000_000_000,
                revoked_at_unix: 1_780_000_000,
                reason: store::RevocationReason::KeyCompromise,
            })
        })
        .await??;
        println!("\nemergency revocation, delta CRLs on: {entries} revocations imported in {:.1?}", started.elapsed());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let (listener, registry_url) = listen().await?;
        tokio::spawn(registry::serve_store(
            db,
            "JMA".into(),
            tls::GrpcKit::default(),
            listener,
            until_stopped(stopped.clone()),
        ));

        // The CRL publisher; its schedule publishes the first full and delta CRLs at start.
        let urls = crl::publisher::served_urls(&cfg)?;
        let crl_store = Arc::new(crl::published::CrlStore::open(cfg.state_path(&cfg.crl.out_dir), &urls)?);
        let source = crl::source::RegistrySource::connect_lazy(&tls::GrpcKit::default(), &registry_url)?;
        let publisher = Arc::new(crl::publisher::Publisher::new(&cfg, source, crl_store.clone(), sign, auth)?);
        let (grpc, crl_url) = listen().await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let http_addr = http.local_addr()?;
        let ticks = crl::schedule::Ticks::default();
        tokio::spawn(crl::serve_publisher(
            publisher,
            None,
            tls::GrpcKit::default(),
            grpc,
            http,
            ticks,
            until_stopped(stopped.clone()),
        ));
        let full_urls = [cfg.profile.signing_crl_url.clone(), cfg.profile.authentication_crl_url.clone()];
        let started = Instant::now();
        for url in full_urls.iter().flat_map(|u| [u.clone(), config::delta_url(u)]) {
            while crl_store.by_url(&url).and_then(|f| f.info.clone()).is_none() {
                if started.elapsed() > STAGE_LIMIT {
                    return Err(format!("{url} not published within {STAGE_LIMIT:?}").into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!("first full + delta CRLs published in {:.1?}", started.elapsed());

        let mut registry = RegistryClient::connect(registry_url.clone()).await?;
        let card_id = issue_card(&mut registry, &cfg).await?;
        cfg.revocation.registry_url = registry_url;
        cfg.revocation.crl_url = crl_url;
        let (listener, revocation_url) = listen().await?;
        let rev_cfg = cfg.clone();
        tokio::spawn(async move {
            revocation::serve(&rev_cfg, tls::GrpcKit::default(), listener, until_stopped(stopped)).await
        });
        let mut client = RevocationClient::connect(revocation_url).await?;

        let confirmed_at = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5))
            .format(&time::format_description::well_known::Rfc3339)?;
        let started = Instant::now();
        let answer = client
            .emergency_revoke(rev::EmergencyRevokeRequest {
                card: Some(rev::emergency_revoke_request::Card::CardId(card_id)),
                confirmation: Some(rev::IdentityConfirmation {
                    confirmed_by: "op-desk".into(),
                    method: rev::ConfirmationMethod::Phone as i32,
                    confirmed_at,
                    note: String::new(),
                }),
                operator: "op-bench".into(),
                note: "bench".into(),
                compromised_at: String::new(),
            })
            .await?
            .into_inner();
        let answered = started.elapsed();
        let signing = answer
            .crls
            .iter()
            .find(|c| c.issuer == "signing")
            .ok_or_else(|| format!("no signing CA CRLs in the answer: {answer:?}"))?;
        let sign_url = &full_urls[0];
        let delta =
            served(&crl_store, http_addr, &config::delta_url(sign_url), signing.delta_crl_number, started).await?;
        let full = served(&crl_store, http_addr, sign_url, signing.full_crl_number, started).await?;
        let _ = stop.send(true);

        let verdict = |t: Duration, target: Duration| if t < target { "ok" } else { "OVER TARGET" };
        println!(
            "EmergencyRevoke answered in {answered:.1?} (signing CA: delta {}, full {})",
            signing.delta_crl_number, signing.full_crl_number
        );
        println!(
            "EmergencyRevoke -> delta CRL served over HTTP: {:>8.1?}  (target < {DELTA_TARGET:?}: {})",
            delta,
            verdict(delta, DELTA_TARGET)
        );
        println!(
            "EmergencyRevoke -> full CRL served over HTTP:  {:>8.1?}  (target < {FULL_TARGET:?}: {}), {} entries",
            full,
            verdict(full, FULL_TARGET),
            crl_store.by_url(sign_url).and_then(|f| f.info.clone()).map_or(0, |i| i.entries)
        );
        Ok(())
    }

    /// Time from `started` until the HTTP distribution point serves the CRL
    /// numbered at least `number` at `url` (its ETag, asked with HEAD).
    async fn served(
        store: &crl::published::CrlStore,
        http: std::net::SocketAddr,
        url: &str,
        number: u64,
        started: Instant,
    ) -> Result<Duration, Error> {
        let path = crl::published::url_path(url)?;
        loop {
            let etag = head_etag(http, &path).await?;
            let current = store.by_url(url);
            if let Some(file) = current.filter(|f| f.info.as_ref().is_some_and(|i| i.crl_number >= number)) {
                if etag.as_deref() == Some(file.etag.as_str()) {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() > STAGE_LIMIT {
                return Err(format!("CRL {number} not served at {url} within {STAGE_LIMIT:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn head_etag(http: std::net::SocketAddr, path: &str) -> Result<Option<String>, Error> {
        let mut s = tokio::net::TcpStream::connect(http).await?;
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let head = String::from_utf8_lossy(&raw);
        Ok(head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("etag").then(|| v.trim().to_owned())
        }))
    }

    async fn listen() -> Result<(TcpListener, String), Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        Ok((listener, url))
    }

    /// Root, signing and authentication CAs (RSA-2048 in SoftHSM), certificates
    /// written where the config says.
    fn pki(cfg: &mut config::Config) -> Result<(crl::CaKey, crl::CaKey), Error> {
        let hsm = hsm::testing::shared_hsm();
        cfg.ca.root.key_label = hsm::testing::unique_label("bench-root");
        cfg.ca.signing.key_label = hsm::testing::unique_label("bench-sign");
        cfg.ca.authentication.key_label = hsm::testing::unique_label("bench-auth");
        let alg = hsm::KeyAlgorithm::Rsa { bits: 2048 };
        let now = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let cas = cfg.ca.profiles()?;
        let make = |entity: &config::CaEntity,
                    ca: &profile::CaProfile,
                    serial: u8,
                    issuer: Option<(&profile::IssuingCa, &hsm::HsmKey)>| {
            let key = hsm.generate_key_pair(&entity.key_label, alg)?;
            let (nb, na) = profile::validity::ca_validity(now, entity.validity_years, None);
            let params = profile::ca_params(ca, issuer.is_none(), &[serial], &key, nb, na)?;
            let der = match issuer {
                None => params.self_signed(&key)?.der().to_vec(),
                Some((ca, ca_key)) => {
                    let tbs = profile::tbs_certificate(&params, &key, ca)?;
                    profile::assemble_certificate(&tbs, &ca_key.sign(&tbs)?)?
                }
            };
            Ok::<_, Error>((key, der))
        };
        let (root_key, root_der) = make(&cfg.ca.root, &cas.root, 1, None)?;
        let root = profile::IssuingCa::from_der(&root_der)?;
        let (sign_key, sign_der) = make(&cfg.ca.signing, &cas.signing, 2, Some((&root, &root_key)))?;
        let (auth_key, auth_der) = make(&cfg.ca.authentication, &cas.authentication, 3, Some((&root, &root_key)))?;
        Ok((
            crl::CaKey::new(profile::IssuingCa::from_der(&sign_der)?, sign_key)?,
            crl::CaKey::new(profile::IssuingCa::from_der(&auth_der)?, auth_key)?,
        ))
    }

    /// An ACTIVE card with a certificate from each issuing CA, recorded as issuance does.
    async fn issue_card(
        c: &mut RegistryClient<tonic::transport::Channel>,
        cfg: &config::Config,
    ) -> Result<String, Error> {
        let begun = c
            .begin_application(reg::BeginApplicationRequest {
                application_id: "bench-1".into(),
                holder: Some(testkit::registry::holder("700001")),
                application_json: "{}".into(),
                actor: "ra-bench".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let card_id = begun.card.ok_or("BeginApplication answered without a card")?.card_id;
        for (kind, label) in [
            (reg::CertificateKind::Signing, &cfg.ca.signing.key_label),
            (reg::CertificateKind::Authentication, &cfg.ca.authentication.key_label),
        ] {
            let serial = c
                .reserve_serial(reg::ReserveSerialRequest {
                    card_id: card_id.clone(),
                    kind: kind as i32,
                    issuer_label: label.clone(),
                    not_before_unix: 1_767_193_200,
                    not_after_unix: 1_924_959_599,
                })
                .await?
                .into_inner()
                .serial;
            let (der, tbs) = testkit::registry::certificate(&serial);
            c.record_tbs(reg::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs, crl_scope: None }).await?;
            c.store_certificate(reg::StoreCertificateRequest { serial, certificate_der: der }).await?;
        }
        c.complete_application(reg::CompleteApplicationRequest { card_id: card_id.clone(), actor: "ra-bench".into() })
            .await?;
        Ok(card_id)
    }
}
