//! mTLS for every gRPC listener and client of the CA.
//!
//! * [`ensure_local_pki`] creates, once, a small *service-identity* CA under the
//!   state folder, a server certificate for loopback and one client certificate
//!   per service identity ([`SERVICE_IDENTITIES`]) and default person
//!   ([`DEFAULT_PEOPLE`]); [`add_identity`] issues more (`op-sato`,
//!   `ra-tokyo`), [`revoke_identity`] revokes one. This is the transport
//!   identity of our processes and people, not the HPKI CA: its keys are
//!   ordinary ECDSA P-256 software keys (files with mode 600), so no HSM is
//!   needed for it.
//! * [`server_tls`] / [`client_tls`] build tonic's rustls configurations:
//!   servers require a client certificate from that CA.
//! * [`GrpcKit`] (module [`kit`]) is how every gRPC server and client is
//!   built, from values made once at process start: [`GrpcKit::server`] is
//!   the server of every service (TLS when the kit has it, [`Limits`], health,
//!   reflection, and [`Authz`], which reads the [`Caller`] of the client
//!   certificate (URI SANs `urn:hpki-ca:role:<role>` and `urn:hpki-ca:id:<name>`),
//!   refuses revoked ones, applies the one table [`policy::POLICY`] and hands
//!   the caller to the handler in the request extensions ([`caller`]));
//!   [`GrpcKit::endpoint_as`] and [`GrpcKit::client`] make every client.
//! * [`incoming`] is what every gRPC server accepts from, and [`net::accepted`]
//!   tunes each HTTP connection: `TCP_NODELAY` everywhere (see [`net`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use der::Decode;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tower_layer::Layer;
use tower_service::Service;

pub mod identity;
pub mod kit;
pub mod metrics;
pub mod net;
pub mod policy;
pub use identity::{
    add_identity, list_identities, revoke_identity, IdentityInfo, RevokedList, RevokedListError, REVOKED_FILE,
};
pub use kit::{GrpcKit, GrpcServer, Limits, ServerError, SizeLimited};
pub use net::incoming;

/// Prefix of the URI SAN that carries a role.
pub const ROLE_URI_PREFIX: &str = "urn:hpki-ca:role:";
/// Prefix of the URI SAN that carries the identity (the name of a service, a person or an RA system).
pub const ID_URI_PREFIX: &str = "urn:hpki-ca:id:";

/// Our services' client identities (role `service`), one certificate each.
/// `console` is the operator console, which relays the logged-in person.
pub const SERVICE_IDENTITIES: [&str; 6] = ["registry", "issuance", "revocation", "crl", "ocsp", "console"];

/// The people identities [`ensure_local_pki`] makes, so the CLI works with no
/// extra step: (identity, role).
pub const DEFAULT_PEOPLE: [(&str, Role); 3] =
    [("ra", Role::Ra), ("operator", Role::Operator), ("auditor", Role::Auditor)];

/// Who called: read from the client certificate by [`Authz`], and put in the
/// request extensions for the handler ([`caller`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `urn:hpki-ca:id:<identity>`: `op-sato`, `ra-tokyo`, `ocsp`...
    pub identity: String,
    pub role: Role,
    /// Certificate serial, lower-case hex.
    pub serial: String,
}

impl Caller {
    /// One of our services (role `service`): it may relay the person it acts for.
    pub fn is_service(&self) -> bool {
        self.role == Role::Service
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (role {})", self.identity, self.role)
    }
}

