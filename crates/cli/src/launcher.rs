//! Starting services: one each, or all of them in one process on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::CliError;
use crate::tokens::Tokens;
use config::TrustDomain;

/// Runs one service of the single-process layout on a task of its own, with
/// its own copies of the config, the gRPC kit and the stop signal.
fn spawn_service<F, Fut>(
    cfg: &Config,
    kit: &tls::GrpcKit,
    stop: &watch::Receiver<bool>,
    run: F,
) -> tokio::task::JoinHandle<Result<(), CliError>>
where
    F: FnOnce(Config, tls::GrpcKit, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>> + Send + 'static,
{
    tokio::spawn(run(cfg.clone(), kit.clone(), stop.clone()))
}

/// Resolves when SIGINT or SIGTERM arrives (or the sender side says stop).
pub async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Spawns a task that flips `tx` on SIGINT/SIGTERM.
pub fn watch_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    let _ = tx.send(true);
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// The gRPC kit of this process (transport security, `[limits]`), made before
/// anything connects or listens and handed to every server and client.
///
/// With `[tls] enabled` (the default) every gRPC server requires a client
/// certificate from the local service-identity CA under `[tls] dir` (created
/// here when missing, so `make run` and the ceremony set it up). Each of our
/// services calls the others with its own identity (`GrpcKit::endpoint_as`), and
/// CLI commands present the default person of the role they need (`ra`,
/// `operator`, `auditor`; `audit checkpoint`: `crl`, the checkpointer).
/// `identity` (`--identity`), else `[tls] client_role`, else the `--operator`
/// a command names when a certificate of that name exists, picks another one.
/// `enabled = false` is the explicit development switch for plain-text gRPC.
pub fn setup_grpc(cfg: &Config, command: &crate::Command, identity: Option<&str>) -> Result<tls::GrpcKit, CliError> {
    let kit = setup_tls(cfg, command, identity)?;
    Ok(kit.with_limits(limits(cfg)?))
}

fn setup_tls(cfg: &Config, command: &crate::Command, identity: Option<&str>) -> Result<tls::GrpcKit, CliError> {
    use crate::Command as C;
    if !cfg.tls.enabled {
        tracing::warn!("[tls] enabled = false: gRPC is plain text (development only)");
        return Ok(tls::GrpcKit::plain());
    }
    let dir = cfg.tls_dir();
    let (serve, default) = match command {
        C::Ceremony { .. } | C::Run | C::Registry { .. } => (true, "registry"),
        C::Issuance { .. } => (true, "issuance"),
        C::Crl { .. } => (true, "crl"),
        C::Revocation { .. } => (true, "revocation"),
        C::Ocsp { .. } => (true, "ocsp"),
        C::Console { .. } => (true, console::IDENTITY),
        C::Card { .. } | C::Import { .. } => (false, "ra"),
        C::Revoke { .. } | C::EmergencyRevoke { .. } | C::Approve { .. } | C::PublishCrl { .. } | C::Status { .. } => {
            (false, "operator")
        }
        // `audit checkpoint` signs the chain's head with the HSM key on the CA
        // host, as the checkpointer in the crl process does, with its identity.
        C::Audit { command: crate::audit::AuditCommand::Checkpoint { .. }, .. } => {
            (false, audit::registry::CHECKPOINTER_IDENTITY)
        }
        C::Audit { .. } => (false, "auditor"),
        // Asks issuance for responder certificates as the OCSP service does.
        C::OcspCerts { .. } => (false, "ocsp"),
        // No gRPC; `identity` works on the files itself.
        C::Arl { .. } | C::Config { .. } | C::Identity { .. } => return Ok(tls::GrpcKit::plain()),
    };
    if serve {
        let written = tls::ensure_local_pki(&dir).map_err(CliError::Tls)?;
        if !written.is_empty() {
            say(format_args!("{:<15} service-identity CA and client certificates written to {}", "tls", dir.display()));
        }
    }
    let chosen = match (identity, cfg.tls.client_role.as_str(), named_operator(command)) {
        (Some(id), _, _) => id.to_owned(),
        (None, role, _) if !role.is_empty() => role.to_owned(),
        (None, _, Some(op)) if tls::LocalPki { dir: dir.clone() }.cert(op).exists() => op.to_owned(),
        _ => default.to_owned(),
    };
    tls::GrpcKit::local(&dir, serve, &chosen).map_err(CliError::Tls)
}

/// The person an operator command names with `--operator`, if any.
fn named_operator(command: &crate::Command) -> Option<&str> {
    use crate::Command as C;
    let name = match command {
        C::Revoke { args, .. } => args.operator.as_deref(),
        C::EmergencyRevoke { args, .. } => args.operator.as_deref(),
        C::Approve { operator, .. } => operator.as_deref(),
        _ => None,
    };
    name.filter(|n| tls::identity::check_name(n).is_ok())
}

/// `[limits]` of every gRPC server and client this process starts (the CRL
/// HTTP server reads its own from the config).
fn limits(cfg: &Config) -> Result<tls::Limits, CliError> {
    let l = &cfg.limits;
    l.validate()?;
    Ok(tls::Limits {
        max_message_bytes: l.max_message_bytes,
        max_concurrent_streams: l.max_concurrent_streams,
        request_timeout: std::time::Duration::from_secs(l.request_timeout_seconds),
    })
}

/// `https` when gRPC runs over TLS, else `http`.
pub fn grpc_scheme(cfg: &Config) -> &'static str {
    if cfg.tls.enabled {
        "https"
    } else {
        "http"
    }
}

pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), CliError> {
    let l = TcpListener::bind(addr).await.map_err(|source| CliError::Listen { addr: addr.to_owned(), source })?;
    let local = l.local_addr().map_err(|source| CliError::Listen { addr: addr.to_owned(), source })?;
    Ok((l, local))
}

/// The Prometheus listener of a gRPC service (`[<service>] metrics_listen`):
/// bound now, served on its own task until `stop`.
pub async fn metrics_listener(
    service: &'static str,
    listen: &str,
) -> Result<(TcpListener, SocketAddr, &'static str), CliError> {
    let (listener, addr) = bind(listen).await?;
    Ok((listener, addr, service))
}

/// Announces and serves a listener of [`metrics_listener`].
pub fn serve_metrics(bound: (TcpListener, SocketAddr, &'static str), stop: watch::Receiver<bool>) {
    let (listener, addr, service) = bound;
    announce(&format!("{service}-metrics"), addr, "HTTP Prometheus /metrics");
    tokio::spawn(tls::metrics::serve(listener, service, shutdown_signal(stop)));
}

/// The line tests and people read to find a service.
pub fn announce(name: &str, addr: SocketAddr, what: &str) {
    say(format_args!("{name:<10} listening on {addr} ({what})"));
}

/// stdout may be a pipe nobody reads any more; a service must not die of that.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The config file this process runs with, digested for the registry's
/// "config.start" audit entry (`None`: the built-in defaults).
pub fn config_source(path: Option<&std::path::Path>) -> Result<registry::ConfigSource, CliError> {
    registry::ConfigSource::read(path).map_err(CliError::Registry)
}

pub async fn run_registry(
    cfg: Config,
    kit: tls::GrpcKit,
    source: registry::ConfigSource,
    stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let (listener, addr) = bind(&cfg.registry.listen).await?;
    let metrics = metrics_listener("registry", &cfg.registry.metrics_listen).await?;
    // Announced only once the database is ours and the start is in the log.
    let store = open_registry(&cfg, &source).await?;
    announce("registry", addr, "gRPC hpki.registry.v1.Registry");
    serve_metrics(metrics, stop.clone());
    serve_registry(&cfg, store, kit, listener, stop).await
}

/// The registry's database, opened and the "config.start" entry recorded.
async fn open_registry(cfg: &Config, source: &registry::ConfigSource) -> Result<store::Store, CliError> {
    registry::open_recording_start(cfg, source).await.map_err(CliError::Registry)
}

/// Serves the registry on `listener` until `stop`, with the config's PIN
/// limits and holder id prefix.
async fn serve_registry(
    cfg: &Config,
    store: store::Store,
    kit: tls::GrpcKit,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let pin_limits = registry::PinLimits::from_config(&cfg.issuance);
    let prefix = cfg.profile.holder_id_prefix.clone();
    registry::serve_store_with(store, prefix, pin_limits, kit, listener, shutdown_signal(stop))
        .await
        .map_err(CliError::Registry)
}

/// The periodic audit checkpointer (`audit::checkpointer`), started with the
/// `audit` token, the registry at `registry_url` and the config's files and
/// interval; it ends on `stop`. Long verifications report progress on stderr,
/// as `hpki-ca audit verify` does.
fn spawn_checkpointer(
    cfg: &Config,
    kit: &tls::GrpcKit,
    hsm: hsm::Hsm,
    registry_url: String,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let files = audit::CheckpointFiles::of(cfg);
    let periodic = audit::checkpointer::Periodic { registry_url, files, interval, kit: kit.clone() };
    tokio::spawn(audit::checkpointer::run_periodic(hsm, periodic, stop, crate::audit::progress("verify")))
}

pub async fn run_issuance(
    cfg: Config,
    kit: tls::GrpcKit,
    tokens: Tokens,
    stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let (issuing, escrow) = (tokens.get(TrustDomain::Issuing)?, tokens.get(TrustDomain::Escrow)?);
    let service = issuance::build_service(&cfg, &kit, issuing, escrow)?;
    let (listener, addr) = bind(&cfg.issuance.listen).await?;
    let metrics = metrics_listener("issuance", &cfg.issuance.metrics_listen).await?;
    announce("issuance", addr, "gRPC hpki.issuance.v1.Issuance");
    serve_metrics(metrics, stop.clone());
    issuance::serve(service, kit, listener, shutdown_signal(stop)).await?;
    Ok(())
}

/// The CRL publisher alone (services split over processes), with the `issuing`
/// token. It also signs the automatic audit checkpoints there, with the `audit`
/// token (opened only when `[audit] checkpoint_interval_seconds` > 0): it talks
/// to the registry anyway.
pub async fn run_crl(
    cfg: Config,
    kit: tls::GrpcKit,
    tokens: Tokens,
    stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let (grpc, grpc_addr) = bind(&cfg.crl.listen).await?;
    let (http, http_addr) = bind(&cfg.crl.http_listen).await?;
    announce("crl", grpc_addr, "gRPC hpki.crl.v1.CrlPublisher");
    announce("crl-http", http_addr, "HTTP CRL distribution point");
    let checkpointer = match cfg.audit.checkpoint_interval() {
        Some(interval) => {
            let audit = tokens.get(TrustDomain::Audit)?.clone();
            Some(spawn_checkpointer(&cfg, &kit, audit, cfg.crl.registry_url.clone(), interval, stop.clone()))
        }
        None => None,
    };
    let issuing = tokens.get(TrustDomain::Issuing)?.clone();
    let served = crl::serve(&cfg, issuing, kit, grpc, http, shutdown_signal(stop)).await.map_err(CliError::Crl);
    if let Some(task) = checkpointer {
        task.abort();
    }
    served
}

pub async fn run_revocation(cfg: Config, kit: tls::GrpcKit, stop: watch::Receiver<bool>) -> Result<(), CliError> {
    let (listener, addr) = bind(&cfg.revocation.listen).await?;
    let metrics = metrics_listener("revocation", &cfg.revocation.metrics_listen).await?;
    announce("revocation", addr, "gRPC hpki.revocation.v1.Revocation");
    serve_metrics(metrics, stop.clone());
    revocation::serve(&cfg, kit, listener, shutdown_signal(stop)).await.map_err(CliError::Revocation)
}

pub async fn run_ocsp(
    cfg: Config,
    kit: tls::GrpcKit,
    tokens: Tokens,
    stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let (http, http_addr) = bind(&cfg.ocsp.listen).await?;
    let (metrics, metrics_addr) = bind(&cfg.ocsp.metrics_listen).await?;
    announce("ocsp", http_addr, "HTTP OCSP responder, RFC 6960 / RFC 5019");
    announce("ocsp-metrics", metrics_addr, "HTTP Prometheus /metrics");
    let own = tokens.get(TrustDomain::Ocsp)?.clone();
    ocsp::serve(&cfg, own, kit, http, metrics, shutdown_signal(stop)).await.map_err(CliError::Ocsp)
}

pub async fn run_console(cfg: Config, kit: tls::GrpcKit, stop: watch::Receiver<bool>) -> Result<(), CliError> {
    let (listener, addr) = bind(&cfg.console.listen).await?;
    announce("console", addr, "HTTPS operator console");
    console::serve(&cfg, kit, listener, shutdown_signal(stop)).await.map_err(CliError::Console)
}

fn joined<E: std::fmt::Display>(r: Result<Result<(), CliError>, E>) -> Result<(), CliError> {
    r.map_err(|e| CliError::Client(format!("service task failed: {e}")))?
}

/// Every service in one process; each talks to the others on their real
/// addresses. With `[audit] checkpoint_interval_seconds` > 0 a task signs the
/// audit chain's head periodically.
pub async fn run_all(
    mut cfg: Config,
    kit: tls::GrpcKit,
    source: registry::ConfigSource,
    tokens: Tokens,
    stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let issuing = tokens.get(TrustDomain::Issuing)?.clone();
    let (reg_listener, reg_addr) = bind(&cfg.registry.listen).await?;
    let (crl_grpc, crl_addr) = bind(&cfg.crl.listen).await?;
    let (crl_http, crl_http_addr) = bind(&cfg.crl.http_listen).await?;
    let (rev_listener, rev_addr) = bind(&cfg.revocation.listen).await?;
    let (ocsp_http, ocsp_addr) = bind(&cfg.ocsp.listen).await?;
    let (ocsp_metrics, ocsp_metrics_addr) = bind(&cfg.ocsp.metrics_listen).await?;
    let grpc_metrics = [
        metrics_listener("registry", &cfg.registry.metrics_listen).await?,
        metrics_listener("issuance", &cfg.issuance.metrics_listen).await?,
        metrics_listener("revocation", &cfg.revocation.metrics_listen).await?,
    ];
    // The console logs people in by their client certificates: not without TLS.
    let console_bound = if cfg.tls.enabled { Some(bind(&cfg.console.listen).await?) } else { None };
    let scheme = grpc_scheme(&cfg);
    let registry_url = format!("{scheme}://{reg_addr}");
    cfg.ocsp.registry_url = registry_url.clone();
    cfg.issuance.registry_url = registry_url.clone();
    cfg.crl.registry_url = registry_url.clone();
    cfg.revocation.registry_url = registry_url.clone();
    cfg.revocation.crl_url = format!("{scheme}://{crl_addr}");
    cfg.issuance.revocation_url = format!("{scheme}://{rev_addr}");
    cfg.issuance.crl_url = format!("{scheme}://{crl_addr}");
    cfg.console.registry_url = registry_url.clone();
    cfg.console.revocation_url = format!("{scheme}://{rev_addr}");
    cfg.console.ocsp_url = format!("http://{ocsp_addr}");
    cfg.console.crl_url = format!("{scheme}://{crl_addr}");
    cfg.console.crl_http_url = format!("http://{crl_http_addr}");
    cfg.console.ocsp_metrics_url = format!("http://{ocsp_metrics_addr}");
    let service = issuance::build_service(&cfg, &kit, &issuing, tokens.get(TrustDomain::Escrow)?)?;
    let (iss_listener, iss_addr) = bind(&cfg.issuance.listen).await?;
    cfg.ocsp.issuance_url = format!("{scheme}://{iss_addr}");
    cfg.console.issuance_url = format!("{scheme}://{iss_addr}");
    // Announced only once the database is ours and the start is in the log.
    let store = open_registry(&cfg, &source).await?;
    announce("registry", reg_addr, "gRPC hpki.registry.v1.Registry");
    announce("issuance", iss_addr, "gRPC hpki.issuance.v1.Issuance");
    announce("revocation", rev_addr, "gRPC hpki.revocation.v1.Revocation");
    announce("crl", crl_addr, "gRPC hpki.crl.v1.CrlPublisher");
    announce("crl-http", crl_http_addr, "HTTP CRL distribution point");
    announce("ocsp", ocsp_addr, "HTTP OCSP responder, RFC 6960 / RFC 5019");
    announce("ocsp-metrics", ocsp_metrics_addr, "HTTP Prometheus /metrics");
    for bound in grpc_metrics {
        serve_metrics(bound, stop.clone());
    }
    match &console_bound {
        Some((_, addr)) => announce("console", *addr, "HTTPS operator console"),
        None => tracing::warn!("[tls] enabled = false: no operator console"),
    }
    say(format_args!("state      {}", cfg.state_dir.display()));
    say(format_args!(
        "hsm        holds every trust domain's token in this one process: {} (single-process layout; the root \
         token stays closed, only the ceremony and `hpki-ca arl` open it; split the services to separate them)",
        tokens.domains().iter().map(|d| format!("{d} ({})", cfg.token_label(*d))).collect::<Vec<_>>().join(", ")
    ));
    say(format_args!("CA certs   {}", cfg.cert_dir().display()));

    let registry =
        spawn_service(&cfg, &kit, &stop, |c, k, s| async move { serve_registry(&c, store, k, reg_listener, s).await });
    let audit_token = tokens.get(TrustDomain::Audit)?.clone();
    let checkpointer = cfg
        .audit
        .checkpoint_interval()
        .map(|interval| spawn_checkpointer(&cfg, &kit, audit_token, registry_url.clone(), interval, stop.clone()));
    let issuance = spawn_service(&cfg, &kit, &stop, |_, k, s| async move {
        issuance::serve(service, k, iss_listener, shutdown_signal(s)).await.map_err(CliError::from)
    });
    let own = tokens.get(TrustDomain::Ocsp)?.clone();
    let ocsp = spawn_service(&cfg, &kit, &stop, |c, k, s| async move {
        ocsp::serve(&c, own, k, ocsp_http, ocsp_metrics, shutdown_signal(s)).await.map_err(CliError::Ocsp)
    });
    let crl = spawn_service(&cfg, &kit, &stop, |c, k, s| async move {
        crl::serve(&c, issuing, k, crl_grpc, crl_http, shutdown_signal(s)).await.map_err(CliError::Crl)
    });
    let console = spawn_service(&cfg, &kit, &stop, |c, k, s| async move {
        match console_bound {
            Some((listener, _)) => console::serve(&c, k, listener, shutdown_signal(s)).await.map_err(CliError::Console),
            None => Ok(()),
        }
    });
    let revocation = spawn_service(&cfg, &kit, &stop, |c, k, s| async move {
        revocation::serve(&c, k, rev_listener, shutdown_signal(s)).await.map_err(CliError::Revocation)
    });
    let (r, i, c, v, o, w) = tokio::join!(registry, issuance, crl, revocation, ocsp, console);
    if let Some(task) = checkpointer {
        // It ends on the same stop signal; never a reason to fail.
        task.abort();
    }
    joined(r)?;
    joined(i)?;
    joined(c)?;
    joined(v)?;
    joined(o)?;
    joined(w)
}
