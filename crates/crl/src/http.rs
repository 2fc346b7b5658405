//! The HTTP distribution point: each CRL at the path of its URL (DER,
//! `application/pkix-crl`), `<path>.pem` for PEM, with ETag, Last-Modified
//! and Cache-Control up to nextUpdate.

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::error::{http_status, CrlError};
use crate::published::CrlStore;
use crate::repository::Repository;

/// Longest max-age we hand out, so caches re-check at least hourly.
const MAX_AGE_CAP: i64 = 3600;

/// Bounds of the HTTP distribution point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body (413 beyond it; a CRL request has none).
    pub body_bytes: usize,
    /// Time a request may take (503 beyond it).
    pub timeout: Duration,
    /// Time a connection has to send a request's headers (then it is closed).
    pub header_read_timeout: Duration,
    /// Connections served at once (further ones wait in the listen backlog).
    pub max_connections: usize,
}

impl HttpLimits {
    pub fn from_config(limits: &config::LimitsConfig, crl: &config::CrlConfig) -> HttpLimits {
        HttpLimits {
            body_bytes: limits.http_body_bytes,
            timeout: Duration::from_secs(limits.request_timeout_seconds),
            header_read_timeout: Duration::from_millis(crl.http_read_timeout_ms.max(1)),
            max_connections: crl.http_max_connections.max(1),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&config::LimitsConfig::default(), &config::CrlConfig::default())
    }
}

pub fn router(store: Arc<CrlStore>) -> Router {
    router_with_limits(store, None, HttpLimits::default())
}

/// [`router`] with the repository (when `profile.cps_uri` is served here) and
/// explicit limits: bodies over `body_bytes` (by their Content-Length, or as
/// read) are refused with 413, requests slower than `timeout` get 503.
pub fn router_with_limits(store: Arc<CrlStore>, repository: Option<Arc<Repository>>, limits: HttpLimits) -> Router {
    let mut router = Router::new().route("/metrics", axum::routing::get(metrics)).fallback(serve_crl).with_state(store);
    if let Some(repository) = repository {
        router = router.merge(repository.router());
    }
    with_limits(router, limits)
}

/// Prometheus text: seconds until each served CRL's nextUpdate (negative once
/// it has passed), so a CRL or the root's ARL going stale can be alerted on.
async fn metrics(State(store): State<Arc<CrlStore>>) -> Response {
    use std::fmt::Write;
    let now = OffsetDateTime::now_utc();
    let mut text = String::from(
        "# HELP hpki_crl_seconds_to_next_update Seconds until the nextUpdate of a served CRL (negative: expired).\n\
         # TYPE hpki_crl_seconds_to_next_update gauge\n",
    );
    let mut ages = String::from(
        "# HELP hpki_crl_age_seconds Seconds since the thisUpdate of a served CRL.\n\
         # TYPE hpki_crl_age_seconds gauge\n",
    );
    for (path, arl) in store.paths() {
        let Ok(Some(file)) = store.get(&path) else { continue };
        let _ = writeln!(
            ages,
            "hpki_crl_age_seconds{{path=\"{path}\",arl=\"{arl}\"}} {}",
            (now - file.this_update).whole_seconds()
        );
        let Some(next) = file.next_update else { continue };
        let _ = writeln!(
            text,
            "hpki_crl_seconds_to_next_update{{path=\"{path}\",arl=\"{arl}\"}} {}",
            (next - now).whole_seconds()
        );
    }
    text.push_str(&ages);
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

fn with_limits(router: Router, limits: HttpLimits) -> Router {
    router
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| limit(limits, req, next)))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
}

/// Refuses an announced body over the limit before the handler runs, and
/// bounds the time the handler may take.
async fn limit(limits: HttpLimits, req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.body_bytes as u64) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    }
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limits.timeout, "CRL HTTP request timed out");
            plain(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n")
        }
    }
}