/// The caller of a gRPC call, as [`Authz`] read it from the client certificate.
/// `None` without TLS (`[tls] enabled = false`).
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("service-identity certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("unknown role {0:?} (ra, operator, auditor, service)")]
    Role(String),
    #[error("identity {name:?}: {why}")]
    Identity { name: String, why: String },
    #[error("{0}")]
    Endpoint(#[from] tonic::transport::Error),
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
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

pub(crate) fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

pub(crate) fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
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

/// The client certificate parameters of `identity` with `role`: URI SANs
/// `urn:hpki-ca:role:<role>` and `urn:hpki-ca:id:<identity>`, OU=<role>, CN=<identity>.
pub(crate) fn client_params(identity: &str, role: Role) -> Result<rcgen::CertificateParams, TlsError> {
    let mut p = leaf_params(Vec::new(), identity, Some(role.as_str()), false)?;
    p.subject_alt_names = vec![
        rcgen::SanType::URI(rcgen::string::Ia5String::try_from(format!("{ROLE_URI_PREFIX}{role}"))?),
        rcgen::SanType::URI(rcgen::string::Ia5String::try_from(format!("{ID_URI_PREFIX}{identity}"))?),
    ];
    Ok(p)
}

/// The issuer of the service-identity CA in `pki` (its key read from `ca.key`).
pub(crate) fn local_issuer(pki: &LocalPki) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, TlsError> {
    let key = rcgen::KeyPair::from_pem(&read(&pki.key("ca"))?)?;
    Ok(rcgen::Issuer::new(ca_params()?, key))
}

/// Signs `params` with a fresh key and writes `<name>.pem` and `<name>.key` (mode 600).
pub(crate) fn issue_leaf(
    pki: &LocalPki,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    name: &str,
    params: rcgen::CertificateParams,
) -> Result<String, TlsError> {
    let _ = std::fs::remove_file(pki.cert(name));
    let _ = std::fs::remove_file(pki.key(name));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, issuer)?;
    write(&pki.key(name), &key.serialize_pem(), true)?;
    write(&pki.cert(name), &cert.pem(), false)?;
    Ok(cert.pem())
}

/// Whether `<name>.pem` (with its key) exists and names `name` as its identity
/// with `role`: certificates of earlier versions (a role only) are made again.
fn current(pki: &LocalPki, name: &str, role: Option<Role>) -> bool {
    if !pki.cert(name).exists() || !pki.key(name).exists() {
        return false;
    }
    let Some(role) = role else { return true };
    if identity::is_revoked_name(&pki.dir, name) {
        return false;
    }
    let Ok(pem) = std::fs::read_to_string(pki.cert(name)) else { return false };
    pem_to_der(&pem)
        .and_then(|der| caller_of_certificate(&der).ok())
        .is_some_and(|c| c.identity == name && c.role == role)
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use der::{DecodePem, Encode};
    x509_cert::Certificate::from_pem(pem.as_bytes()).ok()?.to_der().ok()
}

/// Creates under `dir` what is missing of: the service-identity CA (`ca.pem`,
/// `ca.key`), the loopback server certificate (`server.pem`, `server.key`; SANs
/// 127.0.0.1, ::1, localhost), one client certificate per service identity
/// (`registry`, `issuance`, `revocation`, `crl`, `ocsp`, `console`: role `service`) and one
/// per default person (`ra`, `operator`, `auditor`): `<name>.pem`, `<name>.key`,
/// URI SANs `urn:hpki-ca:role:<role>` and `urn:hpki-ca:id:<name>`.
/// Existing files are kept (a client certificate without an identity, from an
/// earlier version, is made again). Returns the names of the files written.
pub fn ensure_local_pki(dir: &Path) -> Result<Vec<String>, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let pki = LocalPki { dir: dir.to_owned() };
    let mut written = Vec::new();
    let defaults: Vec<(&str, Role)> =
        SERVICE_IDENTITIES.iter().map(|s| (*s, Role::Service)).chain(DEFAULT_PEOPLE.iter().copied()).collect();
    // A fresh CA only when there is no CA certificate: a host may hold ca.pem
    // without its key (nothing to issue there).
    if !pki.ca_cert().exists() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        // A fresh CA: earlier leaves (if any) no longer chain to it.
        for name in ["server", "service"].into_iter().chain(defaults.iter().map(|(n, _)| *n)) {
            let _ = std::fs::remove_file(pki.cert(name));
            let _ = std::fs::remove_file(pki.key(name));
        }
        let _ = std::fs::remove_file(pki.dir.join(REVOKED_FILE));
        let _ = std::fs::remove_file(pki.key("ca"));
        let _ = std::fs::remove_file(pki.ca_cert());
        write(&pki.key("ca"), &key.serialize_pem(), true)?;
        write(&pki.ca_cert(), &cert.pem(), false)?;
        written.push("ca.pem".to_owned());
    }
    // The CA key is read only when something is to be issued, so a process
    // whose files all exist needs no access to it.
    let mut missing: Vec<(String, rcgen::CertificateParams)> = Vec::new();
    if !current(&pki, "server", None) {
        let sans = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        missing.push(("server".into(), leaf_params(sans, "hpki-ca services", None, true)?));
    }
    for (name, role) in defaults {
        if !current(&pki, name, Some(role)) {
            missing.push((name.into(), client_params(name, role)?));
        }
    }
    if !missing.is_empty() {
        let issuer = local_issuer(&pki)?;
        for (name, params) in missing {
            issue_leaf(&pki, &issuer, &name, params)?;
            written.push(format!("{name}.pem"));
        }
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

/// Clients: trust only our CA, present the certificate of `identity`
/// (`<identity>.pem` and `.key` in `dir`: a service, `operator`, `op-sato`...).
pub fn client_tls(dir: &Path, identity: &str) -> Result<ClientTlsConfig, TlsError> {
    identity::check_name(identity)?;
    let pki = LocalPki { dir: dir.to_owned() };
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&pki.ca_cert())?))
        .identity(Identity::from_pem(read(&pki.cert(identity))?, read(&pki.key(identity))?)))
}

