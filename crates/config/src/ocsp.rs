//! `[ocsp]`: the OCSP responder.

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// How the responder treats a request nonce (RFC 8954).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonceMode {
    /// Serve the cached response; the nonce is not echoed (RFC 5019 behaviour).
    Ignore,
    /// Sign a fresh response echoing the nonce, within `nonce_signatures_per_second`.
    Echo,
}

/// The OCSP responder (RFC 6960 / RFC 5019).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcspConfig {
    /// HTTP listener; requests are served at `/` and at the path of `profile.ocsp_url`.
    pub listen: String,
    /// Prometheus metrics (`/metrics`).
    pub metrics_listen: String,
    pub registry_url: String,
    /// The issuance service, which issues the responder certificates
    /// (IssueResponderCertificate); derived from `[issuance] listen` when absent.
    pub issuance_url: String,
    /// nextUpdate = thisUpdate + this many hours.
    pub next_update_hours: u32,
    /// Re-sign a cached response when less than this many minutes remain before nextUpdate.
    pub refresh_before_minutes: u32,
    pub nonce: NonceMode,
    /// Bound on live (nonce-echoing) signatures per second; beyond it the cached response is served.
    pub nonce_signatures_per_second: u32,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Largest number of certificates asked about in one request.
    pub max_certificates_per_request: usize,
    /// Signatures allowed in flight at once; beyond it, fail fast with tryLater.
    pub max_inflight_signatures: usize,
    /// Threads that sign cache misses (0: one per core). Raise it for an HSM
    /// on the network, where a signature is mostly waiting.
    pub signing_threads: usize,
    /// Delegated responder certificates: key labels, file names (in the CA cert folder) and validity.
    pub signing_responder_key_label: String,
    pub authentication_responder_key_label: String,
    pub signing_responder_file: String,
    pub authentication_responder_file: String,
    pub responder_validity_days: u32,
    /// How often the background pass re-signs responses due for refresh and
    /// drops expired negative answers.
    pub refresh_interval_seconds: u64,
    /// How often the responder certificates are checked for renewal (and ones
    /// another replica or `hpki-ca ocsp-certs` wrote are picked up).
    pub renewal_check_seconds: u64,
    /// How long "unknown" (a serial the registry does not know) is believed
    /// before the registry is asked again; also the nextUpdate span of
    /// unknown responses, so HTTP caches do not keep them longer.
    pub negative_ttl_seconds: u64,
    /// Time a client has to send a request's headers, counted from connecting
    /// or from the previous response (so it also closes idle keep-alive
    /// connections), and as long again for its body. Slow headers: the
    /// connection is closed; a slow body: 408.
    pub read_timeout_ms: u64,
    /// Deadline for answering a request once it is read (waiting on the
    /// registry or the HSM); past it the answer is tryLater.
    pub request_timeout_ms: u64,
    /// Refresh listeners of the HTTP caches in front of the responders
    /// (`deploy/nginx/ocsp-cache.conf`: nginx with proxy_cache_bypass), e.g.
    /// "http://127.0.0.1:8079". On a revocation from the status feed, every
    /// GET path of the serial is fetched again there, replacing the cached
    /// answer; failures are retried.
    pub cache_refresh_urls: Vec<String>,
    /// Fresh signatures for clients (misses, unknown serials, several
    /// CertIDs in one request) allowed per second over all clients, and the
    /// burst the bucket holds; beyond it the answer is tryLater, while
    /// pre-signed answers keep flowing. Background re-signing is not counted.
    pub live_signs_per_second: u32,
    pub live_signs_burst: u32,
    /// The same per client IP address.
    pub per_client_live_signs_per_second: u32,
    pub per_client_live_signs_burst: u32,
    /// Connections each HTTP listener (OCSP, metrics) serves at once; beyond
    /// it new connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Addresses of the HTTP caches in front (such as "127.0.0.1"): for a
    /// request from one of them, the client of the per-client bucket is the
    /// address in its X-Forwarded-For header (the last one), not the cache.
    pub trusted_proxies: Vec<String>,
    /// Threads dedicated to the OCSP listener, each with a single-threaded
    /// runtime of its own (a connection stays on its thread); 0: served on the
    /// process's multi-threaded runtime, which measured no worse on 2 cores.
    pub http_threads: usize,
}

