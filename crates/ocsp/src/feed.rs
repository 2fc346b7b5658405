//! Following the registry's status feed.
//!
//! Each replica subscribes on its own (`WatchStatus` from the last sequence it
//! applied) and applies every change to its cache: a status change makes the
//! cached response unservable at once and is re-signed in the background, so
//! the next request is a hit again.
//!
//! Restarts: the cache lives in memory, so a fresh process replays the feed
//! from sequence 0. That warms the status of every certificate ever issued
//! (cheap: no signing, responses are signed when first asked for) and is the
//! only way to know every revocation without a persisted cache. Within a
//! process, a broken stream resumes from the last applied sequence.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use tonic::transport::Channel;

use crate::cache_refresh::CacheRefresh;
use crate::responder::Responder;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) fn now_ms_pub() -> u64 {
    now_ms()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Applies one change and schedules re-signing of what it made stale.
pub fn apply(responder: &Arc<Responder>, change: &reg::StatusChange) {
    let m = responder.metrics();
    if change.status == reg::CertificateStatus::Revoked as i32 && responder.is_own_responder_serial(&change.serial) {
        tracing::warn!(serial = %change.serial, "our responder certificate was revoked");
        responder.want_rollover();
    }
    if let Some((key, algs)) = responder.apply_change(change) {
        for alg in algs {
            let r = responder.clone();
            tokio::spawn(async move {
                if let Err(e) = r.resign(key, alg).await {
                    // The next request signs it instead (or gets tryLater): the old status is never served.
                    tracing::warn!(serial = %key.hex(), error = %e, "re-signing after a status change failed");
                }
            });
        }
    }
    m.feed_sequence.fetch_max(change.sequence, Relaxed);
    m.feed_last_event_ms.store(now_ms(), Relaxed);
}

/// Follows the feed forever (until the task is aborted), reconnecting with backoff.
pub async fn follow(responder: Arc<Responder>, client: RegistryClient<Channel>) {
    follow_and_refresh(responder, client, None).await
}

/// [`follow`], refreshing the HTTP caches in front after each revocation is applied.
pub async fn follow_and_refresh(
    responder: Arc<Responder>,
    mut client: RegistryClient<Channel>,
    refresh: Option<CacheRefresh>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut after = 0u64;
    loop {
        match client.watch_status(reg::WatchStatusRequest { after_sequence: after }).await {
            Ok(resp) => {
                let m = responder.metrics();
                m.feed_connected.store(1, Relaxed);
                m.feed_reconnects.fetch_add(1, Relaxed);
                tracing::info!(after, "following the status feed");
                let mut stream = resp.into_inner();
                let mut last = after;
                let applied = &mut after;
                loop {
                    match stream.message().await {
                        Ok(Some(change)) => {
                            if change.sequence <= last {
                                continue; // a replay we already applied
                            }
                            if change.sequence != last + 1 {
                                tracing::warn!(expected = last + 1, got = change.sequence, "gap in the status feed");
                            }
                            apply(&responder, &change);
                            if let Some(r) = &refresh {
                                r.on_change(&responder, &change);
                            }
                            last = change.sequence;
                            *applied = last;
                            backoff = MIN_BACKOFF;
                        }
                        Ok(None) => {
                            tracing::warn!("the status feed ended; resubscribing");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the status feed broke; resubscribing");
                            break;
                        }
                    }
                }
                m.feed_connected.store(0, Relaxed);
            }
            Err(e) if e.code() == tonic::Code::OutOfRange => {
                // The registry is behind us: its database was replaced. Statuses only
                // move forward in our cache, so replaying from the start is safe.
                tracing::error!(after, error = %e, "the registry's feed is behind ours; replaying it from the start");
                after = 0;
                responder.metrics().feed_sequence.store(0, Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to the status feed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Polls the registry's feed position for the lag metric.
pub async fn poll_position(responder: Arc<Responder>, mut client: RegistryClient<Channel>, every: Duration) {
    loop {
        match client.get_feed_position(reg::FeedPositionRequest {}).await {
            Ok(p) => responder.metrics().registry_sequence.store(p.into_inner().last_sequence, Relaxed),
            Err(e) => tracing::debug!(error = %e, "GetFeedPosition failed"),
        }
        tokio::time::sleep(every).await;
    }
}
