//! Load-test fixture and measurements for `scripts/bench-ocsp.sh` (feature `bench`).
//!
//! ```text
//! ocsp_bench_server serve <dir> <certs> <revoked-percent> <listen-addr>
//!     A populated responder (SoftHSM in a temp folder, RSA-2048, cache filled
//!     directly) on <listen-addr>; writes into <dir>: paths.txt (one GET path per
//!     certificate), fixed.der (one `good` response, for nginx), and index.txt,
//!     ca.pem, rsigner.pem, rkey.pem for `openssl ocsp`, and replica.spec for
//!     `replica`. Prints `READY <addr>`.
//! ocsp_bench_server replica <spec> <listen-addr>
//!     A second responder process for the same CA and certificates as a running
//!     `serve` (its replica.spec): same key, a cache of its own, signed here.
//! ocsp_bench_server cold <seconds> <concurrency>
//!     The cache-miss path against raw SoftHSM RSA-2048 signatures on
//!     <concurrency> threads, in 5 interleaved rounds (raw, then GETs of
//!     never-asked serials, each a live signature, over HTTP from
//!     <concurrency> keep-alive connections), <seconds> of each in all;
//!     prints the ratio.
//! ocsp_bench_server memory <count>
//!     Resident memory with <count> cached responses.
//! ocsp_bench_server propagation <rounds>
//!     A real registry and the full responder (status feed): time from the return
//!     of RevokeCertificate to the first `revoked` answer over HTTP.
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use der::Decode;
use ocsp::asn1::{BasicOCSPResponse, CertStatus, OCSPResponse};
use ocsp::bench_support::{self, get_path, populate};
use ocsp::http::{self, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn usage() -> ! {
    eprintln!(
        "usage: ocsp_bench_server serve <dir> <certs> <revoked-percent> <listen> | replica <spec> <listen> \
         | cold <seconds> <concurrency> | memory <count> | propagation <rounds>"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 5 => {
            serve(
                &args[1],
                args[2].parse().unwrap_or_else(|_| usage()),
                args[3].parse().unwrap_or_else(|_| usage()),
                &args[4],
            )
            .await
        }
        Some("replica") if args.len() == 3 => replica(&args[1], &args[2]).await,
        Some("cold") if args.len() == 3 => {
            cold(args[1].parse().unwrap_or_else(|_| usage()), args[2].parse().unwrap_or_else(|_| usage())).await
        }
        Some("memory") if args.len() == 2 => memory(args[1].parse().unwrap_or_else(|_| usage())).await,
        Some("propagation") if args.len() == 2 => propagation(args[1].parse().unwrap_or_else(|_| usage())).await,
        _ => usage(),
    }
}

async fn serve(dir: &str, certs: usize, revoked_percent: usize, listen: &str) {
    let dir = std::path::Path::new(dir);
    let started = Instant::now();
    let p = populate(certs, revoked_percent, config::KeyAlgorithm::Rsa2048).await.unwrap();
    eprintln!("populated {certs} certificates in {:.1} s", started.elapsed().as_secs_f64());
    bench_support::write_openssl_files(&p, dir).unwrap();
    bench_support::write_replica_spec(&p, &dir.join("replica.spec")).unwrap();
    let paths: String = p.requests.iter().map(|r| get_path(r) + "\n").collect();
    std::fs::write(dir.join("paths.txt"), paths).unwrap();
    let good = p.certs.iter().position(|c| !c.revoked).unwrap();
    let ocsp::Step::Done(answer) = p.responder.lookup(&p.requests[good]) else { panic!("not cached") };
    std::fs::write(dir.join("fixed.der"), &answer.der).unwrap();

    listen_and_serve(p.responder.clone(), listen).await;
}

/// [`serve_on`] a listener on `listen`.
async fn listen_and_serve(responder: Arc<ocsp::Responder>, listen: &str) {
    let listener = TcpListener::bind(listen).await.unwrap();
    println!("READY {}", listener.local_addr().unwrap());
    serve_on(listener, responder).await;
}

/// The production accept loop and time bounds (default `[ocsp]` values) on
/// `listener`, for as long as the process runs.
async fn serve_on(listener: TcpListener, responder: Arc<ocsp::Responder>) {
    let state = ocsp::testkit::http_state(responder);
    let limits = HttpLimits::default();
    let (_stop, never) = tokio::sync::watch::channel(false);
    // As `ocsp::serve` does with the default `[ocsp]` (http_threads = 0: the main runtime).
    let (cap, threads) = (config::OcspConfig::default().max_connections, http_threads_env());
    ocsp::serve_http(listener, http::service(state, limits), limits.read_timeout, cap, threads, None, never).await;
}

/// `[ocsp] http_threads` for the bench (environment HTTP_THREADS; 0, the default: the main runtime).
fn http_threads_env() -> usize {
    std::env::var("HTTP_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn replica(spec: &str, listen: &str) {
    let started = Instant::now();
    let (responder, certs) =
        bench_support::populate_replica(std::path::Path::new(spec), config::KeyAlgorithm::Rsa2048).await.unwrap();
    eprintln!("replica: signed {} responses in {:.1} s", certs.len(), started.elapsed().as_secs_f64());
    listen_and_serve(responder, listen).await;
}

/// Raw signatures with the responder's key on `threads` threads for `secs`:
/// (signatures, seconds taken).
fn raw_signs(key: &Arc<hsm::HsmKey>, threads: usize, secs: f64) -> (u64, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let key = key.clone();
            std::thread::spawn(move || {
                // A message the size of a single response's tbsResponseData.
                let mut msg = vec![0x30u8; 220];
                let mut n = 0u64;
                while Instant::now() < deadline {
                    msg[1..9].copy_from_slice(&(n ^ (t as u64) << 48).to_be_bytes());
                    key.sign(&msg).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (total, started.elapsed().as_secs_f64())
}

/// CPU seconds this process has used (user + system, from /proc/self/stat).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: f64 = f.get(11..13).map_or(0.0, |t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// What the cold clients saw in one phase.
#[derive(Default)]
struct ColdPhase {
    signed: u64,
    other: u64,
    exhausted: bool,
    latencies: Vec<Duration>,
}

/// The cold path against the raw signing rate, interleaved: `ROUNDS` rounds
/// of (raw for secs/ROUNDS, cold for secs/ROUNDS), so a machine whose speed
/// drifts (a shared VM does, by ±10 % over seconds) moves both sides alike.
/// Connections stay open between rounds, as a busy responder's would.
async fn cold(secs: f64, concurrency: usize) {
    const ROUNDS: usize = 5;
    let concurrency = concurrency.max(1);
    let slice = secs / ROUNDS as f64;
    let ca = ocsp::testkit::test_ca(config::KeyAlgorithm::Rsa2048);
    let key = Arc::new(ca.hsm.key(&ca.cfg.ocsp.signing_responder_key_label).unwrap());
    let raw_blocking = |key: Arc<hsm::HsmKey>| tokio::task::spawn_blocking(move || raw_signs(&key, concurrency, slice));
    // Calibrate: how many never-asked serials the cold rounds can use up.
    let (calib, calib_secs) = raw_blocking(key.clone()).await.unwrap();
    let n = (calib as f64 / calib_secs * secs * 2.0) as usize + concurrency * 64;
    let (responder, paths) = bench_support::cold_responder(&ca, n, concurrency).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_on(listener, responder.clone()));
    let paths = Arc::new(paths);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(Client::connect(addr).await);
    }
    let (mut raw_n, mut raw_t, mut cold_t, mut raw_cpu, mut cold_cpu) = (0u64, 0f64, 0f64, 0f64, 0f64);
    let mut total = ColdPhase::default();
    for _ in 0..ROUNDS {
        let c0 = cpu_seconds();
        let (n, t) = raw_blocking(key.clone()).await.unwrap();
        raw_cpu += cpu_seconds() - c0;
        raw_n += n;
        raw_t += t;
        let c0 = cpu_seconds();
        let deadline = Instant::now() + Duration::from_secs_f64(slice);
        let started = Instant::now();
        let mut running = tokio::task::JoinSet::new();
        for mut client in clients.drain(..) {
            let (paths, next) = (paths.clone(), next.clone());
            running.spawn(async move {
                let mut seen = ColdPhase::default();
                while Instant::now() < deadline {
                    let Some(path) = paths.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) else {
                        seen.exhausted = true;
                        break;
                    };
                    let t0 = Instant::now();
                    let der = client.get(path).await;
                    // The first answer of each phase fully decoded; the rest
                    // checked cheaply (a successful response of full size, not the
                    // 5-byte tryLater), so the client takes little of the CPU.
                    let ok = if seen.signed + seen.other == 0 { status_of(&der) == "good" } else { successful(&der) };
                    if ok {
                        seen.signed += 1;
                    } else {
                        seen.other += 1;
                    }
                    seen.latencies.push(t0.elapsed());
                }
                (client, seen)
            });
        }
        while let Some(r) = running.join_next().await {
            let (client, seen) = r.unwrap();
            clients.push(client);
            total.signed += seen.signed;
            total.other += seen.other;
            total.exhausted |= seen.exhausted;
            total.latencies.extend(seen.latencies);
        }
        cold_t += started.elapsed().as_secs_f64();
        cold_cpu += cpu_seconds() - c0;
    }
    let misses = responder.metrics().cache_misses.load(std::sync::atomic::Ordering::Relaxed);
    drop(clients);
    drop(ca);
    total.latencies.sort();
    let lat = &total.latencies;
    let p99 = lat.get((lat.len().saturating_sub(1) as f64 * 0.99) as usize).copied().unwrap_or_default();
    let (raw, cold_rate) = (raw_n as f64 / raw_t, total.signed as f64 / cold_t);
    // CPU per signature and per answer, and the cores busy in each phase: where the ratio goes.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (raw_us, cold_us) = (raw_cpu / raw_n.max(1) as f64 * 1e6, cold_cpu / total.signed.max(1) as f64 * 1e6);
    let (raw_busy, cold_busy) = (raw_cpu / raw_t / cores, cold_cpu / cold_t / cores);
    println!(
        "COLD concurrency={concurrency} seconds={secs} rounds={ROUNDS} raw_signs_per_s={raw:.0} \
         cold_answers_per_s={cold_rate:.0} ratio={:.3} cold_p99_ms={:.2} signed={} not_good={} cache_misses={misses} exhausted={} \
         raw_cpu_us={raw_us:.0} cold_cpu_us={cold_us:.0} raw_busy={raw_busy:.2} cold_busy={cold_busy:.2}",
        cold_rate / raw,
        p99.as_secs_f64() * 1000.0,
        total.signed,
        total.other,
        u8::from(total.exhausted)
    );
}

async fn memory(count: usize) {
    let base = bench_support::rss_bytes().unwrap_or(0);
    let p = populate(1000, 10, config::KeyAlgorithm::Rsa2048).await.unwrap();
    let after_signed = bench_support::rss_bytes().unwrap_or(0);
    let template = &p.certs.iter().find(|c| !c.revoked).unwrap().serial;
    let started = Instant::now();
    bench_support::fill_copies(&p.responder, template, count.saturating_sub(1000)).unwrap();
    let full = bench_support::rss_bytes().unwrap_or(0);
    let (entries, responses) = bench_support::cache_len(&p.responder);
    let ocsp::Step::Done(answer) = p.responder.lookup(&p.requests[0]) else { panic!("not cached") };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("MEMORY start_rss_mib={:.1} rss_with_1000_signed_mib={:.1} rss_with_{responses}_cached_mib={:.1} per_response_bytes={:.0} response_size_bytes={} entries={entries} fill_seconds={:.1}",
        mib(base), mib(after_signed), mib(full),
        (full.saturating_sub(after_signed)) as f64 / (responses.saturating_sub(1000)).max(1) as f64,
        answer.der.len(), started.elapsed().as_secs_f64());
}

/// A keep-alive HTTP/1.1 GET client, just enough for polling.
struct Client {
    stream: TcpStream,
    addr: SocketAddr,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, addr }
    }

    async fn get(&mut self, path: &str) -> Vec<u8> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = self.stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed");
                    buf.extend_from_slice(&chunk[..n]);
                }
                return buf[end + 4..end + 4 + len].to_vec();
            }
        }
    }
}