impl OcspConfig {
    /// [`Self::trusted_proxies`] parsed ([`Self::validate`] refuses bad ones).
    pub fn trusted_proxy_addrs(&self) -> Vec<std::net::IpAddr> {
        self.trusted_proxies.iter().filter_map(|a| a.trim().parse().ok()).collect()
    }

    /// Refuses values that would leave responses to expire unrefreshed or
    /// make every request time out.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // `rest` follows the key in the message: " must ...", ": ...".
        let invalid =
            |key: &str, rest: String| Err(ConfigError::invalid(format!("ocsp.{key}"), format!("ocsp.{key}{rest}")));
        let zero = [
            ("next_update_hours", self.next_update_hours == 0),
            ("refresh_before_minutes", self.refresh_before_minutes == 0),
            ("refresh_interval_seconds", self.refresh_interval_seconds == 0),
            ("renewal_check_seconds", self.renewal_check_seconds == 0),
            ("negative_ttl_seconds", self.negative_ttl_seconds == 0),
            ("read_timeout_ms", self.read_timeout_ms == 0),
            ("request_timeout_ms", self.request_timeout_ms == 0),
            ("max_request_bytes", self.max_request_bytes == 0),
            ("live_signs_per_second", self.live_signs_per_second == 0),
            ("live_signs_burst", self.live_signs_burst == 0),
            ("per_client_live_signs_per_second", self.per_client_live_signs_per_second == 0),
            ("per_client_live_signs_burst", self.per_client_live_signs_burst == 0),
            ("max_connections", self.max_connections == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, z)| *z) {
            return invalid(name, " must be at least 1".into());
        }
        let validity = u64::from(self.next_update_hours) * 3600;
        // A response is due for refresh this long before its nextUpdate (at most
        // half its lifetime); passes further apart could let it expire first.
        let window = (u64::from(self.refresh_before_minutes) * 60).min(validity / 2);
        if self.refresh_interval_seconds >= window {
            return invalid(
                "refresh_interval_seconds",
                format!(
                    " ({}) must be shorter than the refresh window ({window} s: \
                 refresh_before_minutes, at most half of next_update_hours)",
                    self.refresh_interval_seconds
                ),
            );
        }
        if let Some(bad) = self.cache_refresh_urls.iter().find(|u| {
            let u = u.trim();
            !(u.starts_with("http://") && u.len() > "http://".len()) || u.contains(['?', '#'])
        }) {
            return invalid(
                "cache_refresh_urls",
                format!(": {bad:?} must be an http:// URL without query, such as \"http://127.0.0.1:8079\""),
            );
        }
        if let Some(bad) = self.trusted_proxies.iter().find(|a| a.trim().parse::<std::net::IpAddr>().is_err()) {
            return invalid("trusted_proxies", format!(": {bad:?} is not an IP address (such as \"127.0.0.1\")"));
        }
        // At most one response lifetime each: an "unknown" is a response too;
        // renewal is due at least two lifetimes before the responder
        // certificate expires, so checking once per lifetime never misses it.
        let within_a_lifetime = [
            ("negative_ttl_seconds", self.negative_ttl_seconds),
            ("renewal_check_seconds", self.renewal_check_seconds),
        ];
        if let Some((name, value)) = within_a_lifetime.iter().find(|(_, v)| *v > validity) {
            return invalid(name, format!(" ({value}) must not exceed next_update_hours ({validity} s)"));
        }
        Ok(())
    }
}

