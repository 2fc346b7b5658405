//! The periodic checkpointer: a task of the crl process (or of `hpki-ca run`)
//! that signs the audit chain's head every `[audit] checkpoint_interval_seconds`.

use std::time::Duration;

use tokio::sync::watch;

use crate::checkpoint::{checkpoint_now, CheckpointFiles, CheckpointOutcome};

/// Actor of the checkpoints the periodic task makes by itself.
pub const CHECKPOINTER_ACTOR: &str = "audit-checkpointer";
/// The first automatic checkpoint comes this soon after start (or after one
/// interval, if shorter), so a fresh CA has one.
pub const FIRST_CHECKPOINT_AFTER: Duration = Duration::from_secs(2);
/// After a failed checkpoint the next try comes after at most this long,
/// rather than a whole interval later.
pub const RETRY_CHECKPOINT_AFTER: Duration = Duration::from_secs(30);
/// Bound on one attempt (connect, verify the chain, sign, append), so a hung
/// registry or token cannot stall the task for good.
pub const CHECKPOINT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the periodic task is given, as values.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// The registry to verify the chain from and append checkpoints to.
    pub registry_url: String,
    /// The checkpoint key's public half and the record outside the database.
    pub files: CheckpointFiles,
    /// The time between checkpoints.
    pub interval: Duration,
    /// How the registry is reached (TLS as the checkpointer's identity, limits).
    pub kit: tls::GrpcKit,
}

/// Signs the audit chain's head every `interval` (as `hpki-ca audit checkpoint`
/// does, through the registry at `registry_url`, recording each in
/// `files.records`) until `stop` turns true. A failure, of the registry or the
/// HSM, is logged and tried again; it never ends the process. A head that
/// already is a checkpoint is not signed again. `progress` is told how far a
/// long verification of the chain has got.
pub async fn run_periodic(
    hsm: hsm::Hsm,
    periodic: Periodic,
    mut stop: watch::Receiver<bool>,
    mut progress: impl FnMut(u64) + Send,
) {
    let Periodic { registry_url, files, interval, kit } = periodic;
    let mut wait = FIRST_CHECKPOINT_AFTER.min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let attempt = checkpoint_now(&hsm, &kit, &registry_url, &files, CHECKPOINTER_ACTOR, &mut progress);
        wait = match tokio::time::timeout(CHECKPOINT_ATTEMPT_TIMEOUT, attempt).await {
            Ok(Ok(CheckpointOutcome::Signed { sequence, signs, .. })) => {
                tracing::info!(sequence, signs, "audit checkpoint signed");
                interval
            }
            Ok(Ok(CheckpointOutcome::AlreadyAnchored { sequence })) => {
                tracing::debug!(sequence, "audit head is already a checkpoint");
                interval
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "automatic audit checkpoint failed; trying again");
                interval.min(RETRY_CHECKPOINT_AFTER)
            }
            Err(_) => {
                tracing::warn!(timeout = ?CHECKPOINT_ATTEMPT_TIMEOUT, "automatic audit checkpoint timed out; trying again");
                interval.min(RETRY_CHECKPOINT_AFTER)
            }
        };
    }
}
