//! What the registry records about its configuration when it starts: the
//! config file, a SHA-256 of its bytes, the effective settings that matter to
//! an auditor (never the HSM PIN or where it is kept), and whether the digest
//! changed since the previous start (the store compares, in the same
//! transaction as the entry).

use std::path::{Path, PathBuf};

use config::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::{ConfigStart, ConfigStartOutcome, Store};

use crate::error::RegistryError;

/// Actor of "config.start" entries.
pub const CONFIG_START_ACTOR: &str = "registry";

/// The config file a process runs with, digested once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// `None`: no file, the built-in defaults.
    pub path: Option<PathBuf>,
    /// SHA-256 of the file's bytes, hex (of no bytes for the defaults, which an
    /// empty file also means).
    pub sha256: String,
}

impl ConfigSource {
    /// Reads and digests `path` (made absolute so entries name one file).
    pub fn read(path: Option<&Path>) -> Result<ConfigSource, RegistryError> {
        let Some(path) = path else {
            return Ok(ConfigSource::from_bytes(None, b""));
        };
        let bytes =
            std::fs::read(path).map_err(|source| RegistryError::ConfigRead { path: path.to_owned(), source })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(ConfigSource::from_bytes(Some(absolute), &bytes))
    }

    pub fn from_bytes(path: Option<PathBuf>, bytes: &[u8]) -> ConfigSource {
        ConfigSource { path, sha256: hex::encode(Sha256::digest(bytes)) }
    }
}

/// The effective settings worth comparing between starts. Secrets stay out:
/// no PIN, no PIN file; key labels and file names are not secret.
pub fn settings(cfg: &Config) -> Value {
    let path = |p: &Path| p.display().to_string();
    let entity = |e: &config::CaEntity| json!({ "key_label": e.key_label, "validity_years": e.validity_years });
    json!({
        "state_dir": path(&cfg.state_dir),
        "db_path": path(&cfg.db_path()),
        "cert_dir": path(&cfg.cert_dir()),
        "listen": {
            "registry": cfg.registry.listen,
            "issuance": cfg.issuance.listen,
            "revocation": cfg.revocation.listen,
            "crl": cfg.crl.listen,
            "crl_http": cfg.crl.http_listen,
            "ocsp": cfg.ocsp.listen,
            "ocsp_metrics": cfg.ocsp.metrics_listen,
        },
        "tls": { "enabled": cfg.tls.enabled, "dir": path(&cfg.tls_dir()) },
        "limits": {
            "max_message_bytes": cfg.limits.max_message_bytes,
            "max_concurrent_streams": cfg.limits.max_concurrent_streams,
            "request_timeout_seconds": cfg.limits.request_timeout_seconds,
            "http_body_bytes": cfg.limits.http_body_bytes,
        },
        "hsm": {
            "module": path(&cfg.hsm.module),
            "tokens": config::TrustDomain::ALL.iter().map(|d| (d.name().to_owned(), serde_json::Value::from(cfg.token_label(*d)))).collect::<serde_json::Map<_, _>>(),
            "sessions": cfg.hsm.sessions,
        },
        "ca": {
            "key_algorithm": format!("{:?}", cfg.ca.key_algorithm),
            "root": entity(&cfg.ca.root),
            "signing": entity(&cfg.ca.signing),
            "authentication": entity(&cfg.ca.authentication),
        },
        "profile": {
            "validity_years": cfg.profile.validity_years,
            "holder_id_prefix": cfg.profile.holder_id_prefix,
            "crl_partitions": cfg.profile.crl_partitions,
            "delta_crls": cfg.profile.delta_crls,
            "ocsp_enabled": cfg.profile.ocsp_enabled,
            "min_rsa_bits": cfg.profile.min_rsa_bits,
            "document_max_age_months": cfg.profile.document_max_age_months,
        },
        "issuance": {
            "renewal_window_days": cfg.issuance.renewal_window_days,
            "pin_disclosures_per_window": cfg.issuance.pin_disclosures_per_window,
            "pin_disclosure_window_days": cfg.issuance.pin_disclosure_window_days,
            "pin_disclosures_per_ra_per_day": cfg.issuance.pin_disclosures_per_ra_per_day,
        },
        "revocation": { "emergency_requires_approval": cfg.revocation.emergency_requires_approval },
        "crl": {
            "next_update_hours": cfg.crl.next_update_hours,
            "delta_next_update_hours": cfg.crl.delta_next_update_hours,
            "interval_minutes": cfg.crl.interval_minutes,
        },
        "ocsp": {
            "next_update_hours": cfg.ocsp.next_update_hours,
            "refresh_before_minutes": cfg.ocsp.refresh_before_minutes,
            "nonce": format!("{:?}", cfg.ocsp.nonce),
            "responder_validity_days": cfg.ocsp.responder_validity_days,
        },
        "audit": { "checkpoint_interval_seconds": cfg.audit.checkpoint_interval_seconds },
    })
}

