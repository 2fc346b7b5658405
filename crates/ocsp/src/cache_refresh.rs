//! Refreshing the HTTP caches in front of the responders when a certificate
//! is revoked.
//!
//! A cache such as nginx (`deploy/nginx/ocsp-cache.conf`) keeps a `good`
//! answer for its max-age, up to the response's nextUpdate (a day): it would
//! hide a lost card for that long. So on a revocation from the status feed,
//! once this replica has applied it, every GET path a client may use for the
//! serial is fetched again through the cache's refresh listener, which skips
//! the cached copy and stores the fresh answer in its place (nginx
//! `proxy_cache_bypass`):
//!
//! - SHA-1 and SHA-256 CertIDs, hashAlgorithm parameters NULL or absent;
//! - base64 with the standard or URL-safe alphabet, with or without padding;
//! - at the OCSP path of `[profile] ocsp_url` and at the root.
//!
//! The cache keys on the decoded path (nginx `$uri`), so percent-encoded
//! forms are covered too. Requests with a nonce are not cached.
//!
//! The cache may pass a refresh to another replica than the one that sent it.
//! So a refresh names the feed sequence of its revocation
//! ([`crate::http::MIN_SEQUENCE`]): a replica that has not applied it yet
//! waits for it briefly, then answers 503 and the cache asks the next one,
//! never storing a stale `good`. Every refresh is repeated after [`REPEAT`]. A refresh
//! that fails (no answer, or one the cache does not keep, such as tryLater) is
//! retried with backoff, counted and logged, never dropped while the process
//! lives; a restarted replica refreshes again every revocation younger than a
//! response's lifetime as it replays the feed.
//!
//! (Purging instead needs ngx_cache_purge; Debian's 2.3 build crashes nginx
//! 1.22 on every PURGE, so the shipped config does not use it.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use der::asn1::{AnyRef, IntRef, OctetStringRef};
use der::Encode;
use http_body_util::Empty;
use spki::AlgorithmIdentifierRef;
use tokio::sync::mpsc;

use crate::asn1::{CertID, OCSPRequest, Request, TBSRequest, Version};
use crate::issuers::{HashAlg, IssuerHashes};
use crate::metrics::Metrics;

/// The second refresh of a revocation, after the first.
pub const REPEAT: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Every GET path of `serial` (big-endian magnitude) under the CA of
/// `hashes`, for a responder whose OCSP path is `ocsp_path` ("" or "/ocsp").
pub fn get_paths(ocsp_path: &str, hashes: &IssuerHashes, serial: &[u8]) -> Vec<String> {
    let serial = der_integer(serial);
    let mut encoded = Vec::new();
    for alg in HashAlg::ALL {
        for parameters in [Some(AnyRef::NULL), None] {
            if let Some(der) = request_der(alg, parameters, hashes, &serial) {
                for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                    encoded.push(engine.encode(&der));
                }
            }
        }
    }
    // Without padding a form may equal another; keep the first (likelier) one.
    let mut seen = std::collections::HashSet::new();
    encoded.retain(|e| seen.insert(e.clone()));
    let prefixes: &[&str] = if ocsp_path.is_empty() { &[""] } else { &[ocsp_path, ""] };
    prefixes.iter().flat_map(|p| encoded.iter().map(move |e| format!("{p}/{e}"))).collect()
}

/// The DER INTEGER contents of a non-negative big-endian magnitude.
fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude.iter().position(|b| *b != 0).unwrap_or(magnitude.len().saturating_sub(1));
    let trimmed = &magnitude[start..];
    match trimmed.first() {
        None => vec![0],
        Some(b) if *b >= 0x80 => [&[0u8][..], trimmed].concat(),
        Some(_) => trimmed.to_vec(),
    }
}

