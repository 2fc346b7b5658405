//! `hpki-ca config check`, and the URL confirmation the ceremony asks for:
//! an operator sees, before anything is signed, every URL that certificates
//! will carry for life.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;
use config::Config;

use crate::error::CliError;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Prints the effective configuration (file plus defaults plus derived URLs), the URLs the
    /// ceremony and issuance put into certificates, and warnings where a loopback URL and its
    /// listener disagree on the port. Exits non-zero when the config would be refused at start.
    Check,
}

pub fn run(cfg: &Config, path: Option<&Path>, command: ConfigCommand) -> Result<(), CliError> {
    match command {
        ConfigCommand::Check => check(cfg, path),
    }
}

fn check(cfg: &Config, path: Option<&Path>) -> Result<(), CliError> {
    let text = toml::to_string_pretty(cfg).map_err(|e| CliError::Ceremony(format!("cannot print the config: {e}")))?;
    let mut out = std::io::stdout().lock();
    let source = path.map_or_else(|| "none (built-in defaults)".to_owned(), |p| p.display().to_string());
    let _ = writeln!(out, "# effective configuration; config file: {source}\n{text}");
    let _ = writeln!(out, "# URLs baked into certificates\n{}", url_table(cfg));
    let _ = writeln!(
        out,
        "# gRPC URLs between services (hpki-ca run dials the addresses it binds instead)\n\
         issuance   -> registry {}, revocation {}, crl {}\n\
         crl        -> registry {}\n\
         revocation -> registry {}, crl {}\n\
         ocsp       -> registry {}\n\
         console    -> registry {}, revocation {}, issuance {}, crl {}; OCSP {}, CRL files {}, OCSP metrics {}",
        cfg.issuance.registry_url,
        cfg.issuance.revocation_url,
        cfg.issuance.crl_url,
        cfg.crl.registry_url,
        cfg.revocation.registry_url,
        cfg.revocation.crl_url,
        cfg.ocsp.registry_url,
        cfg.console.registry_url,
        cfg.console.revocation_url,
        cfg.console.issuance_url,
        cfg.console.crl_url,
        cfg.console.ocsp_url,
        cfg.console.crl_http_url,
        cfg.console.ocsp_metrics_url
    );
    let _ = out.flush();
    for w in cfg.url_warnings() {
        eprintln!("warning: {w}");
    }
    // The checks every service runs at start (hpki-ca runs them before starting any).
    cfg.validate()?;
    Ok(())
}

/// One line per URL: which certificates, which field, the URL and its key.
pub fn url_table(cfg: &Config) -> String {
    cfg.certificate_urls()
        .iter()
        .map(|u| format!("{:<30} {:<44} {}  ({})\n", u.certificate, u.field, u.url, u.key))
        .collect()
}

/// Before the ceremony writes a CA certificate: shows the URLs that will be
/// baked in and asks for confirmation, unless `yes`. Without a terminal to
/// ask on, it refuses and says how to confirm.
pub fn confirm_ceremony_urls(cfg: &Config, yes: bool) -> Result<(), CliError> {
    let dir = cfg.cert_dir();
    let pending =
        [&cfg.ca.root, &cfg.ca.signing, &cfg.ca.authentication].iter().any(|e| !dir.join(&e.file_name).exists());
    if !pending {
        return Ok(()); // every CA certificate exists and is kept: nothing new is baked in
    }
    println!(
        "The ceremony writes CA certificates, and issuance card certificates, with these URLs for life:\n{}\
         Warnings: {}",
        url_table(cfg),
        match cfg.url_warnings() {
            w if w.is_empty() => "none".to_owned(),
            w => format!("\n  {}", w.join("\n  ")),
        }
    );
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Ceremony(
            "check the URLs above (hpki-ca config check), then run the ceremony again with --yes".into(),
        ));
    }
    print!("Proceed? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| CliError::Ceremony(format!("reading the answer: {e}")))?;
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(CliError::Ceremony("ceremony not confirmed; nothing was done".into())),
    }
}
