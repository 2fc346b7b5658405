//! The one TOML configuration file shared by every service, with defaults that
//! run the whole CA on loopback from a local state folder.
//!
//! Relative paths are resolved against `state_dir`'s parent (the folder the
//! config file sits in), so a config file can be moved with its state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

mod urls;
pub use urls::{CertificateUrl, PublicConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error("cannot read PIN file {path}: {source}")]
    Pin { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder holding the SoftHSM token, sled database, CA certificates.
    pub state_dir: PathBuf,
    /// Where relying parties reach us; every URL baked into certificates that
    /// the file does not give is derived from it.
    pub public: PublicConfig,
    pub hsm: HsmConfig,
    pub registry: RegistryConfig,
    pub store: StoreConfig,
    pub issuance: IssuanceConfig,
    pub crl: CrlConfig,
    pub revocation: RevocationConfig,
    pub ocsp: OcspConfig,
    pub console: ConsoleConfig,
    pub ca: CaConfig,
    pub profile: ProfileConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("state"),
            public: PublicConfig::default(),
            hsm: HsmConfig::default(),
            registry: RegistryConfig::default(),
            store: StoreConfig::default(),
            issuance: IssuanceConfig::default(),
            crl: CrlConfig::default(),
            revocation: RevocationConfig::default(),
            ocsp: OcspConfig::default(),
            console: ConsoleConfig::default(),
            ca: CaConfig::default(),
            profile: ProfileConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// The audit log: how often the all-in-one launcher (`hpki-ca run`) signs the
/// chain's head with the HSM key "audit-checkpoint".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Seconds between automatic checkpoints; 0 turns them off. At most a day:
    /// an unanchored tail can be rewritten without detection.
    pub checkpoint_interval_seconds: u64,
}

/// Longest accepted `[audit] checkpoint_interval_seconds`.
pub const MAX_CHECKPOINT_INTERVAL_SECONDS: u64 = 24 * 60 * 60;

impl AuditConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.checkpoint_interval_seconds > MAX_CHECKPOINT_INTERVAL_SECONDS {
            return Err(ConfigError::Invalid(format!(
                "audit.checkpoint_interval_seconds {} is over a day ({MAX_CHECKPOINT_INTERVAL_SECONDS}); 0 turns \
                 automatic checkpoints off",
                self.checkpoint_interval_seconds
            )));
        }
        Ok(())
    }

    /// The interval, or `None` when automatic checkpoints are off.
    pub fn checkpoint_interval(&self) -> Option<std::time::Duration> {
        match self.checkpoint_interval_seconds {
            0 => None,
            s => Some(std::time::Duration::from_secs(s)),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { checkpoint_interval_seconds: 3600 }
    }
}

/// Bounds on every listener: gRPC message sizes, concurrent streams and a
/// request timeout on every gRPC server; body size and timeout on the CRL
/// distribution point's HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest gRPC message decoded or encoded by our services (bulk CRL
    /// streaming already sends chunks well under it).
    pub max_message_bytes: usize,
    /// HTTP/2 concurrent streams per connection, and calls in flight per connection.
    pub max_concurrent_streams: u32,
    /// Time a request may take before the server answers it with an error
    /// (for streams: until the stream is started).
    pub request_timeout_seconds: u64,
    /// Largest request body the CRL HTTP server accepts.
    pub http_body_bytes: usize,
}

impl LimitsConfig {
    /// Zero in any limit would refuse every call (or every stream): a mistake.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero = [
            ("max_message_bytes", self.max_message_bytes == 0),
            ("max_concurrent_streams", self.max_concurrent_streams == 0),
            ("request_timeout_seconds", self.request_timeout_seconds == 0),
            ("http_body_bytes", self.http_body_bytes == 0),
        ];
        match zero.iter().find(|(_, z)| *z) {
            Some((name, _)) => Err(ConfigError::Invalid(format!("limits.{name} must be at least 1"))),
            None => Ok(()),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            request_timeout_seconds: 60,
            http_body_bytes: 64 * 1024,
        }
    }
}

/// mTLS on every gRPC listener and client (the HTTP OCSP responder and CRL
/// distribution point stay plain HTTP). Roles come from the client certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// `false` is the explicit development switch for plain-text gRPC.
    pub enabled: bool,
    /// The service-identity CA, server and client certificates (relative to `state_dir`).
    pub dir: PathBuf,
    /// Identity whose certificate the CLI presents (ra, operator, auditor, op-sato...);
    /// empty: the one the command needs. `--identity` overrides it.
    pub client_role: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { enabled: true, dir: PathBuf::from("tls"), client_role: String::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HsmConfig {
    /// PKCS#11 module.
    pub module: PathBuf,
    /// SoftHSM2 configuration file; exported as SOFTHSM2_CONF before the module loads.
    /// Relative to `state_dir`. Empty to leave the environment alone.
    pub softhsm2_conf: PathBuf,
    /// Sessions kept open per token so concurrent signatures do not serialise.
    pub sessions: usize,
    /// One token per trust domain, each with its own PIN (`[hsm.tokens.<domain>]`).
    pub tokens: HsmTokens,
    /// The single-token layout of earlier versions; refused (see [`Config::validate_hsm`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// The single-token layout of earlier versions; refused (see [`Config::validate_hsm`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

/// A trust domain: the keys one token holds, opened only by the processes that need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustDomain {
    /// The root CA key: the ceremony and `hpki-ca arl` only, never a running service.
    Root,
    /// The signing and authentication issuing CA keys: issuance and crl.
    Issuing,
    /// The delegated OCSP responder keys: ocsp only.
    Ocsp,
    /// The AES key of the card-PIN escrow: issuance.
    Escrow,
    /// The audit-checkpoint key: the process that signs checkpoints (crl; `hpki-ca run`).
    Audit,
}

impl TrustDomain {
    pub const ALL: [TrustDomain; 5] =
        [TrustDomain::Root, TrustDomain::Issuing, TrustDomain::Ocsp, TrustDomain::Escrow, TrustDomain::Audit];

    /// "root", "issuing", "ocsp", "escrow", "audit": the `[hsm.tokens]` key.
    pub fn name(self) -> &'static str {
        match self {
            TrustDomain::Root => "root",
            TrustDomain::Issuing => "issuing",
            TrustDomain::Ocsp => "ocsp",
            TrustDomain::Escrow => "escrow",
            TrustDomain::Audit => "audit",
        }
    }
}

