//! `[revocation]`: the revocation service.

use serde::{Deserialize, Serialize};

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
