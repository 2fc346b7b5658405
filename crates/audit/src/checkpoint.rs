//! Signing a checkpoint: the chain verified, its head signed in the HSM with the
//! key [`CHECKPOINT_KEY_LABEL`], appended to the log through the registry's
//! AppendCheckpoint, and recorded outside the database ([`append_record`]).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use config::Config;
use proto::registry::v1 as pb;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;

use crate::error::{io, Error};
use crate::registry::{checkpointer_client, verify_live};
use crate::verify::{
    checkpoint_message, Broken, CheckpointDetail, CheckpointKey, CheckpointRecord, Conclusion, LoadError, LogSource,
    RecordBroken, Recorded, Verifier,
};
use crate::{Progress, CHECKPOINT_KEY_LABEL, CHECKPOINT_PUB_FILE};

// ---------------------------------------------------------------------------
// The checkpoint record outside the database

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

/// Appends `record` as one line to `path` and syncs it to disk. The folder is
/// made owner-only, the file owner-read/write; an existing file is only ever
/// appended to.
pub fn append_record(path: &Path, record: &CheckpointRecord) -> Result<(), Error> {
    let mut line = serde_json::to_vec(record).map_err(Error::RecordJson)?;
    line.push(b'\n');
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len > 0 {
        // A line cut short by a crash must not swallow this one: it stays a bad line of its own.
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1)).and_then(|_| file.read_exact(&mut last)).map_err(io(path))?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    // One write on an O_APPEND file: a manual and an automatic checkpoint cannot interleave.
    file.write_all(&line).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    if let (0, Some(dir)) = (len, dir) {
        // A new file: its name must survive a crash too.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
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
    url: &str,
    files: &CheckpointFiles,
    actor: &str,
    progress: Progress<'_>,
) -> Result<CheckpointOutcome, CheckpointError> {
    let (h, files) = (hsm.clone(), files.clone());
    let checkpointer = tokio::task::spawn_blocking(move || Checkpointer::new(&h, &files))
        .await
        .map_err(|source| Error::Task { what: "HSM lookup", source })??;
    let mut client = checkpointer_client(url).await?;
    checkpointer.checkpoint(&mut client, actor, true, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[cfg(unix)]
    #[test]
    fn records_are_appended_owner_only_and_a_torn_line_stays_on_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let s = signer();
        let (log, records) = checkpointed_log(&s);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit/checkpoints.jsonl");
        assert!(!Recorded::load(&path).unwrap().exists());
        append_record(&path, &records[0]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        // A write cut short by a crash, then the next checkpoint.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"checkpoint_seq").unwrap();
        append_record(&path, &records[1]).unwrap();
        let loaded = Recorded::load(&path).unwrap();
        let lines = loaded.lines.as_ref().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!((lines[0].0, lines[0].1.as_ref().unwrap()), (1, &records[0]));
        assert!(lines[1].1.is_err());
        assert_eq!((lines[2].0, lines[2].1.as_ref().unwrap()), (3, &records[1]));
        let v = verify(&log, Some(s.key.clone())).unwrap();
        assert_eq!(loaded.check(&v, Some(&s.key), LogSource::Live).unwrap_err().sequence, None);
        // Without the torn line both records match.
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().filter(|l| l.ends_with('}')).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        assert_eq!(Recorded::load(&path).unwrap().check(&v, Some(&s.key), LogSource::Live).unwrap().matched, 2);
    }
}