fn status_of(der: &[u8]) -> &'static str {
    let Ok(r) = OCSPResponse::from_der(der) else { return "garbage" };
    let Some(bytes) = r.response_bytes else { return "error" };
    let basic = BasicOCSPResponse::from_der(bytes.response.as_bytes()).unwrap();
    match basic.tbs_response_data.responses[0].cert_status {
        CertStatus::Good(_) => "good",
        CertStatus::Revoked(_) => "revoked",
        CertStatus::Unknown(_) => "unknown",
    }
}

/// An OCSPResponse of status successful (0) with a body of more than 255 bytes.
fn successful(der: &[u8]) -> bool {
    der.len() > 256 && der[0] == 0x30 && der[1] == 0x82 && der.get(4..7) == Some(&[0x0a, 0x01, 0x00][..])
}

async fn propagation(rounds: usize) {
    use proto::registry::v1 as reg;
    let ca = ocsp::testkit::test_ca(config::KeyAlgorithm::Rsa2048);
    let db = tempfile::tempdir().unwrap();
    let store = store::Store::open(&db.path().join("db")).unwrap();
    let hashes = ocsp::issuers::IssuerHashes::from_ca(&ca.issuing(0).0);
    let mut serials = Vec::new();
    for n in 0..rounds {
        let (serial, _) = ocsp::testkit::issue_through_store(&store, &ca, "bench", n, "bench");
        serials.push(serial);
    }
    let reg_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reg_addr = reg_listener.local_addr().unwrap();
    tokio::spawn(registry::serve_store(
        store.clone(),
        "JMA".into(),
        tls::GrpcKit::default(),
        reg_listener,
        std::future::pending(),
    ));
    let mut cfg = ca.cfg.clone();
    cfg.ocsp.registry_url = format!("http://{reg_addr}");
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let hsm = ca.hsm.clone();
    let authority = std::sync::Arc::new(ocsp::testkit::DirectAuthority::new(&ca));
    tokio::spawn(async move {
        ocsp::serve_with(&cfg, hsm, tls::GrpcKit::default(), authority, http, metrics, std::future::pending())
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = Client::connect(http_addr).await;
    let paths: Vec<String> = serials
        .iter()
        .map(|s| {
            get_path(
                &ocsp::request::encode_request(&hashes, ocsp::issuers::HashAlg::Sha1, &[s.as_bytes()], None).unwrap(),
            )
        })
        .collect();
    for p in &paths {
        let deadline = Instant::now() + Duration::from_secs(10);
        while status_of(&client.get(p).await) != "good" {
            assert!(Instant::now() < deadline, "no good answer");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut grpc = reg::registry_client::RegistryClient::connect(format!("http://{reg_addr}")).await.unwrap();
    let mut after_return = Vec::new();
    let mut from_call = Vec::new();
    for (s, p) in serials.iter().zip(&paths) {
        let t0 = Instant::now();
        grpc.revoke_certificate(testkit::registry::revoke_cert(&s.to_hex(), reg::RevocationReason::KeyCompromise))
            .await
            .unwrap();
        let t1 = Instant::now();
        let mut polls = 0;
        while status_of(&client.get(p).await) != "revoked" {
            polls += 1;
            assert!(t1.elapsed() < Duration::from_secs(10), "never revoked");
        }
        let t2 = Instant::now();
        after_return.push(t2 - t1);
        from_call.push(t2 - t0);
        let _ = polls;
    }
    after_return.sort();
    from_call.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "PROPAGATION rounds={rounds} after_return_ms_median={:.2} after_return_ms_p90={:.2} after_return_ms_max={:.2} from_call_ms_median={:.2} from_call_ms_max={:.2}",
        ms(pick(&after_return, 0.5)), ms(pick(&after_return, 0.9)), ms(pick(&after_return, 1.0)),
        ms(pick(&from_call, 0.5)), ms(pick(&from_call, 1.0))
    );
}