// ------------------------------------------------------------ authorization

/// The URI SANs of a certificate.
fn uris(der: &[u8]) -> Vec<String> {
    x509_cert::Certificate::from_der(der).map(|cert| uris_of(&cert)).unwrap_or_default()
}

fn uris_of(cert: &x509_cert::Certificate) -> Vec<String> {
    let Some(exts) = cert.tbs_certificate().extensions() else { return Vec::new() };
    let mut out = Vec::new();
    for ext in exts.iter().filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME) {
        let Ok(san) = x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes()) else { continue };
        for name in san.0.iter() {
            if let x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(uri) = name {
                out.push(uri.as_str().to_owned());
            }
        }
    }
    out
}

/// The role in a client certificate: its URI SAN `urn:hpki-ca:role:<role>`.
pub fn role_of_certificate(der: &[u8]) -> Option<Role> {
    uris(der).iter().find_map(|u| u.strip_prefix(ROLE_URI_PREFIX).map(|r| Role::parse(r).ok()))?
}

/// The serial of a certificate, lower-case hex without leading zero bytes.
fn serial_of(cert: &x509_cert::Certificate) -> String {
    let bytes = cert.tbs_certificate().serial_number().as_bytes();
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => &bytes[bytes.len().saturating_sub(1)..],
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a client certificate lacks to name a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    /// Also for bytes that are no certificate: they carry no role either.
    #[error("no role (URI SAN {ROLE_URI_PREFIX}<role>) in the client certificate")]
    NoRole,
    #[error("client certificate: {0}")]
    BadRole(String),
    #[error("no identity (URI SAN {ID_URI_PREFIX}<name>) in the client certificate")]
    NoIdentity,
}

/// The caller a client certificate names: its role, its identity and serial
/// (the certificate is parsed once: this runs on every call).
pub fn caller_of_certificate(der: &[u8]) -> Result<Caller, CallerError> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|_| CallerError::NoRole)?;
    let uris = uris_of(&cert);
    let role = uris.iter().find_map(|u| u.strip_prefix(ROLE_URI_PREFIX)).ok_or(CallerError::NoRole)?;
    let role = Role::parse(role).map_err(|e| CallerError::BadRole(e.to_string()))?;
    let identity = uris
        .iter()
        .find_map(|u| u.strip_prefix(ID_URI_PREFIX))
        .filter(|i| identity::check_name(i).is_ok())
        .ok_or(CallerError::NoIdentity)?;
    Ok(Caller { identity: identity.to_owned(), role, serial: serial_of(&cert) })
}

/// The decision for one call of `path` (`/package.Service/Method`) by the
/// client certificate `leaf`: the caller, or the status to answer with.
/// UNAUTHENTICATED: no certificate, no role or identity in it, or revoked
/// (`revoked`); PERMISSION_DENIED: the table [`policy::POLICY`] does not
/// allow the caller.
pub fn authorize(path: &str, leaf: Option<&[u8]>, revoked: Option<&RevokedList>) -> Result<Caller, tonic::Status> {
    let Some(leaf) = leaf else {
        return Err(tonic::Status::unauthenticated("no client certificate"));
    };
    let caller = caller_of_certificate(leaf).map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
    if let Some(list) = revoked {
        match list.is_revoked(&caller.serial) {
            Ok(false) => {}
            Ok(true) => {
                return Err(tonic::Status::unauthenticated(format!(
                    "the client certificate of {} (serial {}) is revoked",
                    caller.identity, caller.serial
                )))
            }
            Err(e) => return Err(tonic::Status::unauthenticated(format!("revoked identities unreadable: {e}"))),
        }
    }
    if policy::allows(&caller, path) {
        Ok(caller)
    } else {
        let rpc = path.trim_start_matches('/');
        Err(tonic::Status::permission_denied(format!(
            "identity {} (role {}) may not call {rpc}",
            caller.identity, caller.role
        )))
    }
}

