//! Running the responder: responder certificates, the cache and its
//! background work (feed, refresh, renewal), the OCSP and metrics listeners.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache_refresh::{CacheRefresh, Refresher};
use crate::error::OcspError;
use crate::http::{self, HttpLimits, HttpState};
use crate::issuers::IssuerHashes;
use crate::metrics::{Gauges, Metrics};
use crate::responder::{IssuerSlot, Responder, Settings};
use crate::responder_cert::{self, LoadedIssuer, Outcome, ResponderCertStatus};
use crate::signer::ResponderIdentity;
use crate::source::{self, AuditError, AuditEvent, AuditSink, RegistrySource};
use crate::{feed, feed::now_ms_pub as now_ms};

/// How often the registry's feed position is polled (lag metric).
const POSITION_TICK: Duration = Duration::from_secs(5);

/// How soon audit entries the registry did not take are offered again (or
/// at the next renewal check, when that comes first).
const AUDIT_RETRY: Duration = Duration::from_secs(30);
/// Undelivered audit entries kept. At most two come per renewal, so only a
/// registry away for dozens of renewals fills it.
const MAX_PENDING_AUDIT: usize = 64;

/// Renew a responder certificate when a third of its validity (at least two
/// response lifetimes) is left, so no response outlives its signer's certificate.
pub fn renew_window(c: &config::OcspConfig) -> time::Duration {
    let validity = time::Duration::days(i64::from(c.responder_validity_days.max(1)));
    let two_responses = time::Duration::hours(i64::from(c.next_update_hours) * 2);
    let third: time::Duration = validity / 3i32;
    third.max(two_responses).min(validity - time::Duration::hours(1))
}

pub(crate) fn slots(loaded: Vec<LoadedIssuer>) -> Result<Vec<IssuerSlot>, OcspError> {
    loaded
        .into_iter()
        .map(|l| {
            let identity = ResponderIdentity::new(l.responder_cert, Arc::new(l.responder_key))?;
            Ok(IssuerSlot::new(l.name, l.label, IssuerHashes::from_ca(&l.ca), identity))
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OcspError> + Send + 'static,
) -> Result<T, OcspError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| OcspError::Internal(format!("blocking task: {e}")))?
}

