//! mTLS for every gRPC listener and client of the CA.
//!
//! * [`ensure_local_pki`] creates, once, a small *service-identity* CA under the
//!   state folder, a server certificate for loopback and one client certificate
//!   per [`Role`]. This is the transport identity of our processes and
//!   operators, not the HPKI CA: its keys are ordinary ECDSA P-256 software
//!   keys (files with mode 600), so no HSM is needed for it.
//! * [`server_tls`] / [`client_tls`] build tonic's rustls configurations:
//!   servers require a client certificate from that CA.
//! * [`server`] is the `Server::builder()` of every gRPC service: TLS when
//!   installed, and [`Authz`], which maps the role in the client certificate
//!   (URI SAN `urn:hpki-ca:role:<role>`) to the services it may call; anything
//!   else is PERMISSION_DENIED, no readable role is UNAUTHENTICATED.
//! * [`install`] sets, once per process at start, what servers and clients use;
//!   [`endpoint`] is the `Endpoint::from_shared` of every gRPC client.
//! * [`incoming`] is what every gRPC server accepts from, and [`net::accepted`]
//!   tunes each HTTP connection: `TCP_NODELAY` everywhere (see [`net`]).
//! * [`install_limits`] sets the `[limits]` of the process: [`server`] and
//!   [`limit_messages!`] apply them to servers, [`limit_client!`] to clients.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use der::Decode;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tower_layer::{Identity as NoLayer, Layer, Stack};
use tower_service::Service;

pub mod net;
pub use net::incoming;

/// Prefix of the URI SAN that carries a role.
pub const ROLE_URI_PREFIX: &str = "urn:hpki-ca:role:";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("service-identity certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("unknown role {0:?} (ra, operator, auditor, service)")]
    Role(String),
}

/// Who a client is, read from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Registration authority: the Issuance service (applications and lifecycle).
    Ra,
    /// Revocation, emergency revocation, CRL publication.
    Operator,
    /// Reads the audit log.
    Auditor,
    /// Our own services calling each other.
    Service,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ra, Role::Operator, Role::Auditor, Role::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ra => "ra",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Result<Role, TlsError> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| TlsError::Role(s.to_owned()))
    }

    /// The policy: may this role call `/<service>/<method>`?
    pub fn may_call(self, service: &str, method: &str) -> bool {
        match self {
            Role::Service => true,
            // Responder certificates are for our OCSP process only.
            Role::Ra => service == "hpki.issuance.v1.Issuance" && method != "IssueResponderCertificate",
            Role::Operator => service == "hpki.revocation.v1.Revocation" || service == "hpki.crl.v1.CrlPublisher",
            Role::Auditor => service == "hpki.registry.v1.Registry" && method == "ListAudit",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Services any authenticated client may call.
fn open_service(service: &str) -> bool {
    service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.")
}

// ---------------------------------------------------------------- local PKI

/// Files of the local service-identity PKI in `dir`.
#[derive(Debug, Clone)]
pub struct LocalPki {
    pub dir: PathBuf,
}

impl LocalPki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_owned(), source };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let mut f = opts.open(path).map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn ca_params() -> Result<rcgen::CertificateParams, TlsError> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(rcgen::DnType::OrganizationName, "hpki-ca");
    p.distinguished_name.push(rcgen::DnType::CommonName, "hpki-ca service identity CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(p)
}

fn leaf_params(
    sans: Vec<String>,
    cn: &str,
    ou: Option<&str>,
    server: bool,
) -> Result<rcgen::CertificateParams, TlsError> {
    let mut p = rcgen::CertificateParams::new(sans)?;
    p.distinguished_name.push(rcgen::DnType::OrganizationName, "hpki-ca");
    if let Some(ou) = ou {
        p.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, ou);
    }
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if server {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.use_authority_key_identifier_extension = true;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(p)
}

/// Creates under `dir` what is missing of: the service-identity CA (`ca.pem`,
/// `ca.key`), the loopback server certificate (`server.pem`, `server.key`; SANs
/// 127.0.0.1, ::1, localhost) and one client certificate per role
/// (`<role>.pem`, `<role>.key`; URI SAN `urn:hpki-ca:role:<role>`, OU=<role>).
/// Existing files are kept. Returns the names of the files written.
pub fn ensure_local_pki(dir: &Path) -> Result<Vec<String>, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let pki = LocalPki { dir: dir.to_owned() };
    let mut written = Vec::new();
    let ca_key = if pki.ca_cert().exists() && pki.key("ca").exists() {
        rcgen::KeyPair::from_pem(&read(&pki.key("ca"))?)?
    } else {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        // A fresh CA: earlier leaves (if any) no longer chain to it.
        for name in std::iter::once("server").chain(Role::ALL.iter().map(|r| r.as_str())) {
            let _ = std::fs::remove_file(pki.cert(name));
            let _ = std::fs::remove_file(pki.key(name));
        }
        let _ = std::fs::remove_file(pki.key("ca"));
        let _ = std::fs::remove_file(pki.ca_cert());
        write(&pki.key("ca"), &key.serialize_pem(), true)?;
        write(&pki.ca_cert(), &cert.pem(), false)?;
        written.push("ca.pem".to_owned());
        key
    };
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let mut leaves: Vec<(String, rcgen::CertificateParams)> = vec![(
        "server".into(),
        leaf_params(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()], "hpki-ca services", None, true)?,
    )];
    for role in Role::ALL {
        let mut p = leaf_params(Vec::new(), &format!("hpki-ca {role}"), Some(role.as_str()), false)?;
        p.subject_alt_names =
            vec![rcgen::SanType::URI(rcgen::string::Ia5String::try_from(format!("{ROLE_URI_PREFIX}{role}"))?)];
        leaves.push((role.as_str().into(), p));
    }
    for (name, params) in leaves {
        if pki.cert(&name).exists() && pki.key(&name).exists() {
            continue;
        }
        let _ = std::fs::remove_file(pki.cert(&name));
        let _ = std::fs::remove_file(pki.key(&name));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&pki.key(&name), &key.serialize_pem(), true)?;
        write(&pki.cert(&name), &cert.pem(), false)?;
        written.push(format!("{name}.pem"));
    }
    Ok(written)
}

