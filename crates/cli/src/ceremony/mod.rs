//! The key ceremony: CA keys are generated inside the token (never outside),
//! then the root certificate and the two issuing CA certificates are made and
//! written as PEM. Re-running it keeps every existing key and certificate.
//!
//! Every run is audited (see [`CeremonyLog`]): "ceremony.start" (who, the
//! token, the config digest), one "ceremony.key" per key generated or found
//! (label, algorithm, SPKI SHA-256), one "ceremony.certificate" per CA
//! certificate written or kept (serial, subject, issuer, validity,
//! SHA-256), "ceremony.arl" for the root's first ARL and "ceremony.end" with
//! the outcome, "ok" or the error.
//!
//! The other operations that sign with CA keys outside the running CA are
//! audited the same way, each "ceremony.start" naming its operation:
//! `hpki-ca arl` (the root's ARL, maybe revoking an issuing CA certificate;
//! [`arl`]). The delegated OCSP responder certificates are not made here: the
//! OCSP process asks the issuance service for them (keys in its own token).

mod audit_log;
mod certificates;
mod keys;

use std::path::Path;

use audit::CHECKPOINT_KEY_LABEL as AUDIT_CHECKPOINT_KEY_LABEL;
use config::{Config, TrustDomain};
use serde_json::{json, Value};

pub use audit_log::CeremonyLog;
pub use certificates::{run, CaOutcome};
pub use keys::{audit_checkpoint_key, pin_escrow_key, Outcome};

use crate::error::CliError;
use crate::launcher::say;
use crate::tokens::{domains, Tokens};
use audit_log::key_verb;

/// `hpki-ca ceremony`: the keys and certificates, each step audited. The
/// database is opened (and "ceremony.start" written) before the HSM is
/// touched, so no key is made that the log cannot show; a failure is recorded
/// as "ceremony.end" with the error before it is returned.
pub fn execute(cfg: &Config, config_path: Option<&Path>, operator: Option<String>) -> Result<(), CliError> {
    audited(cfg, config_path, operator, "ceremony", json!({}), steps)
}

/// `hpki-ca arl`: publishes the root's next ARL, first revoking `revoke`
/// (serial hex, reason) when given, as an audited operation: "ceremony.start"
/// (operation "arl", the request), "ceremony.arl" (number, entries, SHA-256,
/// file and URL, and for a revocation the serial, reason and whether it was
/// newly revoked) and "ceremony.end". The root key signs only here and in
/// the ceremony, with the services stopped.
pub fn arl(
    cfg: &Config,
    config_path: Option<&Path>,
    operator: Option<String>,
    revoke: Option<(String, domain::RevocationReason)>,
) -> Result<(), CliError> {
    let request = match &revoke {
        Some((serial, reason)) => json!({ "revoke_serial": serial, "reason": reason.name() }),
        None => json!({}),
    };
    audited(cfg, config_path, operator, "arl", request, |cfg, log| {
        let tokens = Tokens::open(cfg, domains::ARL)?;
        let wanted = revoke.as_ref().map(|(serial, reason)| (serial.as_str(), *reason));
        let arl = crl::publish_arl(cfg, tokens.get(TrustDomain::Root)?, wanted)?;
        log.arl(&arl)?;
        say(format_args!(
            "ARL number {}  entries {}  next update {}\n    {}  ->  {}\n    sha256 {}",
            arl.crl_number,
            arl.entries,
            arl.next_update,
            arl.path.display(),
            arl.url,
            arl.sha256
        ));
        if revoke.is_some() && !arl.newly_revoked {
            say(format_args!("(already revoked; the first time and reason stand)"));
        }
        Ok(())
    })
}

