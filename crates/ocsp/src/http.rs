//! HTTP (RFC 6960 Appendix A, RFC 5019): POST of a DER request at `/` and at
//! the path of the configured OCSP URL, and the GET form `/{url-encoded base64}`
//! under either. Caching headers on GET; `If-None-Match` gets 304.
//!
//! Time bounds ([`HttpLimits`]): a request body must arrive within the read
//! timeout (408 and the connection closed beyond it), and the answer is
//! tryLater once the request deadline passes. The headers' bound belongs to
//! the connection (`serve_http`).
//!
//! The hot path ([`OcspService`]): a GET for a response already in the cache
//! is answered inside `call`, without a router, a boxed future or a heap
//! buffer for the decoded request (percent and base64 decoding go to stack
//! buffers). Anything else takes the general path ([`handle`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::error::OcspError;
use crate::responder::{unix_now, Answer, Caching, Responder};

const OCSP_RESPONSE: HeaderValue = HeaderValue::from_static("application/ocsp-response");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// Sent by a replica's cache refresh (`cache_refresh`): the status-feed
/// sequence of the revocation it refreshes. A replica that has not applied it
/// yet waits up to [`CATCH_UP`], then answers 503 so the cache asks another;
/// it never puts a stale `good` back into the cache.
pub const MIN_SEQUENCE: &str = "hpki-min-sequence";
pub const CATCH_UP: Duration = Duration::from_secs(1);

/// Base64 with or without padding, standard or URL-safe alphabet (clients differ).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Time bounds of the OCSP listener, from `[ocsp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// For a request's headers (see `serve_http`) and, once they are in, for its body.
    pub read_timeout: Duration,
    /// For the answer once the request is read.
    pub request_timeout: Duration,
}

impl HttpLimits {
    pub fn from_config(c: &config::OcspConfig) -> HttpLimits {
        HttpLimits {
            read_timeout: Duration::from_millis(c.read_timeout_ms.max(1)),
            request_timeout: Duration::from_millis(c.request_timeout_ms.max(1)),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&config::OcspConfig::default())
    }
}

pub struct HttpState {
    pub responder: Arc<Responder>,
    /// Path of `profile.ocsp_url` without a trailing slash ("" when it is the root).
    pub ocsp_path: String,
    pub max_request_bytes: usize,
    /// `[ocsp] trusted_proxies`: whose X-Forwarded-For names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The path part of the configured OCSP URL: "http://h:1/ocsp/" -> "/ocsp".
pub fn ocsp_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/').to_owned()
}

/// [`router_with_limits`] with the default `[ocsp]` time bounds.
pub fn router(state: Arc<HttpState>) -> Router {
    router_with_limits(state, HttpLimits::default())
}

pub fn router_with_limits(state: Arc<HttpState>, limits: HttpLimits) -> Router {
    Router::new().fallback_service(service(state, limits))
}

/// The OCSP endpoint as a plain service, for the accept loop without a router.
pub fn service(state: Arc<HttpState>, limits: HttpLimits) -> OcspService {
    OcspService { st: state, limits }
}

/// See the module documentation. Takes requests with any body (hyper's, axum's).
#[derive(Clone)]
pub struct OcspService {
    st: Arc<HttpState>,
    limits: HttpLimits,
}

/// The answer of [`OcspService`]: ready at once (cached GET) or to be awaited.
pub enum OcspFuture {
    Ready(Option<Response>),
    Pending(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for OcspFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            OcspFuture::Ready(r) => {
                Poll::Ready(Ok(r.take().unwrap_or_else(|| reject(&OcspError::Internal("answer polled twice".into())))))
            }
            OcspFuture::Pending(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

impl<B> tower_service::Service<axum::http::Request<B>> for OcspService
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = OcspFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> OcspFuture {
        if let Some(resp) = hot_get(&self.st, &req) {
            return OcspFuture::Ready(Some(resp));
        }
        let (st, limits) = (self.st.clone(), self.limits);
        OcspFuture::Pending(Box::pin(handle(st, limits, req.map(Body::new))))
    }
}

/// Longest base64 and DER a GET takes on the hot path; longer ones take the general path.
const HOT_B64: usize = 1024;
const HOT_DER: usize = 768;

/// A GET (or HEAD) whose pre-signed response is in the cache, answered
/// synchronously; None for everything else (a miss, a nonce, an error, a
/// refresh naming a feed sequence), which the general path answers.
fn hot_get<B>(st: &HttpState, req: &axum::http::Request<B>) -> Option<Response> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) || req.headers().contains_key(MIN_SEQUENCE) {
        return None;
    }
    let encoded = get_encoded(st, req.uri().path());
    let mut b64 = [0u8; HOT_B64];
    let n = percent_decode_into(encoded.as_bytes(), &mut b64).ok()?;
    let mut der = [0u8; HOT_DER];
    let m = B64.decode_slice(&b64[..n], &mut der).or_else(|_| B64_URL.decode_slice(&b64[..n], &mut der)).ok()?;
    if m == 0 || m > st.max_request_bytes {
        return None;
    }
    let answer = st.responder.cached_answer(&der[..m], unix_now())?;
    st.responder.metrics().count(answer.status);
    Some(respond(answer, true, req.headers()))
}

