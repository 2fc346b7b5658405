//! Prometheus metrics in the text exposition format, written by hand.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tls::metrics::{counter, gauge};

/// What one answer was, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerStatus {
    Good,
    Revoked,
    Unknown,
    Malformed,
    Unauthorized,
    TryLater,
    InternalError,
}

impl AnswerStatus {
    const ALL: [AnswerStatus; 7] = [
        AnswerStatus::Good,
        AnswerStatus::Revoked,
        AnswerStatus::Unknown,
        AnswerStatus::Malformed,
        AnswerStatus::Unauthorized,
        AnswerStatus::TryLater,
        AnswerStatus::InternalError,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AnswerStatus::Good => "good",
            AnswerStatus::Revoked => "revoked",
            AnswerStatus::Unknown => "unknown",
            AnswerStatus::Malformed => "malformed",
            AnswerStatus::Unauthorized => "unauthorized",
            AnswerStatus::TryLater => "trylater",
            AnswerStatus::InternalError => "internalerror",
        }
    }
}

/// Why an answer was tryLater (`ocsp_trylater_total{reason}`).
const TRY_LATER_REASONS: [&str; 5] =
    ["live_sign_rate", "client_live_sign_rate", "signatures_in_flight", "deadline", "unavailable"];

/// Upper bounds of the signing latency histogram, in seconds.
const SIGN_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Default)]
pub struct Metrics {
    responses: [AtomicU64; 7],
    try_later: [AtomicU64; TRY_LATER_REASONS.len()],
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    sign_buckets: [AtomicU64; SIGN_BUCKETS.len()],
    sign_count: AtomicU64,
    sign_micros: AtomicU64,
    pub sign_failures: AtomicU64,
    pub refresh_failures: AtomicU64,
    /// Requests answered tryLater because the registry or the HSM outlasted their deadline.
    pub deadline_exceeded: AtomicU64,
    /// Connections closed for not sending a request's headers in time (idle
    /// keep-alive ones included), and bodies too slow to arrive (408).
    pub read_timeouts: AtomicU64,
    /// Last feed sequence applied.
    pub feed_sequence: AtomicU64,
    /// Registry's last sequence (GetFeedPosition), polled.
    pub registry_sequence: AtomicU64,
    /// Unix milliseconds of the last feed event, 0 for none yet.
    pub feed_last_event_ms: AtomicU64,
    pub feed_connected: AtomicU64,
    pub feed_reconnects: AtomicU64,
    /// Cache refreshes done (see `cache_refresh`), failed attempts, and paths waiting.
    pub cache_refreshes: AtomicU64,
    pub cache_refresh_failures: AtomicU64,
    pub cache_refresh_pending: AtomicU64,
}

/// Gauges read at render time.
pub struct Gauges {
    pub cache_entries: usize,
    pub cached_responses: usize,
    pub inflight_signatures: usize,
    pub now_ms: u64,
}

impl Metrics {
    pub fn count(&self, status: AnswerStatus) {
        self.responses[status as usize].fetch_add(1, Relaxed);
    }

    pub fn responses(&self, status: AnswerStatus) -> u64 {
        self.responses[status as usize].load(Relaxed)
    }

    /// Counts a tryLater answer by its reason (other errors are not counted here).
    pub fn count_try_later(&self, e: &crate::OcspError) {
        use crate::error::RateLimit;
        use crate::OcspError as E;
        let reason = match e {
            E::RateLimited(RateLimit::Global) => 0,
            E::RateLimited(RateLimit::Client) => 1,
            E::Busy(_) => 2,
            E::DeadlineExceeded(_) => 3,
            E::Hsm(_) | E::Registry(_) => 4,
            _ => return,
        };
        self.try_later[reason].fetch_add(1, Relaxed);
    }

    /// tryLater answers counted for `reason` (a label of `ocsp_trylater_total`).
    pub fn try_later(&self, reason: &str) -> u64 {
        TRY_LATER_REASONS.iter().position(|r| *r == reason).map_or(0, |i| self.try_later[i].load(Relaxed))
    }

