//! `[public]`: the base URLs relying parties reach us at (see `urls.rs` for
//! what is derived from them).

use serde::{Deserialize, Serialize};

/// Where relying parties reach the CA's published services.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicConfig {
    /// Base URL of the CRL distribution point (`crl.http_listen` as relying
    /// parties reach it). Absent CRL URLs become `{this}/crl/sign.crl`,
    /// `{this}/crl/auth.crl` and, for the CA certificates, `{this}/crl/arl.crl`.
    pub crl_base_url: String,
    /// Base URL of the OCSP responder (`ocsp.listen`); an absent
    /// `profile.ocsp_url` becomes `{this}/ocsp`.
    pub ocsp_base_url: String,
    /// Base URL of the repository (CPS); empty: `crl_base_url`. An absent
    /// `profile.cps_uri` becomes `{this}/repository/`.
    pub repository_base_url: String,
}

impl Default for PublicConfig {
    fn default() -> Self {
        PublicConfig {
            crl_base_url: "http://127.0.0.1:8081".into(),
            ocsp_base_url: "http://127.0.0.1:8082".into(),
            repository_base_url: String::new(),
        }
    }
}
