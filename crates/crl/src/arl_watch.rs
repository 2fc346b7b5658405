//! Watches the root's ARL that the distribution point serves. The root signs
//! rarely (`hpki-ca arl`, services stopped), so nothing here re-signs it; once
//! less than a quarter of its validity is left the CRL service says so, loudly
//! and in gRPC health (`hpki.crl.v1.Arl`), well before relying parties that
//! check the whole chain start failing on it.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::published::CrlStore;

/// The gRPC health service name that reports the ARL's freshness.
pub const HEALTH_SERVICE: &str = "hpki.crl.v1.Arl";

/// What is left of an ARL's validity at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// More than a quarter of its validity left.
    Fresh { seconds_left: i64 },
    /// A quarter or less left: re-sign it now.
    Renew { seconds_left: i64 },
    /// Past nextUpdate (or none): relying parties that check the chain fail.
    Expired,
}

pub fn freshness(this_update: OffsetDateTime, next_update: OffsetDateTime, now: OffsetDateTime) -> Freshness {
    let left = (next_update - now).whole_seconds();
    let lifetime = (next_update - this_update).whole_seconds();
    if left <= 0 {
        Freshness::Expired
    } else if left.saturating_mul(4) <= lifetime {
        Freshness::Renew { seconds_left: left }
    } else {
        Freshness::Fresh { seconds_left: left }
    }
}

/// Looks at the ARL served at `arl_url` now and `every` after (the schedule's
/// check tick, a minute), until aborted: logs and sets health by its freshness.
pub fn spawn(
    store: Arc<CrlStore>,
    arl_url: String,
    reporter: HealthReporter,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let path = crate::published::url_path(&arl_url).ok();
        loop {
            // `get` re-reads the file when `hpki-ca arl` replaced it on disk.
            let served = path.as_deref().and_then(|p| store.get(p).ok().flatten());
            // The store parsed thisUpdate and nextUpdate when it read the file.
            let state = served.and_then(|f| Some((f.this_update, f.next_update?)));
            let status = match state.map(|(this, next)| (next, freshness(this, next, OffsetDateTime::now_utc()))) {
                Some((_, Freshness::Fresh { .. })) => ServingStatus::Serving,
                Some((next, Freshness::Renew { seconds_left })) => {
                    tracing::error!(
                        url = %arl_url, %next, days_left = seconds_left / 86_400,
                        "the root's ARL has a quarter or less of its validity left: re-sign it with hpki-ca arl"
                    );
                    ServingStatus::NotServing
                }
                Some((next, Freshness::Expired)) => {
                    tracing::error!(url = %arl_url, %next, "the root's ARL has expired: chain checks fail; run hpki-ca arl");
                    ServingStatus::NotServing
                }
                None => {
                    tracing::error!(url = %arl_url, "no readable ARL is served: run the ceremony or hpki-ca arl");
                    ServingStatus::NotServing
                }
            };
            reporter.set_service_status(HEALTH_SERVICE, status).await;
            tokio::time::sleep(every).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration as D;

    #[test]
    fn a_quarter_left_asks_for_renewal_and_past_next_update_is_expired() {
        let this = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let next = this + D::days(100);
        assert_eq!(freshness(this, next, this + D::days(1)), Freshness::Fresh { seconds_left: 99 * 86_400 });
        assert!(matches!(freshness(this, next, this + D::days(74)), Freshness::Fresh { .. }));
        assert_eq!(freshness(this, next, this + D::days(75)), Freshness::Renew { seconds_left: 25 * 86_400 });
        assert!(matches!(freshness(this, next, this + D::days(99)), Freshness::Renew { .. }));
        assert_eq!(freshness(this, next, next), Freshness::Expired);
        assert_eq!(freshness(this, next, next + D::days(3)), Freshness::Expired);
    }
}