    pub fn observe_signing(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, le) in SIGN_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.sign_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.sign_count.fetch_add(1, Relaxed);
        self.sign_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(4096);
        let _ = self.write(&mut o, g);
        o
    }

    fn write(&self, o: &mut String, g: &Gauges) -> std::fmt::Result {
        writeln!(o, "# HELP ocsp_responses_total OCSP answers by certificate status or error status.")?;
        writeln!(o, "# TYPE ocsp_responses_total counter")?;
        for s in AnswerStatus::ALL {
            writeln!(o, "ocsp_responses_total{{status=\"{}\"}} {}", s.label(), self.responses(s))?;
        }
        writeln!(o, "# HELP ocsp_trylater_total tryLater answers by reason.")?;
        writeln!(o, "# TYPE ocsp_trylater_total counter")?;
        for (i, reason) in TRY_LATER_REASONS.iter().enumerate() {
            writeln!(o, "ocsp_trylater_total{{reason=\"{reason}\"}} {}", self.try_later[i].load(Relaxed))?;
        }
        counters(
            o,
            &[
                ("ocsp_cache_hits_total", "Answers served from a pre-signed response.", &self.cache_hits),
                ("ocsp_cache_misses_total", "Answers that needed a signature.", &self.cache_misses),
            ],
        )?;
        writeln!(o, "# HELP ocsp_signing_seconds Time to sign one response in the HSM.")?;
        writeln!(o, "# TYPE ocsp_signing_seconds histogram")?;
        for (i, le) in SIGN_BUCKETS.iter().enumerate() {
            writeln!(o, "ocsp_signing_seconds_bucket{{le=\"{le}\"}} {}", self.sign_buckets[i].load(Relaxed))?;
        }
        let count = self.sign_count.load(Relaxed);
        writeln!(o, "ocsp_signing_seconds_bucket{{le=\"+Inf\"}} {count}")?;
        writeln!(o, "ocsp_signing_seconds_sum {}", self.sign_micros.load(Relaxed) as f64 / 1e6)?;
        writeln!(o, "ocsp_signing_seconds_count {count}")?;
        counters(
            o,
            &[
                ("ocsp_signing_failures_total", "Signatures that failed.", &self.sign_failures),
                (
                    "ocsp_refresh_failures_total",
                    "Background re-signatures that failed (the old response is served until it expires).",
                    &self.refresh_failures,
                ),
                (
                    "ocsp_deadline_exceeded_total",
                    "Requests answered tryLater because the registry or the HSM outlasted the request deadline.",
                    &self.deadline_exceeded,
                ),
                (
                    "ocsp_read_timeouts_total",
                    "Connections closed for sending no complete request headers in time (idle keep-alive included), \
                     and request bodies too slow to arrive (408).",
                    &self.read_timeouts,
                ),
            ],
        )?;
        gauge(o, "ocsp_cache_entries", "Serials with a known status.", g.cache_entries as f64)?;
        gauge(o, "ocsp_cached_responses", "Pre-signed responses held.", g.cached_responses as f64)?;
        gauge(o, "ocsp_inflight_signatures", "Signatures in flight.", g.inflight_signatures as f64)?;
        let seen = self.feed_sequence.load(Relaxed);
        let head = self.registry_sequence.load(Relaxed);
        gauge(o, "ocsp_feed_sequence", "Last status-feed sequence applied.", seen as f64)?;
        gauge(o, "ocsp_feed_registry_sequence", "The registry's last feed sequence (polled).", head as f64)?;
        gauge(
            o,
            "ocsp_feed_lag_events",
            "Feed events the registry has that we have not applied.",
            head.saturating_sub(seen) as f64,
        )?;
        let last = self.feed_last_event_ms.load(Relaxed);
        let since = if last == 0 { -1.0 } else { g.now_ms.saturating_sub(last) as f64 / 1000.0 };
        gauge(o, "ocsp_feed_seconds_since_last_event", "Seconds since the last feed event (-1: none yet).", since)?;
        gauge(
            o,
            "ocsp_feed_connected",
            "1 while subscribed to the status feed.",
            self.feed_connected.load(Relaxed) as f64,
        )?;
        counters(
            o,
            &[
                ("ocsp_feed_reconnects_total", "Status-feed subscriptions started.", &self.feed_reconnects),
                (
                    "ocsp_cache_refreshes_total",
                    "Paths refreshed in the HTTP caches in front after a revocation.",
                    &self.cache_refreshes,
                ),
                (
                    "ocsp_cache_refresh_failures_total",
                    "Cache refresh attempts that failed (each is retried).",
                    &self.cache_refresh_failures,
                ),
            ],
        )?;
        gauge(
            o,
            "ocsp_cache_refreshes_pending",
            "Paths waiting to be refreshed: above 0 for long, a cache may serve a revoked certificate as good.",
            self.cache_refresh_pending.load(Relaxed) as f64,
        )?;
        Ok(())
    }
}

/// Counters written in the order given, each as [`counter`] writes one.
fn counters(o: &mut String, rows: &[(&str, &str, &AtomicU64)]) -> std::fmt::Result {
    for (name, help, value) in rows {
        counter(o, name, help, value.load(Relaxed))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_series() {
        let m = Metrics::default();
        m.count(AnswerStatus::Revoked);
        m.count(AnswerStatus::Revoked);
        m.observe_signing(Duration::from_micros(1500));
        m.feed_sequence.store(7, Relaxed);
        m.registry_sequence.store(10, Relaxed);
        let text = m.render(&Gauges { cache_entries: 3, cached_responses: 2, inflight_signatures: 0, now_ms: 5000 });
        for line in [
            "ocsp_responses_total{status=\"revoked\"} 2",
            "ocsp_responses_total{status=\"trylater\"} 0",
            "ocsp_signing_seconds_bucket{le=\"0.001\"} 0",
            "ocsp_signing_seconds_bucket{le=\"0.002\"} 1",
            "ocsp_signing_seconds_bucket{le=\"+Inf\"} 1",
            "ocsp_signing_seconds_count 1",
            "ocsp_feed_lag_events 3",
            "ocsp_feed_seconds_since_last_event -1",
            "ocsp_cache_entries 3",
            "ocsp_deadline_exceeded_total 0",
            "ocsp_read_timeouts_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
        }
    }
}
