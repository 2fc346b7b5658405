//! Starting services: one each, or all of them in one process on loopback.

use std::future::Future;
use std::net::SocketAddr;

use config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::CliError;

/// Resolves when SIGINT or SIGTERM arrives (or the sender side says stop).
pub fn shutdown_signal(mut rx: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
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

pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), CliError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Listen { addr: addr.to_owned(), source })?;
    let local = l.local_addr().map_err(|source| CliError::Listen { addr: addr.to_owned(), source })?;
    Ok((l, local))
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

pub async fn run_registry(cfg: Config, stop: watch::Receiver<bool>) -> Result<(), CliError> {
    let (listener, addr) = bind(&cfg.registry.listen).await?;
    announce("registry", addr, "gRPC hpki.registry.v1.Registry");
    registry::serve(&cfg, listener, shutdown_signal(stop))
        .await
        .map_err(|e| CliError::Registry(e.to_string()))
}

pub async fn run_issuance(cfg: Config, hsm: hsm::Hsm, stop: watch::Receiver<bool>) -> Result<(), CliError> {
    let service = issuance::build_service(&cfg, &hsm)?;
    let (listener, addr) = bind(&cfg.issuance.listen).await?;
    announce("issuance", addr, "gRPC hpki.issuance.v1.Issuance");
    issuance::serve(service, listener, shutdown_signal(stop)).await?;
    Ok(())
}

/// Every service in one process; issuance talks to the registry on its real address.
pub async fn run_all(mut cfg: Config, hsm: hsm::Hsm, stop: watch::Receiver<bool>) -> Result<(), CliError> {
    let (reg_listener, reg_addr) = bind(&cfg.registry.listen).await?;
    cfg.issuance.registry_url = format!("http://{reg_addr}");
    let service = issuance::build_service(&cfg, &hsm)?;
    let (iss_listener, iss_addr) = bind(&cfg.issuance.listen).await?;
    announce("registry", reg_addr, "gRPC hpki.registry.v1.Registry");
    announce("issuance", iss_addr, "gRPC hpki.issuance.v1.Issuance");
    say(format_args!("state      {}", cfg.state_dir.display()));
    say(format_args!("CA certs   {}", cfg.cert_dir().display()));
    let reg_cfg = cfg.clone();
    let reg_stop = stop.clone();
    let registry = tokio::spawn(async move {
        registry::serve(&reg_cfg, reg_listener, shutdown_signal(reg_stop))
            .await
            .map_err(|e| CliError::Registry(e.to_string()))
    });
    let issuance = tokio::spawn(issuance::serve(service, iss_listener, shutdown_signal(stop)));
    let (r, i) = tokio::join!(registry, issuance);
    r.map_err(|e| CliError::Registry(e.to_string()))??;
    i.map_err(|e| CliError::Ceremony(e.to_string()))??;
    Ok(())
}
