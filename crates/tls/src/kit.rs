//! The gRPC kit: how every gRPC server and client of the CA is built.
//!
//! A [`GrpcKit`] is made once at process start from the configuration (the
//! launcher, or the `hpki-ca` command) and handed by value or reference to
//! each service's serve function and to every client builder, as Boulder's
//! `grpc` package takes its config: no process-wide state, so two kits (two
//! limits, TLS and plain text) live side by side in one test binary.
//!
//! * [`GrpcKit::server`] builds a service's server: TLS with required client
//!   certificates, [`Limits`], the [`AuthzLayer`] (the per-RPC allowlist
//!   [`crate::policy::POLICY`]), gRPC health and reflection (v1 and v1alpha).
//!   [`GrpcKit::server_builder`] is the bare `Server::builder()` under it.
//! * [`GrpcKit::endpoint_as`] is the `Endpoint` of a client presenting an
//!   identity's certificate; [`GrpcKit::client`] bounds what a generated client
//!   reads to the same [`Limits`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::crl::v1::{crl_publisher_client::CrlPublisherClient, crl_publisher_server::CrlPublisherServer};
use proto::issuance::v1::{issuance_client::IssuanceClient, issuance_server::IssuanceServer};
use proto::registry::v1::{registry_client::RegistryClient, registry_server::RegistryServer};
use proto::revocation::v1::{revocation_client::RevocationClient, revocation_server::RevocationServer};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::Router;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tower_layer::{Identity as NoLayer, Stack};
use tower_service::Service;

use crate::identity::{RevokedList, REVOKED_FILE};
use crate::{client_tls, net, server_tls, AuthzLayer, TlsError};

/// Bounds applied by [`GrpcKit::server`] to every gRPC server and by
/// [`GrpcKit::client`] to what every generated client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message decoded or encoded (tonic answers OUT_OF_RANGE beyond it).
    pub max_message_bytes: usize,
    /// HTTP/2 concurrent streams per connection; also the calls in flight per connection.
    pub max_concurrent_streams: u32,
    /// Time a call may take to produce its response (see [`GrpcKit::server_builder`]).
    pub request_timeout: std::time::Duration,
}

impl Limits {
    /// 4 MiB messages, 256 streams per connection, 60 s per call.
    pub const DEFAULT: Limits = Limits {
        max_message_bytes: 4 * 1024 * 1024,
        max_concurrent_streams: 256,
        request_timeout: std::time::Duration::from_secs(60),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a gRPC server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server certificate or CA in the kit did not make a TLS configuration.
    #[error("{0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A kit made for a client only (`GrpcKit::local` with `serve = false`):
    /// refused rather than serving without TLS and authorization.
    #[error("no server certificate in this process's gRPC kit (made for clients only)")]
    NoServerCertificate,
}

/// What every gRPC server and client of this process is built with.
/// Cheap to clone (the TLS material is shared).
#[derive(Debug, Clone, Default)]
pub struct GrpcKit {
    /// `None`: plain text (`[tls] enabled = false`, development and tests).
    tls: Option<Arc<KitTls>>,
    limits: Limits,
}

#[derive(Debug)]
struct KitTls {
    /// The local PKI: the certificates of [`GrpcKit::endpoint_as`].
    dir: PathBuf,
    /// Only a process that serves loads (and needs) the server certificate.
    server: Option<ServerTlsConfig>,
    /// The certificate of the process's own identity ([`GrpcKit::endpoint`]).
    client: ClientTlsConfig,
    /// Client certificates our servers refuse; one cached reader for all of them.
    revoked: Arc<RevokedList>,
}

impl GrpcKit {
    /// Plain-text gRPC (`[tls] enabled = false`): no certificates, no
    /// authorization; [`Limits::DEFAULT`] until [`GrpcKit::with_limits`].
    pub fn plain() -> GrpcKit {
        GrpcKit { tls: None, limits: Limits::DEFAULT }
    }

    /// TLS from the local PKI in `dir`: servers (when `serve`) with our server
    /// certificate, checking client certificates against `dir/revoked-identities`;
    /// clients of [`GrpcKit::endpoint`] present `identity`, those of
    /// [`GrpcKit::endpoint_as`] the identity they name. The files are read now,
    /// so a missing certificate stops the process at start.
    /// [`Limits::DEFAULT`] until [`GrpcKit::with_limits`].
    pub fn local(dir: &Path, serve: bool, identity: &str) -> Result<GrpcKit, TlsError> {
        let server = if serve { Some(server_tls(dir)?) } else { None };
        let client = client_tls(dir, identity)?;
        let revoked = Arc::new(RevokedList::new(dir.join(REVOKED_FILE)));
        let tls = KitTls { dir: dir.to_owned(), server, client, revoked };
        Ok(GrpcKit { tls: Some(Arc::new(tls)), limits: Limits::DEFAULT })
    }

    /// The kit with `limits` (`[limits]` of the configuration).
    pub fn with_limits(self, limits: Limits) -> GrpcKit {
        GrpcKit { limits, ..self }
    }

    /// The limits of this process's servers and clients.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether gRPC runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    // ------------------------------------------------------------ servers