/// Runs `work` between "ceremony.start" (naming `operation`, with `request`
/// merged into its detail) and "ceremony.end" (ok, or its error). The log is
/// opened first: while a registry holds the database nothing else happens.
fn audited(
    cfg: &Config,
    config_path: Option<&Path>,
    operator: Option<String>,
    operation: &'static str,
    request: Value,
    work: impl FnOnce(&Config, &mut CeremonyLog) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let operator = operator_name(operator, std::env::var("USER").ok().or_else(|| std::env::var("LOGNAME").ok()))?;
    let mut log = CeremonyLog::open(cfg, &operator, operation)?;
    log.start(cfg, config_path, request)?;
    let result = work(cfg, &mut log);
    let ended = log.end(&result);
    // The operation's own error first; a log that failed to close is reported otherwise.
    result?;
    ended?;
    say(format_args!(
        "{:<15} entries {}..{} written to {} (operator {operator})",
        "audit log",
        log.first.unwrap_or(0),
        log.last,
        log.database
    ));
    Ok(())
}

fn steps(cfg: &Config, log: &mut CeremonyLog) -> Result<(), CliError> {
    let tokens = Tokens::open(cfg, domains::CEREMONY)?;
    for ca in run(cfg, tokens.get(TrustDomain::Root)?, tokens.get(TrustDomain::Issuing)?, log)? {
        println!(
            "{:<15} key {:<8} ({:?})  certificate {:<7} {}\n{:<15} subject {}\n{:<15} sha256 {}",
            ca.name,
            format!("{:?}", ca.key).to_lowercase(),
            ca.key_label,
            format!("{:?}", ca.certificate).to_lowercase(),
            ca.path.display(),
            "",
            ca.subject,
            "",
            ca.fingerprint
        );
    }
    let escrow = pin_escrow_key(cfg, tokens.get(TrustDomain::Escrow)?)?;
    log.aes_key("pin-escrow", &cfg.issuance.pin_escrow_key_label, 256, key_verb(&escrow))?;
    say(format_args!(
        "{:<15} key {:<8} ({:?})  AES-256, PIN escrow",
        "pin-escrow",
        format!("{escrow:?}").to_lowercase(),
        cfg.issuance.pin_escrow_key_label
    ));
    let (key, checkpoint, pub_path) = audit_checkpoint_key(cfg, tokens.get(TrustDomain::Audit)?)?;
    log.key("audit-checkpoint", &key, key_verb(&checkpoint))?;
    say(format_args!(
        "{:<15} key {:<8} ({:?})  audit checkpoints, public key {}",
        "audit",
        format!("{checkpoint:?}").to_lowercase(),
        AUDIT_CHECKPOINT_KEY_LABEL,
        pub_path.display()
    ));
    // The root's first ARL comes with the ceremony; `hpki-ca arl` makes the next ones.
    if !cfg.cert_dir().join("arl.json").exists() {
        let arl = crl::publish_arl(cfg, tokens.get(TrustDomain::Root)?, None)?;
        log.arl(&arl)?;
        say(format_args!("{:<15} ARL number {} written to {}", "root", arl.crl_number, arl.path.display()));
    }
    Ok(())
}

/// Who the entries name: `--operator` (or HPKI_OPERATOR), else the OS user,
/// else "ceremony". Printable, trimmed, at most 128 characters.
fn operator_name(given: Option<String>, os_user: Option<String>) -> Result<String, CliError> {
    let name = given.or(os_user.filter(|u| !u.trim().is_empty())).unwrap_or_else(|| "ceremony".into());
    let bad = |why: &str| Err(CliError::Ceremony(format!("--operator {name:?} {why}")));
    if name.trim().is_empty() {
        return bad("is empty");
    }
    if name.trim() != name || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return bad("must be trimmed, printable and at most 128 characters");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_the_flag_else_the_os_user_else_ceremony() {
        assert_eq!(operator_name(Some("op-ito".into()), Some("root".into())).unwrap(), "op-ito");
        assert_eq!(operator_name(None, Some("alice".into())).unwrap(), "alice");
        assert_eq!(operator_name(None, Some("  ".into())).unwrap(), "ceremony");
        assert_eq!(operator_name(None, None).unwrap(), "ceremony");
        for bad in ["", " op", "op\n", &"x".repeat(129)] {
            assert!(operator_name(Some(bad.into()), None).is_err(), "{bad:?} must be refused");
        }
    }
}
