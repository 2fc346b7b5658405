//! `hpki-ca audit …`: export the registry's hash-chained audit log as JSON
//! lines, verify it (from the live registry or from an export) and anchor its
//! head with a checkpoint signed in the HSM. This module parses the arguments,
//! calls the `audit` crate (which holds the chain model, the verifier, the
//! checkpoints and their record, and explains their design) and prints.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use audit::{
    Broken, CheckpointError, CheckpointFiles, CheckpointKey, CheckpointOutcome, Checkpointer, Conclusion, LogSource,
    Recorded, Verified, Verifier, CHECKPOINT_KEY_LABEL, CHECKPOINT_PUB_FILE,
};
use clap::Subcommand;
use config::Config;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;

use crate::error::CliError;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes every entry as one JSON object per line: sequence, at, actor, action, subject,
    /// detail, detail_json, prev_hash, hash. Progress goes to stderr.
    Export {
        /// Output file (written whole, then renamed into place); stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verifies the hash chain and every signed checkpoint, from the registry or an export;
    /// reports the first bad entry and exits non-zero on a break.
    Verify {
        /// An export made by `hpki-ca audit export` instead of the live registry.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The checkpoint key's public key (SPKI PEM); default <cert_dir>/audit-checkpoint.pub.pem.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The record of signed checkpoints to hold the log to, e.g. a copy shipped off-host
        /// (it must exist); default <state_dir>/audit/checkpoints.jsonl, if there is one.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Accept a verification with no checkpoint record to hold the log to (a fresh CA, or
        /// one whose record is elsewhere); without it, no record is an error: a log whose end
        /// was cut off would still verify.
        #[arg(long, conflicts_with = "checkpoints")]
        without_record: bool,
    },
    /// Verifies the chain, signs its head with the HSM key "audit-checkpoint" and appends
    /// the signed checkpoint as an "audit.checkpoint" entry.
    Checkpoint {
        /// Who asks, recorded as the entry's actor.
        #[arg(long, env = "HPKI_OPERATOR", default_value = "operator")]
        operator: String,
        /// The checkpoint key's public key (SPKI PEM); default <cert_dir>/audit-checkpoint.pub.pem.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

/// Runs an `audit` subcommand against the registry at `url` (default: the config's registry.listen).
pub fn run(cfg: &Config, kit: &tls::GrpcKit, url: Option<String>, command: AuditCommand) -> Result<(), CliError> {
    let url = url.unwrap_or_else(|| format!("http://{}", cfg.registry.listen));
    let key_path = |given: Option<PathBuf>| given.unwrap_or_else(|| cfg.cert_dir().join(CHECKPOINT_PUB_FILE));
    match command {
        AuditCommand::Export { out } => crate::runtime()?.block_on(export(kit, &url, out.as_deref())),
        AuditCommand::Verify { file, public_key, checkpoints, without_record } => {
            let path = key_path(public_key);
            let key = CheckpointKey::load(&path)?;
            // Read before the log: a checkpoint is recorded only once the registry
            // has it, so each record read now is in the log listed next; one signed
            // meanwhile cannot look missing.
            let recorded = match checkpoints {
                Some(named) => {
                    let recorded = Recorded::load(&named)?;
                    if !recorded.exists() {
                        return Err(CliError::Client(format!("{}: no such checkpoint record", named.display())));
                    }
                    recorded
                }
                None => Recorded::load(&cfg.audit_checkpoints_path())?,
            };
            let source = if file.is_some() { LogSource::Export } else { LogSource::Live };
            let verifier = Verifier::new(key.clone(), path);
            let outcome = match file {
                Some(file) => audit::verify_file(&file, verifier, &mut progress("verify"))?,
                None => crate::runtime()?.block_on(async {
                    let mut client = registry(kit, &url).await?;
                    Ok::<_, CliError>(audit::verify_live(&mut client, verifier, &mut progress("verify")).await?)
                })?,
            };
            report(outcome, &recorded, key.as_ref(), source)?;
            if !recorded.exists() && !without_record {
                return Err(CliError::Client(format!(
                    "no checkpoint record at {}: a log cut off at its end would verify too. Name a copy with \
                     --checkpoints FILE, or pass --without-record to accept this",
                    recorded.path.display()
                )));
            }
            Ok(())
        }
        AuditCommand::Checkpoint { operator, public_key } => {
            let files = CheckpointFiles { public_key: key_path(public_key), records: cfg.audit_checkpoints_path() };
            checkpoint(cfg, kit, &url, &operator, &files)
        }
    }
}

/// The progress lines of a long export or verification, on stderr (the
/// `audit` crate says when: at most once per [`audit::PROGRESS_EVERY`]).
pub fn progress(what: &'static str) -> impl FnMut(u64) + Send {
    move |done| eprintln!("audit {what}: {done} entries so far")
}

async fn registry(kit: &tls::GrpcKit, url: &str) -> Result<RegistryClient<Channel>, CliError> {
    Ok(audit::registry::client(kit, crate::ops::connect(kit, url).await?))
}

/// Prints the outcome; a break, a recorded checkpoint the chain lacks or an
/// unchecked checkpoint is an error (non-zero exit).
fn report(
    outcome: Result<Verified, Broken>,
    recorded: &Recorded,
    key: Option<&CheckpointKey>,
    source: LogSource,
) -> Result<(), CliError> {
    let holds = match recorded.conclude(outcome, key, source) {
        Conclusion::Holds(holds) => holds,
        Conclusion::Broken(b) => {
            println!("{b}");
            return Err(CliError::Client(format!("audit chain broken at sequence {}", b.sequence)));
        }
        Conclusion::Unrecorded(b) => {
            println!("{b}");
            return Err(CliError::Client(b.summary()));
        }
    };
    let (v, matched) = (&holds.verified, holds.matched);
    // No "checkpoints: " here: scripts read the count from the line below.
    let anchors = if recorded.exists() {
        let s = if matched.matched == 1 { "" } else { "s" };
        format!("{} recorded checkpoint{s} matched in {}", matched.matched, recorded.path.display())
    } else {
        format!("no checkpoint record at {} (a cut-off tail would not show)", recorded.path.display())
    };
    println!("audit chain OK: {} entries, head {}; {anchors}", v.entries, hex::encode(v.head));
    match v.latest_checkpoint {
        Some((at, signs)) => println!(
            "checkpoints: {} verified; the latest, at sequence {at}, signs entry {signs}; {} entries after it not yet anchored",
            v.checkpoints,
            v.entries - at
        ),
        None if v.unchecked == 0 => {
            println!("checkpoints: 0 verified (none yet: `hpki-ca audit checkpoint` anchors the head)")
        }
        None => println!("checkpoints: 0 verified, {} not checked", v.unchecked),
    }
    let unchecked = holds.unchecked();
    if unchecked > 0 {
        return Err(CliError::Client(format!(
            "{unchecked} checkpoint(s) not checked: no public key at {} (run `hpki-ca ceremony`, or pass --public-key)",
            v.key_path.display()
        )));
    }
    Ok(())
}

async fn export(kit: &tls::GrpcKit, url: &str, out: Option<&Path>) -> Result<(), CliError> {
    let mut client = registry(kit, url).await?;
    let exported = match out {
        Some(path) => audit::export::export_to_file(&mut client, path, &mut progress("export")).await?,
        None => {
            let mut sink = BufWriter::new(std::io::stdout().lock());
            audit::export::export(&mut client, &mut sink, Path::new("stdout"), &mut progress("export")).await?
        }
    };
    let shown = out.map_or_else(|| PathBuf::from("stdout"), Path::to_owned);
    eprintln!(
        "audit export: {} entries (last sequence {}) written to {}",
        exported.entries,
        exported.last,
        shown.display()
    );
    Ok(())
}

/// `hpki-ca audit checkpoint`: always signs the head (an operator asked).
fn checkpoint(
    cfg: &Config,
    kit: &tls::GrpcKit,
    url: &str,
    operator: &str,
    files: &CheckpointFiles,
) -> Result<(), CliError> {
    let tokens = crate::tokens::Tokens::open(cfg, crate::tokens::domains::CHECKPOINTS)?;
    let checkpointer = Checkpointer::new(tokens.get(config::TrustDomain::Audit)?, files)?;
    let outcome = crate::runtime()?.block_on(async {
        let mut client = audit::registry::checkpointer_client(kit, url).await?;
        checkpointer.checkpoint(&mut client, operator, false, &mut progress("verify")).await
    });
    match outcome {
        Ok(CheckpointOutcome::Signed { sequence, signs, head, algorithm, key_spki_sha256, record_error }) => {
            println!(
                "audit checkpoint at sequence {sequence}: signs entry {signs} (head {}) with HSM key \
                 {CHECKPOINT_KEY_LABEL:?} ({algorithm}, SPKI SHA-256 {key_spki_sha256})",
                hex::encode(head)
            );
            match record_error {
                None => {
                    println!("recorded in {}", files.records.display());
                    Ok(())
                }
                // Non-zero exit so a script notices; the checkpoint itself is in the log.
                Some(e) => Err(CliError::Client(format!(
                    "the checkpoint at sequence {sequence} is in the audit log, but recording it in {} failed: {e}",
                    files.records.display()
                ))),
            }
        }
        Ok(CheckpointOutcome::AlreadyAnchored { sequence }) => {
            println!("audit head {sequence} is already a checkpoint");
            Ok(())
        }
        Err(CheckpointError::Broken(b)) => {
            println!("{b}");
            Err(CliError::Client(format!(
                "refusing to checkpoint: the audit chain is broken at sequence {}",
                b.sequence
            )))
        }
        Err(CheckpointError::Unrecorded(b)) => {
            println!("{b}");
            Err(CliError::Client(format!("refusing to checkpoint: {}", b.summary())))
        }
        Err(CheckpointError::Empty) => Err(CliError::Client(CheckpointError::Empty.to_string())),
        Err(CheckpointError::Failed(e)) => Err(e.into()),
    }
}
