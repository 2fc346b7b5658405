//! Running the responder: responder certificates, the cache and its
//! background work (feed, refresh, renewal), the OCSP and metrics listeners.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::OcspError;
use crate::http::{self, HttpState};
use crate::issuers::IssuerHashes;
use crate::metrics::{Gauges, Metrics};
use crate::responder::{IssuerSlot, Responder, Settings};
use crate::responder_cert::{self, ensure_responder_certificates, LoadedIssuer};
use crate::signer::ResponderIdentity;
use crate::source::{self, RegistrySource};
use crate::{feed, feed::now_ms_pub as now_ms};

/// How often due responses are re-signed and expired negative answers dropped.
const REFRESH_TICK: Duration = Duration::from_secs(30);
/// How often the responder certificates are checked for renewal.
const RENEW_TICK: Duration = Duration::from_secs(3600);
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
    let renew_within = renew_window(&cfg.ocsp);
    let (c, h) = (cfg.clone(), hsm.clone());
    let done = blocking(move || ensure_responder_certificates(&c, &h, renew_within)).await?;
    for d in &done {
        tracing::info!(ca = d.ca, certificate = ?d.certificate, not_after = %d.not_after, "responder certificate");
    }
    let (c, h) = (cfg.clone(), hsm.clone());
    let issuers = slots(blocking(move || responder_cert::load(&c, &h)).await?)?;
    let client = source::registry_client(&cfg.ocsp.registry_url)?;
    let metrics_state = Arc::new(Metrics::default());
    let responder = Arc::new(Responder::new(
        Settings::from_config(&cfg.ocsp),
        issuers,
        Arc::new(RegistrySource::new(client.clone())),
        metrics_state,
    ));

    let tasks = [
        tokio::spawn(feed::follow(responder.clone(), client.clone())),
        tokio::spawn(feed::poll_position(responder.clone(), client, POSITION_TICK)),
        tokio::spawn(refresh_loop(responder.clone())),
        tokio::spawn(renew_loop(responder.clone(), cfg.clone(), hsm, renew_within)),
    ];

    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let state = Arc::new(HttpState {
        responder: responder.clone(),
        ocsp_path: http::ocsp_path(&cfg.profile.ocsp_url),
        max_request_bytes: cfg.ocsp.max_request_bytes,
    });
    let http = http.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let ocsp_server = axum::serve(http, http::router(state)).with_graceful_shutdown(stopped(rx.clone()));
    let metrics_server = axum::serve(metrics, metrics_router(responder)).with_graceful_shutdown(stopped(rx));
    let (a, b) = tokio::join!(
        std::future::IntoFuture::into_future(ocsp_server),
        std::future::IntoFuture::into_future(metrics_server)
    );
    for t in &tasks {
        t.abort();
    }
    a.map_err(|e| OcspError::Startup(format!("OCSP listener: {e}")))?;
    b.map_err(|e| OcspError::Startup(format!("metrics listener: {e}")))?;
    Ok(())
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

async fn refresh_loop(responder: Arc<Responder>) {
    loop {
        tokio::time::sleep(REFRESH_TICK).await;
        let now = crate::responder::unix_now();
        let concurrency = (responder.max_inflight() / 4).max(1);
        let (ok, failed) = responder.refresh_due(now, 100_000, concurrency).await;
        let purged = responder.cache().purge_negative(now);
        if ok + failed + purged > 0 {
            tracing::info!(ok, failed, purged, "refreshed OCSP responses");
        }
    }
}

/// Renews the responder certificates when due and picks up certificates
/// another replica (or `hpki-ca ocsp-certs`) wrote.
async fn renew_loop(responder: Arc<Responder>, cfg: Config, hsm: hsm::Hsm, renew_within: time::Duration) {
    loop {
        tokio::time::sleep(RENEW_TICK).await;
        let (c, h) = (cfg.clone(), hsm.clone());
        let result = blocking(move || {
            ensure_responder_certificates(&c, &h, renew_within)?;
            responder_cert::load(&c, &h)
        })
        .await;
        match result {
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
            Err(e) => tracing::error!(error = %e, "responder certificate renewal failed"),
        }
    }
}
