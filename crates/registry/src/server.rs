//! Serving the registry: database, gRPC service, health and reflection.

use std::future::Future;

use proto::registry::v1::registry_server::RegistryServer;
use store::Store;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tracing::info;

use crate::error::RegistryError;
use crate::service::RegistryService;

/// Opens the database at `cfg.db_path()` (creating the folder) and serves on
/// `listener` until `shutdown` completes.
pub async fn serve(
    cfg: &config::Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let path = cfg.db_path();
    std::fs::create_dir_all(&path).map_err(|source| RegistryError::CreateDir { path: path.clone(), source })?;
    // Opening replays sled's log, which can take a while: keep it off the async workers.
    let open_path = path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&open_path))
        .await
        .map_err(|e| RegistryError::Internal(format!("opening the database failed: {e}")))??;
    info!(db = %path.display(), "registry database open");
    serve_store(store, cfg.profile.holder_id_prefix.clone(), listener, shutdown).await
}

/// Serves an already opened store; for embedding and tests.
pub async fn serve_store(
    store: Store,
    holder_id_prefix: String,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let addr = listener.local_addr().map_err(RegistryError::Listener)?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<RegistryServer<RegistryService>>().await;
    health_reporter.set_service_status("", ServingStatus::Serving).await;
    let reflection = proto::reflection::v1()?;
    let reflection_alpha = proto::reflection::v1alpha()?;

    let service = RegistryService::new(store, holder_id_prefix);
    let streams = service.clone();
    // Open WatchStatus streams never end on their own; end them first, or the
    // graceful shutdown would wait for them forever.
    let shutdown = async move {
        shutdown.await;
        streams.end_streams();
    };

    info!(%addr, "registry listening");
    tls::server()?
        .add_service(health)
        .add_service(reflection_alpha)
        .add_service(reflection)
        .add_service(tls::limit_messages!(RegistryServer::new(service)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    info!(%addr, "registry stopped");
    Ok(())
}
