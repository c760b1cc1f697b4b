//! The replay cache: which (access key, nonce) pairs were already accepted.
//!
//! # Shape and bounds
//!
//! Accepted pairs are kept as 64-bit keyed hashes (SipHash-1-3 under a random per-process key) in
//! time buckets, one bucket per minute of arrival. A lookup probes every live bucket (at most 32 with the
//! defaults); an insert goes to the newest. A whole bucket is dropped once its newest possible entry is
//! older than the retention, so an entry is remembered for at least the retention (never evicted early)
//! and at most one bucket width longer; nothing is ever evicted one entry at a time, and no per-entry
//! expiry is stored.
//!
//! Memory: a bucket is a hash set of `u64` (8 bytes plus one control byte per slot, at a load factor
//! between 7/16 and 7/8), so an entry costs at most 21 bytes, about 12–16 on average, and the cache is
//! bounded by [`NonceCacheConfig::max_entries`] entries: with the default 40,000,000 that is at most
//! 840 MB, reached only when the daemon has accepted about 21,500 signed requests per second for the whole
//! 31-minute span the buckets cover (at 1,000 requests per second it holds 1.9 million entries, about
//! 30 MB). Per-key counters add a few dozen bytes per access key with recent traffic.
//!
//! False refusals: two different pairs collide when their 64-bit hashes are equal. With `n` entries held,
//! a new request is refused as a replay (`SignatureNonceUsed`) with probability `n / 2^64`, below 3e-12
//! for a full default cache; the SDKs sign a retry with a fresh nonce. The hash key is random and never
//! leaves the process, so a client cannot aim a collision at another client's nonces.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{MAX_CLOCK_SKEW, SignatureError};

/// Sizing of a [`NonceCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceCacheConfig {
    /// How long an accepted nonce is remembered at least. It must cover every moment at which the same
    /// signed request would still pass the clock-skew check: a request may be dated up to one skew window
    /// in the future and stays acceptable for one window after its date, hence the default of twice
    /// [`MAX_CLOCK_SKEW`] counted from the moment it was accepted.
    pub retention: TimeDelta,
    /// The width of one time bucket; entries are dropped a whole bucket at a time, so an entry may be
    /// remembered up to this much longer than `retention`.
    pub bucket: TimeDelta,
    /// The most nonces held at once across all access keys. When it is reached, new requests are refused
    /// (`ServiceUnavailableTemporary`) until old buckets expire; the cache never grows past it.
    pub max_entries: usize,
    /// The most nonces one access key may hold at once, so that one busy or hostile client exhausts its own
    /// quota (`Rejected.Throttling`) before it can fill the cache for everybody else. It must stay above
    /// what the per-key rate limit lets one key send over `retention + bucket`.
    pub max_entries_per_key: usize,
}

impl NonceCacheConfig {
    /// The default sizing with `max_entries` changed, and the per-key quota kept at a quarter of it.
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            max_entries,
            max_entries_per_key: (max_entries / 4).max(1),
            ..Self::default()
        }
    }
}

/// The default capacity; see the module documentation for what it sustains and costs.
pub const DEFAULT_MAX_NONCES: usize = 40_000_000;

impl Default for NonceCacheConfig {
    /// 40 million entries (at most 840 MB) sustain about 21,500 signed requests per second across all
    /// keys for the whole window; one key may use a quarter of that, about 5,000 per second, well above
    /// the default per-key rate limit of 200 per second.
    fn default() -> Self {
        Self {
            retention: MAX_CLOCK_SKEW * 2,
            bucket: TimeDelta::minutes(1),
            max_entries: DEFAULT_MAX_NONCES,
            max_entries_per_key: DEFAULT_MAX_NONCES / 4,
        }
    }
}

/// A bounded, time-bucketed replay cache shared by all request handlers.
///
/// Only requests whose signature has already been verified, whose key is enabled and which got a
/// rate-limit token should be inserted; then only working access-key holders can consume capacity, and
/// [`NonceCacheConfig::max_entries_per_key`] bounds each of them.
pub struct NonceCache {
    config: NonceCacheConfig,
    /// The SipHash key of every fingerprint, random per process.
    hasher: RandomState,
    state: Mutex<State>,
}

/// The mutable part of the cache, behind one mutex. A check is one hash probe per live bucket and an
/// insert one more; dropping a bucket frees it whole.
struct State {
    /// Live buckets, oldest first. Their `index` values increase from front to back.
    buckets: VecDeque<Bucket>,
    /// Entries across all live buckets.
    total: usize,
    /// Entries per access key (by key hash) across all live buckets. A key whose count falls to zero is
    /// removed, so this is bounded by the number of keys with recent traffic.
    per_key: HashMap<u64, usize>,
}

/// The pairs accepted during one bucket width.
struct Bucket {
    /// `floor(arrival / bucket width)`; the bucket covers `[index * width, (index + 1) * width)`.
    index: i64,
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
    /// How many of `seen` each key contributed, to return to `State::per_key` when the bucket is dropped.
    per_key: HashMap<u64, usize>,
}