/// Servers: our server certificate, and a client certificate from our CA required.
pub fn server_tls(dir: &Path) -> Result<ServerTlsConfig, TlsError> {
    let pki = LocalPki { dir: dir.to_owned() };
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&pki.cert("server"))?, read(&pki.key("server"))?))
        .client_ca_root(Certificate::from_pem(read(&pki.ca_cert())?))
        .client_auth_optional(false))
}

/// Clients: trust only our CA, present the role's certificate.
pub fn client_tls(dir: &Path, role: Role) -> Result<ClientTlsConfig, TlsError> {
    let pki = LocalPki { dir: dir.to_owned() };
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&pki.ca_cert())?))
        .identity(Identity::from_pem(read(&pki.cert(role.as_str()))?, read(&pki.key(role.as_str()))?)))
}

// ------------------------------------------------------- process-wide setting

#[derive(Default)]
struct Installed {
    server: Option<ServerTlsConfig>,
    client: Option<ClientTlsConfig>,
}

static INSTALLED: RwLock<Installed> = RwLock::new(Installed { server: None, client: None });

/// Bounds applied by [`server`] to every gRPC server, and by [`limit_messages!`]
/// to every generated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message decoded or encoded (tonic answers OUT_OF_RANGE beyond it).
    pub max_message_bytes: usize,
    /// HTTP/2 concurrent streams per connection; also the calls in flight per connection.
    pub max_concurrent_streams: u32,
    /// Time a call may take to produce its response (see [`server`]).
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

static LIMITS: RwLock<Limits> = RwLock::new(Limits::DEFAULT);

/// Sets, for this process, the limits of every gRPC server started after it.
/// Called once at start by the launcher; unset, [`Limits::DEFAULT`] applies.
pub fn install_limits(limits: Limits) {
    *LIMITS.write().unwrap_or_else(|e| e.into_inner()) = limits;
}

/// The limits in force (see [`install_limits`]).
pub fn limits() -> Limits {
    *LIMITS.read().unwrap_or_else(|e| e.into_inner())
}

