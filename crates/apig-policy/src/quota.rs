//! Credential quotas (APIG "app quotas", semantics digest §5.4): at most `limit` calls by one app
//! (credential), across all APIs, per fixed window. Exhausted → the gateway answers 405
//! `APIG.0501`.
//!
//! # Windows
//!
//! Windows are fixed and aligned to the quota's anchor (APIG's `reset_time`): window
//! `k = (now − anchor).div_euclid(window)` covers `[anchor + k·window, anchor + (k+1)·window)`.
//! Instants before the anchor fall into negative windows aligned the same way (an anchor in the
//! future still fixes the phase of every window, so a quota bound today with `reset_time`
//! tomorrow 05:05 and a 1 h window counts 03:05–04:05, 04:05–05:05, …). A call is admitted while
//! the count of the current window is below the replica's share of the limit; the first call of a
//! later window starts it from 0. Refused calls are not counted.
//!
//! Windows never go backwards: a call whose window is older than the newest one the counter has
//! seen (the wall clock stepped back, or a request that arrived just before a boundary and was
//! checked after it) counts in the newest window. A clock step back therefore never hands out a
//! fresh quota.
//!
//! # Counters
//!
//! One [`WindowCounter`] per (quota id, app id, limit, window, anchor) — a [`QuotaKey`]. The
//! check is lock-free: one `AtomicU64` packs the window (relative to a base fixed when the
//! counter is made) and the count of that window, updated by compare-and-swap. The count takes
//! as many low bits as the limit needs (at most 32: limits are clamped to `u32::MAX`; APIG's own
//! maximum is 2^31 − 1); the window takes the rest, so a counter spans at least 2^32 windows
//! after its creation (136 years of APIG's shortest, 1-second windows; far more for the usual
//! limits). Beyond that span every later call would count in its last window; no configuration
//! APIG can express gets there.
//!
//! Counters live in a [`QuotaSet`] outside the snapshot, indexed like the snapshot's apps. A new
//! set (new snapshot, new replica share) reuses every counter whose key is unchanged, count and
//! all; a quota whose id or numbers change starts afresh; keys no longer bound are dropped, so a
//! set never holds more counters than the snapshot has apps.
//!
//! # Replica shares
//!
//! Like throttling limits, replica `index` of `count` admits `floor(L / count) + (index < L %
//! count)` calls of a limit `L` per window ([`Share::apply`]); the shares add up to `L`. The
//! share is not part of the key: when it changes the count of the current window is kept and the
//! new share applies to it (a replica that already admitted more than its new share refuses
//! until the next window), so re-numbering replicas never hands out a fresh quota.
//!
//! # Persistence
//!
//! Quota windows are long (hours, days), so the gateway saves counters and restores them after a
//! restart. This module only offers the data: [`QuotaSet::usage`] (the counts of current
//! windows) and the `restored` argument of [`QuotaSet::build`] (a count is restored only into a
//! counter with the same key whose current window is the saved one). The file is the gateway's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::limiter::{Decision, Quota};
use crate::throttle::Share;

/// A credential quota as bound to one app, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSpec {
    pub quota_id: Arc<str>,
    /// Calls per window, cluster-wide (before the replica's share).
    pub limit: u64,
    /// Window length in milliseconds, at least 1.
    pub window_ms: u64,
    /// Windows are aligned to this instant (APIG's `reset_time`), Unix milliseconds.
    pub anchor_unix_ms: i64,
}

/// An `AppQuota` of a snapshot that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential quota {quota_id:?}: {reason}")]
pub struct QuotaError {
    pub quota_id: String,
    pub reason: String,
}

/// The identity of a counter: which quota, which app, and the numbers. A counter is reused
/// across snapshots (and restored across restarts) only under the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaKey {
    pub quota_id: Arc<str>,
    pub app_id: Arc<str>,
    pub limit: u64,
    pub window_ms: u64,
    pub anchor_unix_ms: i64,
}

/// What a counter admitted in one window: the window index (relative to the anchor) and the
/// number of calls this replica admitted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub window: i64,
    pub count: u64,
}

/// One fixed-window counter. Lock-free: `state` packs the window (relative to `base`) in its
/// high bits and that window's count in its low `count_bits` bits.
pub struct WindowCounter {
    window_ms: u64,
    anchor_unix_ms: i64,
    /// The absolute window index that relative window 0 stands for.
    base: i64,
    count_bits: u32,
    state: AtomicU64,
}

/// The quota of one app, as this replica enforces it.
#[derive(Debug, Clone)]
pub struct AppQuota {
    counter: Arc<WindowCounter>,
    /// This replica's share of the limit.
    quota: Quota,
}

/// Every live quota counter of a replica, and per app (in the snapshot's app order) its quota.
pub struct QuotaSet {
    share: Share,
    counters: HashMap<QuotaKey, Arc<WindowCounter>>,
    apps: Vec<Option<AppQuota>>,
}

// === impl QuotaSpec ===

