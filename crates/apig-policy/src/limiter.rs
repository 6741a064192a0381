//! Rate-limiting counters over governor's GCRA: [`Counter`] (one bucket) and [`KeyedCounter`]
//! (one bucket per key, in a bounded map).
//!
//! A quota of `limit` calls per `window` is a GCRA bucket of `limit` cells refilled one every
//! `window / limit`: a full bucket admits `limit` calls at once, an empty one is full again a
//! window later. (So over any span `T` at most `limit + T × limit / window` calls pass: the
//! sustained rate is exact, the burst is one window's worth. A fixed-window counter, as APIG's
//! documentation describes, could admit up to twice that at a window edge.)
//!
//! A limit of 0 refuses every call (a replica whose share of a limit is 0, say). Limits are
//! clamped to `u32::MAX` (governor's burst size; APIG's own maximum is 2^31 − 1) and windows to
//! [`MAX_WINDOW`] (about 146 years: longer windows never refill within a process's life anyway).
//!
//! # Bounded keys
//!
//! A keyed counter holds at most its cap of keys, and all keyed counters together at most the
//! shared [`KeyBudget`]. A key already held is always measured. A *new* key beyond either bound
//! is refused like a throttled call (429), and nothing is stored: a flood of distinct keys (source
//! IPs, say) cannot grow memory, and never un-limits anyone. Keys whose bucket is full again (idle
//! for about a window) hold no information; [`KeyedCounter::retain_recent`] drops them, which is
//! how room comes back. The cost of the bound: while the map is full of recently seen keys, new
//! clients are refused until the oldest keys go idle.
//!
//! Everything here is lock-free on the request path except DashMap's sharded locks (a shard's
//! write lock only while a new key is inserted or during cleanup).

use std::hash::Hash;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::RateLimiter;

/// The longest window a counter keeps: 2^62 ns, about 146 years. Keeping windows below 2^62 ns
/// keeps every GCRA time (process uptime plus at most two windows) inside a `u64`.
pub const MAX_WINDOW: Duration = Duration::from_nanos(1 << 62);

/// A stored "theoretical arrival time" far beyond any real one: measured against it, GCRA always
/// refuses (its earliest conforming time, `u64::MAX − window`, is past 2^63 ns ≈ 292 years of
/// uptime). A full [`BoundedStore`] answers a new key with it and stores nothing.
const REFUSE_TAT: Nanos = Nanos::new(u64::MAX);

/// Calls per window as one replica enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Calls admitted per window; 0 admits none.
    pub limit: u64,
    pub window: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Calls this counter (or this key) would still admit right now after this one.
    pub remaining: u64,
    pub quota: Quota,
}

type Gcra<K, S, C> = RateLimiter<K, S, C, StateInformationMiddleware>;

/// One bucket.
pub struct Counter<C: Clock = DefaultClock> {
    quota: Quota,
    gcra: Option<Gcra<NotKeyed, InMemoryState, C>>,
}

/// One bucket per key, at most `cap` keys (and within the shared [`KeyBudget`]).
pub struct KeyedCounter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    quota: Quota,
    gcra: Option<Gcra<K, BoundedStore<K>, C>>,
    /// The store's counters, shared with the store inside `gcra` (for `len` and diagnostics).
    stats: Arc<StoreStats>,
}

/// The number of keys all keyed counters together may hold, shared by them.
#[derive(Debug)]
pub struct KeyBudget {
    max: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

/// governor state store: a DashMap of GCRA times with a hard cap on its keys.
pub struct BoundedStore<K: Hash + Eq> {
    map: DashMap<K, AtomicU64>,
    cap: usize,
    stats: Arc<StoreStats>,
    budget: Arc<KeyBudget>,
}

#[derive(Debug, Default)]
struct StoreStats {
    len: AtomicUsize,
    refused: AtomicU64,
}

// === impl Quota ===

impl Quota {
    /// governor's quota: a burst of `limit` cells, one refilled every `window / limit`; `None`
    /// for a limit of 0.
    fn gcra(&self) -> Option<governor::Quota> {
        let limit = u32::try_from(self.limit).unwrap_or(u32::MAX);
        let burst = NonZeroU32::new(limit)?;
        let window = self.window.clamp(Duration::from_nanos(1), MAX_WINDOW);
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let period = (window_ns / u64::from(limit)).max(1);
        Some(governor::Quota::with_period(Duration::from_nanos(period))?.allow_burst(burst))
    }

    fn refused(self) -> Decision {
        Decision {
            allowed: false,
            remaining: 0,
            quota: self,
        }
    }

