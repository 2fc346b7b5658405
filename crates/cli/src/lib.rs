//! `hpki-ca`: the operator command line and the launcher of every service.

pub mod audit;
pub mod card;
pub mod ceremony;
pub mod config_check;
pub mod error;
pub mod launcher;
pub mod ops;
pub mod render;
pub mod tokens;

#[cfg(test)]
mod help_tests;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::Config;

pub use error::CliError;

#[derive(Parser, Debug)]
#[command(name = "hpki-ca", version, about = "HPKI physician-card certificate authority")]
pub struct Args {
    /// Configuration file (TOML). Without it, the defaults are used with ./state as the state folder.
    #[arg(long, short, global = true, env = "HPKI_CA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Overrides `state_dir` of the configuration.
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Machine-readable output (one JSON object per line) where a command supports it.
    #[arg(long, global = true)]
    pub json: bool,
    /// The client certificate (identity in `[tls] dir`) to present, e.g. op-sato;
    /// default: the one the command's role needs (ra, operator, auditor).
    #[arg(long, global = true, env = "HPKI_CA_IDENTITY")]
    pub identity: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generates the CA keys in the HSM and writes the root and issuing CA certificates.
    /// Safe to repeat: existing keys and certificates are kept. Every run is recorded in the
    /// audit log (the registry must be stopped: the ceremony writes to its database).
    /// Before writing a CA certificate it prints the URLs certificates will carry and asks for
    /// confirmation (`--yes` confirms up front; without a terminal it is required).
    Ceremony {
        /// Who runs the ceremony, recorded as the audit entries' actor; default the OS user.
        #[arg(long, env = "HPKI_OPERATOR")]
        operator: Option<String>,
        /// Confirms the URLs to be baked into the CA certificates without asking.
        #[arg(long)]
        yes: bool,
    },
    /// The configuration: `config check` prints the effective config and the URLs certificates will carry.
    Config {
        #[command(subcommand)]
        command: config_check::ConfigCommand,
    },
    /// Runs every service in one process (registry, issuance, revocation, CRL, OCSP).
    Run,
    /// Runs the registry (the only writer of the database).
    Registry {
        /// Overrides registry.listen, e.g. 127.0.0.1:0.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Runs the issuance service.
    Issuance {
        /// Overrides issuance.listen.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides issuance.registry_url, e.g. https://127.0.0.1:50051.
        #[arg(long)]
        registry_url: Option<String>,
        /// Overrides issuance.revocation_url (reissue revokes the old card through it).
        #[arg(long)]
        revocation_url: Option<String>,
        /// Overrides issuance.crl_url (the CRL publisher asked for a CRL after a reissue or cessation).
        #[arg(long)]
        crl_url: Option<String>,
    },
    /// Runs the CRL publisher and its HTTP distribution point.
    Crl {
        /// Overrides crl.listen (gRPC: Publish, GetStatus).
        #[arg(long)]
        listen: Option<String>,
        /// Overrides crl.http_listen (the HTTP CRL distribution point).
        #[arg(long)]
        http_listen: Option<String>,
        /// Overrides crl.registry_url.
        #[arg(long)]
        registry_url: Option<String>,
    },
    /// Runs the revocation service.
    Revocation {
        /// Overrides revocation.listen.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides revocation.registry_url.
        #[arg(long)]
        registry_url: Option<String>,
        /// Overrides revocation.crl_url (the CRL publisher asked for a CRL at once on emergencies).
        #[arg(long)]
        crl_url: Option<String>,
    },
    /// Runs the OCSP responder and its metrics endpoint. It holds only the `ocsp` token; its
    /// responder certificates come from the issuance service.
    Ocsp {
        /// Overrides ocsp.listen (the HTTP responder).
        #[arg(long)]
        listen: Option<String>,
        /// Overrides ocsp.registry_url (the status feed it follows).
        #[arg(long)]
        registry_url: Option<String>,
        /// Overrides ocsp.issuance_url (IssueResponderCertificate).
        #[arg(long)]
        issuance_url: Option<String>,
    },
    /// Runs the operator console (HTTPS; login by the person's client certificate; docs/console.md).
    Console {
        /// Overrides console.listen.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Renews the delegated OCSP responder certificates now, as the OCSP process does when they
    /// fall due: with the keys in the `ocsp` token, through the running issuance service
    /// (IssueResponderCertificate), which records them in the registry. Run it on the OCSP host,
    /// as the OCSP service's identity; the running responder picks the new files up.
    OcspCerts {
        /// Overrides ocsp.issuance_url (the issuance service that issues them).
        #[arg(long)]
        issuance_url: Option<String>,
        /// Overrides ocsp.registry_url (asked whether the current ones are revoked).
        #[arg(long)]
        registry_url: Option<String>,
    },
    /// Revokes one certificate (--serial) or every certificate of a card (--card).
    Revoke {
        #[command(flatten)]
        args: ops::RevokeArgs,
        /// Revocation service; default from the config's revocation.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// Emergency revocation of a lost card: revokes both certificates (keyCompromise) and publishes a CRL at once.
    EmergencyRevoke {
        #[command(flatten)]
        args: ops::EmergencyArgs,
        /// Revocation service; default from the config's revocation.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// Approves an emergency revocation as the second operator (two-person control).
    Approve {
        /// The approval id that EmergencyRevoke answered with.
        #[arg(long)]
        approval: String,
        /// The approving operator: the identity of the client certificate (its
        /// default), which must differ from the one who asked. A certificate of
        /// this name in `[tls] dir` is the one presented.
        #[arg(long, env = "HPKI_OPERATOR")]
        operator: Option<String>,
        /// Revocation service; default from the config's revocation.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// Publishes CRLs now.
    PublishCrl {
        /// signing, authentication, or both when absent.
        #[arg(long, default_value = "")]
        issuer: String,
        /// full or delta; a delta when deltas are enabled, else full, when absent.
        #[arg(long)]
        kind: Option<String>,
        /// Who asks, recorded in the audit log: the identity of the client
        /// certificate (its default); another name is refused.
        #[arg(long, env = "HPKI_OPERATOR", default_value = "")]
        operator: String,
        /// CRL publisher; default from the config's crl.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// Shows a card's or a certificate's status.
    Status {
        #[command(flatten)]
        target: ops::CardOrSerial,
        /// Revocation service; default from the config's revocation.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// RA procedures on cards: show, history, apply, renew, reissue, contact, cease, disclose-pin, fee.
    Card {
        #[command(subcommand)]
        command: card::CardCommand,
        /// Issuance service; default from the config's issuance.listen.
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Bulk import of new-card applications (JSON lines, or CSV with a header), with progress;
    /// each failed line is reported with its reason and the import carries on.
    Import {
        #[command(flatten)]
        args: card::ImportArgs,
        /// Issuance service; default from the config's issuance.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// The hash-chained audit log: export, verify (chain and HSM-signed checkpoints), checkpoint.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
        /// Registry; default from the config's registry.listen.
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Client certificates of people and RA systems (service-identity CA under `[tls] dir`):
    /// add, list, revoke. Works on the files; a revoked certificate is refused on its next call.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Publishes the root CA's revocation list for CA certificates (ARL), optionally revoking an issuing CA certificate.
    /// Recorded in the audit log like the ceremony (the registry must be stopped: it writes to its database).
    Arl {
        /// Serial (hex) of an issuing CA certificate to revoke.
        #[arg(long, requires = "reason")]
        revoke_serial: Option<String>,
        /// Reason for revoking it (required with --revoke-serial).
        #[arg(long, value_enum, requires = "revoke_serial")]
        reason: Option<ops::Reason>,
        /// Who runs it, recorded as the audit entries' actor; default the OS user.
        #[arg(long, env = "HPKI_OPERATOR")]
        operator: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Issues `<name>.pem` and `<name>.key` (mode 600) in `[tls] dir` for a person or RA system.
    Add {
        /// The identity, e.g. op-sato or ra-tokyo (a-z 0-9 . _ -).
        name: String,
        /// ra (RA systems: issuance), operator (revocation, CRL publication) or auditor (the audit log).
        #[arg(long)]
        role: String,
    },
    /// Lists the client certificates: identity, role, serial, revoked or not.
    List,
    /// Revokes the certificate of `name`: every server refuses it from its next call on.
    Revoke {
        /// The identity to revoke, e.g. op-ito.
        name: String,
    },
    /// Writes the certificate and key of `name` (with the CA certificate) as PKCS#12, for
    /// import into a browser (the operator console, docs/console.md). Uses `openssl pkcs12`.
    /// The password is HPKI_P12_PASSWORD, or a generated one printed once.
    Export {
        /// The identity, e.g. op-sato.
        name: String,
        /// The PKCS#12 file to write (refused if it exists).
        #[arg(long)]
        p12: PathBuf,
    },
}

fn identity(cfg: &Config, command: IdentityCommand, json: bool) -> Result<(), CliError> {
    let dir = cfg.tls_dir();
    let err = CliError::Identity;
    match command {
        IdentityCommand::Add { name, role } => {
            let role = tls::Role::parse(&role).map_err(err)?;
            tls::ensure_local_pki(&dir).map_err(err)?;
            tls::add_identity(&dir, &name, role).map_err(err)?;
            launcher::say(format_args!(
                "identity {name} (role {role}) written: {} and {}",
                dir.join(format!("{name}.pem")).display(),
                dir.join(format!("{name}.key")).display()
            ));
        }
        IdentityCommand::List => {
            for i in tls::list_identities(&dir).map_err(err)? {
                render::print(&i, json);
            }
        }
        IdentityCommand::Export { name, p12 } => export_p12(&dir, &name, &p12)?,
        IdentityCommand::Revoke { name } => {
            let serial = tls::revoke_identity(&dir, &name).map_err(err)?;
            launcher::say(format_args!(
                "identity {name} revoked (serial {serial}); servers refuse it from its next call"
            ));
        }
    }
    Ok(())
}

fn identity_state(i: &tls::identity::IdentityInfo) -> &'static str {
    if i.revoked {
        "revoked"
    } else {
        "valid"
    }
}

impl render::Render for tls::identity::IdentityInfo {
    fn human(&self) -> Vec<String> {
        vec![format!("{:<20} {:<9} {:<8} serial {}", self.name, self.role.as_str(), identity_state(self), self.serial)]
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "role": self.role.as_str(), "serial": self.serial, "state": identity_state(self)})
    }
}

/// `hpki-ca identity export NAME --p12 FILE`: `openssl pkcs12 -export` of
/// `<name>.pem`, `<name>.key` and `ca.pem`, the password passed in the
/// environment (never on the command line).
fn export_p12(dir: &std::path::Path, name: &str, p12: &std::path::Path) -> Result<(), CliError> {
    tls::identity::check_name(name).map_err(CliError::Identity)?;
    let pki = tls::LocalPki { dir: dir.to_owned() };
    let (cert, key) = (pki.cert(name), pki.key(name));
    if !cert.exists() || !key.exists() {
        return Err(CliError::Client(format!("identity {name}: {} or {} is missing", cert.display(), key.display())));
    }
    if p12.exists() {
        return Err(CliError::Client(format!("{} exists; choose another file", p12.display())));
    }
    let (password, generated) = match std::env::var("HPKI_P12_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => {
            let bytes: [u8; 12] = rand::random();
            (hex::encode(bytes), true)
        }
    };
    let out = std::process::Command::new("openssl")
        .arg("pkcs12")
        .arg("-export")
        .arg("-in")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-certfile")
        .arg(pki.ca_cert())
        .arg("-name")
        .arg(name)
        .arg("-out")
        .arg(p12)
        .arg("-passout")
        .arg("env:HPKI_P12_PASSWORD")
        .env("HPKI_P12_PASSWORD", &password)
        .output()
        .map_err(|e| CliError::Client(format!("openssl: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Client(format!("openssl pkcs12: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p12, std::fs::Permissions::from_mode(0o600));
    }
    launcher::say(format_args!("identity {name} written to {} (PKCS#12)", p12.display()));
    if generated {
        launcher::say(format_args!("password: {password} (give it to {name} apart from the file)"));
    }
    Ok(())
}

fn load_config(args: &Args) -> Result<Config, CliError> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(dir) = &args.state_dir {
        cfg.state_dir = dir.clone();
    }
    Ok(cfg)
}

/// Must run before any other thread starts: SoftHSM reads SOFTHSM2_CONF when
/// the module initialises, and changing the environment is only sound while
/// the process is single-threaded.
fn export_softhsm_conf(cfg: &Config) {
    if let Some(conf) = cfg.softhsm2_conf() {
        if std::env::var_os("SOFTHSM2_CONF").is_none() || conf.exists() {
            std::env::set_var("SOFTHSM2_CONF", conf);
        }
    }
}

/// `hpki-ca ocsp-certs`: new responder certificates for both issuing CAs now,
/// through the issuance service, printed one line each.
async fn renew_responders(cfg: &Config, kit: &tls::GrpcKit, hsm: &hsm::Hsm) -> Result<(), CliError> {
    let authority = ocsp::IssuanceAuthority::from_config(cfg, kit)?;
    // Everything is due within a window longer than any validity.
    let all = time::Duration::days(i64::from(cfg.ocsp.responder_validity_days) + 1);
    let done = ocsp::ensure_responder_certificates(cfg, hsm, &authority, all).await?;
    for r in &done {
        launcher::say(format_args!(
            "{:<15} key {:<8} ({:?})  certificate {:<10} {}  serial {}  (OCSP responder, until {})",
            format!("ocsp-{}", r.ca),
            format!("{:?}", r.key).to_lowercase(),
            r.key_label,
            format!("{:?}", r.certificate).to_lowercase(),
            r.path.display(),
            r.serial,
            r.not_after.date()
        ));
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Ceremony(format!("cannot start the async runtime: {e}")))
}

fn execute(args: Args) -> Result<(), CliError> {
    let mut cfg = load_config(&args)?;
    if runs_start_checks(&args.command) {
        // Every start check at once, before a key, a file or a listener is made.
        cfg.validate()?;
    }
    export_softhsm_conf(&cfg);
    if let Command::Ceremony { yes, .. } = &args.command {
        // Before anything is written, the TLS identities included.
        config_check::confirm_ceremony_urls(&cfg, *yes)?;
    }
    let kit = launcher::setup_grpc(&cfg, &args.command, args.identity.as_deref())?;
    apply_overrides(&mut cfg, &args.command);
    let path = args.config.as_deref();
    match args.command {
        Command::Ceremony { operator, .. } => ceremony::execute(&cfg, path, operator),
        Command::Config { command } => config_check::run(&cfg, path, command),
        Command::Run => {
            let tokens = tokens::Tokens::open(&cfg, tokens::domains::RUN)?;
            let source = launcher::config_source(path)?;
            serve(|stop| launcher::run_all(cfg, kit, source, tokens, stop))
        }
        Command::Registry { .. } => {
            let source = launcher::config_source(path)?;
            serve(|stop| launcher::run_registry(cfg, kit, source, stop))
        }
        Command::Issuance { .. } => {
            let tokens = tokens::Tokens::open(&cfg, tokens::domains::ISSUANCE)?;
            serve(|stop| launcher::run_issuance(cfg, kit, tokens, stop))
        }
        Command::Crl { .. } => {
            let tokens = crl_tokens(&cfg)?;
            serve(|stop| launcher::run_crl(cfg, kit, tokens, stop))
        }
        Command::Revocation { .. } => serve(|stop| launcher::run_revocation(cfg, kit, stop)),
        Command::Ocsp { .. } => {
            let tokens = tokens::Tokens::open(&cfg, tokens::domains::OCSP)?;
            serve(|stop| launcher::run_ocsp(cfg, kit, tokens, stop))
        }
        Command::OcspCerts { .. } => {
            let tokens = tokens::Tokens::open(&cfg, tokens::domains::OCSP)?;
            let hsm = tokens.get(config::TrustDomain::Ocsp)?.clone();
            runtime()?.block_on(renew_responders(&cfg, &kit, &hsm))
        }
        Command::Console { .. } => serve(|stop| launcher::run_console(cfg, kit, stop)),
        Command::Revoke { args, url } => {
            runtime()?.block_on(ops::revoke(&kit, &url_or(url, &cfg.revocation.listen), args))
        }
        Command::EmergencyRevoke { args, url } => {
            runtime()?.block_on(ops::emergency(&kit, &url_or(url, &cfg.revocation.listen), args))
        }
        Command::Approve { approval, operator, url } => {
            runtime()?.block_on(ops::approve(&kit, &url_or(url, &cfg.revocation.listen), approval, operator))
        }
        Command::PublishCrl { issuer, kind, operator, url } => {
            runtime()?.block_on(ops::publish(&kit, &url_or(url, &cfg.crl.listen), issuer, kind, operator))
        }
        Command::Status { target, url } => {
            runtime()?.block_on(ops::status_of(&kit, &url_or(url, &cfg.revocation.listen), target))
        }
        Command::Card { command, url } => {
            runtime()?.block_on(card::run(&kit, &url_or(url, &cfg.issuance.listen), command, args.json))
        }
        Command::Import { args: import, url } => {
            runtime()?.block_on(card::import(&kit, &url_or(url, &cfg.issuance.listen), import, args.json))
        }
        Command::Audit { command, url } => audit::run(&cfg, &kit, url, command),
        Command::Identity { command } => identity(&cfg, command, args.json),
        Command::Arl { revoke_serial, reason, operator } => {
            let revoke = revoke_serial.zip(reason.map(ops::Reason::crl_reason));
            ceremony::arl(&cfg, path, operator, revoke)
        }
    }
}

/// Commands that start a service or sign with a CA key: they refuse a config
/// that fails [`Config::validate`]. (`config check` reports it after printing
/// the config; client commands only need `[limits]`.)
fn runs_start_checks(command: &Command) -> bool {
    matches!(
        command,
        Command::Ceremony { .. }
            | Command::Run
            | Command::Registry { .. }
            | Command::Issuance { .. }
            | Command::Crl { .. }
            | Command::Revocation { .. }
            | Command::Ocsp { .. }
            | Command::Console { .. }
            | Command::OcspCerts { .. }
            | Command::Arl { .. }
    )
}

/// The service commands' `--listen` and `--*-url` flags, over the config.
fn apply_overrides(cfg: &mut Config, command: &Command) {
    fn set(field: &mut String, flag: &Option<String>) {
        if let Some(v) = flag {
            field.clone_from(v);
        }
    }
    match command {
        Command::Registry { listen } => set(&mut cfg.registry.listen, listen),
        Command::Issuance { listen, registry_url, revocation_url, crl_url } => {
            set(&mut cfg.issuance.listen, listen);
            set(&mut cfg.issuance.registry_url, registry_url);
            set(&mut cfg.issuance.revocation_url, revocation_url);
            set(&mut cfg.issuance.crl_url, crl_url);
        }
        Command::Crl { listen, http_listen, registry_url } => {
            set(&mut cfg.crl.listen, listen);
            set(&mut cfg.crl.http_listen, http_listen);
            set(&mut cfg.crl.registry_url, registry_url);
        }
        Command::Revocation { listen, registry_url, crl_url } => {
            set(&mut cfg.revocation.listen, listen);
            set(&mut cfg.revocation.registry_url, registry_url);
            set(&mut cfg.revocation.crl_url, crl_url);
        }
        Command::Ocsp { listen, registry_url, issuance_url } => {
            set(&mut cfg.ocsp.listen, listen);
            set(&mut cfg.ocsp.registry_url, registry_url);
            set(&mut cfg.ocsp.issuance_url, issuance_url);
        }
        Command::OcspCerts { issuance_url, registry_url } => {
            set(&mut cfg.ocsp.issuance_url, issuance_url);
            set(&mut cfg.ocsp.registry_url, registry_url);
        }
        Command::Console { listen } => set(&mut cfg.console.listen, listen),
        _ => {}
    }
}

/// A client command's `--url`, else the service's listen address from the config.
fn url_or(url: Option<String>, listen: &str) -> String {
    url.unwrap_or_else(|| format!("http://{listen}"))
}

/// The crl process's tokens: the audit token too when it runs the checkpointer.
fn crl_tokens(cfg: &Config) -> Result<tokens::Tokens, CliError> {
    let mut domains = tokens::domains::CRL.to_vec();
    if cfg.audit.checkpoint_interval().is_some() {
        domains.extend_from_slice(tokens::domains::CHECKPOINTS);
    }
    tokens::Tokens::open(cfg, &domains)
}

/// Runs a service until SIGINT or SIGTERM.
fn serve<F, Fut>(run: F) -> Result<(), CliError>
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    runtime()?.block_on(async {
        let stop = launcher::watch_signals();
        run(stop).await
    })
}

/// Entry point of the `hpki-ca` binary.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hpki-ca: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn overridden(argv: &[&str]) -> Config {
        let args = Args::try_parse_from(argv).unwrap();
        let mut cfg = Config::default();
        apply_overrides(&mut cfg, &args.command);
        cfg
    }

    #[test]
    fn a_service_flag_overrides_only_its_own_key() {
        let cfg = overridden(&["hpki-ca", "issuance", "--listen", "127.0.0.1:1", "--crl-url", "https://c"]);
        let default = Config::default();
        assert_eq!((cfg.issuance.listen.as_str(), cfg.issuance.crl_url.as_str()), ("127.0.0.1:1", "https://c"));
        assert_eq!(cfg.issuance.registry_url, default.issuance.registry_url);
        assert_eq!(cfg.crl.listen, default.crl.listen);
        let cfg = overridden(&["hpki-ca", "ocsp-certs", "--registry-url", "https://r"]);
        assert_eq!(
            (cfg.ocsp.registry_url.as_str(), cfg.ocsp.listen.as_str()),
            ("https://r", default.ocsp.listen.as_str())
        );
        assert_eq!(url_or(None, "127.0.0.1:2"), "http://127.0.0.1:2");
        assert_eq!(url_or(Some("https://x".into()), "127.0.0.1:2"), "https://x");
    }

    #[test]
    fn an_identity_prints_as_a_padded_line_or_one_json_object() {
        use render::Render;
        let role = tls::Role::parse("operator").unwrap();
        let i = tls::identity::IdentityInfo { name: "op-ito".into(), role, serial: "0a".into(), revoked: true };
        assert_eq!(i.human(), [format!("{:<20} {:<9} {:<8} serial 0a", "op-ito", role.as_str(), "revoked")]);
        assert_eq!(
            i.json(),
            serde_json::json!({"name": "op-ito", "role": role.as_str(), "serial": "0a", "state": "revoked"})
        );
    }
}
