//! `[audit]`: automatic checkpoints of the audit log.

use serde::{Deserialize, Serialize};

use crate::ConfigError;

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
            return Err(ConfigError::invalid(
                "audit.checkpoint_interval_seconds",
                format!(
                    "audit.checkpoint_interval_seconds {} is over a day ({MAX_CHECKPOINT_INTERVAL_SECONDS}); 0 turns \
                 automatic checkpoints off",
                    self.checkpoint_interval_seconds
                ),
            ));
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

#[cfg(test)]
mod tests {
    use crate::Config;

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
}
