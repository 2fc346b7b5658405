//! The URLs of a deployment: the public ones baked into certificates, derived
//! from `[public]`, and those between our services, derived from listeners,
//! so that moving a port means changing a listener and a base URL only.

use std::net::SocketAddr;

use crate::{delta_url, partition_url, Config};

/// One URL that certificates will carry, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateUrl {
    /// e.g. "signing CA certificate", "signing certificates".
    pub certificate: &'static str,
    /// e.g. "CRL distribution point", "AIA OCSP".
    pub field: &'static str,
    /// The config key it comes from.
    pub key: &'static str,
    pub url: String,
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// The URL of a gRPC listener for a client on this host: an unspecified
/// address (0.0.0.0, ::) is reached on loopback.
fn service_url(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("https://127.0.0.1:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("https://[::1]:{}", a.port()),
        _ => format!("https://{listen}"),
    }
}

fn given(table: &toml::Table, path: &[&str]) -> bool {
    let mut t = table;
    for (i, key) in path.iter().enumerate() {
        match t.get(*key) {
            Some(toml::Value::Table(inner)) if i + 1 < path.len() => t = inner,
            Some(_) if i + 1 == path.len() => return true,
            _ => return false,
        }
    }
    false
}

impl Config {
    /// Fills every URL that `given` (the file as written) leaves out.
    pub(crate) fn derive_urls(&mut self, given_keys: &toml::Table) {
        let absent = |path: &[&str]| !given(given_keys, path);
        let crl = base(&self.public.crl_base_url).to_owned();
        let repository = match base(&self.public.repository_base_url) {
            "" => crl.clone(),
            r => r.to_owned(),
        };
        let ocsp = base(&self.public.ocsp_base_url).to_owned();
        let p = &mut self.profile;
        if absent(&["profile", "signing_crl_url"]) {
            p.signing_crl_url = format!("{crl}/crl/sign.crl");
        }
        if absent(&["profile", "authentication_crl_url"]) {
            p.authentication_crl_url = format!("{crl}/crl/auth.crl");
        }
        if absent(&["profile", "ocsp_url"]) {
            p.ocsp_url = format!("{ocsp}/ocsp");
        }
        if absent(&["profile", "cps_uri"]) {
            p.cps_uri = format!("{repository}/repository/");
        }
        for (name, entity) in [
            ("root", &mut self.ca.root),
            ("signing", &mut self.ca.signing),
            ("authentication", &mut self.ca.authentication),
        ] {
            if absent(&["ca", name, "crl_url"]) {
                entity.crl_url = format!("{crl}/crl/arl.crl");
            }
        }

        let registry = service_url(&self.registry.listen);
        let crl_grpc = service_url(&self.crl.listen);
        let revocation = service_url(&self.revocation.listen);
        for (section, url) in [
            ("issuance", &mut self.issuance.registry_url),
            ("crl", &mut self.crl.registry_url),
            ("revocation", &mut self.revocation.registry_url),
            ("ocsp", &mut self.ocsp.registry_url),
        ] {
            if absent(&[section, "registry_url"]) {
                url.clone_from(&registry);
            }
        }
        if absent(&["revocation", "crl_url"]) {
            self.revocation.crl_url.clone_from(&crl_grpc);
        }
        if absent(&["issuance", "crl_url"]) {
            self.issuance.crl_url.clone_from(&crl_grpc);
        }
        if absent(&["console", "registry_url"]) {
            self.console.registry_url.clone_from(&registry);
        }
        if absent(&["console", "revocation_url"]) {
            self.console.revocation_url.clone_from(&revocation);
        }
        if absent(&["console", "ocsp_url"]) {
            self.console.ocsp_url = service_url(&self.ocsp.listen).replacen("https://", "http://", 1);
        }
        if absent(&["console", "issuance_url"]) {
            self.console.issuance_url = service_url(&self.issuance.listen);
        }
        if absent(&["console", "crl_url"]) {
            self.console.crl_url.clone_from(&crl_grpc);
        }
        if absent(&["console", "crl_http_url"]) {
            self.console.crl_http_url = service_url(&self.crl.http_listen).replacen("https://", "http://", 1);
        }
        if absent(&["console", "ocsp_metrics_url"]) {
            self.console.ocsp_metrics_url = service_url(&self.ocsp.metrics_listen).replacen("https://", "http://", 1);
        }
        if absent(&["issuance", "revocation_url"]) {
            self.issuance.revocation_url = revocation;
        }
        if absent(&["ocsp", "issuance_url"]) {
            self.ocsp.issuance_url = service_url(&self.issuance.listen);
        }
    }

