//! Signing a checkpoint: the chain verified, its head signed in the HSM with the
//! key [`CHECKPOINT_KEY_LABEL`], appended to the log through the registry's
//! AppendCheckpoint, and recorded outside the database ([`append_record`]).

use std::path::PathBuf;

use config::Config;
use proto::registry::v1 as pb;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;

use crate::chain::{checkpoint_message, Broken, CheckpointDetail, Verifier};
use crate::error::Error;
use crate::key::{CheckpointKey, LoadError};
use crate::record::{append_record, CheckpointRecord, Conclusion, LogSource, RecordBroken, Recorded};
use crate::registry::{checkpointer_client, verify_live};
use crate::{Progress, CHECKPOINT_KEY_LABEL, CHECKPOINT_PUB_FILE};

/// Where checkpoints are signed from and recorded: the public key that must
/// belong to the HSM key, and the append-only record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFiles {
    pub public_key: PathBuf,
    pub records: PathBuf,
}

impl CheckpointFiles {
    /// `<cert_dir>/audit-checkpoint.pub.pem` and `<state_dir>/audit/checkpoints.jsonl`.
    pub fn of(cfg: &Config) -> CheckpointFiles {
        CheckpointFiles { public_key: cfg.cert_dir().join(CHECKPOINT_PUB_FILE), records: cfg.audit_checkpoints_path() }
    }
}

// ---------------------------------------------------------------------------
// Checkpoints

/// What [`Checkpointer::checkpoint`] did.
#[derive(Debug)]
pub enum CheckpointOutcome {
    /// A checkpoint entry was appended at `sequence`, signing entry `signs` (hash
    /// `head`). `record_error`: why it is not in the record outside the database
    /// (already logged as an error; the checkpoint stands in the log).
    Signed {
        sequence: u64,
        signs: u64,
        head: [u8; 32],
        algorithm: &'static str,
        key_spki_sha256: String,
        record_error: Option<Error>,
    },
    /// The head is itself a verified checkpoint: nothing new to anchor (only
    /// when asked to skip that case).
    AlreadyAnchored { sequence: u64 },
}

/// Why no checkpoint was made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A broken chain is never signed.
    #[error("refusing to checkpoint: {0}")]
    Broken(Broken),
    #[error("the audit log is empty: nothing to checkpoint")]
    Empty,
    /// A log that lost checkpoints the record holds is not re-anchored: signing
    /// its head would vouch for the cut.
    #[error("refusing to checkpoint: {0}")]
    Unrecorded(RecordBroken),
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<hsm::HsmError> for CheckpointError {
    fn from(e: hsm::HsmError) -> CheckpointError {
        CheckpointError::Failed(e.into())
    }
}

impl From<LoadError> for CheckpointError {
    fn from(e: LoadError) -> CheckpointError {
        CheckpointError::Failed(e.into())
    }
}

impl From<tonic::Status> for CheckpointError {
    fn from(s: tonic::Status) -> CheckpointError {
        CheckpointError::Failed(s.into())
    }
}

/// The HSM key "audit-checkpoint" with its public half on disk, checked to be
/// the same key, so every checkpoint it signs verifies with that file. Both
/// `hpki-ca audit checkpoint` and the crl process's periodic task sign with it,
/// and both record what they signed outside the database.
pub struct Checkpointer {
    key: hsm::HsmKey,
    public: CheckpointKey,
    key_path: PathBuf,
    records: PathBuf,
}

impl Checkpointer {
    /// Finds the key in the HSM and loads the public key file. Blocking (PKCS#11).
    pub fn new(hsm: &hsm::Hsm, files: &CheckpointFiles) -> Result<Checkpointer, Error> {
        let key_path = files.public_key.as_path();
        let key = hsm.find_key(CHECKPOINT_KEY_LABEL)?.ok_or(Error::NoHsmKey)?;
        let public = CheckpointKey::load(key_path)?.ok_or_else(|| Error::NoPublicKey(key_path.to_owned()))?;
        if public.spki_der() != key.subject_public_key_info_der() {
            return Err(Error::NotTheHsmKey(key_path.to_owned()));
        }
        Ok(Checkpointer { key, public, key_path: key_path.to_owned(), records: files.records.clone() })
    }

