//! `[store]`: the registry's database engine.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Which database engine holds the registry's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Embedded, in `[registry] db_path`; one registry process.
    Sled,
    /// An existing PostgreSQL cluster; several registry processes may share it.
    Postgres,
}

/// The registry's database (`[store]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// sled's page cache, in MiB (sled's own default is 1 GiB).
    pub sled_cache_mb: u64,
    /// libpq connection string or URL; may name several hosts, e.g.
    /// "host=db1,db2 dbname=hpki user=hpki target_session_attrs=read-write".
    pub postgres_url: String,
    /// A file holding the password, kept out of the URL (and of logs).
    pub postgres_password_file: Option<PathBuf>,
    /// Connections each registry process keeps at most.
    pub postgres_pool_size: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sled,
            sled_cache_mb: 64,
            postgres_url: String::new(),
            postgres_password_file: None,
            postgres_pool_size: 16,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problem = match self.backend {
            StoreBackend::Sled if self.sled_cache_mb == 0 => {
                Some(("store.sled_cache_mb", "store.sled_cache_mb must be at least 1"))
            }
            StoreBackend::Postgres if self.postgres_url.trim().is_empty() => Some((
                "store.postgres_url",
                "store.postgres_url is empty; backend = \"postgres\" needs a connection string",
            )),
            StoreBackend::Postgres if self.postgres_pool_size == 0 => {
                Some(("store.postgres_pool_size", "store.postgres_pool_size must be at least 1"))
            }
            _ => None,
        };
        match problem {
            Some((key, message)) => Err(ConfigError::invalid(key, message)),
            None => Ok(()),
        }
    }
}
