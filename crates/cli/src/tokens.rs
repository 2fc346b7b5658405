//! The HSM tokens a process opens: one per trust domain (`config::TrustDomain`),
//! each with its own user PIN, and only those of the domains the process needs.
//! A process never reads the PIN file of a domain it was not asked to open.

use std::collections::BTreeMap;

use config::{Config, TrustDomain};
use hsm::Hsm;

use crate::error::CliError;

/// Which trust domains each command opens (docs/architecture.md, "Keys").
pub mod domains {
    use config::TrustDomain::{self, *};

    /// The key ceremony: root, the issuing CAs, the escrow key and the checkpoint key.
    /// (The responder keys are the OCSP process's own.)
    pub const CEREMONY: &[TrustDomain] = &[Root, Issuing, Escrow, Audit];
    /// `hpki-ca arl`: the root key alone.
    pub const ARL: &[TrustDomain] = &[Root];
    /// The issuance service: the issuing CA keys and the PIN escrow key.
    pub const ISSUANCE: &[TrustDomain] = &[Issuing, Escrow];
    /// The CRL publisher: the issuing CA keys (CRLs are signed by their CA).
    pub const CRL: &[TrustDomain] = &[Issuing];
    /// The process that signs audit checkpoints adds this.
    pub const CHECKPOINTS: &[TrustDomain] = &[Audit];
    /// The OCSP responder: its own responder keys only.
    pub const OCSP: &[TrustDomain] = &[Ocsp];
    /// `hpki-ca run`, every service in one process: every online domain. The root
    /// token stays closed: no running service signs with the root key.
    pub const RUN: &[TrustDomain] = &[Issuing, Ocsp, Escrow, Audit];
}

/// Logged-in tokens by domain. Domains configured with the same token label
/// share one handle.
#[derive(Clone, Debug)]
pub struct Tokens {
    open: BTreeMap<TrustDomain, Hsm>,
}

impl Tokens {
    /// Opens the token of each domain in `domains` with that domain's PIN file.
    pub fn open(cfg: &Config, domains: &[TrustDomain]) -> Result<Tokens, CliError> {
        cfg.validate_hsm()?;
        let mut by_label: BTreeMap<String, Hsm> = BTreeMap::new();
        let mut open = BTreeMap::new();
        for &domain in domains {
            let label = cfg.token_label(domain);
            let hsm = match by_label.get(&label) {
                Some(h) => h.clone(),
                None => {
                    let pin = read_pin(cfg, domain)?;
                    let hsm = Hsm::open(&cfg.hsm.module, &label, &pin, cfg.hsm.sessions).map_err(|e| match e {
                        hsm::HsmError::TokenNotFound(_) => CliError::Token(format!(
                            "the {domain} token {label:?} does not exist (hsm-config/init-token.sh STATE {domain} \
                             creates it; SOFTHSM2_CONF must name its token folder)"
                        )),
                        other => CliError::Token(format!("opening the {domain} token {label:?}: {other}")),
                    })?;
                    by_label.insert(label.clone(), hsm.clone());
                    hsm
                }
            };
            open.insert(domain, hsm);
        }
        let names: Vec<&str> = open.keys().map(|d| d.name()).collect();
        tracing::info!(domains = ?names, "HSM tokens opened");
        Ok(Tokens { open })
    }

    /// The token of `domain`, which must have been opened.
    pub fn get(&self, domain: TrustDomain) -> Result<&Hsm, CliError> {
        self.open
            .get(&domain)
            .ok_or_else(|| CliError::Token(format!("internal: the {domain} token was not opened by this process")))
    }

    /// The domains held, in order.
    pub fn domains(&self) -> Vec<TrustDomain> {
        self.open.keys().copied().collect()
    }
}

/// A domain's PIN, or an error naming the file and, for a state folder of the
/// single-token layout, what to do.
fn read_pin(cfg: &Config, domain: TrustDomain) -> Result<String, CliError> {
    match cfg.read_token_pin(domain) {
        Ok(pin) => Ok(pin),
        Err(config::ConfigError::Pin { path, source }) => {
            let legacy = cfg.state_dir.join("hsm").join("user.pin");
            if legacy.exists() {
                return Err(CliError::Token(format!(
                    "{} holds the single-token layout of an earlier version (token \"hpki-ca\", user.pin for \
                     every key); this version keeps one token per trust domain and needs the {domain} token's PIN \
                     in {}. Start a fresh state: stop the CA, move {} away (keep it as a record), then run \
                     `make run` (or hsm-config/init-token.sh STATE && hpki-ca ceremony). See docs/architecture.md, \
                     \"Keys\"",
                    legacy.display(),
                    path.display(),
                    cfg.state_dir.display()
                )));
            }
            Err(CliError::Token(format!(
                "this process needs the {domain} token, and its PIN file {} cannot be read: {source} \
                 ([hsm.tokens.{domain}] pin_file)",
                path.display()
            )))
        }
        Err(e) => Err(e.into()),
    }
}
