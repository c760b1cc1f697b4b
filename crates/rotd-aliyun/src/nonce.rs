//! The replay cache: which (access key, nonce) pairs were already accepted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use aws_lc_rs::digest;
use chrono::{DateTime, TimeDelta, Utc};

use crate::{MAX_CLOCK_SKEW, SignatureError};

/// Sizing of a [`NonceCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceCacheConfig {
    /// How long an accepted nonce is remembered. It must cover every moment at which the same signed
    /// request would still pass the clock-skew check: a request may be dated up to one skew window in the
    /// future and stays acceptable for one window after its date, hence the default of twice
    /// [`MAX_CLOCK_SKEW`] counted from the moment it was accepted.
    pub retention: TimeDelta,
    /// The most nonces held at once across all access keys. When it is reached, new requests are refused
    /// (`ServiceUnavailableTemporary`) until old entries expire; the cache never grows past it.
    pub max_entries: usize,
    /// The most nonces one access key may hold at once, so that one busy or hostile client exhausts its own
    /// quota (`Rejected.Throttling`) before it can fill the cache for everybody else.
    pub max_entries_per_key: usize,
}

impl Default for NonceCacheConfig {
    /// One million entries take on the order of 100 MB at worst and allow a sustained ~550 requests per
    /// second across all keys for the 30-minute retention; one key may use a quarter of that.
    fn default() -> Self {
        Self {
            retention: MAX_CLOCK_SKEW * 2,
            max_entries: 1_000_000,
            max_entries_per_key: 250_000,
        }
    }
}

/// A bounded, time-windowed replay cache shared by all request handlers.
///
/// Entries are stored as 128-bit fingerprints (truncated SHA-256) of the access key and of the key and
/// nonce together, never as the strings the client sent, so an entry costs the same few dozen bytes however
/// long the client's nonce is. A collision would need a second preimage of truncated SHA-256; the client
/// cannot aim one at another client's nonces.
///
/// Only requests whose signature has already been verified should be inserted; then only access-key
/// holders can consume capacity, and [`NonceCacheConfig::max_entries_per_key`] bounds each of them.
pub struct NonceCache {
    config: NonceCacheConfig,
    state: Mutex<State>,
}

/// The mutable part of the cache, behind one mutex. Every operation is O(1) amortized, so the lock is held
/// for well under a microsecond per request.
struct State {
    /// Fingerprints of the (access key, nonce) pairs currently remembered.
    seen: HashSet<Fingerprint>,
    /// The same entries in insertion order with their expiry time. Because expiry is insertion time plus a
    /// constant retention, this queue is sorted by expiry as long as `now` does not go backwards, and
    /// eviction only ever looks at its front. If the clock does step back, entries simply expire a little
    /// later than they could; the size caps still hold.
    by_expiry: VecDeque<Entry>,
    /// How many entries each access key (by fingerprint) currently holds. Keys with no entries are removed,
    /// so this map is bounded by the number of keys with recent traffic.
    per_key: HashMap<Fingerprint, usize>,
}

struct Entry {
    expires_at: DateTime<Utc>,
    pair: Fingerprint,
    key: Fingerprint,
}

type Fingerprint = [u8; 16];

impl NonceCache {
    pub fn new(config: NonceCacheConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                seen: HashSet::new(),
                by_expiry: VecDeque::new(),
                per_key: HashMap::new(),
            }),
        }
    }

    pub fn config(&self) -> NonceCacheConfig {
        self.config
    }

    /// Records that `access_key_id` used `nonce` at `now`. Fails with `NonceReused` if that pair is already
    /// remembered, and with `NonceQuotaExceeded` or `NonceCacheFull` (recording nothing) when a size cap is
    /// reached. Expired entries are evicted first, so the caps only bite under sustained load.
    pub fn check_and_insert(
        &self,
        access_key_id: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        let key = fingerprint(&[b"key", access_key_id.as_bytes()]);
        let pair = fingerprint(&[
            b"pair",
            &(access_key_id.len() as u64).to_le_bytes(),
            access_key_id.as_bytes(),
            nonce.as_bytes(),
        ]);
        let mut state = self.lock();
        state.evict_expired(now);
        if state.seen.contains(&pair) {
            return Err(SignatureError::NonceReused);
        }
        if state.seen.len() >= self.config.max_entries {
            return Err(SignatureError::NonceCacheFull);
        }
        let held = state.per_key.get(&key).copied().unwrap_or(0);
        if held >= self.config.max_entries_per_key {
            return Err(SignatureError::NonceQuotaExceeded);
        }
        state.seen.insert(pair);
        state.per_key.insert(key, held + 1);
        state.by_expiry.push_back(Entry {
            expires_at: now + self.config.retention,
            pair,
            key,
        });
        Ok(())
    }

    /// Drops every entry that has expired by `now`. [`NonceCache::check_and_insert`] does this itself; a
    /// periodic call only returns memory sooner on an idle server.
    pub fn evict_expired(&self, now: DateTime<Utc>) {
        self.lock().evict_expired(now);
    }

    /// How many nonces are currently remembered.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that matters (at worst
        // an entry is in one collection and not the other, and it is evicted or ignored), so a poisoned
        // lock is used rather than turning every later request into a panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
    fn evict_expired(&mut self, now: DateTime<Utc>) {
        while self.by_expiry.front().is_some_and(|e| e.expires_at <= now) {
            let Some(entry) = self.by_expiry.pop_front() else {
                break;
            };
            self.seen.remove(&entry.pair);
            if let Some(count) = self.per_key.get_mut(&entry.key) {
                *count -= 1;
                if *count == 0 {
                    self.per_key.remove(&entry.key);
                }
            }
        }
    }
}

fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        crate::parse_timestamp("2024-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn rejects_reuse_within_retention_and_forgets_after() {
        let cache = NonceCache::default();
        let now = t0();
        cache.check_and_insert("ak1", "n1", now).unwrap();
        assert_eq!(
            cache.check_and_insert("ak1", "n1", now),
            Err(SignatureError::NonceReused)
        );
        // The same nonce from another key is a different request.
        cache.check_and_insert("ak2", "n1", now).unwrap();
        let almost = now + MAX_CLOCK_SKEW * 2 - TimeDelta::seconds(1);
        assert_eq!(
            cache.check_and_insert("ak1", "n1", almost),
            Err(SignatureError::NonceReused)
        );
        let later = now + MAX_CLOCK_SKEW * 2;
        cache.check_and_insert("ak1", "n1", later).unwrap();
        assert_eq!(cache.len(), 1);
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
        // A refused request records nothing, and capacity comes back once entries expire.
        let later = now + TimeDelta::minutes(30);
        cache.check_and_insert("busy", "d", later).unwrap();
        assert_eq!(cache.len(), 1);
        cache.evict_expired(later + TimeDelta::minutes(30));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_clock_step_back_keeps_the_bounds() {
        let config = NonceCacheConfig {
            retention: TimeDelta::minutes(30),
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
}