    /// Every URL the ceremony (CA certificates) and issuance (card
    /// certificates) put into certificates with this config.
    pub fn certificate_urls(&self) -> Vec<CertificateUrl> {
        let mut out = Vec::new();
        let mut push = |certificate, field, key, url: &str| {
            if !url.is_empty() {
                out.push(CertificateUrl { certificate, field, key, url: url.to_owned() });
            }
        };
        let dp = "CRL distribution point";
        // The root certificate carries no CRL distribution point (ca.root.crl_url is unused).
        push("signing CA certificate", dp, "ca.signing.crl_url", &self.ca.signing.crl_url);
        push("authentication CA certificate", dp, "ca.authentication.crl_url", &self.ca.authentication.crl_url);
        let p = &self.profile;
        for (certificate, key, crl) in [
            ("signing certificates", "profile.signing_crl_url", &p.signing_crl_url),
            ("authentication certificates", "profile.authentication_crl_url", &p.authentication_crl_url),
        ] {
            if p.crl_partitions == 0 {
                push(certificate, dp, key, crl);
            } else {
                for part in 0..p.crl_partitions {
                    push(certificate, "CRL distribution point (one partition each)", key, &partition_url(crl, part));
                }
            }
            if p.delta_crls {
                push(certificate, "freshest CRL (delta)", key, &delta_url(crl));
            }
            if p.ocsp_enabled {
                push(certificate, "AIA OCSP", "profile.ocsp_url", &p.ocsp_url);
            }
            push(certificate, "CPS qualifier", "profile.cps_uri", &p.cps_uri);
        }
        out
    }

    /// Loopback URLs whose port differs from the listener meant to serve
    /// them: the certificate or the client would point at nothing.
    pub fn url_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for u in self.certificate_urls() {
            let (listen_key, listen) = match u.field {
                "AIA OCSP" => ("ocsp.listen", &self.ocsp.listen),
                "CPS qualifier" => continue, // nothing of ours serves the repository
                _ => ("crl.http_listen", &self.crl.http_listen),
            };
            out.extend(port_mismatch(u.key, &u.url, listen_key, listen));
        }
        let grpc = [
            ("issuance.registry_url", &self.issuance.registry_url, "registry.listen", &self.registry.listen),
            ("crl.registry_url", &self.crl.registry_url, "registry.listen", &self.registry.listen),
            ("revocation.registry_url", &self.revocation.registry_url, "registry.listen", &self.registry.listen),
            ("ocsp.registry_url", &self.ocsp.registry_url, "registry.listen", &self.registry.listen),
            ("revocation.crl_url", &self.revocation.crl_url, "crl.listen", &self.crl.listen),
            ("issuance.crl_url", &self.issuance.crl_url, "crl.listen", &self.crl.listen),
            ("issuance.revocation_url", &self.issuance.revocation_url, "revocation.listen", &self.revocation.listen),
            ("ocsp.issuance_url", &self.ocsp.issuance_url, "issuance.listen", &self.issuance.listen),
            ("console.registry_url", &self.console.registry_url, "registry.listen", &self.registry.listen),
            ("console.revocation_url", &self.console.revocation_url, "revocation.listen", &self.revocation.listen),
            ("console.issuance_url", &self.console.issuance_url, "issuance.listen", &self.issuance.listen),
            ("console.crl_url", &self.console.crl_url, "crl.listen", &self.crl.listen),
            ("console.ocsp_url", &self.console.ocsp_url, "ocsp.listen", &self.ocsp.listen),
            ("console.crl_http_url", &self.console.crl_http_url, "crl.http_listen", &self.crl.http_listen),
            (
                "console.ocsp_metrics_url",
                &self.console.ocsp_metrics_url,
                "ocsp.metrics_listen",
                &self.ocsp.metrics_listen,
            ),
        ];
        for (key, url, lkey, listen) in grpc {
            out.extend(port_mismatch(key, url, lkey, listen));
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|w| seen.insert(w.clone()));
        out
    }
}