/// An RFC 5019 request for one CertID: no nonce, no signature.
fn request_der(alg: HashAlg, parameters: Option<AnyRef<'_>>, hashes: &IssuerHashes, serial: &[u8]) -> Option<Vec<u8>> {
    let req_cert = CertID {
        hash_algorithm: AlgorithmIdentifierRef { oid: alg.oid(), parameters },
        issuer_name_hash: OctetStringRef::new(hashes.name_hash(alg)).ok()?,
        issuer_key_hash: OctetStringRef::new(hashes.key_hash(alg)).ok()?,
        serial_number: IntRef::new(serial).ok()?,
    };
    let request = OCSPRequest {
        tbs_request: TBSRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request { req_cert, single_request_extensions: None }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    request.to_der().ok()
}

/// What a replica refreshes on a status change: revocations younger than a
/// response's lifetime (older ones cannot be behind a cached `good`).
pub struct CacheRefresh {
    pub refresher: Arc<Refresher>,
    /// The path of `[profile] ocsp_url` ("" or "/ocsp").
    pub ocsp_path: String,
    /// A response's lifetime (`[ocsp] next_update_hours`), in seconds.
    pub window_seconds: i64,
}

impl CacheRefresh {
    pub fn on_change(&self, responder: &crate::responder::Responder, change: &proto::registry::v1::StatusChange) {
        if change.status != proto::registry::v1::CertificateStatus::Revoked as i32 {
            return;
        }
        if crate::responder::unix_now().saturating_sub(change.revoked_at_unix) > self.window_seconds {
            return;
        }
        let Some(slot) = responder.issuers().iter().find(|s| s.label == change.issuer_label) else { return };
        let Ok(serial) = hex::decode(&change.serial) else { return };
        self.refresher.refresh(change.sequence, get_paths(&self.ocsp_path, &slot.hashes, &serial));
    }
}

/// Sends refreshes to every configured cache, each from its own queue.
pub struct Refresher {
    queues: Vec<mpsc::UnboundedSender<Batch>>,
    metrics: Arc<Metrics>,
}

impl Refresher {
    /// One worker per refresh URL (`http://host:port[/prefix]`); None without URLs.
    pub fn spawn(urls: &[String], metrics: Arc<Metrics>) -> Option<Arc<Refresher>> {
        if urls.is_empty() {
            return None;
        }
        let queues = urls
            .iter()
            .map(|url| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(worker(Target::parse(url), rx, metrics.clone()));
                tx
            })
            .collect();
        Some(Arc::new(Refresher { queues, metrics }))
    }

    /// Refreshes `paths` in every cache now and again after [`REPEAT`], as
    /// answers at feed sequence `sequence` or later.
    pub fn refresh(self: &Arc<Self>, sequence: u64, paths: Vec<String>) {
        let batch = Batch { sequence, paths: Arc::new(paths) };
        self.enqueue(&batch);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REPEAT).await;
            me.enqueue(&batch);
        });
    }

    fn enqueue(&self, batch: &Batch) {
        let n = batch.paths.len() as u64;
        for q in &self.queues {
            self.metrics.cache_refresh_pending.fetch_add(n, Relaxed);
            if q.send(batch.clone()).is_err() {
                // The worker only ends with the runtime.
                self.metrics.cache_refresh_pending.fetch_sub(n, Relaxed);
            }
        }
    }
}

/// The GET paths of one revocation and its feed sequence.
#[derive(Clone)]
struct Batch {
    sequence: u64,
    paths: Arc<Vec<String>>,
}

/// A refresh endpoint: where to connect, the Host header and the path prefix.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    authority: String,
    prefix: String,
}

impl Target {
    fn parse(url: &str) -> Target {
        let rest = url.trim().trim_start_matches("http://");
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        Target { url: url.to_owned(), authority: authority.to_owned(), prefix: prefix.to_owned() }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Refreshes at once over this many connections to a cache.
const LANES: usize = 4;

/// Paths waiting for a refresh, likeliest forms first across revocations: a
/// card's revocation is two feed changes of some thirty paths each, and both
/// certificates' likeliest paths go in the first round instead of the second
/// certificate's after all of the first's.
#[derive(Default)]
struct Pending {
    queue: BinaryHeap<Reverse<Waiting>>,
    arrivals: u64,
}

/// Ordered by rank (the path's place in its batch), then arrival.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Waiting {
    rank: usize,
    arrival: u64,
    sequence: u64,
    path: String,
}

impl Pending {
    fn add(&mut self, batch: &Batch) {
        for (rank, path) in batch.paths.iter().enumerate() {
            self.arrivals += 1;
            let waiting = Waiting { rank, arrival: self.arrivals, sequence: batch.sequence, path: path.clone() };
            self.queue.push(Reverse(waiting));
        }
    }