/// Serves `store` on `listener` until `shutdown` resolves, through the accept
/// loop shared with the OCSP responder ([`tls::net::serve_http`]): a
/// connection that does not send a request's headers within
/// `limits.header_read_timeout` is closed (slowloris), and at most
/// `limits.max_connections` are served at once.
pub async fn serve(
    listener: TcpListener,
    store: Arc<CrlStore>,
    repository: Option<Arc<Repository>>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CrlError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let listener_limits = tls::net::HttpListenerLimits {
        header_read_timeout: limits.header_read_timeout,
        max_connections: limits.max_connections,
        threads: 0,
        flatten_writes: false,
    };
    let on_timeout = || tracing::debug!("CRL HTTP connection closed: no request headers in time");
    tls::net::serve_http(listener, router_with_limits(store, repository, limits), listener_limits, on_timeout, rx)
        .await;
    Ok(())
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.to_owned()).into_response()
}

/// True when If-None-Match lists `etag` (weak or strong) or is `*`.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag))
}

async fn serve_crl(State(store): State<Arc<CrlStore>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (path, as_pem) = match uri.path().strip_suffix(".pem") {
        Some(p) => (p, true),
        None => (uri.path(), false),
    };
    let file = match store.get(path) {
        Ok(Some(f)) => f,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such CRL\n"),
        Err(e) => {
            tracing::error!(path, error = %e, "cannot serve CRL");
            return plain(http_status(&e), "CRL unavailable\n");
        }
    };
    let etag = match as_pem {
        false => file.etag.clone(),
        true => format!("{}-pem\"", file.etag.trim_end_matches('"')),
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let max_age = file.next_update.map_or(0, |n| (n.unix_timestamp() - now).clamp(0, MAX_AGE_CAP));
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &file.last_modified)
        .header(header::CACHE_CONTROL, format!("public, max-age={max_age}, no-transform"));
    if etag_matches(&headers, &etag) {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return builder.body(Body::empty()).unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, ""));
    }
    let (content_type, body) = match as_pem {
        false => ("application/pkix-crl", file.der.clone()),
        true => ("application/x-pem-file", file.pem()),
    };
    builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response\n"))
}