/// Applies the installed message size limit to a generated `XServer`:
/// `tls::limit_messages!(RegistryServer::new(service))` is the server with
/// `max_decoding_message_size` and `max_encoding_message_size` set to
/// [`Limits::max_message_bytes`].
#[macro_export]
macro_rules! limit_messages {
    ($server:expr) => {{
        let max = $crate::limits().max_message_bytes;
        $server.max_decoding_message_size(max).max_encoding_message_size(max)
    }};
}

/// Applies the installed message size limit to a generated `XClient`, so our
/// clients read every reply our servers may send (tonic's client default is
/// 4 MiB whatever `[limits]` says): `tls::limit_client!(RegistryClient::new(channel))`
/// is the client with `max_decoding_message_size` set to
/// [`Limits::max_message_bytes`]. `tls::limit_client!(client, at_least = n)`
/// keeps a larger bound a caller needs for its own replies (the larger of the two).
/// Outgoing messages are left to the server's limit, whose refusal names it.
#[macro_export]
macro_rules! limit_client {
    ($client:expr) => {{
        $client.max_decoding_message_size($crate::limits().max_message_bytes)
    }};
    ($client:expr, at_least = $floor:expr) => {{
        $client.max_decoding_message_size(::std::cmp::max($crate::limits().max_message_bytes, $floor))
    }};
}

/// Sets, for this process, the TLS of every gRPC server started by [`server`]
/// and every client made by [`endpoint`]. `None`: plain text (development).
/// Called once at start by the launcher and the CLI.
pub fn install(server: Option<ServerTlsConfig>, client: Option<ClientTlsConfig>) {
    let mut w = INSTALLED.write().unwrap_or_else(|e| e.into_inner());
    w.server = server;
    w.client = client;
}

/// `Endpoint::from_shared` for our gRPC clients: with client TLS installed the
/// URL is used as `https://` with our CA and role certificate; without it, as
/// `http://`. The scheme thus follows `[tls] enabled`, so a URL written for the
/// other setting still reaches the service.
pub fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    let client = INSTALLED.read().unwrap_or_else(|e| e.into_inner()).client.clone();
    let endpoint = match client {
        Some(tls) => {
            let url = match url.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => url.to_owned(),
            };
            Endpoint::from_shared(url)?.tls_config(tls)
        }
        None => {
            let url = match url.strip_prefix("https://") {
                Some(rest) => format!("http://{rest}"),
                None => url.to_owned(),
            };
            Endpoint::from_shared(url)
        }
    }?;
    Ok(endpoint.tcp_nodelay(true).tcp_keepalive(Some(net::TCP_KEEPALIVE)))
}

/// The `Server::builder()` of every gRPC service: TLS with required client
/// certificates when installed, role authorization on every call, and the
/// installed [`Limits`]: a timeout per call, a bound on concurrent HTTP/2
/// streams and on calls in flight per connection. (Message sizes are set per
/// service with [`limit_messages!`].)
pub fn server() -> Result<Server<Stack<AuthzLayer, NoLayer>>, tonic::transport::Error> {
    let tls = INSTALLED.read().unwrap_or_else(|e| e.into_inner()).server.clone();
    let limits = limits();
    let enforce = tls.is_some();
    let builder = Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.max_concurrent_streams as usize);
    let builder = match tls {
        Some(tls) => builder.tls_config(tls)?,
        None => builder,
    };
    Ok(builder.layer(AuthzLayer { enforce }))
}

// ------------------------------------------------------------ authorization

/// The role in a client certificate: its URI SAN `urn:hpki-ca:role:<role>`.
pub fn role_of_certificate(der: &[u8]) -> Option<Role> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let exts = cert.tbs_certificate().extensions()?;
    for ext in exts.iter() {
        if ext.extn_id != const_oid_san() {
            continue;
        }
        let san = x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes()).ok()?;
        for name in san.0.iter() {
            if let x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(uri) = name {
                if let Some(r) = uri.as_str().strip_prefix(ROLE_URI_PREFIX) {
                    return Role::parse(r).ok();
                }
            }
        }
    }
    None
}

fn const_oid_san() -> der::asn1::ObjectIdentifier {
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17")
}

