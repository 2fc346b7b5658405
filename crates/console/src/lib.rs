//! The operator console (issue 15): the loss-report desk in a browser.
//!
//! * HTTPS on its own listener (`[console] listen`, loopback by default) with
//!   the server certificate of the service-identity CA (`[tls] dir`). Client
//!   certificates of that CA are asked for and checked in the handshake;
//!   login is decided per request ([`login`]): operators and auditors get in,
//!   an RA's or a service's certificate, a revoked one or none gets a 403 page.
//! * A session (cookie, server-side) is bound to the certificate's serial and
//!   carries the CSRF token every POST form must return.
//! * The console calls the registry and the revocation service with its own
//!   identity `console` and relays the logged-in person as the `operator`,
//!   so every action is audited under the person.
//! * Pages are rendered on the server ([`pages`], maud); no script, a strict
//!   Content-Security-Policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::registry::v1::registry_client::RegistryClient;
use proto::revocation::v1::revocation_client::RevocationClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

pub mod audit;
pub mod error;
pub mod i18n;
pub mod ocsp_live;
pub mod ops;
pub mod pages;
mod server;

pub use error::ConsoleError;
use i18n::Lang;

/// The identity the console calls our services with.
pub const IDENTITY: &str = "console";
const SESSION_COOKIE: &str = "hpki_console_session";
const LANG_COOKIE: &str = "hpki_console_lang";
/// The registry stops a ListAudit reply near 2 MiB, after the entry that
/// crosses it (a detail may be 256 KiB): as `hpki-ca audit` allows.
const AUDIT_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// A session unused this long is forgotten (the next request starts a new one).
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);

/// Everything a request handler needs.
#[derive(Clone)]
pub struct App {
    pub registry: RegistryClient<Channel>,
    /// The registry for ListAudit: replies up to ~2 MiB plus one entry.
    pub audit_registry: RegistryClient<Channel>,
    pub audit_files: ::audit::CheckpointFiles,
    pub revocation: RevocationClient<Channel>,
    pub issuance: IssuanceClient<Channel>,
    pub crl: CrlPublisherClient<Channel>,
    pub ocsp: Arc<ocsp_live::OcspLive>,
    /// Each service's gRPC health: (service, the name its health reports, client).
    pub health: Vec<(&'static str, &'static str, HealthClient<Channel>)>,
    pub crl_http_url: String,
    pub ocsp_metrics_url: String,
    revoked: Arc<tls::RevokedList>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

#[derive(Debug, Clone)]
struct Session {
    serial: String,
    csrf: String,
    used: Instant,
}

/// The logged-in person, their session's CSRF token and the page language:
/// put in the request extensions by [`login`].
#[derive(Debug, Clone)]
pub struct Ctx {
    pub person: tls::Caller,
    pub csrf: String,
    pub lang: Lang,
}

impl Ctx {
    pub fn is_operator(&self) -> bool {
        self.person.role == tls::Role::Operator
    }

    pub fn is_auditor(&self) -> bool {
        self.person.role == tls::Role::Auditor
    }

    /// The CSRF token a POST form returned must be this session's.
    pub fn check_csrf(&self, given: Option<&String>) -> Result<(), ConsoleError> {
        let given = given.map(String::as_bytes).unwrap_or_default();
        let ours = self.csrf.as_bytes();
        // Compared in constant time.
        let differ = given.len() != ours.len() || given.iter().zip(ours).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        if differ {
            Err(ConsoleError::Csrf)
        } else {
            Ok(())
        }
    }

