//! Per-access-key token buckets. Each key may send `burst` requests at once and `per_second` on average;
//! past that it gets `Rejected.Throttling`. Time is an argument so the arithmetic is testable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The bucket size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 200.0,
            burst: 400.0,
        }
    }
}

/// The buckets, keyed by access key id. Only authenticated key ids enter the map, so its size is bounded
/// by the number of access keys in the store.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub fn try_acquire(&self, key: &str, now: Instant) -> bool {
        let Ok(mut map) = self.buckets.lock() else {
            return false;
        };
        let (tokens, last) = map.entry(key.to_owned()).or_insert((self.limit.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
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
    fn bucket_empties_and_refills() {
        let rl = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 2.0,
        });
        let t = rotd_core::Clock::system().instant();
        assert!(rl.try_acquire("a", t));
        assert!(rl.try_acquire("a", t));
        assert!(!rl.try_acquire("a", t));
        assert!(rl.try_acquire("b", t));
        assert!(rl.try_acquire("a", t + Duration::from_secs(1)));
    }
}