impl std::fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[hsm.tokens.<domain>]`: the token label and user-PIN file of each domain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HsmTokens {
    pub root: TokenConfig,
    pub issuing: TokenConfig,
    pub ocsp: TokenConfig,
    pub escrow: TokenConfig,
    pub audit: TokenConfig,
}

/// One domain's token. Unset fields default to label `hpki-<domain>` and PIN file
/// `hsm/<domain>.pin` (what `hsm-config/init-token.sh` creates).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Token label (at most 32 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// File holding the token's user PIN (relative to `state_dir`). The PIN is never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

impl Default for HsmConfig {
    fn default() -> Self {
        HsmConfig {
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            softhsm2_conf: PathBuf::from("hsm/softhsm2.conf"),
            sessions: 4,
            tokens: HsmTokens::default(),
            token_label: None,
            pin_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub listen: String,
    /// Prometheus metrics (`/metrics`, plain HTTP); port 0 takes a free one.
    pub metrics_listen: String,
    /// sled database folder, relative to `state_dir`.
    pub db_path: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            listen: "127.0.0.1:50051".into(),
            metrics_listen: "127.0.0.1:9103".into(),
            db_path: PathBuf::from("registry.sled"),
        }
    }
}

/// Which database engine holds the registry's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Embedded, in `[registry] db_path`; one registry process.
    Sled,
    /// An existing PostgreSQL cluster; several registry processes may share it.
    Postgres,
}

/// The registry's database (`[store]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// sled's page cache, in MiB (sled's own default is 1 GiB).
    pub sled_cache_mb: u64,
    /// libpq connection string or URL; may name several hosts, e.g.
    /// "host=db1,db2 dbname=hpki user=hpki target_session_attrs=read-write".
    pub postgres_url: String,
    /// A file holding the password, kept out of the URL (and of logs).
    pub postgres_password_file: Option<PathBuf>,
    /// Connections each registry process keeps at most.
    pub postgres_pool_size: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sled,
            sled_cache_mb: 64,
            postgres_url: String::new(),
            postgres_password_file: None,
            postgres_pool_size: 16,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problem = match self.backend {
            StoreBackend::Sled if self.sled_cache_mb == 0 => Some("store.sled_cache_mb must be at least 1"),
            StoreBackend::Postgres if self.postgres_url.trim().is_empty() => {
                Some("store.postgres_url is empty; backend = \"postgres\" needs a connection string")
            }
            StoreBackend::Postgres if self.postgres_pool_size == 0 => {
                Some("store.postgres_pool_size must be at least 1")
            }
            _ => None,
        };
        match problem {
            Some(p) => Err(ConfigError::Invalid(p.into())),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuanceConfig {
    pub listen: String,
    /// Prometheus metrics (`/metrics`, plain HTTP); port 0 takes a free one.
    pub metrics_listen: String,
    pub registry_url: String,
    /// Revocation service, for reissue (the old card is revoked first) and cessation.
    pub revocation_url: String,
    /// CRL publisher, asked for a CRL at once after a reissue or cessation revokes a card.
    pub crl_url: String,
    /// Label of the AES key in the HSM that encrypts escrowed card PINs.
    pub pin_escrow_key_label: String,
    /// Digits of a PIN we generate when the RA sends none.
    pub generated_pin_digits: u32,
    /// A renewal is accepted from this many days before the card's expiry.
    pub renewal_window_days: u32,
    /// PIN disclosures allowed per card within `pin_disclosure_window_days`
    /// (0 counts as 1). Read by the registry, which counts them; a request
    /// cannot change it.
    pub pin_disclosures_per_window: u32,
    pub pin_disclosure_window_days: u32,
    /// PIN disclosures one RA identity (its client certificate) may make per
    /// calendar day in Japan (JST), over all cards (0 counts as 1). Read by the
    /// registry, counted durably.
    pub pin_disclosures_per_ra_per_day: u32,
}

impl Default for IssuanceConfig {
    fn default() -> Self {
        IssuanceConfig {
            listen: "127.0.0.1:50052".into(),
            metrics_listen: "127.0.0.1:9104".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            revocation_url: "https://127.0.0.1:50054".into(),
            crl_url: "https://127.0.0.1:50053".into(),
            pin_escrow_key_label: "pin-escrow".into(),
            generated_pin_digits: 6,
            renewal_window_days: 90,
            pin_disclosures_per_window: 3,
            pin_disclosure_window_days: 30,
            pin_disclosures_per_ra_per_day: 20,
        }
    }
}

/// The CRL publisher. URLs, partitions and deltas are in `[profile]`, because
/// issued certificates carry them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrlConfig {
    /// gRPC (Publish, GetStatus).
    pub listen: String,
    /// HTTP distribution point; serves each CRL at the path of its URL.
    pub http_listen: String,
    pub registry_url: String,
    /// Where published CRLs are written (relative to `state_dir`).
    pub out_dir: PathBuf,
    /// nextUpdate = thisUpdate + this many hours (full CRLs; MEDIS uses 96).
    pub next_update_hours: u32,
    /// nextUpdate of delta CRLs.
    pub delta_next_update_hours: u32,
    /// A full CRL is published at least this often, in minutes.
    pub interval_minutes: u32,
    /// How long a revoked certificate stays on the CRLs after its notAfter, in
    /// days. 0 (the default): for ever, and every CRL carries ExpiredCertsOnCRL
    /// (X.509, 2019) from the issuing CA's notBefore, because signatures are
    /// checked long after a card expires. Otherwise the entry leaves that many
    /// days after expiry; it must outlast `interval_minutes`, so at least one
    /// scheduled full CRL after the expiry still lists it (RFC 5280 §3.3).
    pub expired_retention_days: u32,
    /// nextUpdate of the root's ARL = thisUpdate + this many days (the ceremony
    /// and `hpki-ca arl`). The root signs rarely, with the services stopped;
    /// the CRL service warns once a quarter of it is left.
    pub arl_validity_days: u32,
    /// Time a client of the HTTP distribution point has to send a request's
    /// headers, counted from connecting or from the previous response (so
    /// idle keep-alive connections close too); beyond it the connection is
    /// closed without an answer (slowloris).
    pub http_read_timeout_ms: u64,
    /// Connections the HTTP distribution point serves at once; beyond it new
    /// connections wait in the listen backlog until one closes.
    pub http_max_connections: usize,
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig {
            listen: "127.0.0.1:50053".into(),
            http_listen: "127.0.0.1:8081".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            out_dir: PathBuf::from("crl"),
            next_update_hours: 48,
            delta_next_update_hours: 24,
            interval_minutes: 24 * 60,
            expired_retention_days: 0,
            arl_validity_days: 90,
            http_read_timeout_ms: 10_000,
            http_max_connections: 1024,
        }
    }
}

