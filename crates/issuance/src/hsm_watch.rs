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
            let pinged = {
                let hsm = hsm.clone();
                tokio::task::spawn_blocking(move || hsm.ping()).await
            };
            let up = matches!(pinged, Ok(Ok(())));
            if status.set(up) {
                if up {
                    tracing::info!(
                        token = hsm.token_label(),
                        "HSM reachable again; serving, resolving what the outage left"
                    );
                    health.set_serving::<IssuanceServer<IssuanceService>>().await;
                    recovery.spawn();
                } else {
                    let why = match pinged {
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("ping task: {e}"),
                        Ok(Ok(())) => String::new(),
                    };
                    tracing::error!(token = hsm.token_label(), error = %why, "HSM unreachable; not serving issuance");
                    health.set_not_serving::<IssuanceServer<IssuanceService>>().await;
                }
            }
            tokio::time::sleep(PING_EVERY).await;
        }
    });
}