impl QuotaSpec {
    /// Checks a snapshot's quota. Refused: an empty quota id, a limit of 0 (APIG's
    /// `call_limits` is at least 1; an app without quota has no `AppQuota` at all) and a window
    /// of 0.
    pub fn prepare(q: &apig_proto::AppQuota) -> Result<Self, QuotaError> {
        let fail = |reason: &str| QuotaError {
            quota_id: q.quota_id.chars().take(64).collect(),
            reason: reason.to_owned(),
        };
        if q.quota_id.is_empty() {
            return Err(fail("empty quota id"));
        }
        if q.limit == 0 {
            return Err(fail("the limit is 0"));
        }
        if q.window_ms == 0 {
            return Err(fail("the window is 0"));
        }
        Ok(Self {
            quota_id: Arc::from(q.quota_id.as_str()),
            limit: q.limit,
            window_ms: q.window_ms,
            anchor_unix_ms: q.anchor_unix_ms,
        })
    }

    /// The index of the window `now_unix_ms` falls in.
    pub fn window_index(&self, now_unix_ms: i64) -> i64 {
        window_index(now_unix_ms, self.anchor_unix_ms, self.window_ms)
    }

    fn key(&self, app_id: &str) -> QuotaKey {
        QuotaKey {
            quota_id: Arc::clone(&self.quota_id),
            app_id: Arc::from(app_id),
            limit: self.limit,
            window_ms: self.window_ms,
            anchor_unix_ms: self.anchor_unix_ms,
        }
    }
}

/// `(now − anchor).div_euclid(window)`, exact for every input (computed in 128 bits), clamped
/// to `i64`. A window of 0 is taken as 1 ms.
pub fn window_index(now_unix_ms: i64, anchor_unix_ms: i64, window_ms: u64) -> i64 {
    let offset = i128::from(now_unix_ms) - i128::from(anchor_unix_ms);
    let k = offset.div_euclid(i128::from(window_ms.max(1)));
    i64::try_from(k).unwrap_or(if k < 0 { i64::MIN } else { i64::MAX })
}

/// The start of window `k`, Unix milliseconds (saturating).
pub fn window_start(k: i64, anchor_unix_ms: i64, window_ms: u64) -> i64 {
    let start = i128::from(anchor_unix_ms) + i128::from(k) * i128::from(window_ms);
    i64::try_from(start).unwrap_or(if start < 0 { i64::MIN } else { i64::MAX })
}

// === impl WindowCounter ===

impl WindowCounter {
    /// A counter for `key`, made at `now_unix_ms`, with `initial` calls already admitted in
    /// the current window.
    fn new(key: &QuotaKey, now_unix_ms: i64, initial: u64) -> Self {
        let max_count = clamp_limit(key.limit);
        let count_bits = (u64::BITS - max_count.leading_zeros()).max(1);
        let now = window_index(now_unix_ms, key.anchor_unix_ms, key.window_ms);
        // One window of slack below `now`: a request that arrived just before a boundary and is
        // checked after this counter was made still lands in its own window.
        let base = now.saturating_sub(1);
        let rel_now = u64::try_from(now.saturating_sub(base)).unwrap_or(0);
        let counter = Self {
            window_ms: key.window_ms.max(1),
            anchor_unix_ms: key.anchor_unix_ms,
            base,
            count_bits,
            state: AtomicU64::new(0),
        };
        if initial > 0 {
            let state = counter.pack(rel_now, initial.min(max_count));
            counter.state.store(state, Ordering::Relaxed);
        }
        counter
    }

    /// The largest relative window the state can hold.
    fn max_rel(&self) -> u64 {
        u64::MAX >> self.count_bits
    }

    fn pack(&self, rel: u64, count: u64) -> u64 {
        (rel.min(self.max_rel()) << self.count_bits) | (count & self.count_mask())
    }

    fn count_mask(&self) -> u64 {
        (1u64 << self.count_bits) - 1
    }

    fn unpack(&self, state: u64) -> (u64, u64) {
        (state >> self.count_bits, state & self.count_mask())
    }

    /// The relative window of an instant: before the base counts as the base window (windows
    /// never go backwards), beyond the span as the last one.
    fn rel(&self, now_unix_ms: i64) -> u64 {
        let k = window_index(now_unix_ms, self.anchor_unix_ms, self.window_ms);
        let rel = i128::from(k) - i128::from(self.base);
        u64::try_from(rel.max(0))
            .unwrap_or(u64::MAX)
            .min(self.max_rel())
    }

