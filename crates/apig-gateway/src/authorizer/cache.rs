//! Cached authorizer decisions: a sharded map (DashMap: a lock per shard, none global) with a
//! hard cap on its entries, each expiring at its authorizer's ttl.
//!
//! Keys are SHA-256 digests of the authorizer's definition and of every identity value,
//! length-prefixed (`key`), so two callers that differ in any identity value never share an
//! entry and the identity values (often tokens) are not kept in memory.
//!
//! When the map is full, expired entries are purged (at most once a second, so a full map of
//! live entries does not make every miss walk it); if it is still full the decision is simply
//! not cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::Decision;

/// Entries all authorizers together may cache per replica.
pub(crate) const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// The cache key: the authorizer's fingerprint and the identity values, unambiguously encoded.
pub(crate) fn key<'v>(fingerprint: &[u8; 32], values: impl Iterator<Item = &'v [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(fingerprint);
    for v in values {
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    h.finalize().into()
}

struct Entry {
    expires: Instant,
    decision: Decision,
}

/// Decisions by key, bounded.
pub(crate) struct DecisionCache {
    map: DashMap<[u8; 32], Entry>,
    max_entries: usize,
    /// Milliseconds since `epoch` of the last purge.
    last_purge_ms: AtomicU64,
    epoch: Instant,
}

impl DecisionCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            map: DashMap::new(),
            max_entries,
            last_purge_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The cached decision, if any and not expired.
    pub(crate) fn get(&self, key: &[u8; 32], now: Instant) -> Option<Decision> {
        let expired = {
            let entry = self.map.get(key)?;
            if entry.expires > now {
                return Some(entry.decision.clone());
            }
            true
        };
        if expired {
            self.map.remove_if(key, |_, e| e.expires <= now);
        }
        None
    }

    /// Caches `decision` for `ttl`; dropped when the cache is full of live entries.
    pub(crate) fn insert(&self, key: [u8; 32], decision: Decision, ttl: Duration, now: Instant) {
        if self.map.len() >= self.max_entries && !self.map.contains_key(&key) {
            self.purge(now);
            if self.map.len() >= self.max_entries {
                return;
            }
        }
        self.map.insert(
            key,
            Entry {
                expires: now + ttl,
                decision,
            },
        );
    }

    fn purge(&self, now: Instant) {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 1000 && last != 0 {
            return;
        }
        if self
            .last_purge_ms
            .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.map.retain(|_, e| e.expires > now);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}