async fn handle(st: Arc<HttpState>, limits: HttpLimits, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let get = match parts.method {
        Method::GET | Method::HEAD => true,
        Method::POST => false,
        ref other => {
            let mut resp = reject(&OcspError::MethodNotAllowed(other.to_string()));
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            return resp;
        }
    };
    if get {
        if let Some(seq) = parts.headers.get(MIN_SEQUENCE).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
            if !caught_up(&st.responder, seq).await {
                return behind_the_feed(seq);
            }
        }
    }
    let der = if get {
        get_request(&st, parts.uri.path()).map(Bytes::from)
    } else {
        post_request(&st, limits.read_timeout, parts.uri.path(), &parts.headers, body).await
    };
    let der = match der {
        Ok(der) => der,
        Err(e) => {
            if e.response_status().is_some() {
                st.responder.metrics().count(Answer::error(&e).status);
            }
            if matches!(e, OcspError::SlowClient(_)) {
                st.responder.metrics().read_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return reject(&e);
        }
    };
    let peer = parts.extensions.get::<tls::net::PeerAddr>().map(|p| p.0.ip());
    let client = bucket_client(peer, &st.trusted_proxies, &parts.headers);
    let answer = st.responder.respond_for(&der, limits.request_timeout, client).await;
    st.responder.metrics().count(answer.status);
    respond(answer, get, &parts.headers)
}

/// The base64 part of a GET path (still percent-encoded).
fn get_encoded<'a>(st: &HttpState, path: &'a str) -> &'a str {
    match path.strip_prefix(st.ocsp_path.as_str()).and_then(|r| r.strip_prefix('/')) {
        Some(rest) if !st.ocsp_path.is_empty() => rest,
        _ => path.strip_prefix('/').unwrap_or(path),
    }
}

/// The base64 part of a GET path, decoded.
fn get_request(st: &HttpState, path: &str) -> Result<Vec<u8>, OcspError> {
    let encoded = get_encoded(st, path);
    // base64 grows 4/3 and percent-encoding up to 3x: anything longer is oversized.
    if encoded.len() > st.max_request_bytes.saturating_mul(4) + 16 {
        return Err(OcspError::Malformed("GET request too long".into()));
    }
    if encoded.is_empty() {
        return Err(OcspError::Malformed("GET without a request".into()));
    }
    let b64 = percent_decode(encoded.as_bytes())?;
    let der = B64
        .decode(&b64)
        .or_else(|_| B64_URL.decode(&b64))
        .map_err(|e| OcspError::Malformed(format!("GET request is not base64: {e}")))?;
    if der.len() > st.max_request_bytes {
        return Err(OcspError::Malformed(format!("request of {} bytes is over the limit", der.len())));
    }
    Ok(der)
}

async fn post_request(
    st: &HttpState,
    read_timeout: Duration,
    path: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, OcspError> {
    let trimmed = path.trim_end_matches('/');
    if !(trimmed.is_empty() || trimmed == st.ocsp_path) {
        return Err(OcspError::NotFound(path.to_owned()));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_request_bytes as u64) {
        return Err(OcspError::Malformed("request body over the limit".into()));
    }
    match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, st.max_request_bytes)).await {
        Ok(read) => read.map_err(|e| OcspError::Malformed(format!("request body: {e}"))),
        Err(_) => Err(OcspError::SlowClient(read_timeout)),
    }
}