    /// Takes one call if the current window's count is below `limit`; a refused call is not
    /// counted.
    pub fn check(&self, now_unix_ms: i64, limit: u64) -> (bool, u64) {
        let limit = limit.min(self.count_mask());
        let current = self.rel(now_unix_ms);
        let mut prev = self.state.load(Ordering::Acquire);
        loop {
            let (rel, count) = self.unpack(prev);
            // A later window starts from 0; an earlier one counts in the newest seen.
            let (rel, count) = if current > rel {
                (current, 0)
            } else {
                (rel, count)
            };
            if count >= limit {
                return (false, 0);
            }
            let next = self.pack(rel, count + 1);
            match self
                .state
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (true, limit - count - 1),
                Err(actual) => prev = actual,
            }
        }
    }

    /// The newest window the counter has counted in (absolute index) and its count, or `None`
    /// when that window is older than the one `now_unix_ms` falls in or nothing was counted.
    pub fn usage(&self, now_unix_ms: i64) -> Option<Usage> {
        let (rel, count) = self.unpack(self.state.load(Ordering::Acquire));
        if count == 0 || rel < self.rel(now_unix_ms) {
            return None;
        }
        let window = self
            .base
            .saturating_add(i64::try_from(rel).unwrap_or(i64::MAX));
        Some(Usage { window, count })
    }
}

/// Counts are kept in at most 32 bits.
fn clamp_limit(limit: u64) -> u64 {
    limit.min(u64::from(u32::MAX))
}

impl std::fmt::Debug for WindowCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rel, count) = self.unpack(self.state.load(Ordering::Relaxed));
        f.debug_struct("WindowCounter")
            .field("window_ms", &self.window_ms)
            .field("anchor_unix_ms", &self.anchor_unix_ms)
            .field(
                "window",
                &self
                    .base
                    .saturating_add(i64::try_from(rel).unwrap_or(i64::MAX)),
            )
            .field("count", &count)
            .finish()
    }
}

// === impl AppQuota ===

impl AppQuota {
    /// Takes one call of the app's quota at `now_unix_ms` (the request's arrival). The
    /// decision's quota is this replica's share and the window, for the debug header.
    pub fn check(&self, now_unix_ms: i64) -> Decision {
        let (allowed, remaining) = self.counter.check(now_unix_ms, self.quota.limit);
        Decision {
            allowed,
            remaining,
            quota: self.quota,
        }
    }

    /// This replica's share of the limit, and the window.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

// === impl QuotaSet ===

impl QuotaSet {
    /// A set with no quota at all.
    pub fn empty() -> Self {
        Self {
            share: Share::ALONE,
            counters: HashMap::new(),
            apps: Vec::new(),
        }
    }

    /// Builds the quotas of `apps` (each app's id and its quota, if any, in the snapshot's app
    /// order), reusing every counter of `previous` whose key is unchanged. A counter made new
    /// takes its count from `restored` when the key matches and the saved window is the current
    /// one (at `now_unix_ms`); otherwise it starts at 0.
    pub fn build<'a>(
        apps: impl IntoIterator<Item = (&'a str, Option<&'a QuotaSpec>)>,
        share: Share,
        previous: Option<&QuotaSet>,
        restored: Option<&HashMap<QuotaKey, Usage>>,
        now_unix_ms: i64,
    ) -> Self {
        let mut counters: HashMap<QuotaKey, Arc<WindowCounter>> = HashMap::new();
        let apps = apps
            .into_iter()
            .map(|(app_id, spec)| {
                let spec = spec?;
                let key = spec.key(app_id);
                let counter = match previous.and_then(|p| p.counters.get(&key)) {
                    Some(kept) => Arc::clone(kept),
                    None => {
                        let initial = restored
                            .and_then(|r| r.get(&key))
                            .filter(|u| u.window == spec.window_index(now_unix_ms))
                            .map_or(0, |u| u.count);
                        Arc::new(WindowCounter::new(&key, now_unix_ms, initial))
                    }
                };
                let counter = Arc::clone(counters.entry(key).or_insert(counter));
                Some(AppQuota {
                    counter,
                    quota: Quota {
                        limit: share.apply(spec.limit),
                        window: Duration::from_millis(spec.window_ms),
                    },
                })
            })
            .collect();
        Self {
            share,
            counters,
            apps,
        }
    }

    /// The quota of the app at `index` (the snapshot's app order); `None` when it has none.
    pub fn app(&self, index: usize) -> Option<&AppQuota> {
        self.apps.get(index).and_then(Option::as_ref)
    }

    pub fn share(&self) -> Share {
        self.share
    }

    /// Number of counters (at most the number of apps).
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The counts of the counters whose newest window is still current at `now_unix_ms` and
    /// not empty, sorted by key: what is worth saving across a restart.
    pub fn usage(&self, now_unix_ms: i64) -> Vec<(QuotaKey, Usage)> {
        let mut out: Vec<(QuotaKey, Usage)> = self
            .counters
            .iter()
            .filter_map(|(key, c)| c.usage(now_unix_ms).map(|u| (key.clone(), u)))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether `other` holds the very counter object this set has for the app at `index`
    /// (state kept), for tests and diagnostics.
    pub fn shares_counter_with(&self, other: &Self, index: usize) -> Option<bool> {
        let a = self.app(index)?;
        let b = other.app(index)?;
        Some(Arc::ptr_eq(&a.counter, &b.counter))
    }
}

impl Default for QuotaSet {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for QuotaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaSet")
            .field("share", &self.share)
            .field("counters", &self.counters.len())
            .field("apps", &self.apps.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