    fn decide<E>(self, outcome: Result<governor::middleware::StateSnapshot, E>) -> Decision {
        match outcome {
            Ok(state) => Decision {
                allowed: true,
                remaining: u64::from(state.remaining_burst_capacity()),
                quota: self,
            },
            Err(_) => self.refused(),
        }
    }
}

// === impl Counter ===

impl<C: Clock + Clone> Counter<C> {
    pub fn new(quota: Quota, clock: &C) -> Self {
        let gcra = quota.gcra().map(|q| {
            Gcra::<NotKeyed, InMemoryState, C>::new(q, InMemoryState::default(), clock.clone())
        });
        Self { quota, gcra }
    }
}

impl<C: Clock> Counter<C> {
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Takes one call from the bucket, if there is one.
    pub fn check(&self) -> Decision {
        match &self.gcra {
            Some(gcra) => self.quota.decide(gcra.check()),
            None => self.quota.refused(),
        }
    }
}

// === impl KeyedCounter ===

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedCounter<K, C> {
    /// A counter holding at most `cap` keys (and drawing each from `budget`).
    pub fn new(quota: Quota, cap: usize, budget: &Arc<KeyBudget>, clock: &C) -> Self {
        let stats = Arc::new(StoreStats::default());
        let gcra = quota.gcra().map(|q| {
            let store = BoundedStore {
                map: DashMap::new(),
                cap,
                stats: Arc::clone(&stats),
                budget: Arc::clone(budget),
            };
            Gcra::<K, BoundedStore<K>, C>::new(q, store, clock.clone())
        });
        Self { quota, gcra, stats }
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedCounter<K, C> {
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Takes one call from `key`'s bucket. A new key that does not fit is refused.
    pub fn check(&self, key: &K) -> Decision {
        match &self.gcra {
            Some(gcra) => self.quota.decide(gcra.check_key(key)),
            None => self.quota.refused(),
        }
    }

    /// Drops the keys whose bucket is full again (they hold nothing a fresh key would not), and
    /// gives memory back when most of the map went.
    pub fn retain_recent(&self) {
        if let Some(gcra) = &self.gcra {
            let before = self.len();
            gcra.retain_recent();
            let after = self.len();
            if after < before / 2 {
                gcra.shrink_to_fit();
            }
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.stats.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New keys refused so far because the counter or the budget was full.
    pub fn refused_new_keys(&self) -> u64 {
        self.stats.refused.load(Ordering::Relaxed)
    }
}

// === impl KeyBudget ===

impl KeyBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Keys held by all keyed counters together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// New keys refused so far, by any counter, because a bound was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn reserve(&self) -> bool {
        reserve(&self.used, self.max)
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Takes one slot of `counter` if it is below `max`.
fn reserve(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

// === impl BoundedStore ===

impl<K: Hash + Eq> BoundedStore<K> {
    /// Reserves room for one new key in this store and in the budget.
    fn reserve(&self) -> bool {
        if !reserve(&self.stats.len, self.cap) {
            return false;
        }
        if !self.budget.reserve() {
            self.stats.len.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn count_refusal(&self) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        self.budget.refused.fetch_add(1, Ordering::Relaxed);
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.map.get(key) {
            return measure(&state, f);
        }
        match self.map.entry(key.clone()) {
            // Another request inserted it meanwhile.
            Entry::Occupied(entry) => measure(entry.get(), f),
            Entry::Vacant(entry) => {
                if !self.reserve() {
                    self.count_refusal();
                    // Measured against a time far in the future, GCRA refuses; nothing is stored.
                    return f(Some(REFUSE_TAT)).map(|(result, _)| result);
                }
                let state = entry.insert(AtomicU64::new(0));
                measure(&state, f)
            }
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = drop_below.as_u64();
        let mut dropped = 0usize;
        self.map.retain(|_, tat| {
            let keep = tat.load(Ordering::Relaxed) > drop_below;
            if !keep {
                dropped += 1;
            }
            keep
        });
        self.stats.len.fetch_sub(dropped, Ordering::AcqRel);
        self.budget.release(dropped);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.stats.len.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq> Drop for BoundedStore<K> {
    fn drop(&mut self) {
        self.budget.release(self.map.len());
    }
}

/// governor's compare-and-swap update of one GCRA time (0 = no state yet), as its own
/// `InMemoryState` does it.
fn measure<T, E, F>(state: &AtomicU64, f: F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let read = |raw: u64| NonZeroU64::new(raw).map(|n| Nanos::from(n.get()));
    let mut prev = state.load(Ordering::Acquire);
    let mut decision = f(read(prev));
    while let Ok((result, next)) = decision {
        match state.compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return Ok(result),
            Err(actual) => prev = actual,
        }
        decision = f(read(prev));
    }
    decision.map(|(result, _)| result)
}

impl<C: Clock> std::fmt::Debug for Counter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for KeyedCounter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedCounter")
            .field("quota", &self.quota)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::{IpAddr, Ipv4Addr};

    fn quota(limit: u64, window_ms: u64) -> Quota {
        Quota {
            limit,
            window: Duration::from_millis(window_ms),
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn a_window_admits_exactly_the_limit_then_refills() {
        let clock = FakeRelativeClock::default();
        let c = Counter::new(quota(10, 10_000), &clock);
        for i in 0..10 {
            let d = c.check();
            assert!(d.allowed, "call {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let refused = c.check();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One call comes back per window / limit.
        clock.advance(Duration::from_millis(999));
        assert!(!c.check().allowed);
        clock.advance(Duration::from_millis(1));
        assert!(c.check().allowed);
        assert!(!c.check().allowed);
        // A whole window later the bucket is full again.
        clock.advance(Duration::from_millis(10_000));
        for _ in 0..10 {
            assert!(c.check().allowed);
        }
        assert!(!c.check().allowed);
    }

    #[test]
    fn limit_zero_refuses_everything() {
        let clock = FakeRelativeClock::default();
        let c = Counter::new(quota(0, 1000), &clock);
        assert!(!c.check().allowed);
        let budget = KeyBudget::new(10);
        let k = KeyedCounter::new(quota(0, 1000), 10, &budget, &clock);
        assert!(!k.check(&ip(1)).allowed);
        assert!(k.is_empty());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn huge_limits_and_windows_are_clamped_not_broken() {
        let clock = FakeRelativeClock::default();
        let c = Counter::new(
            Quota {
                limit: u64::MAX,
                window: Duration::from_secs(u64::MAX),
            },
            &clock,
        );
        assert!(c.check().allowed);
        let c = Counter::new(quota(1, 0), &clock);
        assert!(c.check().allowed);
        assert!(!c.check().allowed);
    }

    #[test]
    fn keys_are_counted_separately() {
        let clock = FakeRelativeClock::default();
        let budget = KeyBudget::new(100);
        let k = KeyedCounter::new(quota(2, 1000), 100, &budget, &clock);
        assert!(k.check(&ip(1)).allowed);
        assert!(k.check(&ip(1)).allowed);
        assert!(!k.check(&ip(1)).allowed);
        assert!(k.check(&ip(2)).allowed);
        assert_eq!(k.len(), 2);
        assert_eq!(budget.used(), 2);
    }

    #[test]
    fn a_full_counter_refuses_new_keys_and_keeps_serving_known_ones() {
        let clock = FakeRelativeClock::default();
        let budget = KeyBudget::new(1000);
        let k = KeyedCounter::new(quota(5, 1000), 3, &budget, &clock);
        for n in 0..3 {
            assert!(k.check(&ip(n)).allowed);
        }
        // A flood of new keys: all refused, nothing stored.
        for n in 3..10_000 {
            let d = k.check(&ip(n));
            assert!(!d.allowed);
            assert_eq!(d.remaining, 0);
        }
        assert_eq!(k.len(), 3);
        assert_eq!(budget.used(), 3);
        assert_eq!(k.refused_new_keys(), 9997);
        // Known keys still get their quota.
        assert!(k.check(&ip(0)).allowed);
        // Once the known keys go idle, cleanup makes room again.
        clock.advance(Duration::from_millis(2000));
        k.retain_recent();
        assert_eq!(k.len(), 0);
        assert_eq!(budget.used(), 0);
        assert!(k.check(&ip(5000)).allowed);
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn a_full_counter_refuses_even_with_the_longest_window_and_a_late_clock() {
        let clock = FakeRelativeClock::default();
        let budget = KeyBudget::new(1000);
        let k = KeyedCounter::new(
            Quota {
                limit: 1,
                window: MAX_WINDOW,
            },
            1,
            &budget,
            &clock,
        );
        assert!(k.check(&ip(1)).allowed);
        // A hundred years of uptime later.
        clock.advance(Duration::from_secs(100 * 365 * 86_400));
        assert!(!k.check(&ip(2)).allowed);
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn the_budget_bounds_all_counters_together() {
        let clock = FakeRelativeClock::default();
        let budget = KeyBudget::new(4);
        let a = KeyedCounter::new(quota(5, 1000), 100, &budget, &clock);
        let b = KeyedCounter::new(quota(5, 1000), 100, &budget, &clock);
        for n in 0..3 {
            assert!(a.check(&ip(n)).allowed);
        }
        assert!(b.check(&ip(0)).allowed);
        assert!(!b.check(&ip(1)).allowed);
        assert!(!a.check(&ip(99)).allowed);
        assert_eq!(budget.used(), 4);
        assert_eq!(budget.refused(), 2);
        // A dropped counter gives its keys back.
        drop(a);
        assert_eq!(budget.used(), 1);
        assert!(b.check(&ip(1)).allowed);
    }

    #[test]
    fn retain_keeps_keys_that_still_carry_state() {
        let clock = FakeRelativeClock::default();
        let budget = KeyBudget::new(100);
        let k = KeyedCounter::new(quota(2, 1000), 100, &budget, &clock);
        assert!(k.check(&ip(1)).allowed);
        assert!(k.check(&ip(1)).allowed);
        clock.advance(Duration::from_millis(100));
        k.retain_recent();
        assert_eq!(k.len(), 1);
        assert!(
            !k.check(&ip(1)).allowed,
            "cleanup must not reset a live key"
        );
    }

    #[test]
    fn concurrent_new_keys_never_exceed_the_cap() {
        let clock = FakeRelativeClock::default();
        let budget = KeyBudget::new(1_000_000);
        let k = Arc::new(KeyedCounter::new(quota(5, 1000), 50, &budget, &clock));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let k = Arc::clone(&k);
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        let _ = k.check(&ip(t * 10_000 + n));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(k.len(), 50);
        assert_eq!(budget.used(), 50);
    }
}