fn percent_decode(s: &[u8]) -> Result<Vec<u8>, OcspError> {
    let mut out = vec![0u8; s.len()];
    let n = percent_decode_into(s, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Percent-decodes `s` into `out`; the decoded length, or an error for a bad
/// escape or an `out` too short.
fn percent_decode_into(s: &[u8], out: &mut [u8]) -> Result<usize, OcspError> {
    let mut i = 0;
    let mut n = 0;
    while i < s.len() {
        let slot = out.get_mut(n).ok_or_else(|| OcspError::Malformed("GET request too long".into()))?;
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| OcspError::Malformed("truncated %-escape".into()))?;
            match (hex_val(hex[0]), hex_val(hex[1])) {
                (Some(h), Some(l)) => *slot = h << 4 | l,
                _ => return Err(OcspError::Malformed("bad %-escape".into())),
            }
            i += 3;
        } else {
            *slot = s[i];
            i += 1;
        }
        n += 1;
    }
    Ok(n)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whose per-client live-signing bucket a request draws on: none for a
/// revocation refresh (a replica's own request, passed on by the trusted
/// cache's refresh listener, which alone may send [`MIN_SEQUENCE`]), so that a
/// burst of revocations cannot drain the bucket of the address the replicas
/// and the cache share; it still takes a token of the global bucket.
fn bucket_client(
    peer: Option<std::net::IpAddr>,
    trusted: &[std::net::IpAddr],
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    let from_cache = peer.is_some_and(|p| trusted.contains(&p));
    if from_cache && headers.contains_key(MIN_SEQUENCE) {
        return None;
    }
    client_address(peer, trusted, headers)
}

/// The client of a request for its live-signing bucket: the peer, or for a
/// trusted cache in front, the last address of its X-Forwarded-For (the one
/// the cache itself saw; earlier ones are the client's word).
fn client_address(
    peer: Option<std::net::IpAddr>,
    trusted: &[std::net::IpAddr],
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|a| a.trim().parse().ok());
    Some(forwarded.unwrap_or(peer))
}