/// The revocation service (operators).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    pub listen: String,
    /// Prometheus metrics (`/metrics`, plain HTTP); port 0 takes a free one.
    pub metrics_listen: String,
    pub registry_url: String,
    /// gRPC address of the CRL publisher, asked for an immediate CRL on emergencies.
    pub crl_url: String,
    /// Two-person control: an emergency revocation takes effect only once a
    /// second operator approves it.
    pub emergency_requires_approval: bool,
    /// How far before the request an operator-given revoked_at may lie, in
    /// seconds (clock differences, a revocation typed in a little late). An
    /// earlier time of compromise goes in compromised_at (invalidityDate),
    /// never in revoked_at.
    pub max_backdate_seconds: u64,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            listen: "127.0.0.1:50054".into(),
            metrics_listen: "127.0.0.1:9105".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            crl_url: "https://127.0.0.1:50053".into(),
            emergency_requires_approval: false,
            max_backdate_seconds: 300,
        }
    }
}

/// The operator console: HTTPS for staff browsers, login by the person's
/// client certificate from the service-identity CA (`[tls] dir`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// HTTPS listener of the console (`hpki-ca console`, and `hpki-ca run`).
    pub listen: String,
    /// The registry (searching cards, the approval queue).
    pub registry_url: String,
    /// The revocation service (loss reports and approvals).
    pub revocation_url: String,
    /// Our OCSP responder, asked live after a revocation (HTTP POST).
    pub ocsp_url: String,
    /// The issuance service (a card's fees; health in the operations view).
    pub issuance_url: String,
    /// The CRL publisher (gRPC: the published CRLs; health).
    pub crl_url: String,
    /// The CRL distribution point (HTTP: the ARL's age in the operations view).
    pub crl_http_url: String,
    /// The OCSP responder's Prometheus metrics (hit, miss and tryLater rates).
    pub ocsp_metrics_url: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: "127.0.0.1:8443".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            revocation_url: "https://127.0.0.1:50054".into(),
            ocsp_url: "http://127.0.0.1:8082".into(),
            issuance_url: "https://127.0.0.1:50052".into(),
            crl_url: "https://127.0.0.1:50053".into(),
            crl_http_url: "http://127.0.0.1:8081".into(),
            ocsp_metrics_url: "http://127.0.0.1:9102".into(),
        }
    }
}

/// How the responder treats a request nonce (RFC 8954).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonceMode {
    /// Serve the cached response; the nonce is not echoed (RFC 5019 behaviour).
    Ignore,
    /// Sign a fresh response echoing the nonce, within `nonce_signatures_per_second`.
    Echo,
}