impl Default for OcspConfig {
    fn default() -> Self {
        OcspConfig {
            listen: "127.0.0.1:8082".into(),
            metrics_listen: "127.0.0.1:9102".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            issuance_url: "https://127.0.0.1:50052".into(),
            next_update_hours: 24,
            refresh_before_minutes: 6 * 60,
            nonce: NonceMode::Ignore,
            nonce_signatures_per_second: 100,
            max_request_bytes: 8 * 1024,
            max_certificates_per_request: 8,
            max_inflight_signatures: 64,
            signing_threads: 0,
            signing_responder_key_label: "ocsp-sign".into(),
            authentication_responder_key_label: "ocsp-auth".into(),
            signing_responder_file: "ocsp-sign.pem".into(),
            authentication_responder_file: "ocsp-auth.pem".into(),
            responder_validity_days: 30,
            refresh_interval_seconds: 30,
            renewal_check_seconds: 3600,
            negative_ttl_seconds: 60,
            read_timeout_ms: 10_000,
            request_timeout_ms: 5_000,
            cache_refresh_urls: Vec::new(),
            live_signs_per_second: 200,
            live_signs_burst: 400,
            per_client_live_signs_per_second: 20,
            per_client_live_signs_burst: 50,
            max_connections: 1024,
            trusted_proxies: Vec::new(),
            http_threads: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn ocsp_defaults_parse_and_bad_timings_are_refused() {
        let d = OcspConfig::default();
        assert_eq!((d.refresh_interval_seconds, d.renewal_check_seconds, d.negative_ttl_seconds), (30, 3600, 60));
        assert_eq!((d.read_timeout_ms, d.request_timeout_ms), (10_000, 5_000));
        d.validate().unwrap();
        let cfg: Config =
            toml::from_str("[ocsp]\nnegative_ttl_seconds = 5\nread_timeout_ms = 250\nrequest_timeout_ms = 100\n")
                .unwrap();
        assert_eq!(
            (cfg.ocsp.negative_ttl_seconds, cfg.ocsp.read_timeout_ms, cfg.ocsp.request_timeout_ms),
            (5, 250, 100)
        );
        assert_eq!(cfg.ocsp.refresh_interval_seconds, 30, "unset keys keep their default");
        cfg.ocsp.validate().unwrap();
        let refused = |toml_text: &str, names: &str| {
            let cfg: Config = toml::from_str(toml_text).unwrap();
            let err = cfg.ocsp.validate().unwrap_err().to_string();
            assert!(err.contains(names), "{toml_text:?}: {err}");
        };
        for key in ["refresh_interval_seconds", "renewal_check_seconds", "negative_ttl_seconds", "read_timeout_ms"] {
            refused(&format!("[ocsp]\n{key} = 0\n"), &format!("ocsp.{key} must be at least 1"));
        }
        refused("[ocsp]\nrequest_timeout_ms = 0\n", "ocsp.request_timeout_ms");
        // Refreshing every 2 h cannot catch a window of 1 h before nextUpdate.
        refused(
            "[ocsp]\nrefresh_before_minutes = 60\nrefresh_interval_seconds = 7200\n",
            "ocsp.refresh_interval_seconds",
        );
        // The window is at most half a response's lifetime (1 h of 2 h here).
        refused("[ocsp]\nnext_update_hours = 2\nrefresh_interval_seconds = 3600\n", "ocsp.refresh_interval_seconds");
        let ok: Config = toml::from_str("[ocsp]\nnext_update_hours = 2\nrefresh_interval_seconds = 3599\n").unwrap();
        ok.ocsp.validate().unwrap();
        refused("[ocsp]\nnext_update_hours = 1\nnegative_ttl_seconds = 3601\n", "ocsp.negative_ttl_seconds");
        refused("[ocsp]\nnext_update_hours = 1\nrenewal_check_seconds = 7200\n", "ocsp.renewal_check_seconds");
        assert!(toml::from_str::<Config>("[ocsp]\nnegative_ttl = 5\n").is_err(), "unknown keys are refused");
    }
}
