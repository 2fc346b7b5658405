//! Watches the HSM. While it cannot be reached the service reports NOT_SERVING
//! in gRPC health and refuses new issuance at once (before anything is recorded);
//! when it comes back, a recovery pass signs and stores what requests caught by the
//! outage left recorded but unsigned (PRECERT), so no client has to retry for that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::issuance::v1::issuance_server::IssuanceServer;
use tonic_health::server::HealthReporter;

use crate::recovery::Recovery;
use crate::IssuanceService;

/// How often the token is pinged; also bounds how long a returned HSM goes unnoticed.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);

/// A failed ping is confirmed by another this much later (past the HSM's 200 ms
/// reconnect gap) before the service stops serving.
const CONFIRM_AFTER: Duration = Duration::from_millis(250);

/// Pings the token off the async workers.
pub(crate) async fn ping(hsm: &hsm::Hsm) -> Result<(), hsm::HsmError> {
    let hsm = hsm.clone();
    tokio::task::spawn_blocking(move || hsm.ping())
        .await
        .unwrap_or_else(|e| Err(hsm::HsmError::Unavailable(format!("ping task: {e}"))))
}

/// Whether the last ping reached the HSM; shared by the watcher and the service.
#[derive(Debug, Clone)]
pub(crate) struct HsmStatus(Arc<AtomicBool>);

impl HsmStatus {
    pub(crate) fn new() -> HsmStatus {
        HsmStatus(Arc::new(AtomicBool::new(true)))
    }

    pub(crate) fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Records the ping's outcome; true if it changed.
    fn set(&self, up: bool) -> bool {
        self.0.swap(up, Ordering::SeqCst) != up
    }
}

/// Runs until the process ends.
pub(crate) fn spawn(hsm: hsm::Hsm, status: HsmStatus, health: HealthReporter, recovery: Recovery) {
    tokio::spawn(async move {
        loop {
            let mut pinged = ping(&hsm).await;
            if pinged.is_err() && status.is_up() {
                // One failed ping is not yet an outage: ask again past the reconnect gap.
                tokio::time::sleep(CONFIRM_AFTER).await;
                pinged = ping(&hsm).await;
            }
            let up = pinged.is_ok();
            if status.set(up) {
                if up {
                    tracing::info!(
                        token = hsm.token_label(),
                        "HSM reachable again; serving, resolving what the outage left"
                    );
                    health.set_serving::<IssuanceServer<IssuanceService>>().await;
                    recovery.spawn();
                } else {
                    let why = pinged.err().map(|e| e.to_string()).unwrap_or_default();
                    tracing::error!(token = hsm.token_label(), error = %why, "HSM unreachable; not serving issuance");
                    health.set_not_serving::<IssuanceServer<IssuanceService>>().await;
                }
            }
            tokio::time::sleep(PING_EVERY).await;
        }
    });
}