    /// A failed refresh keeps its rank and arrival, so it is taken again first.
    fn retry(&mut self, waiting: Waiting) {
        self.queue.push(Reverse(waiting));
    }

    fn next(&mut self) -> Option<Waiting> {
        self.queue.pop().map(|Reverse(w)| w)
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

async fn worker(target: Target, mut rx: mpsc::UnboundedReceiver<Batch>, metrics: Arc<Metrics>) {
    let mut pending = Pending::default();
    let mut conns: [Option<Sender>; LANES] = Default::default();
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(batch) => pending.add(&batch),
                None => return,
            }
        }
        while let Ok(batch) = rx.try_recv() {
            pending.add(&batch);
        }
        // One path per connection at a time: the likeliest forms first.
        let round: Vec<Waiting> = (0..LANES).map_while(|_| pending.next()).collect();
        let [c0, c1, c2, c3] = &mut conns;
        let path = |i: usize| round.get(i).map(|w| (w.sequence, w.path.as_str()));
        let results = tokio::join!(
            lane(&target, c0, path(0)),
            lane(&target, c1, path(1)),
            lane(&target, c2, path(2)),
            lane(&target, c3, path(3)),
        );
        let mut failed = Vec::new();
        let mut error = String::new();
        for (i, result) in [results.0, results.1, results.2, results.3].into_iter().enumerate() {
            match result {
                None => {}
                Some(Ok(())) => {
                    metrics.cache_refresh_pending.fetch_sub(1, Relaxed);
                    metrics.cache_refreshes.fetch_add(1, Relaxed);
                }
                Some(Err(e)) => {
                    conns[i] = None;
                    metrics.cache_refresh_failures.fetch_add(1, Relaxed);
                    failed.push(round[i].clone());
                    error = e.to_string();
                }
            }
        }
        if failed.is_empty() {
            if failing {
                tracing::info!(cache = %target.url, "cache refreshes work again");
                failing = false;
            }
            backoff = MIN_BACKOFF;
            continue;
        }
        // After a pause; they keep their rank and arrival, so they go first again.
        for waiting in failed {
            pending.retry(waiting);
        }
        if !failing {
            tracing::error!(
                cache = %target.url, error = %error, pending = pending.len(),
                "cache refresh failed: the cache may serve a revoked certificate as good; retrying"
            );
            failing = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why one refresh failed; logged, and the path is retried.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error("connecting to {authority}: timed out")]
    ConnectTimeout { authority: String },
    #[error("connecting to {authority}: {source}")]
    Connect { authority: String, source: std::io::Error },
    #[error("handshake: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("request: {0}")]
    Build(#[source] hyper::http::Error),
    #[error("connection: {0}")]
    Connection(#[source] hyper::Error),
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("the answer is not cacheable (tryLater or another error status)")]
    NotCacheable,
    #[error("HTTP {0}")]
    Status(u16),
}

async fn lane(
    target: &Target,
    conn: &mut Option<Sender>,
    path: Option<(u64, &str)>,
) -> Option<Result<(), RefreshError>> {
    let (sequence, path) = path?;
    Some(refresh_one(target, conn, sequence, path).await)
}

/// One GET through the refresh listener. Done when the answer is one the
/// cache keeps (200 with a max-age); tryLater and other errors say no-cache.
async fn refresh_one(
    target: &Target,
    conn: &mut Option<Sender>,
    sequence: u64,
    path: &str,
) -> Result<(), RefreshError> {
    let sender = match conn {
        Some(s) if !s.is_closed() => s,
        _ => conn.insert(connect(&target.authority).await?),
    };
    let req = hyper::Request::builder()
        .method("GET")
        .uri(format!("{}{path}", target.prefix))
        .header(hyper::header::HOST, &target.authority)
        .header(crate::http::MIN_SEQUENCE, sequence)
        .body(Empty::new())
        .map_err(RefreshError::Build)?;
    sender.ready().await.map_err(RefreshError::Connection)?;
    let resp = tokio::time::timeout(TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| RefreshError::Timeout)?
        .map_err(RefreshError::Request)?;
    let (parts, body) = resp.into_parts();
    // Read the body, so the connection can carry the next refresh.
    let _ = tokio::time::timeout(TIMEOUT, http_body_util::BodyExt::collect(body)).await;
    let cacheable = parts
        .headers
        .get(hyper::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("max-age"));
    match parts.status.as_u16() {
        200 if cacheable => Ok(()),
        200 => Err(RefreshError::NotCacheable),
        other => Err(RefreshError::Status(other)),
    }
}

async fn connect(authority: &str) -> Result<Sender, RefreshError> {
    tokio::time::timeout(TIMEOUT, tls::net::dial_http1(authority, "cache refresh"))
        .await
        .map_err(|_| RefreshError::ConnectTimeout { authority: authority.to_owned() })?
        .map_err(RefreshError::from)
}

impl From<tls::net::DialError> for RefreshError {
    fn from(e: tls::net::DialError) -> RefreshError {
        match e {
            tls::net::DialError::Connect { authority, source } => RefreshError::Connect { authority, source },
            tls::net::DialError::Handshake(e) => RefreshError::Handshake(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_paths_go_likeliest_first_across_revocations_and_a_retry_goes_first_again() {
        let batch = |sequence: u64, paths: &[&str]| Batch {
            sequence,
            paths: Arc::new(paths.iter().map(|p| p.to_string()).collect()),
        };
        let mut pending = Pending::default();
        pending.add(&batch(7, &["a0", "a1", "a2"]));
        pending.add(&batch(8, &["b0", "b1"]));
        let first = pending.next().unwrap();
        assert_eq!((first.sequence, first.path.as_str()), (7, "a0"));
        pending.retry(first);
        let order: Vec<_> = std::iter::from_fn(|| pending.next()).map(|w| (w.sequence, w.path)).collect();
        let expected = [(7, "a0"), (8, "b0"), (7, "a1"), (8, "b1"), (7, "a2")];
        assert_eq!(order, expected.map(|(s, p)| (s, p.to_owned())));
        assert!(pending.is_empty());
    }

    #[test]
    fn serials_become_der_integers() {
        assert_eq!(der_integer(&[0x00, 0x12]), [0x12]);
        assert_eq!(der_integer(&[0x92, 0x01]), [0x00, 0x92, 0x01]);
        assert_eq!(der_integer(&[0, 0]), [0]);
        assert_eq!(der_integer(&[]), [0]);
    }

    #[test]
    fn every_get_form_of_a_serial_decodes_to_its_certid() {
        let hashes = IssuerHashes::new(b"issuer name", b"issuer key");
        let serial = [0x9a, 0xbc, 0x01];
        let paths = get_paths("/ocsp", &hashes, &serial);
        // 2 algorithms x 2 parameter forms x (up to) 4 encodings, at 2 prefixes.
        assert!(paths.len() >= 2 * 2 * 2 * 2 && paths.len() <= 2 * 2 * 4 * 2, "{}", paths.len());
        assert!(paths.iter().any(|p| p.starts_with("/ocsp/")) && paths.iter().any(|p| !p.starts_with("/ocsp/")));
        for path in &paths {
            // base64 has '/' in it: strip the prefix, not up to the last slash.
            let b64 = path.strip_prefix("/ocsp/").or_else(|| path.strip_prefix('/')).unwrap_or(path);
            let der = STANDARD
                .decode(b64)
                .or_else(|_| STANDARD_NO_PAD.decode(b64))
                .or_else(|_| URL_SAFE.decode(b64))
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let other = IssuerHashes::new(b"another name", b"another key");
            let parsed =
                crate::request::parse(&der, 8, &[other, hashes.clone()]).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert_eq!(parsed.items.len(), 1);
            assert_eq!((parsed.items[0].issuer, parsed.items[0].serial), (1, &[0x00, 0x9a, 0xbc, 0x01][..]));
            assert!(parsed.nonce.is_none());
        }
    }
}
