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
mod error;
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

/// Where partitions and delta CRLs are published; certificates and the CRL
/// publisher use the same functions.
pub use ::profile::distribution::{delta_url, partition_url};
pub use audit::{AuditConfig, MAX_CHECKPOINT_INTERVAL_SECONDS};
pub use ca::{CaConfig, CaEntity, CaProfiles, DnAttribute, KeyAlgorithm};
pub use console::ConsoleConfig;
pub use crl::{CrlConfig, MAX_CRL_PARTITIONS};
pub use error::ConfigError;
pub use hsm::{HsmConfig, HsmTokens, TokenConfig, TrustDomain};
pub use issuance::IssuanceConfig;
pub use limits::LimitsConfig;
pub use ocsp::{NonceMode, OcspConfig};
pub use profile::ProfileConfig;
pub use public::PublicConfig;
pub use registry::RegistryConfig;
pub use revocation::RevocationConfig;
pub use store::{StoreBackend, StoreConfig};
pub use tls::TlsConfig;
pub use urls::CertificateUrl;

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
    /// What an empty file gives: every URL the file leaves out derived from
    /// `[public]` and the listeners, by the same code as for a file, so the
    /// two cannot drift apart.
    fn default() -> Self {
        let mut cfg = Config {
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
        };
        cfg.derive_urls(&toml::Table::new());
        cfg
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

    /// Every check a service makes of its settings at start, in one place:
    /// `hpki-ca` runs it before starting anything (and `hpki-ca config
    /// check` reports it). The error names the key. Certificate content
    /// (`[profile]`, `[ca.*]`) is built into its typed form here too, so a bad
    /// OID or URL is refused at start, not at the first issuance.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_hsm()?;
        self.store.validate()?;
        self.limits.validate()?;
        self.audit.validate()?;
        self.ocsp.validate()?;
        self.validate_crl()?;
        self.profile.policy()?;
        self.ca.profiles()?;
        Ok(())
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

    #[test]
    fn validate_runs_every_start_check_and_names_the_key() {
        Config::default().validate().unwrap();
        Config::parse("").unwrap().validate().unwrap();
        let refused = |text: &str, key: &str, says: &str| {
            let err = Config::parse(text).unwrap().validate().unwrap_err();
            assert_eq!(err.key(), Some(key), "{text:?}: {err}");
            assert!(err.to_string().contains(says), "{text:?}: {err}");
        };
        refused("[limits]\nmax_message_bytes = 0\n", "limits.max_message_bytes", "limits.max_message_bytes must be");
        refused("[ocsp]\nread_timeout_ms = 0\n", "ocsp.read_timeout_ms", "ocsp.read_timeout_ms must be at least 1");
        refused("[audit]\ncheckpoint_interval_seconds = 86401\n", "audit.checkpoint_interval_seconds", "86401");
        refused("[store]\nbackend = \"postgres\"\n", "store.postgres_url", "store.postgres_url is empty");
        refused("[hsm]\ntoken_label = \"x\"\n", "hsm.token_label", "[hsm.tokens.<root|issuing|ocsp|escrow|audit>]");
        refused("[crl]\ninterval_minutes = 0\n", "crl.interval_minutes", "crl.interval_minutes must be at least 1");
        refused(
            "[crl]\nexpired_retention_days = 1\ninterval_minutes = 2880\n",
            "crl.expired_retention_days",
            "crl.expired_retention_days = 1",
        );
        refused("[profile]\ncrl_partitions = 4097\n", "profile.crl_partitions", "at most 4096");
        // Certificate content is refused at start, not at the first issuance.
        refused("[profile]\nsigning_policy_oid = \"1.2.x\"\n", "profile.signing_policy_oid", "not a dotted OID");
        refused("[profile]\nauthentication_crl_url = \"\"\n", "profile.authentication_crl_url", "rely on CRLs");
        refused("[profile]\nocsp_url = \"nope\"\n", "profile.ocsp_url", "profile.ocsp_url = \"nope\" is not a URL");
        refused("[profile]\ncps_uri = \"http://例え.jp/\"\n", "profile.cps_uri", "IA5String");
        refused("[profile]\nauthentication_eku = [\"serverAuthx\"]\n", "profile.authentication_eku", "serverAuthx");
        refused("[profile]\nhc_role = \" \"\n", "profile.hc_role", "profile.hc_role is empty");
        refused(
            "[[ca.signing.subject]]\nattr = \"Email\"\nvalue = \"x\"\n",
            "ca.signing",
            "CA \"sign-ca\" subject attribute Email",
        );
        refused("[ca.authentication]\npolicy_oid = \"x\"\n", "ca.authentication", "policy_oid");
        // Turned off, the OCSP URL is not used, so not judged; empty CPS is none.
        let off = Config::parse("[profile]\nocsp_enabled = false\nocsp_url = \"nope\"\ncps_uri = \"\"\n").unwrap();
        let policy = off.profile.policy().unwrap();
        assert_eq!((policy.ocsp_url, policy.cps_uri), (None, None));
    }

    #[test]
    fn the_default_policy_is_typed_from_the_derived_urls() {
        let policy =
            Config::parse("[public]\ncrl_base_url = \"http://crl.example.jp\"\n").unwrap().profile.policy().unwrap();
        assert_eq!(policy.signing.policy_oid.to_string(), "1.2.392.100495.1.5.1.1.0.1");
        assert_eq!(policy.authentication.crl_url.as_str(), "http://crl.example.jp/crl/auth.crl");
        assert_eq!(policy.ocsp_url.map(|u| u.to_string()).as_deref(), Some("http://127.0.0.1:8082/ocsp"));
        assert_eq!(policy.authentication_eku, vec![const_oid_client_auth()]);
        assert_eq!(policy.hc_role.text(), "Medical Doctor");
        let cas = Config::default().ca.profiles().unwrap();
        assert_eq!(cas.root.policy_oid, None);
        assert_eq!(cas.root.crl_url, None, "the root carries no CRL distribution point");
        assert_eq!(cas.signing.crl_url.map(|u| u.to_string()).as_deref(), Some("http://127.0.0.1:8081/crl/arl.crl"));
    }

    fn const_oid_client_auth() -> ::profile::policy::ObjectIdentifier {
        ::profile::policy::parse_eku("1.3.6.1.5.5.7.3.2", "test").unwrap()
    }
}
