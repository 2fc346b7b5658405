//! `[limits]`: bounds on every listener.

use serde::{Deserialize, Serialize};

use crate::ConfigError;

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
            Some((name, _)) => {
                Err(ConfigError::invalid(format!("limits.{name}"), format!("limits.{name} must be at least 1")))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

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
}
