//! `[console]`: the operator console and the services it reaches.

use serde::{Deserialize, Serialize};

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
