//! Bounds on signing: a token bucket for live (nonce-echoing) signatures.
//! (The cap on signatures in flight is a plain `tokio::sync::Semaphore`.)

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// `rate` tokens per second, holding at most `rate` (one second's burst).
pub struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate_per_second: u32) -> TokenBucket {
        let rate = f64::from(rate_per_second);
        TokenBucket { rate, state: Mutex::new((rate, Instant::now())) }
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
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.rate);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
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
}