/// Serves OCSP on `http` and Prometheus metrics on `metrics` until `shutdown`.
/// Issues or renews the responder certificates first (see
/// `ensure_responder_certificates`).
pub async fn serve(
    cfg: &Config,
    hsm: hsm::Hsm,
    http: TcpListener,
    metrics: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OcspError> {
    cfg.ocsp.validate()?;
    let renew_within = renew_window(&cfg.ocsp);
    let client = source::registry_client(&cfg.ocsp.registry_url)?;
    let registry = Arc::new(RegistrySource::new(client.clone()));
    let audit = Arc::new(ResponderAudit::new(registry.clone()));
    // Certificates issued now are audited like renewals (sent by the renewal
    // task, which retries while the registry is not up yet).
    let (c, h) = (cfg.clone(), hsm.clone());
    let each = blocking(move || Ok(responder_cert::ensure_each(&c, &h, renew_within))).await?;
    let done = audit.record(each)?;
    for d in &done {
        tracing::info!(ca = d.ca, certificate = ?d.certificate, not_after = %d.not_after, "responder certificate");
    }
    let (c, h) = (cfg.clone(), hsm.clone());
    let issuers = slots(blocking(move || responder_cert::load(&c, &h)).await?)?;
    let metrics_state = Arc::new(Metrics::default());
    let responder = Arc::new(Responder::new(Settings::from_config(&cfg.ocsp), issuers, registry, metrics_state));

    let refresh =
        Refresher::spawn(&cfg.ocsp.cache_refresh_urls, responder.metrics().clone()).map(|refresher| CacheRefresh {
            refresher,
            ocsp_path: http::ocsp_path(&cfg.profile.ocsp_url),
            window_seconds: i64::from(cfg.ocsp.next_update_hours) * 3600,
        });
    let tasks = [
        tokio::spawn(feed::follow_and_refresh(responder.clone(), client.clone(), refresh)),
        tokio::spawn(feed::poll_position(responder.clone(), client, POSITION_TICK)),
        tokio::spawn(refresh_loop(responder.clone(), Duration::from_secs(cfg.ocsp.refresh_interval_seconds))),
        tokio::spawn(renew_loop(
            responder.clone(),
            cfg.clone(),
            hsm,
            renew_within,
            Duration::from_secs(cfg.ocsp.renewal_check_seconds),
            audit,
        )),
    ];

    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let state = Arc::new(HttpState {
        responder: responder.clone(),
        ocsp_path: http::ocsp_path(&cfg.profile.ocsp_url),
        max_request_bytes: cfg.ocsp.max_request_bytes,
    });
    let limits = HttpLimits::from_config(&cfg.ocsp);
    let counted = Some(responder.metrics().clone());
    let cap = cfg.ocsp.max_connections;
    let threads = cfg.ocsp.http_threads;
    let ocsp_server =
        serve_http_threads(http, http::service(state, limits), limits.read_timeout, cap, threads, counted, rx.clone());
    // A scraper's idle keep-alive closing is not a slow client: not counted.
    let metrics_server = serve_http_capped(metrics, metrics_router(responder), limits.read_timeout, cap, None, rx);
    tokio::join!(ocsp_server, metrics_server);
    for t in &tasks {
        t.abort();
    }
    Ok(())
}

/// Serves `service` (the OCSP [`http::service`] or a router) on `listener`
/// until `stop` turns true, through the shared accept loop
/// ([`tls::net::serve_http`]): a connection must deliver a request's headers
/// within `read_timeout` (slowloris, idle keep-alive), and at most
/// `[ocsp] max_connections`' default are served at once. Bodies and answers
/// are bounded by the service (see [`HttpLimits`]). Header timeouts are
/// counted in `metrics` when given.
pub async fn serve_http<S, B>(
    listener: TcpListener,
    service: S,
    read_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    stop: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    let max_connections = config::OcspConfig::default().max_connections;
    serve_http_threads(listener, service, read_timeout, max_connections, 0, metrics, stop).await
}

/// [`serve_http`] with an explicit connection cap.
pub async fn serve_http_capped<S, B>(
    listener: TcpListener,
    service: S,
    read_timeout: Duration,
    max_connections: usize,
    metrics: Option<Arc<Metrics>>,
    stop: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    serve_http_threads(listener, service, read_timeout, max_connections, 0, metrics, stop).await
}

/// [`serve_http_capped`] on `threads` threads with a runtime each (see
/// [`tls::net::HttpListenerLimits::threads`]; 0: on the caller's runtime).
pub async fn serve_http_threads<S, B>(
    listener: TcpListener,
    service: S,
    read_timeout: Duration,
    max_connections: usize,
    threads: usize,
    metrics: Option<Arc<Metrics>>,
    stop: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    // OCSP answers are a few KB: one write of head and body (metrics pages are small too).
    let limits = tls::net::HttpListenerLimits {
        header_read_timeout: read_timeout,
        max_connections,
        threads,
        flatten_writes: true,
    };
    let on_timeout = move || {
        if let Some(m) = &metrics {
            m.read_timeouts.fetch_add(1, Relaxed);
        }
    };
    tls::net::serve_http(listener, service, limits, on_timeout, stop).await
}

/// What [`serve_http`] can serve: a service of hyper requests (a `Router`, [`http::service`]).
pub trait HttpService<B>:
    tower_service::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = axum::http::Response<B>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower_service::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The response bodies [`serve_http`] can send.
pub trait HttpBody: hyper::body::Body<Data: Send, Error: Into<axum::BoxError>> + Send + 'static {}

impl<B> HttpBody for B where B: hyper::body::Body<Data: Send, Error: Into<axum::BoxError>> + Send + 'static {}

pub fn metrics_router(responder: Arc<Responder>) -> Router {
    Router::new().route("/metrics", get(render_metrics)).with_state(responder)
}

async fn render_metrics(State(r): State<Arc<Responder>>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let (cache_entries, cached_responses) = r.cache().len();
    let text = r.metrics().render(&Gauges {
        cache_entries,
        cached_responses,
        inflight_signatures: r.inflight(),
        now_ms: now_ms(),
    });
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub(crate) async fn refresh_loop(responder: Arc<Responder>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let now = crate::responder::unix_now();
        let concurrency = (responder.max_inflight() / 4).max(1);
        let (ok, failed) = responder.refresh_due(now, 100_000, concurrency).await;
        let purged = responder.cache().purge_negative(now);
        if ok + failed + purged > 0 {
            tracing::info!(ok, failed, purged, "refreshed OCSP responses");
        }
    }
}

/// Renews the responder certificates when due (every `every`) and picks up
/// certificates another replica wrote; sends the audit entries of what it
/// issued, retrying undelivered ones every [`AUDIT_RETRY`] (or `every`, when
/// shorter) until the registry takes them.
pub(crate) async fn renew_loop(
    responder: Arc<Responder>,
    cfg: Config,
    hsm: hsm::Hsm,
    renew_within: time::Duration,
    every: Duration,
    audit: Arc<ResponderAudit>,
) {
    let retry = every.min(AUDIT_RETRY);
    let mut next_check = tokio::time::Instant::now() + every;
    loop {
        let undelivered = audit.flush().await;
        let now = tokio::time::Instant::now();
        if now >= next_check {
            next_check = now + every;
            renew_once(&responder, &cfg, &hsm, renew_within, &audit).await;
            // Deliver what it issued at once.
            continue;
        }
        let wake = if undelivered > 0 { next_check.min(now + retry) } else { next_check };
        tokio::time::sleep_until(wake).await;
    }
}

async fn renew_once(
    responder: &Responder,
    cfg: &Config,
    hsm: &hsm::Hsm,
    renew_within: time::Duration,
    audit: &ResponderAudit,
) {
    let (c, h) = (cfg.clone(), hsm.clone());
    let renewed = blocking(move || Ok(responder_cert::ensure_each(&c, &h, renew_within))).await.and_then(|each| {
        // Each certificate issued is queued for the log before anything else can fail.
        audit.record(each)
    });
    if let Err(e) = renewed {
        tracing::error!(error = %e, "responder certificate renewal failed");
    }
    // Load whatever is on disk now: ours, or a certificate another replica wrote.
    let (c, h) = (cfg.clone(), hsm.clone());
    match blocking(move || responder_cert::load(&c, &h)).await {
        Ok(loaded) => {
            for (i, l) in loaded.into_iter().enumerate() {
                let current = responder.issuers().get(i).map(|s| s.responder());
                if current.is_some_and(|c| c.certificate_der() != l.responder_cert.as_slice()) {
                    match ResponderIdentity::new(l.responder_cert, Arc::new(l.responder_key)) {
                        Ok(id) => {
                            tracing::info!(ca = l.name, "using a renewed responder certificate");
                            responder.replace_responder(i, id);
                        }
                        Err(e) => {
                            tracing::error!(ca = l.name, error = %e, "renewed responder certificate unusable")
                        }
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "responder certificates could not be loaded"),
    }
}

/// The audit entries ("ocsp.responder_certificate") of the responder
/// certificates this process issued, kept in order until the registry has
/// them: a registry away at the moment of a renewal delays the entry, it does
/// not lose it. (A process that dies first loses what it still holds; the
/// error log names each entry not delivered.)
pub(crate) struct ResponderAudit {
    sink: Arc<dyn AuditSink>,
    pending: Mutex<VecDeque<AuditEvent>>,
}

impl ResponderAudit {
    pub(crate) fn new(sink: Arc<dyn AuditSink>) -> ResponderAudit {
        ResponderAudit { sink, pending: Mutex::new(VecDeque::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<AuditEvent>> {
        // A panic elsewhere while holding it leaves a queue still worth sending.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an entry for each certificate issued or renewed (a kept one is
    /// no news), then returns the statuses, or the first CA's error.
    pub(crate) fn record(
        &self,
        each: Vec<Result<ResponderCertStatus, OcspError>>,
    ) -> Result<Vec<ResponderCertStatus>, OcspError> {
        let issued_at = time::OffsetDateTime::now_utc();
        for done in each.iter().flatten().filter(|d| d.certificate != Outcome::Kept) {
            match responder_cert::audit_event(done, issued_at) {
                Ok(event) => self.push(event),
                // The DER was just made or checked by us: only a bug gets here.
                Err(e) => tracing::error!(ca = done.ca, error = %e, "no audit entry for a responder certificate"),
            }
        }
        each.into_iter().collect()
    }

    pub(crate) fn push(&self, event: AuditEvent) {
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING_AUDIT {
            if let Some(lost) = pending.pop_front() {
                tracing::error!(
                    subject = %lost.subject,
                    detail = %lost.detail_json,
                    "audit entry dropped: too many undelivered while the registry is away"
                );
            }
        }
        pending.push_back(event);
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Offers the queued entries in order; stops at the first the registry
    /// does not take now. An entry it refuses outright (invalid, or our role
    /// may not append) would be refused forever: it is logged here in full
    /// and dropped. Returns how many are left.
    pub(crate) async fn flush(&self) -> usize {
        loop {
            // Not held across the await; only the renewal task takes entries off.
            let Some(next) = self.lock().front().cloned() else { return 0 };
            match self.sink.append_audit(next.clone()).await {
                Ok(sequence) => {
                    tracing::info!(sequence, subject = %next.subject, "responder certificate audited");
                    self.lock().pop_front();
                }
                Err(AuditError::Refused(why)) => {
                    tracing::error!(
                        error = %why,
                        subject = %next.subject,
                        detail = %next.detail_json,
                        "the registry refused a responder certificate's audit entry; it is only in this log"
                    );
                    self.lock().pop_front();
                }
                Err(AuditError::Unavailable(why)) => {
                    let left = self.pending();
                    tracing::warn!(error = %why, pending = left, "audit entry not delivered; trying again");
                    return left;
                }
            }
        }
    }
}