/// The decision for one call: `Ok(())` or the status to answer with.
pub fn authorize(path: &str, leaf: Option<&[u8]>) -> Result<(), tonic::Status> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let Some(role) = leaf.and_then(role_of_certificate) else {
        if open_service(service) && leaf.is_some() {
            return Ok(());
        }
        return Err(tonic::Status::unauthenticated("no role in the client certificate"));
    };
    if open_service(service) || role.may_call(service, method) {
        Ok(())
    } else {
        Err(tonic::Status::permission_denied(format!("role {role} may not call {service}/{method}")))
    }
}

/// Tower layer of [`Authz`].
#[derive(Debug, Clone, Copy)]
pub struct AuthzLayer {
    enforce: bool,
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz { inner, enforce: self.enforce }
    }
}

/// Checks the caller's role against the policy before the call reaches the service.
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
    enforce: bool,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Authz<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if self.enforce {
            let certs: Option<Arc<Vec<_>>> =
                req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.peer_certs());
            let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
            if let Err(status) = authorize(req.uri().path(), leaf) {
                tracing::warn!(path = req.uri().path(), code = ?status.code(), "call refused: {}", status.message());
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        // The clone is the one polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::crl::v1 as crl;
    use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
    use proto::crl::v1::crl_publisher_server::{CrlPublisher, CrlPublisherServer};

    #[test]
    fn pki_is_created_once_and_roles_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_local_pki(dir.path()).unwrap();
        assert_eq!(first.len(), 6, "{first:?}");
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        assert!(ensure_local_pki(dir.path()).unwrap().is_empty());
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ra.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(dir.path().join("auditor.pem")).unwrap();
        assert_eq!(ensure_local_pki(dir.path()).unwrap(), vec!["auditor.pem".to_owned()]);
        for role in Role::ALL {
            let pem = std::fs::read_to_string(dir.path().join(format!("{role}.pem"))).unwrap();
            let der = pem_to_der(&pem);
            assert_eq!(role_of_certificate(&der), Some(role));
        }
        let server = pem_to_der(&std::fs::read_to_string(dir.path().join("server.pem")).unwrap());
        assert_eq!(role_of_certificate(&server), None);
        server_tls(dir.path()).unwrap();
        client_tls(dir.path(), Role::Ra).unwrap();
    }

    /// A stand-in gRPC service: `/test.Limits/Sleep<ms>` answers OK after `ms`.
    #[derive(Clone)]
    struct Sleeper;

    impl tonic::server::NamedService for Sleeper {
        const NAME: &'static str = "test.Limits";
    }

    impl Service<http::Request<Body>> for Sleeper {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let ms: u64 = req.uri().path().rsplit("Sleep").next().and_then(|n| n.parse().ok()).unwrap_or(0);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(tonic::Status::ok("").into_http())
            })
        }
    }

    async fn call(channel: &tonic::transport::Channel, path: &str) -> String {
        let mut channel = channel.clone();
        std::future::poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Body::empty())
            .unwrap();
        let resp = channel.call(req).await.unwrap();
        resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
    }

    /// Tests that install process-wide limits run one at a time.
    static LIMITS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn server_applies_the_installed_timeout_and_stream_bound() {
        use std::time::{Duration, Instant};
        let _limits = LIMITS_LOCK.lock().await;
        install_limits(Limits {
            max_message_bytes: 1024,
            max_concurrent_streams: 1,
            request_timeout: Duration::from_millis(1000),
        });
        assert_eq!(limits().max_concurrent_streams, 1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(
            server()
                .unwrap()
                .add_service(Sleeper)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();

        assert_eq!(call(&channel, "/test.Limits/Sleep0").await, "0");
        // Past the timeout: CANCELLED (tonic's answer), well before the handler ends.
        let started = Instant::now();
        assert_eq!(call(&channel, "/test.Limits/Sleep30000").await, (tonic::Code::Cancelled as i32).to_string());
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        // One call at a time per connection: two 400 ms calls take twice as long.
        let started = Instant::now();
        let (a, b) = tokio::join!(call(&channel, "/test.Limits/Sleep400"), call(&channel, "/test.Limits/Sleep400"));
        assert_eq!((a.as_str(), b.as_str()), ("0", "0"));
        assert!(started.elapsed() >= Duration::from_millis(800), "not serialized: {:?}", started.elapsed());
        server.abort();
        install_limits(Limits::DEFAULT);
    }

    /// A CRL publisher whose GetStatus reply carries a URL of the given length.
    struct BigStatus(usize);

    #[tonic::async_trait]
    impl CrlPublisher for BigStatus {
        async fn publish(
            &self,
            _: tonic::Request<crl::PublishRequest>,
        ) -> Result<tonic::Response<crl::PublishResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }

        async fn get_status(
            &self,
            _: tonic::Request<crl::GetStatusRequest>,
        ) -> Result<tonic::Response<crl::GetStatusResponse>, tonic::Status> {
            let latest = vec![crl::PublishedCrl { url: "x".repeat(self.0), ..Default::default() }];
            Ok(tonic::Response::new(crl::GetStatusResponse { latest }))
        }
    }

    #[tokio::test]
    async fn clients_read_replies_up_to_the_installed_limit() {
        const MIB: usize = 1024 * 1024;
        let _limits = LIMITS_LOCK.lock().await;
        install_limits(Limits { max_message_bytes: 8 * MIB, ..Limits::DEFAULT });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A 5 MiB reply: over tonic's 4 MiB default, within the configured 8 MiB.
        let server = tokio::spawn(
            server()
                .unwrap()
                .add_service(limit_messages!(CrlPublisherServer::new(BigStatus(5 * MIB))))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let ask = |client: CrlPublisherClient<tonic::transport::Channel>| async move {
            let mut client = client;
            client.get_status(crl::GetStatusRequest {}).await.map(|r| r.into_inner().latest[0].url.len())
        };

        // tonic's default client refuses the reply the server was allowed to send...
        let err = ask(CrlPublisherClient::new(channel.clone())).await.expect_err("default 4 MiB client limit");
        assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
        // ...a client through limit_client! reads it whole.
        assert_eq!(ask(limit_client!(CrlPublisherClient::new(channel.clone()))).await.unwrap(), 5 * MIB);
        // A caller's own larger bound is kept, a smaller one does not lower the installed limit.
        assert_eq!(
            ask(limit_client!(CrlPublisherClient::new(channel.clone()), at_least = MIB)).await.unwrap(),
            5 * MIB
        );
        install_limits(Limits { max_message_bytes: MIB, ..Limits::DEFAULT });
        let err = ask(limit_client!(CrlPublisherClient::new(channel.clone()))).await.expect_err("1 MiB installed");
        assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
        assert_eq!(
            ask(limit_client!(CrlPublisherClient::new(channel.clone()), at_least = 8 * MIB)).await.unwrap(),
            5 * MIB
        );
        server.abort();
        install_limits(Limits::DEFAULT);
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        use der::DecodePem;
        use der::Encode;
        x509_cert::Certificate::from_pem(pem.as_bytes()).unwrap().to_der().unwrap()
    }

    #[test]
    fn policy() {
        assert!(Role::Ra.may_call("hpki.issuance.v1.Issuance", "SubmitApplication"));
        assert!(!Role::Ra.may_call("hpki.revocation.v1.Revocation", "Revoke"));
        assert!(!Role::Ra.may_call("hpki.issuance.v1.Issuance", "IssueResponderCertificate"));
        assert!(!Role::Operator.may_call("hpki.issuance.v1.Issuance", "IssueResponderCertificate"));
        assert!(Role::Service.may_call("hpki.issuance.v1.Issuance", "IssueResponderCertificate"));
        assert!(Role::Operator.may_call("hpki.crl.v1.CrlPublisher", "Publish"));
        assert!(!Role::Operator.may_call("hpki.registry.v1.Registry", "ListAudit"));
        assert!(Role::Auditor.may_call("hpki.registry.v1.Registry", "ListAudit"));
        assert!(!Role::Auditor.may_call("hpki.registry.v1.Registry", "RevokeCertificate"));
        assert!(Role::Service.may_call("hpki.registry.v1.Registry", "RevokeCertificate"));
        let e = authorize("/hpki.registry.v1.Registry/GetCard", None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
}
