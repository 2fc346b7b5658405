//! HTTP (RFC 6960 Appendix A, RFC 5019): POST of a DER request at `/` and at
//! the path of the configured OCSP URL, and the GET form `/{url-encoded base64}`
//! under either. Caching headers on GET; `If-None-Match` gets 304.
//!
//! Time bounds ([`HttpLimits`]): a request body must arrive within the read
//! timeout (408 and the connection closed beyond it), and the answer is
//! tryLater once the request deadline passes. The headers' bound belongs to
//! the connection (`serve_http`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
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
    Router::new()
        .fallback(move |State(st): State<Arc<HttpState>>, req: Request| handle(st, limits, req))
        .with_state(state)
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
    let client = client_address(peer, &st.trusted_proxies, &parts.headers);
    let answer = st.responder.respond_for(&der, limits.request_timeout, client).await;
    st.responder.metrics().count(answer.status);
    respond(answer, get, &parts.headers)
}

/// The base64 part of a GET path, decoded.
fn get_request(st: &HttpState, path: &str) -> Result<Vec<u8>, OcspError> {
    let encoded = match path.strip_prefix(st.ocsp_path.as_str()).and_then(|r| r.strip_prefix('/')) {
        Some(rest) if !st.ocsp_path.is_empty() => rest,
        _ => path.strip_prefix('/').unwrap_or(path),
    };
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
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| OcspError::Malformed("truncated %-escape".into()))?;
            let hi = hex_val(hex[0]);
            let lo = hex_val(hex[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(OcspError::Malformed("bad %-escape".into())),
            }
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
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
            let max_age = (c.next_update - unix_now()).max(0);
            if let Ok(v) = HeaderValue::try_from(format!("max-age={max_age}, public, no-transform, must-revalidate")) {
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

/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix: i64) -> Option<HeaderValue> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    let s = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    );
    HeaderValue::try_from(s).ok()
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