/// Appends this start's "config.start" entry. Blocking (the store fsyncs).
pub fn record(store: &Store, cfg: &Config, source: &ConfigSource) -> Result<ConfigStartOutcome, RegistryError> {
    let start = ConfigStart {
        actor: CONFIG_START_ACTOR.to_owned(),
        config_path: source.path.as_ref().map(|p| p.display().to_string()),
        config_sha256: source.sha256.clone(),
        settings: settings(cfg),
    };
    Ok(store.record_config_start(&start)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_of_the_file_and_the_defaults_digest_no_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.toml");
        std::fs::write(&file, "abc").unwrap();
        let s = ConfigSource::read(Some(&file)).unwrap();
        assert_eq!(s.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(s.path.as_deref(), Some(file.as_path()));
        let d = ConfigSource::read(None).unwrap();
        assert_eq!(
            (d.path, d.sha256.as_str()),
            (None, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        std::fs::write(&file, "abd").unwrap();
        assert_ne!(ConfigSource::read(Some(&file)).unwrap().sha256, s.sha256);
        assert!(matches!(
            ConfigSource::read(Some(&dir.path().join("missing.toml"))),
            Err(RegistryError::ConfigRead { .. })
        ));
    }

    #[test]
    fn settings_carry_listeners_tls_limits_and_intervals_but_nothing_about_the_pin() {
        let mut cfg = Config::default();
        cfg.hsm.tokens.issuing.pin_file = Some("secret-place/issuing.pin".into());
        cfg.registry.listen = "127.0.0.1:6001".into();
        cfg.tls.enabled = false;
        cfg.limits.request_timeout_seconds = 7;
        cfg.crl.interval_minutes = 15;
        cfg.audit.checkpoint_interval_seconds = 0;
        let s = settings(&cfg);
        assert_eq!(s["listen"]["registry"], "127.0.0.1:6001");
        assert_eq!(s["tls"]["enabled"], false);
        assert_eq!(s["limits"]["request_timeout_seconds"], 7);
        assert_eq!(s["crl"]["interval_minutes"], 15);
        assert_eq!(s["ocsp"]["next_update_hours"], cfg.ocsp.next_update_hours);
        assert_eq!(s["profile"]["validity_years"], cfg.profile.validity_years);
        assert_eq!(s["audit"]["checkpoint_interval_seconds"], 0);
        let text = s.to_string();
        assert!(!text.contains("secret-place") && !text.to_lowercase().contains("pin_file"), "{text}");
    }

    #[test]
    fn a_start_is_recorded_and_the_next_one_compares_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cfg = Config::default();
        let a = ConfigSource::from_bytes(Some("/etc/ca.toml".into()), b"x = 1\n");
        let first = record(&store, &cfg, &a).unwrap();
        assert_eq!((first.record.actor.as_str(), first.changed), ("registry", true));
        assert!(!record(&store, &cfg, &a).unwrap().changed);
        let b = ConfigSource::from_bytes(Some("/etc/ca.toml".into()), b"x = 2\n");
        let third = record(&store, &cfg, &b).unwrap();
        assert!(third.changed);
        assert_eq!(third.previous.map(|p| (p.sequence, p.config_sha256)), Some((2, a.sha256)));
    }
}
