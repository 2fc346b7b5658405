//! Running the responder: responder certificates, the cache and its
//! background work (feed, refresh, renewal), the OCSP and metrics listeners.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use config::Config;
use tls::net::{HttpBody, HttpService};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache_refresh::{CacheRefresh, Refresher};
use crate::error::OcspError;
use crate::http::{self, HttpLimits, HttpState};
use crate::issuers::IssuerHashes;
use crate::metrics::{Gauges, Metrics};
use crate::responder::{IssuerSlot, Responder, Settings};
use crate::responder_cert::{self, IssuanceAuthority, LoadedIssuer, Outcome, ResponderAuthority, ResponderCertStatus};
use crate::signer::ResponderIdentity;
use crate::source::{self, RegistrySource};
use crate::{feed, feed::now_ms_pub as now_ms};

/// How often the registry's feed position is polled (lag metric).
const POSITION_TICK: Duration = Duration::from_secs(5);

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

/// Serves OCSP on `http` and Prometheus metrics on `metrics` until `shutdown`,
/// with the responder keys in `hsm` (the `ocsp` token). The responder
/// certificates come from the issuance service (`[ocsp] issuance_url`) before
/// the first request is answered, and are renewed or rolled over later (see
/// `responder_cert`).
pub async fn serve(
    cfg: &Config,
    hsm: hsm::Hsm,
    kit: tls::GrpcKit,
    http: TcpListener,
    metrics: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OcspError> {
    let authority: Arc<dyn ResponderAuthority> = Arc::new(IssuanceAuthority::from_config(cfg, &kit)?);
    serve_with(cfg, hsm, kit, authority, http, metrics, shutdown).await
}

/// How long a starting responder keeps asking for its first certificates
/// (issuance or the registry may start after it) before giving up.
const STARTUP_ATTEMPTS: u32 = 120;
const STARTUP_RETRY: Duration = Duration::from_secs(1);

/// `serve` with the certificate authority given (tests and the load-test
/// server stand one in: `testkit::DirectAuthority`).
#[doc(hidden)]
pub async fn serve_with(
    cfg: &Config,
    hsm: hsm::Hsm,
    kit: tls::GrpcKit,
    authority: Arc<dyn ResponderAuthority>,
    http: TcpListener,
    metrics: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OcspError> {
    // `hpki-ca` validated the whole config at start; tests and the load-test
    // server come here directly.
    cfg.ocsp.validate()?;
    let renew_within = renew_window(&cfg.ocsp);
    let client = source::registry_client(&kit, &cfg.ocsp.registry_url)?;
    let registry = Arc::new(RegistrySource::new(client.clone()));
    // Missing CA certificates are a set-up error: no point waiting.
    for slot in responder_cert::slots(cfg) {
        responder_cert::issuing_ca_certificate(cfg, slot.entity)?;
    }
    let mut attempt = 0;
    let issuers = loop {
        attempt += 1;
        let each = responder_cert::ensure_each(cfg, &hsm, authority.as_ref(), renew_within).await;
        log_each(&each);
        let (c, h) = (cfg.clone(), hsm.clone());
        match responder_cert::blocking(move || responder_cert::load(&c, &h)).await {
            Ok(loaded) => break slots(loaded)?,
            Err(e) if attempt >= STARTUP_ATTEMPTS || matches!(e, OcspError::Config(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "no usable responder certificate yet; asking again");
                tokio::time::sleep(STARTUP_RETRY).await;
            }
        }
    };
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
            authority,
            renew_within,
            Duration::from_secs(cfg.ocsp.renewal_check_seconds),
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
        trusted_proxies: cfg.ocsp.trusted_proxy_addrs(),
    });
    let limits = HttpLimits::from_config(&cfg.ocsp);
    let counted = Some(responder.metrics().clone());
    let cap = cfg.ocsp.max_connections;
    let threads = cfg.ocsp.http_threads;
    let ocsp_server =
        serve_http(http, http::service(state, limits), limits.read_timeout, cap, threads, counted, rx.clone());
    // A scraper's idle keep-alive closing is not a slow client: not counted.
    let metrics_server = serve_http(metrics, metrics_router(responder), limits.read_timeout, cap, 0, None, rx);
    tokio::join!(ocsp_server, metrics_server);
    for t in &tasks {
        t.abort();
    }
    Ok(())
}

