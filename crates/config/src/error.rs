//! The error of loading or checking a config.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    /// A value the services would refuse at start. `key` is the setting
    /// ("ocsp.read_timeout_ms", "hsm.tokens.audit.label", "ca.signing");
    /// `message` names it too, and says what is wrong.
    #[error("invalid setting: {message}")]
    Invalid { key: String, message: String },
    #[error("cannot read PIN file {path}: {source}")]
    Pin { path: PathBuf, source: std::io::Error },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }

    /// A certificate-content value the profile crate refused; its message
    /// already names the key.
    pub(crate) fn profile(key: &str, e: ::profile::ProfileError) -> ConfigError {
        let message = match e {
            ::profile::ProfileError::InvalidConfig(m) => m,
            other => format!("{key}: {other}"),
        };
        ConfigError::invalid(key, message)
    }

    /// The setting an `Invalid` error is about.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}