/// The OCSP responder (RFC 6960 / RFC 5019).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcspConfig {
    /// HTTP listener; requests are served at `/` and at the path of `profile.ocsp_url`.
    pub listen: String,
    /// Prometheus metrics (`/metrics`).
    pub metrics_listen: String,
    pub registry_url: String,
    /// The issuance service, which issues the responder certificates
    /// (IssueResponderCertificate); derived from `[issuance] listen` when absent.
    pub issuance_url: String,
    /// nextUpdate = thisUpdate + this many hours.
    pub next_update_hours: u32,
    /// Re-sign a cached response when less than this many minutes remain before nextUpdate.
    pub refresh_before_minutes: u32,
    pub nonce: NonceMode,
    /// Bound on live (nonce-echoing) signatures per second; beyond it the cached response is served.
    pub nonce_signatures_per_second: u32,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Largest number of certificates asked about in one request.
    pub max_certificates_per_request: usize,
    /// Signatures allowed in flight at once; beyond it, fail fast with tryLater.
    pub max_inflight_signatures: usize,
    /// Threads that sign cache misses (0: one per core). Raise it for an HSM
    /// on the network, where a signature is mostly waiting.
    pub signing_threads: usize,
    /// Delegated responder certificates: key labels, file names (in the CA cert folder) and validity.
    pub signing_responder_key_label: String,
    pub authentication_responder_key_label: String,
    pub signing_responder_file: String,
    pub authentication_responder_file: String,
    pub responder_validity_days: u32,
    /// How often the background pass re-signs responses due for refresh and
    /// drops expired negative answers.
    pub refresh_interval_seconds: u64,
    /// How often the responder certificates are checked for renewal (and ones
    /// another replica or `hpki-ca ocsp-certs` wrote are picked up).
    pub renewal_check_seconds: u64,
    /// How long "unknown" (a serial the registry does not know) is believed
    /// before the registry is asked again; also the nextUpdate span of
    /// unknown responses, so HTTP caches do not keep them longer.
    pub negative_ttl_seconds: u64,
    /// Time a client has to send a request's headers, counted from connecting
    /// or from the previous response (so it also closes idle keep-alive
    /// connections), and as long again for its body. Slow headers: the
    /// connection is closed; a slow body: 408.
    pub read_timeout_ms: u64,
    /// Deadline for answering a request once it is read (waiting on the
    /// registry or the HSM); past it the answer is tryLater.
    pub request_timeout_ms: u64,
    /// Refresh listeners of the HTTP caches in front of the responders
    /// (`deploy/nginx/ocsp-cache.conf`: nginx with proxy_cache_bypass), e.g.
    /// "http://127.0.0.1:8079". On a revocation from the status feed, every
    /// GET path of the serial is fetched again there, replacing the cached
    /// answer; failures are retried.
    pub cache_refresh_urls: Vec<String>,
    /// Fresh signatures for clients (misses, unknown serials, several
    /// CertIDs in one request) allowed per second over all clients, and the
    /// burst the bucket holds; beyond it the answer is tryLater, while
    /// pre-signed answers keep flowing. Background re-signing is not counted.
    pub live_signs_per_second: u32,
    pub live_signs_burst: u32,
    /// The same per client IP address.
    pub per_client_live_signs_per_second: u32,
    pub per_client_live_signs_burst: u32,
    /// Connections each HTTP listener (OCSP, metrics) serves at once; beyond
    /// it new connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Addresses of the HTTP caches in front (such as "127.0.0.1"): for a
    /// request from one of them, the client of the per-client bucket is the
    /// address in its X-Forwarded-For header (the last one), not the cache.
    pub trusted_proxies: Vec<String>,
    /// Threads dedicated to the OCSP listener, each with a single-threaded
    /// runtime of its own (a connection stays on its thread); 0: served on the
    /// process's multi-threaded runtime, which measured no worse on 2 cores.
    pub http_threads: usize,
}

impl OcspConfig {
    /// [`Self::trusted_proxies`] parsed ([`Self::validate`] refuses bad ones).
    pub fn trusted_proxy_addrs(&self) -> Vec<std::net::IpAddr> {
        self.trusted_proxies.iter().filter_map(|a| a.trim().parse().ok()).collect()
    }

    /// Refuses values that would leave responses to expire unrefreshed or
    /// make every request time out.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(format!("ocsp.{msg}")));
        let zero = [
            ("next_update_hours", self.next_update_hours == 0),
            ("refresh_before_minutes", self.refresh_before_minutes == 0),
            ("refresh_interval_seconds", self.refresh_interval_seconds == 0),
            ("renewal_check_seconds", self.renewal_check_seconds == 0),
            ("negative_ttl_seconds", self.negative_ttl_seconds == 0),
            ("read_timeout_ms", self.read_timeout_ms == 0),
            ("request_timeout_ms", self.request_timeout_ms == 0),
            ("max_request_bytes", self.max_request_bytes == 0),
            ("live_signs_per_second", self.live_signs_per_second == 0),
            ("live_signs_burst", self.live_signs_burst == 0),
            ("per_client_live_signs_per_second", self.per_client_live_signs_per_second == 0),
            ("per_client_live_signs_burst", self.per_client_live_signs_burst == 0),
            ("max_connections", self.max_connections == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, z)| *z) {
            return invalid(format!("{name} must be at least 1"));
        }
        let validity = u64::from(self.next_update_hours) * 3600;
        // A response is due for refresh this long before its nextUpdate (at most
        // half its lifetime); passes further apart could let it expire first.
        let window = (u64::from(self.refresh_before_minutes) * 60).min(validity / 2);
        if self.refresh_interval_seconds >= window {
            return invalid(format!(
                "refresh_interval_seconds ({}) must be shorter than the refresh window ({window} s: \
                 refresh_before_minutes, at most half of next_update_hours)",
                self.refresh_interval_seconds
            ));
        }
        if let Some(bad) = self.cache_refresh_urls.iter().find(|u| {
            let u = u.trim();
            !(u.starts_with("http://") && u.len() > "http://".len()) || u.contains(['?', '#'])
        }) {
            return invalid(format!(
                "cache_refresh_urls: {bad:?} must be an http:// URL without query, such as \"http://127.0.0.1:8079\""
            ));
        }
        if let Some(bad) = self.trusted_proxies.iter().find(|a| a.trim().parse::<std::net::IpAddr>().is_err()) {
            return invalid(format!("trusted_proxies: {bad:?} is not an IP address (such as \"127.0.0.1\")"));
        }
        if self.negative_ttl_seconds > validity {
            return invalid(format!(
                "negative_ttl_seconds ({}) must not exceed next_update_hours ({validity} s)",
                self.negative_ttl_seconds
            ));
        }
        // Renewal is due at least two response lifetimes before the responder
        // certificate expires: checking once per lifetime never misses it.
        if self.renewal_check_seconds > validity {
            return invalid(format!(
                "renewal_check_seconds ({}) must not exceed next_update_hours ({validity} s)",
                self.renewal_check_seconds
            ));
        }
        Ok(())
    }
}

