//! Token buckets: one per access key ([`RateLimiter`], taken after the signature is checked) and one per
//! source address ([`SourceLimiter`], taken before anything else, so a client without a key cannot make
//! rotd look keys up, decrypt their secrets or verify signatures faster than its budget). Each bucket
//! holds `burst` tokens and refills at `per_second`; an empty one answers `Rejected.Throttling`. Time is an
//! argument so the arithmetic is testable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

impl RateLimit {
    /// The default budget of one source address: 100 requests/s, bursts of 200.
    pub const PER_SOURCE: Self = Self {
        per_second: 100.0,
        burst: 200.0,
    };

    /// How long an untouched bucket takes to refill completely; past that it is indistinguishable from a
    /// new one and can be forgotten.
    fn refill_time(&self) -> Duration {
        Duration::try_from_secs_f64(self.burst / self.per_second.max(f64::MIN_POSITIVE))
            .unwrap_or(Duration::MAX)
    }
}

/// One bucket: tokens left at `last`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            last: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.last = now.max(self.last);
    }

    fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now` (it has been idle for a whole refill).
    fn idle(&self, limit: RateLimit, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= limit.refill_time()
    }
}

/// The buckets, keyed by access key id. Only authenticated key ids enter the map, so its size is bounded
/// by the number of access keys in the store.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
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
        map.entry(key.to_owned())
            .or_insert_with(|| Bucket::full(self.limit, now))
            .take(self.limit, now)
    }
}

/// The most source addresses tracked at once (about 64 bytes each, so a few MiB at most).
pub const MAX_SOURCES: usize = 65_536;

/// The source budget's key: an IPv4 address, or an IPv6 address's /64 (one host or one customer network
/// usually holds a whole /64, so per-address buckets would give it 2^64 budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    V6Prefix(u64),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match rotd_core::canonical_ip(ip) {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Per-source-address buckets in bounded memory.
///
/// The map holds at most `max_sources` buckets. A bucket idle for a whole refill is full again, so
/// forgetting it changes nothing; when the map is full, those are swept out (at most once per second, so
/// a flood of new addresses does not make every request scan the map). If every tracked source is active
/// (more than `max_sources` addresses sent requests within one refill time), new addresses share one
/// overflow bucket with the same budget: together they get what one source gets, while the sources
/// already tracked keep their own budgets.
#[derive(Debug)]
pub struct SourceLimiter {
    limit: RateLimit,
    max_sources: usize,
    state: Mutex<SourceState>,
}

#[derive(Debug)]
struct SourceState {
    buckets: HashMap<SourceKey, Bucket>,
    /// Shared by the addresses that found the map full of active sources.
    overflow: Option<Bucket>,
    /// When the map was last swept for idle buckets.
    last_sweep: Option<Instant>,
}

impl SourceLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self::with_capacity(limit, MAX_SOURCES)
    }

    /// A limiter tracking at most `max_sources` addresses (at least one).
    pub fn with_capacity(limit: RateLimit, max_sources: usize) -> Self {
        Self {
            limit,
            max_sources: max_sources.max(1),
            state: Mutex::new(SourceState {
                buckets: HashMap::new(),
                overflow: None,
                last_sweep: None,
            }),
        }
    }

    /// Takes one token for `source` at `now`; false when its budget is spent.
    pub fn try_acquire(&self, source: IpAddr, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let limit = self.limit;
        let key = SourceKey::of(source);
        if let Some(b) = state.buckets.get_mut(&key) {
            return b.take(limit, now);
        }
        if state.buckets.len() >= self.max_sources {
            let due = state
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due {
                state.buckets.retain(|_, b| !b.idle(limit, now));
                state.last_sweep = Some(now);
            }
        }
        if state.buckets.len() >= self.max_sources {
            return state
                .overflow
                .get_or_insert_with(|| Bucket::full(limit, now))
                .take(limit, now);
        }
        let mut bucket = Bucket::full(limit, now);
        let ok = bucket.take(limit, now);
        state.buckets.insert(key, bucket);
        ok
    }

    /// How many sources have a bucket now.
    pub fn tracked(&self) -> usize {
        self.state.lock().map_or(0, |s| s.buckets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const TWO: RateLimit = RateLimit {
        per_second: 1.0,
        burst: 2.0,
    };

    #[test]
    fn sources_have_their_own_budgets_and_v6_counts_by_slash_64() {
        let sl = SourceLimiter::new(TWO);
        let t = rotd_core::Clock::system().instant();
        assert!(sl.try_acquire(ip("192.0.2.1"), t));
        assert!(sl.try_acquire(ip("192.0.2.1"), t));
        assert!(!sl.try_acquire(ip("192.0.2.1"), t));
        assert!(
            !sl.try_acquire(ip("::ffff:192.0.2.1"), t),
            "mapped v4 is the same source"
        );
        assert!(sl.try_acquire(ip("192.0.2.2"), t));
        assert!(sl.try_acquire(ip("2001:db8:0:1::1"), t));
        assert!(sl.try_acquire(ip("2001:db8:0:1::2"), t));
        assert!(!sl.try_acquire(ip("2001:db8:0:1:ffff::9"), t), "same /64");
        assert!(sl.try_acquire(ip("2001:db8:0:2::1"), t), "another /64");
        assert!(sl.try_acquire(ip("192.0.2.1"), t + Duration::from_secs(1)));
    }

    #[test]
    fn the_map_is_bounded_idle_sources_are_forgotten_and_new_ones_share_an_overflow_bucket() {
        let sl = SourceLimiter::with_capacity(TWO, 3);
        let t = rotd_core::Clock::system().instant();
        for i in 1..=3 {
            assert!(sl.try_acquire(ip(&format!("198.51.100.{i}")), t));
        }
        assert_eq!(sl.tracked(), 3);
        // The map is full of active sources: newcomers share one bucket of the same size.
        assert!(sl.try_acquire(ip("203.0.113.1"), t));
        assert!(sl.try_acquire(ip("203.0.113.2"), t));
        assert!(
            !sl.try_acquire(ip("203.0.113.3"), t),
            "the overflow bucket is spent"
        );
        assert_eq!(sl.tracked(), 3);
        // A tracked source keeps its own budget meanwhile.
        assert!(sl.try_acquire(ip("198.51.100.1"), t));
        // After a whole refill time the idle sources are swept and a newcomer gets its own bucket.
        let later = t + Duration::from_secs(3);
        assert!(sl.try_acquire(ip("203.0.113.3"), later));
        assert_eq!(sl.tracked(), 1);
    }
}