/// Whether this replica has applied feed sequence `seq`, waiting up to [`CATCH_UP`].
async fn caught_up(responder: &Responder, seq: u64) -> bool {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        if responder.metrics().feed_sequence.load(std::sync::atomic::Ordering::Relaxed) >= seq {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn behind_the_feed(seq: u64) -> Response {
    let mut resp = Response::new(Body::from(format!("this replica has not applied status-feed sequence {seq} yet\n")));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn reject(e: &OcspError) -> Response {
    let answer = Answer::error(e);
    let mut resp = Response::new(Body::from(answer.der));
    *resp.status_mut() = e.http_status();
    if e.response_status().is_some() {
        resp.headers_mut().insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, NO_CACHE);
    if matches!(e, OcspError::SlowClient(_)) {
        // The rest of the body may still be dribbling in: do not wait for it.
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn respond(answer: Answer, get: bool, req_headers: &HeaderMap) -> Response {
    let caching = answer.caching.filter(|_| get);
    let etag = caching.map(|c| etag_header(&c));
    let not_modified = match (&etag, req_headers.get(header::IF_NONE_MATCH)) {
        (Some(tag), Some(inm)) => if_none_match(inm, tag),
        _ => false,
    };
    let mut resp = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Body::from(answer.der))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    match (caching, etag) {
        (Some(c), Some(tag)) => {
            if let Some(v) = cache_control((c.next_update - unix_now()).max(0)) {
                h.insert(header::CACHE_CONTROL, v);
            }
            if let Some(v) = http_date(c.this_update) {
                h.insert(header::LAST_MODIFIED, v);
            }
            if let Some(v) = http_date(c.next_update) {
                h.insert(header::EXPIRES, v);
            }
            h.insert(header::ETAG, tag);
        }
        _ => {
            h.insert(header::CACHE_CONTROL, NO_CACHE);
        }
    }
    resp
}

fn etag_header(c: &Caching) -> HeaderValue {
    let mut s = [0u8; 2 + 24];
    s[0] = b'"';
    s[25] = b'"';
    let _ = hex::encode_to_slice(c.etag, &mut s[1..25]);
    HeaderValue::from_bytes(&s).unwrap_or(HeaderValue::from_static("\"\""))
}

/// `If-None-Match: "a", "b"` or `*`.
fn if_none_match(inm: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(inm) = inm.to_str() else { return false };
    let Ok(tag) = tag.to_str() else { return false };
    inm.split(',').map(|t| t.trim()).any(|t| t == "*" || t == tag || t.strip_prefix("W/") == Some(tag))
}

/// `max-age=N, public, no-transform, must-revalidate`, written without the formatter.
fn cache_control(max_age: i64) -> Option<HeaderValue> {
    const TAIL: &[u8] = b", public, no-transform, must-revalidate";
    let mut buf = [0u8; 8 + 20 + TAIL.len()];
    buf[..8].copy_from_slice(b"max-age=");
    let mut digits = [0u8; 20];
    let mut v = u64::try_from(max_age).ok()?;
    let mut d = digits.len();
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - d;
    buf[8..8 + len].copy_from_slice(&digits[d..]);
    buf[8 + len..8 + len + TAIL.len()].copy_from_slice(TAIL);
    HeaderValue::from_bytes(&buf[..8 + len + TAIL.len()]).ok()
}

/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix: i64) -> Option<HeaderValue> {
    HeaderValue::from_bytes(&timefmt::http_date_bytes(unix)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_cache_names_the_client_in_x_forwarded_for() {
        let cache: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let other: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1, 203.0.113.9"));
        // From the cache: the last forwarded address.
        assert_eq!(client_address(Some(cache), &[cache], &h), Some("203.0.113.9".parse().unwrap()));
        // From anyone else, or with no trusted cache: the header is ignored.
        assert_eq!(client_address(Some(other), &[cache], &h), Some(other));
        assert_eq!(client_address(Some(cache), &[], &h), Some(cache));
        // A trusted cache without (or with a bad) header: the cache itself.
        assert_eq!(client_address(Some(cache), &[cache], &HeaderMap::new()), Some(cache));
        h.insert("x-forwarded-for", HeaderValue::from_static("not-an-address"));
        assert_eq!(client_address(Some(cache), &[cache], &h), Some(cache));
        assert_eq!(client_address(None, &[cache], &h), None);
    }

    #[test]
    fn a_refresh_from_the_trusted_cache_spares_the_client_buckets() {
        let (cache, other): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.1".parse().unwrap(), "192.0.2.7".parse().unwrap());
        let mut refresh = HeaderMap::new();
        refresh.insert(MIN_SEQUENCE, HeaderValue::from_static("42"));
        assert_eq!(bucket_client(Some(cache), &[cache], &refresh), None);
        // Anyone else naming a sequence is still counted as themselves.
        assert_eq!(bucket_client(Some(other), &[cache], &refresh), Some(other));
        assert_eq!(bucket_client(Some(cache), &[], &refresh), Some(cache));
        // An ordinary request through the cache: the forwarded client.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(bucket_client(Some(cache), &[cache], &h), Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn the_ocsp_path_comes_from_the_url() {
        assert_eq!(ocsp_path("http://127.0.0.1:8082/ocsp"), "/ocsp");
        assert_eq!(ocsp_path("http://h/ocsp/"), "/ocsp");
        assert_eq!(ocsp_path("http://h"), "");
        assert_eq!(ocsp_path("http://h/"), "");
        assert_eq!(ocsp_path("http://h/a/b?x=1"), "/a/b");
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(http_date(784111777).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0).unwrap(), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn percent_decoding_is_strict_and_never_panics() {
        assert_eq!(percent_decode(b"MEow%2Bx%2f%3D").unwrap(), b"MEow+x/=");
        for bad in [&b"%"[..], b"%2", b"%zz", b"a%4"] {
            assert!(percent_decode(bad).is_err());
        }
        // Into a buffer: exactly full is fine, one byte short is an error.
        let mut out = [0u8; 3];
        assert_eq!(percent_decode_into(b"a%2Bb", &mut out).unwrap(), 3);
        assert_eq!(&out, b"a+b");
        assert!(percent_decode_into(b"a%2Bbc", &mut out).is_err());
    }

    #[test]
    fn cache_control_and_dates_without_the_formatter() {
        assert_eq!(cache_control(0).unwrap(), "max-age=0, public, no-transform, must-revalidate");
        assert_eq!(cache_control(86_399).unwrap(), "max-age=86399, public, no-transform, must-revalidate");
        assert!(cache_control(-1).is_none());
        assert_eq!(http_date(4_102_444_799).unwrap(), "Thu, 31 Dec 2099 23:59:59 GMT");
        assert_eq!(http_date(951_782_400).unwrap(), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert!(http_date(253_402_300_800).is_none(), "year 10000");
    }

    #[tokio::test]
    async fn a_cached_get_is_answered_at_once_as_the_general_path_would() {
        use tower_service::Service;
        let ca = crate::responder::tests::ca();
        let source = Arc::new(crate::testkit::MapSource::default());
        let r = Arc::new(ca.responder(ca.settings(), source.clone()));
        let serial = [0x42, 0x13, 0x07];
        source.set(&serial, &ca.label(0), crate::status::CertState::Good);
        let der = crate::request::tests::build(&r.issuers()[0].hashes, crate::issuers::HashAlg::Sha1, &[&serial], None);
        let enc = base64::engine::general_purpose::STANDARD
            .encode(&der)
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let st = Arc::new(HttpState {
            responder: r.clone(),
            ocsp_path: "/ocsp".into(),
            max_request_bytes: 8192,
            trusted_proxies: Vec::new(),
        });
        let mut svc = service(st, HttpLimits::default());
        let get = || axum::http::Request::get(format!("/ocsp/{enc}")).body(Body::empty()).unwrap();
        let hits = || r.metrics().cache_hits.load(std::sync::atomic::Ordering::Relaxed);

        // A miss: the general path signs (and caches).
        let f = svc.call(get());
        assert!(matches!(f, OcspFuture::Pending(_)), "a miss took the hot path");
        let first = f.await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let (first_head, first_body) = first.into_parts();
        let first_body = axum::body::to_bytes(first_body, usize::MAX).await.unwrap();

        // Now cached: ready at once, the same bytes and caching headers, counted as a hit.
        let before = hits();
        let f = svc.call(get());
        assert!(matches!(f, OcspFuture::Ready(_)), "a cached GET took the general path");
        let (head, body) = f.await.unwrap().into_parts();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(axum::body::to_bytes(body, usize::MAX).await.unwrap(), first_body);
        for h in [header::CONTENT_TYPE, header::ETAG, header::LAST_MODIFIED, header::EXPIRES] {
            assert_eq!(head.headers.get(&h), first_head.headers.get(&h), "{h}");
            assert!(head.headers.contains_key(&h), "{h}");
        }
        assert!(head.headers[header::CACHE_CONTROL].to_str().unwrap().starts_with("max-age="));
        assert_eq!(hits(), before + 1);

        // If-None-Match with its ETag: 304 on the hot path too.
        let mut conditional = get();
        conditional.headers_mut().insert(header::IF_NONE_MATCH, head.headers[header::ETAG].clone());
        let f = svc.call(conditional);
        assert!(matches!(f, OcspFuture::Ready(_)));
        assert_eq!(f.await.unwrap().status(), StatusCode::NOT_MODIFIED);

        // A refresh naming a feed sequence, a POST and a bad path never take it.
        let mut refresh = get();
        refresh.headers_mut().insert(MIN_SEQUENCE, HeaderValue::from_static("0"));
        assert!(matches!(svc.call(refresh), OcspFuture::Pending(_)));
        let post = axum::http::Request::post("/ocsp").body(Body::from(der.clone())).unwrap();
        let f = svc.call(post);
        assert!(matches!(f, OcspFuture::Pending(_)));
        let posted = axum::body::to_bytes(f.await.unwrap().into_body(), usize::MAX).await.unwrap();
        assert_eq!(posted, first_body);
        let bad = axum::http::Request::get("/ocsp/%zz").body(Body::empty()).unwrap();
        let f = svc.call(bad);
        assert!(matches!(f, OcspFuture::Pending(_)));
        let malformed = axum::body::to_bytes(f.await.unwrap().into_body(), usize::MAX).await.unwrap();
        assert_eq!(malformed[..], crate::encode::error_response(crate::asn1::OCSPResponseStatus::MalformedRequest)[..]);
    }

    #[test]
    fn if_none_match_lists_and_stars() {
        let tag = HeaderValue::from_static("\"abc\"");
        assert!(if_none_match(&HeaderValue::from_static("\"x\", \"abc\""), &tag));
        assert!(if_none_match(&HeaderValue::from_static("*"), &tag));
        assert!(if_none_match(&HeaderValue::from_static("W/\"abc\""), &tag));
        assert!(!if_none_match(&HeaderValue::from_static("\"abcd\""), &tag));
    }
}