impl Default for OcspConfig {
    fn default() -> Self {
        OcspConfig {
            listen: "127.0.0.1:8082".into(),
            metrics_listen: "127.0.0.1:9102".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            issuance_url: "https://127.0.0.1:50052".into(),
            next_update_hours: 24,
            refresh_before_minutes: 6 * 60,
            nonce: NonceMode::Ignore,
            nonce_signatures_per_second: 100,
            max_request_bytes: 8 * 1024,
            max_certificates_per_request: 8,
            max_inflight_signatures: 64,
            signing_threads: 0,
            signing_responder_key_label: "ocsp-sign".into(),
            authentication_responder_key_label: "ocsp-auth".into(),
            signing_responder_file: "ocsp-sign.pem".into(),
            authentication_responder_file: "ocsp-auth.pem".into(),
            responder_validity_days: 30,
            refresh_interval_seconds: 30,
            renewal_check_seconds: 3600,
            negative_ttl_seconds: 60,
            read_timeout_ms: 10_000,
            request_timeout_ms: 5_000,
            cache_refresh_urls: Vec::new(),
            live_signs_per_second: 200,
            live_signs_burst: 400,
            per_client_live_signs_per_second: 20,
            per_client_live_signs_burst: 50,
            max_connections: 1024,
            trusted_proxies: Vec::new(),
            http_threads: 0,
        }
    }
}

/// Key algorithm of a CA key in the HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
}

/// The key ceremony: CA keys, names and validity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    pub key_algorithm: KeyAlgorithm,
    /// Folder for the CA certificates (PEM), relative to `state_dir`.
    pub cert_dir: PathBuf,
    #[serde(deserialize_with = "root_entity")]
    pub root: CaEntity,
    #[serde(deserialize_with = "signing_entity")]
    pub signing: CaEntity,
    #[serde(deserialize_with = "authentication_entity")]
    pub authentication: CaEntity,
}

impl Default for CaConfig {
    fn default() -> Self {
        let o = |v: &str| DnAttribute { attr: "O".into(), value: v.into() };
        let ou = |v: &str| DnAttribute { attr: "OU".into(), value: v.into() };
        let cn = |v: &str| DnAttribute { attr: "CN".into(), value: v.into() };
        let c = DnAttribute { attr: "C".into(), value: "JP".into() };
        CaConfig {
            key_algorithm: KeyAlgorithm::Rsa2048,
            cert_dir: PathBuf::from("ca"),
            root: CaEntity {
                key_label: "root-ca".into(),
                subject: vec![c.clone(), o("Japan Medical Association"), ou("JMA HPKI Root CA")],
                validity_years: 30,
                policy_oid: String::new(),
                crl_url: "http://127.0.0.1:8081/crl/arl.crl".into(),
                file_name: "root-ca.pem".into(),
            },
            signing: CaEntity {
                key_label: "sign-ca".into(),
                subject: vec![
                    c.clone(),
                    o("Japan Medical Association"),
                    ou("JMA HPKI CA"),
                    cn("HPKI-01-JMACASignCA-forNonRepudiation"),
                ],
                validity_years: 20,
                policy_oid: "1.2.392.100495.1.5.1.1.3.1".into(),
                crl_url: "http://127.0.0.1:8081/crl/arl.crl".into(),
                file_name: "sign-ca.pem".into(),
            },
            authentication: CaEntity {
                key_label: "auth-ca".into(),
                subject: vec![
                    c,
                    o("Japan Medical Association"),
                    ou("JMA HPKI CA"),
                    cn("HPKI-01-JMACAAuthCA-forAuthentication-forIndividual"),
                ],
                validity_years: 20,
                policy_oid: "1.2.392.100495.1.5.1.2.3.1".into(),
                crl_url: "http://127.0.0.1:8081/crl/arl.crl".into(),
                file_name: "auth-ca.pem".into(),
            },
        }
    }
}

/// One CA of the hierarchy. In the file each `[ca.*]` table may give any
/// subset of these keys; the others keep that CA's default.
#[derive(Debug, Clone, Serialize)]
pub struct CaEntity {
    /// CKA_LABEL of the key pair in the token.
    pub key_label: String,
    /// Subject DN in order, e.g. `[{attr="C", value="JP"}, {attr="O", value="..."}]`.
    pub subject: Vec<DnAttribute>,
    pub validity_years: u32,
    /// certificatePolicies OID of the CA certificate (critical, as in HPKI); empty for none.
    pub policy_oid: String,
    /// CRL distribution point of the CA certificate (the root's ARL); empty for
    /// none; absent: `{public.crl_base_url}/crl/arl.crl`.
    pub crl_url: String,
    /// Certificate file name in `cert_dir`.
    pub file_name: String,
}

/// A `[ca.*]` table as written: every key optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaEntityPatch {
    key_label: Option<String>,
    subject: Option<Vec<DnAttribute>>,
    validity_years: Option<u32>,
    policy_oid: Option<String>,
    crl_url: Option<String>,
    file_name: Option<String>,
}