#[cfg(test)]
pub(crate) mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::published::{tests_support::sample_crl, CrlInfo, CrlKind};

    /// A raw HTTP/1.1 request; returns (status line + headers, body).
    pub(crate) async fn request(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        extra: &str,
    ) -> (String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (String::from_utf8_lossy(&raw[..split]).into_owned(), raw[split + 4..].to_vec())
    }

    fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn serves_der_pem_etag_304_404_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:8081/crl/sign.crl".to_string();
        let store = Arc::new(CrlStore::open(dir.path().into(), &[(url.clone(), false)]).unwrap());
        let der = sample_crl(3);
        store
            .publish(
                der.clone(),
                CrlInfo {
                    issuer: "signing".into(),
                    kind: CrlKind::Full,
                    partition: 0,
                    crl_number: 3,
                    base_crl_number: 0,
                    this_update: 1_700_000_000,
                    next_update: 1_700_003_600,
                    url,
                    entries: 0,
                    sha256: String::new(),
                    feed_sequence: 0,
                },
            )
            .unwrap();
        let limits = HttpLimits { body_bytes: 1024, ..HttpLimits::default() };
        let (addr, stop, server) = start(store, limits).await;

        let (head, body) = request(addr, "GET", "/crl/sign.crl", "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(header_value(&head, "content-type"), Some("application/pkix-crl"));
        assert_eq!(body, der);
        let etag = header_value(&head, "etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
        assert_eq!(header_value(&head, "last-modified"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
        // nextUpdate is in the past for this sample: nothing to cache.
        assert_eq!(header_value(&head, "cache-control"), Some("public, max-age=0, no-transform"));

        let (head, body) = request(addr, "GET", "/crl/sign.crl", &format!("If-None-Match: \"x\", {etag}\r\n")).await;
        assert!(head.starts_with("HTTP/1.1 304"), "{head}");
        assert!(body.is_empty());
        assert_eq!(header_value(&head, "etag"), Some(etag.as_str()));

        let (head, body) = request(addr, "GET", "/crl/sign.crl.pem", &format!("If-None-Match: {etag}\r\n")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "PEM has its own ETag: {head}");
        assert_eq!(header_value(&head, "content-type"), Some("application/x-pem-file"));
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with("-----BEGIN X509 CRL-----\n") && text.trim_end().ends_with("-----END X509 CRL-----"),
            "{text}"
        );

        let (head, body) = request(addr, "HEAD", "/crl/sign.crl", "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(header_value(&head, "content-length"), Some(der.len().to_string().as_str()));
        assert!(body.is_empty(), "HEAD has no body");

        let (head, body) = request(addr, "GET", "/metrics", "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let text = String::from_utf8(body).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("hpki_crl_seconds_to_next_update{path=\"/crl/sign.crl\",arl=\"false\"} "));
        let left: i64 = line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse().ok()).expect(&text);
        let expected = 1_700_003_600 - OffsetDateTime::now_utc().unix_timestamp();
        assert!((expected - 5..=expected + 5).contains(&left), "the sample expired long ago: {text}");
        let age: i64 = text
            .lines()
            .find(|l| l.starts_with("hpki_crl_age_seconds{path=\"/crl/sign.crl\",arl=\"false\"} "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .expect(&text);
        let expected = OffsetDateTime::now_utc().unix_timestamp() - 1_700_000_000;
        assert!((expected - 5..=expected + 5).contains(&age), "age from thisUpdate: {text}");

        for path in ["/crl/other.crl", "/", "/crl/sign.crl/x", "/crl/sign.crl.json"] {
            let (head, _) = request(addr, "GET", path, "").await;
            assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
        }
        let (head, _) = request(addr, "POST", "/crl/sign.crl", "Content-Length: 0\r\n").await;
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");

        // A body over the limit is refused before anything reads it, whatever the method.
        for method in ["POST", "GET"] {
            let (head, body) = request(addr, method, "/crl/sign.crl", "Content-Length: 100000\r\n").await;
            assert!(head.starts_with("HTTP/1.1 413"), "{method}: {head}");
            assert_eq!(String::from_utf8_lossy(&body), "request body too large\n");
        }
        // The server lives on.
        let (head, body) = request(addr, "GET", "/crl/sign.crl", "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, der);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A CRL store with nothing published (enough to be served 404s).
    fn empty_store(dir: &std::path::Path) -> Arc<CrlStore> {
        let url = "http://127.0.0.1:8081/crl/sign.crl".to_string();
        Arc::new(CrlStore::open(dir.into(), &[(url, false)]).unwrap())
    }

    /// Serves `store` on a free port until the sender is used.
    async fn start(
        store: Arc<CrlStore>,
        limits: HttpLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), CrlError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, store, None, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    #[tokio::test]
    async fn a_slowloris_connection_is_closed_after_the_header_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let limits = HttpLimits { header_read_timeout: Duration::from_millis(300), ..HttpLimits::default() };
        let (addr, stop, server) = start(empty_store(dir.path()), limits).await;
        // Slowloris: the request line, then nothing more.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /crl/sign.crl HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the CRL listener kept a slowloris connection open for 5 s");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 404"), "no answer to unfinished headers");
        // A complete request is still answered.
        let (head, _) = request(addr, "GET", "/crl/none.crl", "").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn beyond_the_connection_cap_a_new_connection_waits_for_a_free_slot() {
        let dir = tempfile::tempdir().unwrap();
        let limits = HttpLimits { max_connections: 2, ..HttpLimits::default() };
        let (addr, stop, server) = start(empty_store(dir.path()), limits).await;
        // Two idle connections fill the cap; a third waits until one goes.
        let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let idle2 = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = tokio::spawn(request(addr, "GET", "/crl/none.crl", ""));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!third.is_finished(), "served beyond the cap of 2");
        drop(idle);
        let (head, _) =
            tokio::time::timeout(Duration::from_secs(5), third).await.expect("served once a slot freed").unwrap();
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        drop(idle2);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn slow_request_gets_503_and_fast_one_passes() {
        let slow = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/fast", axum::routing::get(|| async { "ok" }));
        let app = with_limits(slow, HttpLimits { timeout: Duration::from_millis(200), ..HttpLimits::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let started = std::time::Instant::now();
        let (head, body) = request(addr, "GET", "/slow", "").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert_eq!(String::from_utf8_lossy(&body), "request timed out\n");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        let (head, body) = request(addr, "GET", "/fast", "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"ok");
        server.abort();
    }
}
