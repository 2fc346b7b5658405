//! `[crl]`: the CRL publisher and its HTTP distribution point.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError};

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
    /// The operator's documents for the repository at `profile.cps_uri` (the
    /// CPS, the subscriber agreement), served beside the CA certificates when
    /// that URL is an `http://` one on the distribution point (relative to
    /// `state_dir`).
    pub repository_dir: PathBuf,
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
            repository_dir: PathBuf::from("repository"),
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

/// More partitions than this is a config mistake (each is a signature per publication).
pub const MAX_CRL_PARTITIONS: u32 = 4096;

impl Config {
    /// The CRL publisher's start checks (`[crl]` with the partitions and
    /// deltas of `[profile]`).
    pub fn validate_crl(&self) -> Result<(), ConfigError> {
        let c = &self.crl;
        let at_least_one = |key: &str| Err(ConfigError::invalid(key, format!("{key} must be at least 1")));
        if c.next_update_hours == 0 {
            return at_least_one("crl.next_update_hours");
        }
        if self.profile.delta_crls && c.delta_next_update_hours == 0 {
            return at_least_one("crl.delta_next_update_hours");
        }
        if c.interval_minutes == 0 {
            return at_least_one("crl.interval_minutes");
        }
        if self.profile.crl_partitions > MAX_CRL_PARTITIONS {
            return Err(ConfigError::invalid(
                "profile.crl_partitions",
                format!("profile.crl_partitions = {} (at most {MAX_CRL_PARTITIONS})", self.profile.crl_partitions),
            ));
        }
        let days = c.expired_retention_days;
        // Compared in minutes; 0 keeps expired entries for ever.
        if days != 0 && u64::from(days) * 24 * 60 <= u64::from(c.interval_minutes) {
            return Err(ConfigError::invalid(
                "crl.expired_retention_days",
                format!(
                    "crl.expired_retention_days = {days} must outlast crl.interval_minutes ({}), so a scheduled CRL \
                     after a certificate expires still lists it (RFC 5280 3.3); 0 keeps expired entries for ever",
                    c.interval_minutes
                ),
            ));
        }
        Ok(())
    }
}
