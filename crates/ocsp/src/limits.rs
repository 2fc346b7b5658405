//! Bounds on signing: token buckets for live signatures (nonce-echoing ones,
//! and every fresh signature a client causes, over all clients and per client
//! address). (The cap on signatures in flight is a plain `tokio::sync::Semaphore`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// `rate` tokens per second, holding at most `burst` (by default one second's worth).
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate_per_second: u32) -> TokenBucket {
        TokenBucket::with_burst(rate_per_second, rate_per_second)
    }

    /// `rate_per_second`, holding at most `burst` tokens (at least one); starts full.
    pub fn with_burst(rate_per_second: u32, burst: u32) -> TokenBucket {
        let rate = f64::from(rate_per_second);
        let burst = f64::from(burst.max(1));
        TokenBucket { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes a token if one is left.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        take(&mut s, now, self.rate, self.burst)
    }
}

/// One bucket's step, the global one's and each client's alike: refills
/// `(tokens, last refill)` for the time since, up to `burst`, then takes a
/// token if there is a whole one.
fn take(bucket: &mut (f64, Instant), now: Instant, rate: f64, burst: f64) -> bool {
    let elapsed = now.saturating_duration_since(bucket.1).as_secs_f64();
    bucket.0 = (bucket.0 + elapsed * rate).min(burst);
    bucket.1 = now;
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        true
    } else {
        false
    }
}

/// Client addresses remembered at most; see [`ClientBuckets`].
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

/// A token bucket per client address, `rate` per second and `burst` each.
/// At most `max_clients` addresses are remembered: when full, addresses whose
/// bucket has refilled (as good as new) are forgotten; if that frees nothing,
/// a new address is let through here and only the global bucket bounds it.
pub struct ClientBuckets {
    rate: f64,
    burst: f64,
    max_clients: usize,
    clients: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl ClientBuckets {
    pub fn new(rate_per_second: u32, burst: u32, max_clients: usize) -> ClientBuckets {
        ClientBuckets {
            rate: f64::from(rate_per_second),
            burst: f64::from(burst.max(1)),
            max_clients: max_clients.max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `client`'s bucket if one is left.
    pub fn try_take(&self, client: IpAddr) -> bool {
        self.try_take_at(client, Instant::now())
    }

    fn try_take_at(&self, client: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if !clients.contains_key(&client) && clients.len() >= self.max_clients {
            let refill = Duration::from_secs_f64(self.burst / self.rate);
            clients.retain(|_, (_, last)| now.saturating_duration_since(*last) < refill);
            if clients.len() >= self.max_clients {
                return true;
            }
        }
        let s = clients.entry(client).or_insert((self.burst, now));
        take(s, now, self.rate, self.burst)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_rate_then_refills() {
        let b = TokenBucket::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.try_take_at(t0)));
        assert!(!b.try_take_at(t0));
        assert!(!b.try_take_at(t0 + Duration::from_millis(100)));
        assert!(b.try_take_at(t0 + Duration::from_millis(400)));
        // Never more than one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.try_take_at(later)).count(), 3);
        assert!(!TokenBucket::new(0).try_take());
    }

    #[test]
    fn a_bucket_with_a_burst_holds_more_than_a_second() {
        let b = TokenBucket::with_burst(2, 5);
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| b.try_take_at(t0)).count(), 5);
        assert!(b.try_take_at(t0 + Duration::from_millis(500)), "refills at 2 per second");
        assert!(!b.try_take_at(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn each_client_has_its_own_bucket_and_idle_ones_are_forgotten() {
        let b = ClientBuckets::new(1, 2, 2);
        let (a, c, d): (IpAddr, IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!((0..5).filter(|_| b.try_take_at(a, t0)).count(), 2, "a's burst");
        assert!(b.try_take_at(c, t0), "c is not held back by a");
        assert!(b.try_take_at(c, t0));
        assert!(!b.try_take_at(c, t0));
        // Full table of active clients: a third one is left to the global bucket.
        assert!(b.try_take_at(d, t0));
        assert_eq!(b.tracked(), 2);
        // Once the others have refilled they are forgotten and d is tracked.
        let later = t0 + Duration::from_secs(3);
        assert_eq!((0..5).filter(|_| b.try_take_at(d, later)).count(), 2);
        assert_eq!(b.tracked(), 1);
    }
}