/// The fingerprints are already uniformly distributed keyed hashes; hashing them again would only cost
/// time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashSet<u64>`; fold anything else in so it stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl NonceCache {
    pub fn new(config: NonceCacheConfig) -> Self {
        Self {
            config,
            hasher: RandomState::new(),
            state: Mutex::new(State {
                buckets: VecDeque::new(),
                total: 0,
                per_key: HashMap::new(),
            }),
        }
    }

    pub fn config(&self) -> NonceCacheConfig {
        self.config
    }

    /// Records that `access_key_id` used `nonce` at `now`. Fails with `NonceReused` if that pair is already
    /// remembered, and with `NonceQuotaExceeded` or `NonceCacheFull` (recording nothing) when a size cap is
    /// reached. Expired buckets are dropped first, so the caps only bite under sustained load.
    pub fn check_and_insert(
        &self,
        access_key_id: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        // Tuples of `str` hash with a terminator after each, so ("ab", "c") and ("a", "bc") differ.
        let key = self.hasher.hash_one(("key", access_key_id));
        let pair = self.hasher.hash_one(("pair", access_key_id, nonce));
        let index = self.bucket_index(now);
        let mut state = self.lock();
        state.evict(self.expired_before(now));
        if state.buckets.iter().any(|b| b.seen.contains(&pair)) {
            return Err(SignatureError::NonceReused);
        }
        if state.total >= self.config.max_entries {
            return Err(SignatureError::NonceCacheFull);
        }
        let held = state.per_key.get(&key).copied().unwrap_or(0);
        if held >= self.config.max_entries_per_key {
            return Err(SignatureError::NonceQuotaExceeded);
        }
        // A clock that stepped back files the entry under the newest bucket, which lives at least as long.
        if state.buckets.back().is_none_or(|b| b.index < index) {
            state.buckets.push_back(Bucket {
                index,
                seen: HashSet::default(),
                per_key: HashMap::new(),
            });
        }
        let Some(bucket) = state.buckets.back_mut() else {
            return Err(SignatureError::NonceCacheFull);
        };
        bucket.seen.insert(pair);
        *bucket.per_key.entry(key).or_insert(0) += 1;
        state.total += 1;
        state.per_key.insert(key, held + 1);
        Ok(())
    }

    /// Drops every bucket that has expired by `now`. [`NonceCache::check_and_insert`] does this itself; a
    /// periodic call only returns memory sooner on an idle server.
    pub fn evict_expired(&self, now: DateTime<Utc>) {
        let before = self.expired_before(now);
        self.lock().evict(before);
    }

    /// How many nonces are currently remembered.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the hash tables of the live buckets have allocated (an estimate from their capacity, for
    /// metrics and for checking the documented bound).
    pub fn allocated_bytes(&self) -> usize {
        let state = self.lock();
        state
            .buckets
            .iter()
            .map(|b| table_bytes(b.seen.capacity(), 8) + table_bytes(b.per_key.capacity(), 16))
            .sum::<usize>()
            + table_bytes(state.per_key.capacity(), 16)
    }

    fn width_ms(&self) -> i64 {
        self.config.bucket.num_milliseconds().max(1)
    }

    fn bucket_index(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp_millis().div_euclid(self.width_ms())
    }

    /// Buckets with an index below this hold only entries older than the retention at `now`: bucket `i`'s
    /// newest entry arrived before `(i + 1) * width`, so it may go once `(i + 1) * width + retention <= now`.
    fn expired_before(&self, now: DateTime<Utc>) -> i64 {
        let horizon = now.timestamp_millis() - self.config.retention.num_milliseconds();
        horizon.div_euclid(self.width_ms())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation leaves the state consistent before anything that could panic, so a poisoned lock
        // is used rather than turning every later request into a panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// hashbrown's allocation for a table with this capacity: one `slot`-sized entry and one control byte per
/// slot, the slot count a power of two at least 8/7 of the capacity, plus a group of trailing control bytes.
fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let slots = (capacity.saturating_mul(8) / 7).max(4).next_power_of_two();
    slots * (slot + 1) + 16
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(NonceCacheConfig::default())
    }
}

impl fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceCache")
            .field("config", &self.config)
            .field("len", &self.len())
            .finish()
    }
}

