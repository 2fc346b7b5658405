//! `[hsm]` and `[hsm.tokens.<domain>]`: the PKCS#11 module and one token per trust domain.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HsmConfig {
    /// PKCS#11 module.
    pub module: PathBuf,
    /// SoftHSM2 configuration file; exported as SOFTHSM2_CONF before the module loads.
    /// Relative to `state_dir`. Empty to leave the environment alone.
    pub softhsm2_conf: PathBuf,
    /// Sessions kept open per token so concurrent signatures do not serialise.
    pub sessions: usize,
    /// One token per trust domain, each with its own PIN (`[hsm.tokens.<domain>]`).
    pub tokens: HsmTokens,
    /// The single-token layout of earlier versions; refused (see [`Config::validate_hsm`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// The single-token layout of earlier versions; refused (see [`Config::validate_hsm`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

/// A trust domain: the keys one token holds, opened only by the processes that need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustDomain {
    /// The root CA key: the ceremony and `hpki-ca arl` only, never a running service.
    Root,
    /// The signing and authentication issuing CA keys: issuance and crl.
    Issuing,
    /// The delegated OCSP responder keys: ocsp only.
    Ocsp,
    /// The AES key of the card-PIN escrow: issuance.
    Escrow,
    /// The audit-checkpoint key: the process that signs checkpoints (crl; `hpki-ca run`).
    Audit,
}

impl TrustDomain {
    pub const ALL: [TrustDomain; 5] =
        [TrustDomain::Root, TrustDomain::Issuing, TrustDomain::Ocsp, TrustDomain::Escrow, TrustDomain::Audit];

    /// "root", "issuing", "ocsp", "escrow", "audit": the `[hsm.tokens]` key.
    pub fn name(self) -> &'static str {
        match self {
            TrustDomain::Root => "root",
            TrustDomain::Issuing => "issuing",
            TrustDomain::Ocsp => "ocsp",
            TrustDomain::Escrow => "escrow",
            TrustDomain::Audit => "audit",
        }
    }
}

impl std::fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[hsm.tokens.<domain>]`: the token label and user-PIN file of each domain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HsmTokens {
    pub root: TokenConfig,
    pub issuing: TokenConfig,
    pub ocsp: TokenConfig,
    pub escrow: TokenConfig,
    pub audit: TokenConfig,
}

/// One domain's token. Unset fields default to label `hpki-<domain>` and PIN file
/// `hsm/<domain>.pin` (what `hsm-config/init-token.sh` creates).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Token label (at most 32 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// File holding the token's user PIN (relative to `state_dir`). The PIN is never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

impl Default for HsmConfig {
    fn default() -> Self {
        HsmConfig {
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            softhsm2_conf: PathBuf::from("hsm/softhsm2.conf"),
            sessions: 4,
            tokens: HsmTokens::default(),
            token_label: None,
            pin_file: None,
        }
    }
}

impl Config {
    /// The label of `domain`'s token.
    pub fn token_label(&self, domain: TrustDomain) -> String {
        self.token_config(domain).label.clone().unwrap_or_else(|| format!("hpki-{domain}"))
    }

    /// The user-PIN file of `domain`'s token, resolved against `state_dir`.
    pub fn token_pin_path(&self, domain: TrustDomain) -> PathBuf {
        match &self.token_config(domain).pin_file {
            Some(p) => self.state_path(p),
            None => self.state_dir.join("hsm").join(format!("{domain}.pin")),
        }
    }

    fn token_config(&self, domain: TrustDomain) -> &TokenConfig {
        let t = &self.hsm.tokens;
        match domain {
            TrustDomain::Root => &t.root,
            TrustDomain::Issuing => &t.issuing,
            TrustDomain::Ocsp => &t.ocsp,
            TrustDomain::Escrow => &t.escrow,
            TrustDomain::Audit => &t.audit,
        }
    }

    /// Refuses the single-token keys of earlier versions (`[hsm] token_label`,
    /// `pin_file`), saying what replaces them.
    pub fn validate_hsm(&self) -> Result<(), ConfigError> {
        if self.hsm.token_label.is_some() || self.hsm.pin_file.is_some() {
            return Err(ConfigError::invalid(
                if self.hsm.token_label.is_some() { "hsm.token_label" } else { "hsm.pin_file" },
                "[hsm] token_label and pin_file are the single-token layout of earlier versions: each trust \
                 domain now has its own token and PIN, [hsm.tokens.<root|issuing|ocsp|escrow|audit>] with label \
                 and pin_file (defaults hpki-<domain> and hsm/<domain>.pin; see docs/architecture.md, \"Keys\")",
            ));
        }
        for domain in TrustDomain::ALL {
            let label = self.token_label(domain);
            if label.is_empty() || label.chars().count() > 32 {
                return Err(ConfigError::invalid(
                    format!("hsm.tokens.{domain}.label"),
                    format!("[hsm.tokens.{domain}] label must be 1 to 32 characters, not {label:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Reads the user PIN of `domain`'s token (trailing whitespace dropped).
    pub fn read_token_pin(&self, domain: TrustDomain) -> Result<String, ConfigError> {
        let path = self.token_pin_path(domain);
        let pin = std::fs::read_to_string(&path).map_err(|source| ConfigError::Pin { path, source })?;
        Ok(pin.trim_end().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn each_trust_domain_has_its_own_token_and_pin_and_the_single_token_keys_are_refused() {
        let cfg: Config =
            toml::from_str("state_dir = \"/s\"\n[hsm.tokens.ocsp]\npin_file = \"/run/c/ocsp.pin\"\n").unwrap();
        cfg.validate_hsm().unwrap();
        assert_eq!(cfg.token_label(TrustDomain::Root), "hpki-root");
        assert_eq!(cfg.token_pin_path(TrustDomain::Issuing), Path::new("/s/hsm/issuing.pin"));
        assert_eq!(cfg.token_pin_path(TrustDomain::Ocsp), Path::new("/run/c/ocsp.pin"));
        let labels: std::collections::BTreeSet<String> = TrustDomain::ALL.iter().map(|d| cfg.token_label(*d)).collect();
        assert_eq!(labels.len(), 5, "five distinct tokens by default");
        for old in ["[hsm]\ntoken_label = \"hpki-ca\"\n", "[hsm]\npin_file = \"hsm/user.pin\"\n"] {
            let err = toml::from_str::<Config>(old).unwrap().validate_hsm().unwrap_err().to_string();
            assert!(err.contains("[hsm.tokens.<root|issuing|ocsp|escrow|audit>]"), "{err}");
        }
        let long: Config = toml::from_str(&format!("[hsm.tokens.audit]\nlabel = \"{}\"\n", "x".repeat(33))).unwrap();
        assert!(long.validate_hsm().unwrap_err().to_string().contains("[hsm.tokens.audit] label"));
        assert!(toml::from_str::<Config>("[hsm.tokens.backup]\nlabel = \"x\"\n").is_err(), "unknown domain");
    }
}