impl CaEntityPatch {
    fn over(self, d: CaEntity) -> CaEntity {
        CaEntity {
            key_label: self.key_label.unwrap_or(d.key_label),
            subject: self.subject.unwrap_or(d.subject),
            validity_years: self.validity_years.unwrap_or(d.validity_years),
            policy_oid: self.policy_oid.unwrap_or(d.policy_oid),
            crl_url: self.crl_url.unwrap_or(d.crl_url),
            file_name: self.file_name.unwrap_or(d.file_name),
        }
    }
}

fn root_entity<'de, D: Deserializer<'de>>(d: D) -> Result<CaEntity, D::Error> {
    Ok(CaEntityPatch::deserialize(d)?.over(CaConfig::default().root))
}

fn signing_entity<'de, D: Deserializer<'de>>(d: D) -> Result<CaEntity, D::Error> {
    Ok(CaEntityPatch::deserialize(d)?.over(CaConfig::default().signing))
}

fn authentication_entity<'de, D: Deserializer<'de>>(d: D) -> Result<CaEntity, D::Error> {
    Ok(CaEntityPatch::deserialize(d)?.over(CaConfig::default().authentication))
}

/// One attribute of a DN. `attr` is C, O, OU, CN, serialNumber or a dotted OID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnAttribute {
    pub attr: String,
    pub value: String,
}

/// The subscriber certificate profile (hpki-profile.md sections 2 to 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    pub signing_policy_oid: String,
    pub authentication_policy_oid: String,
    /// CPS URI qualifier on both policies; empty for none.
    pub cps_uri: String,
    /// Full CRL of each issuing CA. With partitions, partition `p` is served at
    /// this URL with `-p{p}` before the extension (see `partition_url`), and with
    /// deltas the delta CRL at `-delta` (see `delta_url`).
    pub signing_crl_url: String,
    pub authentication_crl_url: String,
    /// Number of CRL partitions per issuing CA; 0 = one full CRL.
    pub crl_partitions: u32,
    /// Publish delta CRLs and point at them with freshestCRL.
    pub delta_crls: bool,
    /// AIA OCSP URL; real HPKI CAs publish CRLs only, so it can be turned off.
    pub ocsp_enabled: bool,
    pub ocsp_url: String,
    /// ExtendedKeyUsage of the authentication certificate: "clientAuth",
    /// "emailProtection" or dotted OIDs; empty for no EKU.
    pub authentication_eku: Vec<String>,
    /// ISO 17090 hcRole carried in subjectDirectoryAttributes.
    pub hc_role: String,
    /// Validity in years (00:00 JST on the day of issue to 23:59:59 JST this many years later).
    pub validity_years: u32,
    /// Prefix of registry-assigned holder ids (subject serialNumber).
    pub holder_id_prefix: String,
    /// Smallest accepted RSA modulus in bits.
    pub min_rsa_bits: u32,
    /// Maximum age of the ID photo and the resident record, in months.
    pub document_max_age_months: u32,
    /// authorityKeyIdentifier of card certificates also names the issuing CA
    /// certificate's issuer and serial (authorityCertIssuer,
    /// authorityCertSerialNumber), as the real MEDIS certificates do; false:
    /// keyIdentifier only (RFC 5280's recommendation).
    pub authority_key_identifier_issuer_serial: bool,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            signing_policy_oid: "1.2.392.100495.1.5.1.1.0.1".into(),
            authentication_policy_oid: "1.2.392.100495.1.5.1.2.0.1".into(),
            cps_uri: "http://127.0.0.1:8081/repository/".into(),
            signing_crl_url: "http://127.0.0.1:8081/crl/sign.crl".into(),
            authentication_crl_url: "http://127.0.0.1:8081/crl/auth.crl".into(),
            crl_partitions: 0,
            delta_crls: false,
            ocsp_enabled: true,
            ocsp_url: "http://127.0.0.1:8082/ocsp".into(),
            authentication_eku: vec!["clientAuth".into()],
            hc_role: "Medical Doctor".into(),
            validity_years: 5,
            holder_id_prefix: "JMA".into(),
            min_rsa_bits: 2048,
            document_max_age_months: 6,
            authority_key_identifier_issuer_serial: false,
        }
    }
}

/// `http://h/crl/sign.crl` -> `http://h/crl/sign-p3.crl`.
pub fn partition_url(base: &str, partition: u32) -> String {
    with_suffix(base, &format!("-p{partition}"))
}

/// `http://h/crl/sign.crl` -> `http://h/crl/sign-delta.crl`.
pub fn delta_url(base: &str) -> String {
    with_suffix(base, "-delta")
}

fn with_suffix(base: &str, suffix: &str) -> String {
    let file_start = base.rfind('/').map_or(0, |i| i + 1);
    match base[file_start..].rfind('.') {
        Some(dot) => format!("{}{suffix}{}", &base[..file_start + dot], &base[file_start + dot..]),
        None => format!("{base}{suffix}"),
    }
}