impl State {
    fn evict(&mut self, before_index: i64) {
        while self.buckets.front().is_some_and(|b| b.index < before_index) {
            let Some(bucket) = self.buckets.pop_front() else {
                break;
            };
            self.total -= bucket.seen.len();
            for (key, n) in bucket.per_key {
                if let Some(count) = self.per_key.get_mut(&key) {
                    *count = count.saturating_sub(n);
                    if *count == 0 {
                        self.per_key.remove(&key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        crate::parse_timestamp("2024-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn rejects_reuse_within_retention_and_forgets_strictly_after() {
        let cache = NonceCache::default();
        let now = t0() + TimeDelta::seconds(59);
        cache.check_and_insert("ak1", "n1", now).unwrap();
        assert_eq!(
            cache.check_and_insert("ak1", "n1", now),
            Err(SignatureError::NonceReused)
        );
        // The same nonce from another key is a different request.
        cache.check_and_insert("ak2", "n1", now).unwrap();
        // Never forgotten before the retention has passed, whatever the bucket boundaries.
        for late in [
            now + MAX_CLOCK_SKEW * 2 - TimeDelta::milliseconds(1),
            now + MAX_CLOCK_SKEW * 2,
        ] {
            assert_eq!(
                cache.check_and_insert("ak1", "n1", late),
                Err(SignatureError::NonceReused)
            );
        }
        // Forgotten at most one bucket width after it.
        let later = now + MAX_CLOCK_SKEW * 2 + TimeDelta::minutes(1);
        cache.check_and_insert("ak1", "n1", later).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_entry_at_the_start_of_a_bucket_lives_the_whole_retention() {
        let cache = NonceCache::default();
        let start = t0();
        cache.check_and_insert("k", "n", start).unwrap();
        let edge = start + MAX_CLOCK_SKEW * 2 - TimeDelta::milliseconds(1);
        assert_eq!(
            cache.check_and_insert("k", "n", edge),
            Err(SignatureError::NonceReused)
        );
    }

    #[test]
    fn key_and_nonce_boundaries_do_not_alias() {
        let cache = NonceCache::default();
        cache.check_and_insert("ab", "c", t0()).unwrap();
        cache.check_and_insert("a", "bc", t0()).unwrap();
    }

    #[test]
    fn caps_refuse_instead_of_growing() {
        let config = NonceCacheConfig {
            retention: TimeDelta::minutes(30),
            bucket: TimeDelta::minutes(1),
            max_entries: 4,
            max_entries_per_key: 3,
        };
        let cache = NonceCache::new(config);
        let now = t0();
        for n in ["a", "b", "c"] {
            cache.check_and_insert("busy", n, now).unwrap();
        }
        assert_eq!(
            cache.check_and_insert("busy", "d", now),
            Err(SignatureError::NonceQuotaExceeded)
        );
        cache.check_and_insert("quiet", "a", now).unwrap();
        assert_eq!(
            cache.check_and_insert("other", "a", now),
            Err(SignatureError::NonceCacheFull)
        );
        assert_eq!(cache.len(), 4);
        // A refused request records nothing, and capacity comes back once buckets expire.
        let later = now + TimeDelta::minutes(31);
        cache.check_and_insert("busy", "d", later).unwrap();
        assert_eq!(cache.len(), 1);
        cache.evict_expired(later + TimeDelta::minutes(31));
        assert!(cache.is_empty());
        assert_eq!(cache.lock().per_key.len(), 0, "per-key counters are returned");
    }

    #[test]
    fn a_clock_step_back_keeps_the_bounds() {
        let config = NonceCacheConfig {
            retention: TimeDelta::minutes(30),
            bucket: TimeDelta::minutes(1),
            max_entries: 2,
            max_entries_per_key: 2,
        };
        let cache = NonceCache::new(config);
        let now = t0();
        cache.check_and_insert("k", "1", now).unwrap();
        cache
            .check_and_insert("k", "2", now - TimeDelta::hours(1))
            .unwrap();
        assert!(cache.check_and_insert("k", "3", now).is_err());
        cache
            .check_and_insert("k", "3", now + TimeDelta::hours(1))
            .unwrap();
        assert_eq!(cache.len(), 1);
    }

    /// The default sizing holds what the default per-key rate limit (200 requests per second) lets one key
    /// send over the whole span an entry may live.
    #[test]
    fn the_per_key_quota_is_above_the_default_rate_limit() {
        let c = NonceCacheConfig::default();
        let span = (c.retention + c.bucket).num_seconds() as usize;
        assert!(c.max_entries_per_key >= 200 * span, "{c:?}");
    }

    /// Sustained traffic for longer than the window: the cache stays at about one window of entries,
    /// within the documented bytes per entry, and never refuses an honest request.
    #[test]
    fn sustained_traffic_stays_bounded() {
        let cache = NonceCache::new(NonceCacheConfig::with_max_entries(1_000_000));
        let per_second = 200;
        let mut now = t0();
        let mut peak = 0;
        for s in 0..2400 {
            for i in 0..per_second {
                cache
                    .check_and_insert(["a", "b", "c", "d"][i % 4], &format!("{s}-{i}"), now)
                    .unwrap();
            }
            now += TimeDelta::seconds(1);
            peak = peak.max(cache.len());
        }
        assert!(peak <= 31 * 60 * per_second, "{peak}");
        assert!(peak >= 30 * 60 * per_second, "{peak}");
        assert!(
            cache.allocated_bytes() <= 21 * peak + 64 * 1024,
            "{}",
            cache.allocated_bytes()
        );
    }
}
