//! `[registry]`: the registry service's listeners and sled folder.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub listen: String,
    /// Prometheus metrics (`/metrics`, plain HTTP); port 0 takes a free one.
    pub metrics_listen: String,
    /// sled database folder, relative to `state_dir`.
    pub db_path: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            listen: "127.0.0.1:50051".into(),
            metrics_listen: "127.0.0.1:9103".into(),
            db_path: PathBuf::from("registry.sled"),
        }
    }
}
