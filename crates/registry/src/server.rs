//! Serving the registry: database, gRPC service, health and reflection.

use std::future::Future;

use proto::registry::v1::registry_server::RegistryServer;
use store::Store;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tracing::info;

use crate::config_start::{self, ConfigSource};
use crate::error::RegistryError;
use crate::service::{PinLimits, RegistryService};

/// Opens the database at `cfg.db_path()` (creating the folder) and serves on
/// `listener` until `shutdown` completes. Writes no "config.start" entry (for
/// embedding and tests); the `hpki-ca` launcher uses [`open_recording_start`] and [`serve_store`].
pub async fn serve(
    cfg: &config::Config,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let store = open_store(cfg).await?;
    let pin_limits = PinLimits::from_config(&cfg.issuance);
    serve_store_with(store, cfg.profile.holder_id_prefix.clone(), pin_limits, kit, listener, shutdown).await
}

/// Opens the database and appends this start's "config.start" audit entry
/// (config file, its digest, effective settings, changed since the previous
/// start); then [`serve_store`]. No entry, no service: a start the log does not
/// show must not happen. Two steps, so a launcher announces the registry only
/// once the database is its own (sled's lock) and the start is in the log.
pub async fn open_recording_start(cfg: &config::Config, source: &ConfigSource) -> Result<Store, RegistryError> {
    let store = open_store(cfg).await?;
    let (s, c, src) = (store.clone(), cfg.clone(), source.clone());
    let outcome = tokio::task::spawn_blocking(move || config_start::record(&s, &c, &src))
        .await
        .map_err(RegistryError::task("recording config.start"))??;
    info!(
        sequence = outcome.record.sequence,
        sha256 = %source.sha256,
        changed = outcome.changed,
        "config.start recorded in the audit log"
    );
    Ok(store)
}

async fn open_store(cfg: &config::Config) -> Result<Store, RegistryError> {
    let location = store_location(cfg)?;
    if let store::Location::Sled { path, .. } = &location {
        std::fs::create_dir_all(path).map_err(|source| RegistryError::CreateDir { path: path.clone(), source })?;
    }
    // Opening replays sled's log, or connects and migrates: off the async workers.
    let open = location.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_at(&open))
        .await
        .map_err(RegistryError::task("opening the database"))??;
    match &location {
        store::Location::Sled { path, .. } => info!(db = %path.display(), "registry database open (sled)"),
        store::Location::Postgres { .. } => info!("registry database open (PostgreSQL)"),
    }
    Ok(store)
}

/// Where `[store]` (and `[registry] db_path`) put the registry's records;
/// the ceremony opens the same.
pub fn store_location(cfg: &config::Config) -> Result<store::Location, RegistryError> {
    cfg.store.validate()?;
    Ok(match cfg.store.backend {
        config::StoreBackend::Sled => {
            store::Location::Sled { path: cfg.db_path(), cache_bytes: cfg.store.sled_cache_mb.saturating_mul(1 << 20) }
        }
        config::StoreBackend::Postgres => {
            let password = match &cfg.store.postgres_password_file {
                None => None,
                Some(file) => {
                    let path = cfg.state_path(file);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|source| RegistryError::ReadPasswordFile { path: path.clone(), source })?;
                    Some(text.trim_end_matches(['\n', '\r']).to_owned())
                }
            };
            store::Location::Postgres {
                url: cfg.store.postgres_url.clone(),
                password,
                pool_size: cfg.store.postgres_pool_size,
            }
        }
    })
}

/// Serves an already opened store with the default PIN-disclosure limits;
/// for embedding and tests.
pub async fn serve_store(
    store: Store,
    holder_id_prefix: String,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    serve_store_with(store, holder_id_prefix, PinLimits::default(), kit, listener, shutdown).await
}

/// Serves an already opened store with the PIN-disclosure limits of the
/// configuration (see [`PinLimits::from_config`]).
pub async fn serve_store_with(
    store: Store,
    holder_id_prefix: String,
    pin_limits: PinLimits,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let addr = listener.local_addr().map_err(RegistryError::Listener)?;
    let service = RegistryService::new(store, holder_id_prefix).with_pin_limits(pin_limits);
    let streams = service.clone();
    let server = kit.server(RegistryServer::new(service)).await?;
    server.health().set_service_status("", ServingStatus::Serving).await;
    // Open WatchStatus streams never end on their own; end them first, or the
    // graceful shutdown would wait for them forever.
    let shutdown = async move {
        shutdown.await;
        streams.end_streams();
    };

    info!(%addr, "registry listening");
    server.serve(listener, shutdown).await?;
    info!(%addr, "registry stopped");
    Ok(())
}