/// Tower layer of [`Authz`].
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    enforce: bool,
    revoked: Option<Arc<RevokedList>>,
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz { inner, enforce: self.enforce, revoked: self.revoked.clone() }
    }
}

/// Checks the caller against the table before the call reaches the service,
/// and gives the handler the [`Caller`] in the request extensions.
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
    enforce: bool,
    revoked: Option<Arc<RevokedList>>,
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

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if self.enforce {
            let certs: Option<Arc<Vec<_>>> =
                req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.peer_certs());
            let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
            match authorize(req.uri().path(), leaf, self.revoked.as_deref()) {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                }
                Err(status) => {
                    tracing::warn!(path = req.uri().path(), code = ?status.code(), "call refused: {}", status.message());
                    metrics::observe_refusal(req.uri().path(), status.code());
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        // The clone is the one polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_owned();
        let started = std::time::Instant::now();
        let call = inner.call(req);
        Box::pin(async move {
            let answer = call.await;
            metrics::observe_call(&path, started.elapsed());
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::crl::v1 as crl;
    use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
    use proto::crl::v1::crl_publisher_server::{CrlPublisher, CrlPublisherServer};
    use tonic::transport::Endpoint;

    #[test]
    fn pki_is_created_once_and_roles_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_local_pki(dir.path()).unwrap();
        assert_eq!(first.len(), 11, "{first:?}");
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
        let defaults = SERVICE_IDENTITIES.iter().map(|s| (*s, Role::Service)).chain(DEFAULT_PEOPLE);
        for (name, role) in defaults {
            let pem = std::fs::read_to_string(dir.path().join(format!("{name}.pem"))).unwrap();
            let der = pem_to_der(&pem).unwrap();
            assert_eq!(role_of_certificate(&der), Some(role));
            let caller = caller_of_certificate(&der).unwrap();
            assert_eq!((caller.identity.as_str(), caller.role), (name, role));
        }
        let server = pem_to_der(&std::fs::read_to_string(dir.path().join("server.pem")).unwrap()).unwrap();
        assert_eq!(role_of_certificate(&server), None);
        assert!(caller_of_certificate(&server).is_err());
        server_tls(dir.path()).unwrap();
        client_tls(dir.path(), "ra").unwrap();
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

    #[tokio::test]
    async fn server_applies_the_kit_timeout_and_stream_bound() {
        use std::time::{Duration, Instant};
        let kit = GrpcKit::plain().with_limits(Limits {
            max_message_bytes: 1024,
            max_concurrent_streams: 1,
            request_timeout: Duration::from_millis(1000),
        });
        assert_eq!(kit.limits().max_concurrent_streams, 1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(
            kit.server_builder()
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
    async fn clients_read_replies_up_to_the_kit_limit() {
        const MIB: usize = 1024 * 1024;
        let kit = GrpcKit::plain().with_limits(Limits { max_message_bytes: 8 * MIB, ..Limits::DEFAULT });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A 5 MiB reply: over tonic's 4 MiB default, within the configured 8 MiB.
        let grpc = kit.server(CrlPublisherServer::new(BigStatus(5 * MIB))).await.unwrap();
        let server = tokio::spawn(grpc.serve(listener, std::future::pending()));
        let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let ask = |client: CrlPublisherClient<tonic::transport::Channel>| async move {
            let mut client = client;
            client.get_status(crl::GetStatusRequest {}).await.map(|r| r.into_inner().latest[0].url.len())
        };

        // tonic's default client refuses the reply the server was allowed to send...
        let err = ask(CrlPublisherClient::new(channel.clone())).await.expect_err("default 4 MiB client limit");
        assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
        // ...a client through the kit reads it whole.
        assert_eq!(ask(kit.client(CrlPublisherClient::new(channel.clone()))).await.unwrap(), 5 * MIB);
        // A caller's own larger bound is kept, a smaller one does not lower the kit's limit.
        assert_eq!(ask(kit.client_at_least(CrlPublisherClient::new(channel.clone()), MIB)).await.unwrap(), 5 * MIB);
        let small = GrpcKit::plain().with_limits(Limits { max_message_bytes: MIB, ..Limits::DEFAULT });
        let err = ask(small.client(CrlPublisherClient::new(channel.clone()))).await.expect_err("1 MiB kit");
        assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
        assert_eq!(
            ask(small.client_at_least(CrlPublisherClient::new(channel.clone()), 8 * MIB)).await.unwrap(),
            5 * MIB
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_kit_made_for_clients_serves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        ensure_local_pki(dir.path()).unwrap();
        let kit = GrpcKit::local(dir.path(), false, "operator").unwrap();
        assert!(kit.is_tls());
        assert!(matches!(kit.server_builder(), Err(ServerError::NoServerCertificate)));
        // No such identity: refused at start, as before any call.
        assert!(GrpcKit::local(dir.path(), false, "nobody").is_err());
        kit.endpoint_as("ocsp", "http://127.0.0.1:1").unwrap();
        assert_eq!(kit.endpoint("http://127.0.0.1:1").unwrap().uri().scheme_str(), Some("https"));
        let plain = GrpcKit::default();
        assert_eq!(plain.endpoint("https://127.0.0.1:1").unwrap().uri().scheme_str(), Some("http"));
    }

    #[tokio::test]
    async fn a_tls_kit_serves_with_authorization_health_and_reflection() {
        let dir = tempfile::tempdir().unwrap();
        ensure_local_pki(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = GrpcKit::local(dir.path(), true, "crl").unwrap();
        let grpc = served.server(CrlPublisherServer::new(BigStatus(3))).await.unwrap();
        let server = tokio::spawn(grpc.serve(listener, std::future::pending()));

        // The operator may read the status; the ocsp service may not.
        let operator = GrpcKit::local(dir.path(), false, "operator").unwrap();
        let channel = operator.endpoint(&url).unwrap().connect().await.unwrap();
        let mut client = operator.client(CrlPublisherClient::new(channel.clone()));
        let latest = client.get_status(crl::GetStatusRequest {}).await.unwrap().into_inner().latest;
        assert_eq!(latest[0].url, "xxx");
        let ocsp = operator.endpoint_as("ocsp", &url).unwrap().connect().await.unwrap();
        let err = CrlPublisherClient::new(ocsp.clone()).get_status(crl::GetStatusRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert_eq!(err.message(), "identity ocsp (role service) may not call hpki.crl.v1.CrlPublisher/GetStatus");

        // Health and reflection (v1 here, v1alpha below), open to any valid certificate.
        let listed = testkit::grpc::serving_and_listed(ocsp.clone(), &["hpki.crl.v1.CrlPublisher"]).await;
        for name in ["hpki.crl.v1.CrlPublisher", "grpc.health.v1.Health"] {
            assert!(listed.iter().any(|l| l == name), "{name} not in {listed:?}");
        }
        let alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
        assert_ne!(call(&ocsp, alpha).await, (tonic::Code::Unimplemented as i32).to_string());
        server.abort();
    }

    #[test]
    fn policy() {
        let dir = tempfile::tempdir().unwrap();
        ensure_local_pki(dir.path()).unwrap();
        let der = |name: &str| pem_to_der(&std::fs::read_to_string(dir.path().join(format!("{name}.pem"))).unwrap());
        let (ra, ocsp) = (der("ra").unwrap(), der("ocsp").unwrap());
        assert_eq!(authorize("/hpki.issuance.v1.Issuance/SubmitApplication", Some(&ra), None).unwrap().identity, "ra");
        let e = authorize("/hpki.revocation.v1.Revocation/GetStatus", Some(&ra), None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(e.message(), "identity ra (role ra) may not call hpki.revocation.v1.Revocation/GetStatus");
        assert!(authorize("/hpki.registry.v1.Registry/WatchStatus", Some(&ocsp), None).is_ok());
        let e = authorize("/hpki.registry.v1.Registry/RevokeCard", Some(&ocsp), None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = authorize("/hpki.registry.v1.Registry/GetCard", None, None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let server = der("server").unwrap();
        let e = authorize("/grpc.health.v1.Health/Check", Some(&server), None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
}
