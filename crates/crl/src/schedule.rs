//! The schedule: at start and then every minute, publish whatever is due
//! (missing or old full CRLs, stale deltas, publications that failed); after a
//! failure retry from a second on, backing off to `retry`.

use std::sync::Arc;
use std::time::Duration;

use crate::publisher::Publisher;
use crate::source::RevocationSource;
use crate::timefmt;

/// How often the schedule looks, and how soon it retries after a failure.
#[derive(Debug, Clone, Copy)]
pub struct Ticks {
    pub check: Duration,
    pub retry: Duration,
}

impl Default for Ticks {
    fn default() -> Self {
        Ticks { check: Duration::from_secs(60), retry: Duration::from_secs(15) }
    }
}

/// Publishes what is due until `stop` changes (or its sender is dropped).
pub async fn run<S: RevocationSource>(
    publisher: Arc<Publisher<S>>,
    ticks: Ticks,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let first_retry = ticks.retry.min(Duration::from_secs(1));
    let mut backoff = first_retry;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut failed = false;
        if let Err(e) = publisher.refresh_layouts().await {
            tracing::warn!(error = %e, "cannot read the recorded CRL scopes; will retry");
            failed = true;
        }
        for (issuer, kind) in publisher.due(timefmt::now()) {
            match publisher.publish(Some(issuer), Some(kind)).await {
                Ok(crls) => {
                    tracing::info!(issuer = issuer.name(), ?kind, count = crls.len(), "scheduled CRL publication")
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(issuer = issuer.name(), ?kind, error = %e, "scheduled CRL publication failed; will retry");
                }
            }
        }
        let wait = if failed {
            let wait = backoff;
            backoff = (backoff * 2).min(ticks.retry);
            wait
        } else {
            backoff = first_retry;
            ticks.check
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A publication asked for by a caller failed: it is owed now.
            _ = publisher.owed() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}
