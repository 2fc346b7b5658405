//! The one TOML configuration file shared by every service, with defaults that
//! run the whole CA on loopback from a local state folder.
//!
//! Relative paths are resolved against `state_dir`'s parent (the folder the
//! config file sits in), so a config file can be moved with its state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod audit;
mod ca;
mod console;
mod crl;
mod hsm;
mod issuance;
mod limits;
mod ocsp;
mod profile;
mod public;
mod registry;
mod revocation;
mod store;
mod tls;
mod urls;

pub use audit::{AuditConfig, MAX_CHECKPOINT_INTERVAL_SECONDS};
pub use ca::{CaConfig, CaEntity, DnAttribute, KeyAlgorithm};
pub use console::ConsoleConfig;
pub use crl::CrlConfig;
pub use hsm::{HsmConfig, HsmTokens, TokenConfig, TrustDomain};
pub use issuance::IssuanceConfig;
pub use limits::LimitsConfig;
pub use ocsp::{NonceMode, OcspConfig};
pub use profile::{delta_url, partition_url, ProfileConfig};
pub use public::PublicConfig;
pub use registry::RegistryConfig;
pub use revocation::RevocationConfig;
pub use store::{StoreBackend, StoreConfig};
pub use tls::TlsConfig;
pub use urls::CertificateUrl;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