    /// An operator's POST: this session's CSRF token, then the operator role.
    pub fn check_operator_post(&self, given: Option<&String>) -> Result<(), ConsoleError> {
        self.check_csrf(given)?;
        if self.is_operator() {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!("{} is no operator", self.person.identity)))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("console TLS: {0}")]
    Tls(String),
    #[error("console: {0}")]
    Client(#[from] tls::TlsError),
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
}

impl App {
    /// Clients (lazy) of the services named in `[console]`, as identity `console`.
    pub fn new(cfg: &config::Config, kit: &tls::GrpcKit) -> Result<App, StartError> {
        let registry = kit.endpoint_as(IDENTITY, &cfg.console.registry_url)?.connect_lazy();
        let revocation = kit.endpoint_as(IDENTITY, &cfg.console.revocation_url)?.connect_lazy();
        let issuance = kit.endpoint_as(IDENTITY, &cfg.console.issuance_url)?.connect_lazy();
        let crl = kit.endpoint_as(IDENTITY, &cfg.console.crl_url)?.connect_lazy();
        let mut health = Vec::new();
        for (service, name) in ops::SERVICES {
            let url = match service {
                "registry" => &cfg.console.registry_url,
                "issuance" => &cfg.console.issuance_url,
                "revocation" => &cfg.console.revocation_url,
                _ => &cfg.console.crl_url,
            };
            health.push((service, name, HealthClient::new(kit.endpoint_as(IDENTITY, url)?.connect_lazy())));
        }
        Ok(App {
            audit_registry: kit.client_at_least(RegistryClient::new(registry.clone()), AUDIT_REPLY_BYTES),
            audit_files: ::audit::CheckpointFiles::of(cfg),
            registry: kit.client(RegistryClient::new(registry)),
            revocation: kit.client(RevocationClient::new(revocation)),
            issuance: kit.client(IssuanceClient::new(issuance)),
            crl: kit.client(CrlPublisherClient::new(crl)),
            ocsp: Arc::new(ocsp_live::OcspLive::new(&cfg.console.ocsp_url, &cfg.cert_dir())),
            health,
            crl_http_url: cfg.console.crl_http_url.clone(),
            ocsp_metrics_url: cfg.console.ocsp_metrics_url.clone(),
            revoked: Arc::new(tls::RevokedList::new(cfg.tls_dir().join(tls::REVOKED_FILE))),
            sessions: Arc::new(Mutex::new(HashMap::new())),
        })
    }
}

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(
    cfg: &config::Config,
    kit: tls::GrpcKit,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = App::new(cfg, &kit)?;
    let tls = server::tls_config(&cfg.tls_dir())?;
    server::serve(listener, tls, pages::router(app), shutdown).await;
    Ok(())
}

/// The headers of every answer: a strict Content-Security-Policy (no script
/// at all, styles from our own stylesheet only), no framing, no caching.
pub fn security_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The page language: `?lang=` (remembered in a cookie), the cookie, the
/// browser's Accept-Language, Japanese.
fn language(req: &Request) -> (Lang, Option<Lang>) {
    let asked =
        req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang="))).and_then(Lang::parse);
    let lang = asked
        .or_else(|| cookie(req.headers(), LANG_COOKIE).and_then(Lang::parse))
        .or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::Ja);
    (lang, asked)
}

/// Who the client certificate of this connection names, if they may use the console.
fn person(app: &App, req: &Request) -> Result<tls::Caller, ConsoleError> {
    let Some(server::PeerCert(Some(der))) = req.extensions().get::<server::PeerCert>() else {
        return Err(ConsoleError::Login("no client certificate".into()));
    };
    let caller = tls::caller_of_certificate(der).map_err(|e| ConsoleError::Login(e.to_string()))?;
    match app.revoked.is_revoked(&caller.serial) {
        Ok(false) => {}
        Ok(true) => {
            return Err(ConsoleError::Login(format!(
                "the certificate of {} (serial {}) is revoked",
                caller.identity, caller.serial
            )))
        }
        Err(e) => return Err(ConsoleError::Login(format!("revoked identities unreadable: {e}"))),
    }
    match caller.role {
        tls::Role::Operator | tls::Role::Auditor => Ok(caller),
        role => Err(ConsoleError::Login(format!(
            "{} has the role {role}; the console is for operators and auditors",
            caller.identity
        ))),
    }
}

/// Middleware of every page: the security headers, the language, the login
/// (refused with a 403 page), and the session with its CSRF token.
pub async fn login(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let (lang, asked) = language(&req);
    let mut set_cookies: Vec<String> = Vec::new();
    if let Some(asked) = asked {
        set_cookies.push(format!("{LANG_COOKIE}={}; Path=/; Secure; SameSite=Strict", asked.code()));
    }
    let mut response = if req.uri().path() == pages::STYLESHEET {
        next.run(req).await
    } else {
        match person(&app, &req) {
            Err(e) => e.page(lang),
            Ok(person) => {
                let csrf = {
                    let mut sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
                    let now = Instant::now();
                    sessions.retain(|_, s| now.duration_since(s.used) < SESSION_IDLE);
                    let known = cookie(req.headers(), SESSION_COOKIE)
                        .filter(|id| sessions.get(*id).is_some_and(|s| s.serial == person.serial))
                        .map(str::to_owned);
                    let id = match known {
                        Some(id) => id,
                        None => {
                            let id = random_token();
                            sessions.insert(
                                id.clone(),
                                Session { serial: person.serial.clone(), csrf: random_token(), used: now },
                            );
                            set_cookies
                                .push(format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict"));
                            id
                        }
                    };
                    match sessions.get_mut(&id) {
                        Some(s) => {
                            s.used = now;
                            s.csrf.clone()
                        }
                        None => String::new(),
                    }
                };
                if csrf.is_empty() {
                    ConsoleError::Internal("session lost".into()).page(lang)
                } else {
                    req.extensions_mut().insert(Ctx { person, csrf, lang });
                    next.run(req).await
                }
            }
        }
    };
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    security_headers(response.headers_mut());
    response.into_response()
}
