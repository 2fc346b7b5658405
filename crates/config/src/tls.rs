//! `[tls]`: mTLS between the services.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