impl Config {
    /// Loads `path`; a missing file is an error (use `Config::default()` explicitly).
    /// A relative `state_dir` is taken relative to the config file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut cfg = Config::parse(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        if cfg.state_dir.is_relative() {
            if let Some(parent) = path.parent() {
                cfg.state_dir = parent.join(&cfg.state_dir);
            }
        }
        Ok(cfg)
    }

    /// Parses a config file's text. URLs the text does not give are derived:
    /// those baked into certificates from `[public]`, those between services
    /// from the listener of the service they name (see [`PublicConfig`]).
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        let given: toml::Table = toml::from_str(text)?;
        let mut cfg: Config = toml::from_str(text)?;
        cfg.derive_urls(&given);
        Ok(cfg)
    }

    /// Resolves a path from the config against `state_dir`.
    pub fn state_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.state_dir.join(p)
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_path(&self.registry.db_path)
    }

    pub fn cert_dir(&self) -> PathBuf {
        self.state_path(&self.ca.cert_dir)
    }

    /// The service-identity CA and the role certificates (`[tls] dir`).
    pub fn tls_dir(&self) -> PathBuf {
        self.state_path(&self.tls.dir)
    }

    /// Append-only copy of every audit checkpoint the CA signs, kept outside the
    /// database so that cutting the log's tail (checkpoints included) shows.
    pub fn audit_checkpoints_path(&self) -> PathBuf {
        self.state_dir.join("audit").join("checkpoints.jsonl")
    }

    pub fn softhsm2_conf(&self) -> Option<PathBuf> {
        if self.hsm.softhsm2_conf.as_os_str().is_empty() {
            None
        } else {
            Some(self.state_path(&self.hsm.softhsm2_conf))
        }
    }

    /// The label of `domain`'s token.
    pub fn token_label(&self, domain: TrustDomain) -> String {
        self.token_config(domain).label.clone().unwrap_or_else(|| format!("hpki-{domain}"))
    }

    /// The user-PIN file of `domain`'s token, resolved against `state_dir`.
    pub fn token_pin_path(&self, domain: TrustDomain) -> PathBuf {
        match &self.token_config(domain).pin_file {
            Some(p) => self.state_path(p),
            None => self.state_dir.join("hsm").join(format!("{domain}.pin")),
        }
    }

    fn token_config(&self, domain: TrustDomain) -> &TokenConfig {
        let t = &self.hsm.tokens;
        match domain {
            TrustDomain::Root => &t.root,
            TrustDomain::Issuing => &t.issuing,
            TrustDomain::Ocsp => &t.ocsp,
            TrustDomain::Escrow => &t.escrow,
            TrustDomain::Audit => &t.audit,
        }
    }

    /// Refuses the single-token keys of earlier versions (`[hsm] token_label`,
    /// `pin_file`), saying what replaces them.
    pub fn validate_hsm(&self) -> Result<(), ConfigError> {
        if self.hsm.token_label.is_some() || self.hsm.pin_file.is_some() {
            return Err(ConfigError::Invalid(
                "[hsm] token_label and pin_file are the single-token layout of earlier versions: each trust \
                 domain now has its own token and PIN, [hsm.tokens.<root|issuing|ocsp|escrow|audit>] with label \
                 and pin_file (defaults hpki-<domain> and hsm/<domain>.pin; see docs/architecture.md, \"Keys\")"
                    .into(),
            ));
        }
        for domain in TrustDomain::ALL {
            let label = self.token_label(domain);
            if label.is_empty() || label.chars().count() > 32 {
                return Err(ConfigError::Invalid(format!(
                    "[hsm.tokens.{domain}] label must be 1 to 32 characters, not {label:?}"
                )));
            }
        }
        Ok(())
    }

    /// Reads the user PIN of `domain`'s token (trailing whitespace dropped).
    pub fn read_token_pin(&self, domain: TrustDomain) -> Result<String, ConfigError> {
        let path = self.token_pin_path(domain);
        let pin = std::fs::read_to_string(&path).map_err(|source| ConfigError::Pin { path, source })?;
        Ok(pin.trim_end().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trust_domain_has_its_own_token_and_pin_and_the_single_token_keys_are_refused() {
        let cfg: Config =
            toml::from_str("state_dir = \"/s\"\n[hsm.tokens.ocsp]\npin_file = \"/run/c/ocsp.pin\"\n").unwrap();
        cfg.validate_hsm().unwrap();
        assert_eq!(cfg.token_label(TrustDomain::Root), "hpki-root");
        assert_eq!(cfg.token_pin_path(TrustDomain::Issuing), Path::new("/s/hsm/issuing.pin"));
        assert_eq!(cfg.token_pin_path(TrustDomain::Ocsp), Path::new("/run/c/ocsp.pin"));
        let labels: std::collections::BTreeSet<String> = TrustDomain::ALL.iter().map(|d| cfg.token_label(*d)).collect();
        assert_eq!(labels.len(), 5, "five distinct tokens by default");
        for old in ["[hsm]\ntoken_label = \"hpki-ca\"\n", "[hsm]\npin_file = \"hsm/user.pin\"\n"] {
            let err = toml::from_str::<Config>(old).unwrap().validate_hsm().unwrap_err().to_string();
            assert!(err.contains("[hsm.tokens.<root|issuing|ocsp|escrow|audit>]"), "{err}");
        }
        let long: Config = toml::from_str(&format!("[hsm.tokens.audit]\nlabel = \"{}\"\n", "x".repeat(33))).unwrap();
        assert!(long.validate_hsm().unwrap_err().to_string().contains("[hsm.tokens.audit] label"));
        assert!(toml::from_str::<Config>("[hsm.tokens.backup]\nlabel = \"x\"\n").is_err(), "unknown domain");
    }

    #[test]
    fn limits_defaults_parse_and_zero_is_refused() {
        let d = LimitsConfig::default();
        assert_eq!(
            (d.max_message_bytes, d.max_concurrent_streams, d.request_timeout_seconds, d.http_body_bytes),
            (4 << 20, 256, 60, 64 << 10)
        );
        d.validate().unwrap();
        let cfg: Config = toml::from_str("[limits]\nmax_message_bytes = 65536\nrequest_timeout_seconds = 5\n").unwrap();
        assert_eq!(cfg.limits.max_message_bytes, 65536);
        assert_eq!(cfg.limits.request_timeout_seconds, 5);
        assert_eq!(cfg.limits.max_concurrent_streams, 256);
        let zero: Config = toml::from_str("[limits]\nmax_concurrent_streams = 0\n").unwrap();
        let err = zero.limits.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_concurrent_streams"), "{err}");
        assert!(toml::from_str::<Config>("[limits]\nmax_streams = 1\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn ocsp_defaults_parse_and_bad_timings_are_refused() {
        let d = OcspConfig::default();
        assert_eq!((d.refresh_interval_seconds, d.renewal_check_seconds, d.negative_ttl_seconds), (30, 3600, 60));
        assert_eq!((d.read_timeout_ms, d.request_timeout_ms), (10_000, 5_000));
        d.validate().unwrap();
        let cfg: Config =
            toml::from_str("[ocsp]\nnegative_ttl_seconds = 5\nread_timeout_ms = 250\nrequest_timeout_ms = 100\n")
                .unwrap();
        assert_eq!(
            (cfg.ocsp.negative_ttl_seconds, cfg.ocsp.read_timeout_ms, cfg.ocsp.request_timeout_ms),
            (5, 250, 100)
        );
        assert_eq!(cfg.ocsp.refresh_interval_seconds, 30, "unset keys keep their default");
        cfg.ocsp.validate().unwrap();
        let refused = |toml_text: &str, names: &str| {
            let cfg: Config = toml::from_str(toml_text).unwrap();
            let err = cfg.ocsp.validate().unwrap_err().to_string();
            assert!(err.contains(names), "{toml_text:?}: {err}");
        };
        for key in ["refresh_interval_seconds", "renewal_check_seconds", "negative_ttl_seconds", "read_timeout_ms"] {
            refused(&format!("[ocsp]\n{key} = 0\n"), &format!("ocsp.{key} must be at least 1"));
        }
        refused("[ocsp]\nrequest_timeout_ms = 0\n", "ocsp.request_timeout_ms");
        // Refreshing every 2 h cannot catch a window of 1 h before nextUpdate.
        refused(
            "[ocsp]\nrefresh_before_minutes = 60\nrefresh_interval_seconds = 7200\n",
            "ocsp.refresh_interval_seconds",
        );
        // The window is at most half a response's lifetime (1 h of 2 h here).
        refused("[ocsp]\nnext_update_hours = 2\nrefresh_interval_seconds = 3600\n", "ocsp.refresh_interval_seconds");
        let ok: Config = toml::from_str("[ocsp]\nnext_update_hours = 2\nrefresh_interval_seconds = 3599\n").unwrap();
        ok.ocsp.validate().unwrap();
        refused("[ocsp]\nnext_update_hours = 1\nnegative_ttl_seconds = 3601\n", "ocsp.negative_ttl_seconds");
        refused("[ocsp]\nnext_update_hours = 1\nrenewal_check_seconds = 7200\n", "ocsp.renewal_check_seconds");
        assert!(toml::from_str::<Config>("[ocsp]\nnegative_ttl = 5\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn audit_checkpoint_interval_defaults_to_an_hour_zero_is_off_and_over_a_day_is_refused() {
        let d = Config::default().audit;
        assert_eq!(d.checkpoint_interval(), Some(std::time::Duration::from_secs(3600)));
        d.validate().unwrap();
        let off: Config = toml::from_str("[audit]\ncheckpoint_interval_seconds = 0\n").unwrap();
        assert_eq!(off.audit.checkpoint_interval(), None);
        off.audit.validate().unwrap();
        let day: Config = toml::from_str("[audit]\ncheckpoint_interval_seconds = 86400\n").unwrap();
        day.audit.validate().unwrap();
        let long: Config = toml::from_str("[audit]\ncheckpoint_interval_seconds = 86401\n").unwrap();
        let err = long.audit.validate().unwrap_err().to_string();
        assert!(err.contains("audit.checkpoint_interval_seconds 86401"), "{err}");
        assert!(toml::from_str::<Config>("[audit]\ncheckpoint_interval_seconds = -1\n").is_err());
        assert!(toml::from_str::<Config>("[audit]\ninterval = 5\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn partition_and_delta_urls() {
        assert_eq!(partition_url("http://h:1/crl/sign.crl", 3), "http://h:1/crl/sign-p3.crl");
        assert_eq!(delta_url("http://h:1/crl/sign.crl"), "http://h:1/crl/sign-delta.crl");
        assert_eq!(delta_url("http://h.example/crl/sign"), "http://h.example/crl/sign-delta");
    }

    #[test]
    fn empty_file_gives_defaults_and_relative_state_dir_follows_the_file() {
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.toml");
        std::fs::write(&path, "[issuance]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.state_dir, dir.join("state"));
        assert_eq!(cfg.issuance.listen, "127.0.0.1:0");
        assert_eq!(cfg.profile.hc_role, "Medical Doctor");
        assert_eq!(cfg.db_path(), dir.join("state/registry.sled"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn audit_checkpoints_live_under_the_state_folder() {
        let cfg = Config { state_dir: PathBuf::from("/srv/ca/state"), ..Config::default() };
        assert_eq!(cfg.audit_checkpoints_path(), PathBuf::from("/srv/ca/state/audit/checkpoints.jsonl"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let dir = std::env::temp_dir().join(format!("cfg-test-u-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[hsm]\nmodul = \"x\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("modul"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