fn log_each(each: &[Result<ResponderCertStatus, OcspError>]) {
    for d in each {
        match d {
            Ok(d) => tracing::info!(
                ca = d.ca,
                serial = %d.serial,
                certificate = ?d.certificate,
                key = %d.key_label,
                not_after = %d.not_after,
                "responder certificate"
            ),
            Err(e) => tracing::warn!(error = %e, "responder certificate not (re)issued"),
        }
    }
}

/// Serves `service` (the OCSP [`http::service`] or a router) on `listener`
/// until `stop` turns true, through the shared accept loop
/// ([`tls::net::serve_http`]): a connection must deliver a request's headers
/// within `read_timeout` (slowloris, idle keep-alive), and at most
/// `max_connections` are served at once, on `threads` threads with a runtime
/// each (see [`tls::net::HttpListenerLimits::threads`]; 0: on the caller's
/// runtime). Bodies and answers are bounded by the service (see
/// [`HttpLimits`]). Header timeouts are counted in `metrics` when given.
pub async fn serve_http<S, B>(
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

/// Renews the responder certificates when due (every `every`, or at once when
/// the status feed says one of them was revoked: then it rolls over to a new
/// key), and picks up certificates another replica wrote.
pub(crate) async fn renew_loop(
    responder: Arc<Responder>,
    cfg: Config,
    hsm: hsm::Hsm,
    authority: Arc<dyn ResponderAuthority>,
    renew_within: time::Duration,
    every: Duration,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = responder.rollover_wanted() => tracing::info!("a responder certificate was revoked; rolling over"),
        }
        renew_once(&responder, &cfg, &hsm, authority.as_ref(), renew_within).await;
    }
}

async fn renew_once(
    responder: &Responder,
    cfg: &Config,
    hsm: &hsm::Hsm,
    authority: &dyn ResponderAuthority,
    renew_within: time::Duration,
) {
    let each = responder_cert::ensure_each(cfg, hsm, authority, renew_within).await;
    let rolled: Vec<bool> =
        each.iter().map(|r| r.as_ref().is_ok_and(|d| d.certificate == Outcome::RolledOver)).collect();
    for d in each.iter().flatten().filter(|d| d.certificate != Outcome::Kept) {
        tracing::info!(ca = d.ca, serial = %d.serial, outcome = ?d.certificate, "responder certificate renewed");
    }
    for e in each.iter().filter_map(|r| r.as_ref().err()) {
        tracing::error!(error = %e, "responder certificate renewal failed");
    }
    // Load whatever is on disk now: ours, or a certificate another replica wrote.
    let (c, h) = (cfg.clone(), hsm.clone());
    match responder_cert::blocking(move || responder_cert::load(&c, &h)).await {
        Ok(loaded) => {
            for (i, l) in loaded.into_iter().enumerate() {
                let current = responder.issuers().get(i).map(|s| s.responder());
                if current.is_some_and(|c| c.certificate_der() != l.responder_cert.as_slice()) {
                    match ResponderIdentity::new(l.responder_cert, Arc::new(l.responder_key)) {
                        Ok(id) if rolled.get(i).copied().unwrap_or(false) => {
                            tracing::info!(ca = l.name, "using the rolled-over responder certificate");
                            responder.retire_responder(i, id);
                        }
                        Ok(id) => {
                            tracing::info!(ca = l.name, "using a new responder certificate");
                            responder.replace_responder(i, id);
                        }
                        Err(e) => {
                            tracing::error!(ca = l.name, error = %e, "new responder certificate unusable")
                        }
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "responder certificates could not be loaded"),
    }
}