    /// The `Server::builder()` under [`GrpcKit::server`]: TLS with required
    /// client certificates (when the kit has TLS), role authorization on every
    /// call ([`AuthzLayer`]), and the [`Limits`]: a timeout per call, a bound on
    /// concurrent HTTP/2 streams and on calls in flight per connection.
    /// (Message sizes are set per service, by [`GrpcKit::server`].)
    pub fn server_builder(&self) -> Result<Server<Stack<AuthzLayer, NoLayer>>, ServerError> {
        let limits = self.limits;
        let builder = Server::builder()
            .timeout(limits.request_timeout)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .concurrency_limit_per_connection(limits.max_concurrent_streams as usize);
        Ok(match &self.tls {
            Some(tls) => {
                let config = tls.server.clone().ok_or(ServerError::NoServerCertificate)?;
                builder
                    .tls_config(config)
                    .map_err(ServerError::Tls)?
                    .layer(AuthzLayer { enforce: true, revoked: Some(tls.revoked.clone()) })
            }
            None => builder.layer(AuthzLayer { enforce: false, revoked: None }),
        })
    }

    /// The server of one of our services: [`GrpcKit::server_builder`] with
    /// `service` (its messages bounded to [`Limits::max_message_bytes`]), gRPC
    /// health (`service` reported serving) and reflection v1 and v1alpha
    /// listing `service`. Further health statuses are the caller's
    /// ([`GrpcServer::health`]).
    pub async fn server<S>(&self, service: S) -> Result<GrpcServer, ServerError>
    where
        S: SizeLimited
            + NamedService
            + Service<http::Request<Body>, Response = http::Response<Body>, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<S>().await;
        let reflection = proto::reflection::v1(S::NAME)?;
        let reflection_alpha = proto::reflection::v1alpha(S::NAME)?;
        let max = self.limits.max_message_bytes;
        let router = self
            .server_builder()?
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(service.max_decoding(max).max_encoding(max));
        Ok(GrpcServer { router, health })
    }

    // ------------------------------------------------------------ clients

    /// `Endpoint::from_shared` for a client presenting this process's own
    /// identity (the one given to [`GrpcKit::local`]). With TLS the URL is used
    /// as `https://` with our CA and that certificate; without it, as
    /// `http://`. The scheme thus follows `[tls] enabled`, so a URL written for
    /// the other setting still reaches the service.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        endpoint_with(self.tls.as_ref().map(|t| t.client.clone()), url)
    }

    /// [`GrpcKit::endpoint`] presenting the certificate of `identity` (one of
    /// [`crate::SERVICE_IDENTITIES`]): how each of our services calls the
    /// others, so each is named by its own identity even when all run in one
    /// process.
    pub fn endpoint_as(&self, identity: &str, url: &str) -> Result<Endpoint, TlsError> {
        let client = match &self.tls {
            Some(tls) => Some(client_tls(&tls.dir, identity)?),
            None => None,
        };
        endpoint_with(client, url)
    }

    /// A generated client that reads every reply our servers may send
    /// (tonic's client default is 4 MiB whatever `[limits]` says): its
    /// `max_decoding_message_size` set to [`Limits::max_message_bytes`].
    /// Outgoing messages are left to the server's limit, whose refusal names it.
    pub fn client<C: SizeLimited>(&self, client: C) -> C {
        client.max_decoding(self.limits.max_message_bytes)
    }

    /// [`GrpcKit::client`] keeping a larger bound a caller needs for its own
    /// replies (the larger of the two).
    pub fn client_at_least<C: SizeLimited>(&self, client: C, floor: usize) -> C {
        client.max_decoding(self.limits.max_message_bytes.max(floor))
    }
}

fn endpoint_with(client: Option<ClientTlsConfig>, url: &str) -> Result<Endpoint, TlsError> {
    let endpoint = match client {
        Some(tls) => {
            let url = match url.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => url.to_owned(),
            };
            Endpoint::from_shared(url)?.tls_config(tls)?
        }
        None => {
            let url = match url.strip_prefix("https://") {
                Some(rest) => format!("http://{rest}"),
                None => url.to_owned(),
            };
            Endpoint::from_shared(url)?
        }
    };
    Ok(endpoint.tcp_nodelay(true).tcp_keepalive(Some(net::TCP_KEEPALIVE)))
}

/// A built server of one of our services, ready to serve.
pub struct GrpcServer {
    router: Router<Stack<AuthzLayer, NoLayer>>,
    health: HealthReporter,
}

impl GrpcServer {
    /// The server's health reporter: for a status besides the service's own
    /// (the overall `""`, the HSM, the ARL...).
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Serves on `listener` (connections tuned by [`net::incoming`]) until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        self.router.serve_with_incoming_shutdown(net::incoming(listener), shutdown).await
    }
}

/// A generated gRPC server or client whose message sizes can be bounded.
/// tonic generates these as inherent methods; this trait lets the kit set
/// them on every one of ours.
pub trait SizeLimited: Sized {
    /// `max_decoding_message_size`.
    fn max_decoding(self, max: usize) -> Self;
    /// `max_encoding_message_size`.
    fn max_encoding(self, max: usize) -> Self;
}

macro_rules! size_limited {
    ($($ty:ident),* $(,)?) => {$(
        impl<T> SizeLimited for $ty<T> {
            fn max_decoding(self, max: usize) -> Self {
                self.max_decoding_message_size(max)
            }
            fn max_encoding(self, max: usize) -> Self {
                self.max_encoding_message_size(max)
            }
        }
    )*};
}

macro_rules! size_limited_client {
    ($($ty:ident),* $(,)?) => {$(
        impl SizeLimited for $ty<Channel> {
            fn max_decoding(self, max: usize) -> Self {
                self.max_decoding_message_size(max)
            }
            fn max_encoding(self, max: usize) -> Self {
                self.max_encoding_message_size(max)
            }
        }
    )*};
}

size_limited!(RegistryServer, IssuanceServer, RevocationServer, CrlPublisherServer);
size_limited_client!(RegistryClient, IssuanceClient, RevocationClient, CrlPublisherClient);