/// A warning when `url` names a loopback host on another port than `listen`.
fn port_mismatch(key: &str, url: &str, listen_key: &str, listen: &str) -> Option<String> {
    let (host, port) = host_port(url)?;
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.");
    let addr: SocketAddr = listen.parse().ok()?;
    if !loopback || addr.port() == 0 || !(addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        return None;
    }
    (port != addr.port()).then(|| {
        format!("{key} {url} names loopback port {port}, but {listen_key} is {listen}: nothing of ours answers there")
    })
}

/// Host and port (explicit, or the scheme's default) of an http(s) URL.
fn host_port(url: &str) -> Option<(&str, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => Some((host, port.parse().ok()?)),
        _ => Some((authority, default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_derive_todays_urls() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg.profile.signing_crl_url, "http://127.0.0.1:8081/crl/sign.crl");
        assert_eq!(cfg.profile.authentication_crl_url, "http://127.0.0.1:8081/crl/auth.crl");
        assert_eq!(cfg.profile.ocsp_url, "http://127.0.0.1:8082/ocsp");
        assert_eq!(cfg.profile.cps_uri, "http://127.0.0.1:8081/repository/");
        assert_eq!(cfg.ca.signing.crl_url, "http://127.0.0.1:8081/crl/arl.crl");
        assert_eq!(cfg.issuance.registry_url, "https://127.0.0.1:50051");
        assert_eq!(cfg.issuance.revocation_url, "https://127.0.0.1:50054");
        assert_eq!(cfg.revocation.crl_url, "https://127.0.0.1:50053");
        let d = Config::default();
        assert_eq!(
            (d.profile.signing_crl_url, d.profile.ocsp_url, d.ca.root.crl_url, d.issuance.crl_url),
            (
                cfg.profile.signing_crl_url.clone(),
                cfg.profile.ocsp_url.clone(),
                cfg.ca.root.crl_url.clone(),
                cfg.issuance.crl_url.clone()
            ),
            "Config::default() and an empty file agree"
        );
        assert!(cfg.url_warnings().is_empty(), "{:?}", cfg.url_warnings());
    }

    #[test]
    fn listeners_and_base_urls_move_every_url_and_explicit_ones_win() {
        let cfg = Config::parse(
            "[public]\ncrl_base_url = \"http://crl.example.jp/\"\nocsp_base_url = \"http://ocsp.example.jp\"\n\
             [registry]\nlisten = \"0.0.0.0:6001\"\n[crl]\nlisten = \"127.0.0.1:6003\"\n\
             [revocation]\nlisten = \"[::]:6004\"\n\
             [profile]\nauthentication_crl_url = \"http://other.example.jp/a.crl\"\ncps_uri = \"\"\n\
             [ca.root]\ncrl_url = \"\"\n",
        )
        .unwrap();
        assert_eq!(cfg.profile.signing_crl_url, "http://crl.example.jp/crl/sign.crl");
        assert_eq!(cfg.profile.authentication_crl_url, "http://other.example.jp/a.crl");
        assert_eq!(cfg.profile.ocsp_url, "http://ocsp.example.jp/ocsp");
        assert_eq!(cfg.profile.cps_uri, "", "an explicit empty value means none");
        assert_eq!(cfg.ca.root.crl_url, "");
        assert_eq!(cfg.ca.authentication.crl_url, "http://crl.example.jp/crl/arl.crl");
        for url in
            [&cfg.issuance.registry_url, &cfg.crl.registry_url, &cfg.revocation.registry_url, &cfg.ocsp.registry_url]
        {
            assert_eq!(url, "https://127.0.0.1:6001");
        }
        assert_eq!(cfg.revocation.crl_url, "https://127.0.0.1:6003");
        assert_eq!(cfg.issuance.revocation_url, "https://[::1]:6004");
        // The console's services follow their listeners too.
        assert_eq!(cfg.console.crl_url, "https://127.0.0.1:6003");
        assert_eq!(cfg.console.issuance_url, "https://127.0.0.1:50052");
        assert_eq!(cfg.console.crl_http_url, "http://127.0.0.1:8081");
        assert_eq!(cfg.console.ocsp_metrics_url, "http://127.0.0.1:9102");
        let urls = cfg.certificate_urls();
        assert!(urls.iter().all(|u| !u.url.is_empty()));
        assert!(urls.iter().any(|u| u.certificate == "signing certificates" && u.field == "AIA OCSP"));
        assert!(!urls.iter().any(|u| u.certificate.starts_with("root")), "the root carries no CRL DP");
        assert!(urls
            .iter()
            .any(|u| u.certificate == "authentication CA certificate" && u.url.ends_with("/crl/arl.crl")));
    }

    #[test]
    fn a_console_url_on_another_port_than_its_listener_is_warned_about() {
        let cfg = Config::parse("[console]\ncrl_http_url = \"http://127.0.0.1:9999\"\n").unwrap();
        let warnings = cfg.url_warnings();
        assert!(
            warnings.iter().any(|w| w.contains("console.crl_http_url") && w.contains("crl.http_listen")),
            "{warnings:?}"
        );
        assert!(Config::parse("").unwrap().url_warnings().is_empty(), "the defaults agree");
    }

    #[test]
    fn partial_ca_tables_keep_the_other_defaults() {
        let cfg = Config::parse("[ca.signing]\ncrl_url = \"http://h:9/arl.crl\"\n").unwrap();
        assert_eq!(cfg.ca.signing.crl_url, "http://h:9/arl.crl");
        assert_eq!(cfg.ca.signing.key_label, "sign-ca");
        assert_eq!(cfg.ca.signing.file_name, "sign-ca.pem");
        assert_eq!(cfg.ca.authentication.key_label, "auth-ca");
        assert_eq!(cfg.ca.root.validity_years, 30);
        assert!(Config::parse("[ca.root]\nkey_lable = \"x\"\n").is_err(), "unknown keys are still refused");
    }

    #[test]
    fn a_url_on_another_loopback_port_than_its_listener_is_warned_about() {
        let cfg = Config::parse(
            "[crl]\nhttp_listen = \"127.0.0.1:9081\"\n[ocsp]\nlisten = \"127.0.0.1:9082\"\n\
             [public]\nocsp_base_url = \"http://127.0.0.1:9082\"\n\
             [issuance]\nregistry_url = \"https://localhost:7000\"\n",
        )
        .unwrap();
        let w = cfg.url_warnings();
        assert!(
            w.iter().any(|w| w.starts_with("profile.signing_crl_url http://127.0.0.1:8081/crl/sign.crl names loopback port 8081, but crl.http_listen is 127.0.0.1:9081")),
            "{w:#?}"
        );
        assert!(w.iter().any(|w| w.starts_with("ca.signing.crl_url ")), "{w:#?}");
        assert!(w.iter().any(|w| w.starts_with("issuance.registry_url https://localhost:7000")), "{w:#?}");
        assert!(!w.iter().any(|w| w.contains("ocsp_url")), "the OCSP base URL was moved with its listener: {w:#?}");
        // A public host name is not ours to judge.
        let public = Config::parse(
            "[crl]\nhttp_listen = \"127.0.0.1:9081\"\n[public]\ncrl_base_url = \"http://crl.example.jp\"\n",
        )
        .unwrap();
        assert!(public.url_warnings().is_empty(), "{:?}", public.url_warnings());
    }
}