    /// Verifies the live chain (signatures of earlier checkpoints included),
    /// signs its head in the HSM and appends the checkpoint entry as `actor`.
    /// With `skip_anchored`, a head that already is a verified checkpoint is
    /// left alone (a periodic task on a quiet CA would otherwise only sign its
    /// own checkpoints).
    pub async fn checkpoint(
        &self,
        client: &mut RegistryClient<Channel>,
        actor: &str,
        skip_anchored: bool,
        progress: Progress<'_>,
    ) -> Result<CheckpointOutcome, CheckpointError> {
        // Read before the log, as `verify` does.
        let recorded = Recorded::load(&self.records)?;
        let verifier = Verifier::new(Some(self.public.clone()), self.key_path.clone());
        let outcome = verify_live(client, verifier, progress).await?;
        let head = match recorded.conclude(outcome, Some(&self.public), LogSource::Live) {
            Conclusion::Holds(holds) => holds.verified,
            Conclusion::Broken(b) => return Err(CheckpointError::Broken(b)),
            Conclusion::Unrecorded(b) => return Err(CheckpointError::Unrecorded(b)),
        };
        if head.entries == 0 {
            return Err(CheckpointError::Empty);
        }
        if skip_anchored && head.head_is_checkpoint() {
            return Ok(CheckpointOutcome::AlreadyAnchored { sequence: head.entries });
        }

        let message = checkpoint_message(head.entries, &head.head);
        // PKCS#11 blocks: keep it off the async workers.
        let key = self.key.clone();
        let to_sign = message.clone();
        let signature = tokio::task::spawn_blocking(move || key.sign(&to_sign))
            .await
            .map_err(|source| Error::Task { what: "signing", source })??;
        if !self.public.verify(&message, &signature) {
            return Err(Error::SignatureDoesNotVerify(self.key_path.clone()).into());
        }
        let detail = CheckpointDetail {
            sequence: head.entries,
            head_hash: hex::encode(head.head),
            algorithm: self.public.algorithm().to_owned(),
            key_label: CHECKPOINT_KEY_LABEL.to_owned(),
            key_spki_sha256: self.public.spki_sha256().to_owned(),
            signature: hex::encode(&signature),
        };
        let detail_json = serde_json::to_string(&detail).map_err(Error::DetailJson)?;
        // Not AppendAudit, which refuses this action: the dedicated RPC only
        // the checkpointer's identity (`crl`) may call.
        let request = pb::AppendCheckpointRequest {
            actor: actor.to_owned(),
            subject: CHECKPOINT_KEY_LABEL.to_owned(),
            detail_json,
        };
        let entry = client.append_checkpoint(request).await?.into_inner();
        // The log has it now; the record is a second copy, so failing to write it
        // is reported loudly but undoes nothing.
        let record_error = self.record(&entry, &detail).await.err();
        if let Some(error) = &record_error {
            tracing::error!(
                sequence = entry.sequence,
                file = %self.records.display(),
                %error,
                "audit checkpoint signed and in the log, but NOT recorded outside the database: \
                 a cut-off log tail would not be detected up to it"
            );
        }
        Ok(CheckpointOutcome::Signed {
            sequence: entry.sequence,
            signs: head.entries,
            head: head.head,
            algorithm: self.public.algorithm(),
            key_spki_sha256: detail.key_spki_sha256,
            record_error,
        })
    }

    /// Appends the checkpoint the registry returned as `entry` to the record.
    async fn record(&self, entry: &pb::AuditEntry, detail: &CheckpointDetail) -> Result<(), Error> {
        let record = CheckpointRecord::new(entry.sequence, &entry.hash, entry.at_unix_micros, &entry.actor, detail)?;
        let path = self.records.clone();
        // Blocking file I/O and fsync: off the async workers.
        tokio::task::spawn_blocking(move || append_record(&path, &record))
            .await
            .map_err(|source| Error::Task { what: "writing", source })?
    }
}

/// One checkpoint against the registry at `url`, as the periodic task makes
/// it: a fresh HSM lookup and connection each time, so a token or registry
/// that came back is used again.
pub async fn checkpoint_now(
    hsm: &hsm::Hsm,
    kit: &tls::GrpcKit,
    url: &str,
    files: &CheckpointFiles,
    actor: &str,
    progress: Progress<'_>,
) -> Result<CheckpointOutcome, CheckpointError> {
    let (h, files) = (hsm.clone(), files.clone());
    let checkpointer = tokio::task::spawn_blocking(move || Checkpointer::new(&h, &files))
        .await
        .map_err(|source| Error::Task { what: "HSM lookup", source })??;
    let mut client = checkpointer_client(kit, url).await?;
    checkpointer.checkpoint(&mut client, actor, true, progress).await
}
