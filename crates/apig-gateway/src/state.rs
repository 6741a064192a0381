//! State shared by the listeners, the request pipeline and the sync loop.
//!
//! What requests see is one [`Serving`]: the applied runtime (immutable, per snapshot) and the
//! throttle counters built for it (per snapshot *and* replica share), swapped together with
//! arc-swap so a request never pairs a runtime with counters of another API list. Counters
//! outlive snapshots: a new `Serving` reuses every counter whose id and effective quota did not
//! change (`apig_policy::throttle`), so a republish or an unrelated change resets nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use apig_policy::{DefaultClock, IpAcl, KeyBudget, Share, ThrottleSet, ThrottleSettings};
use arc_swap::ArcSwapOption;

use crate::config::Limits;
use crate::proxy::Upstream;
use crate::runtime::Runtime;

/// What requests run against: a runtime and its throttle counters.
pub(crate) struct Serving {
    pub runtime: Arc<Runtime>,
    pub throttle: ThrottleSet,
}

/// Everything a request or the sync loop reaches. The mutable parts are the serving slot
/// (swapped whole, read without locks), the replica share and a connected flag.
pub(crate) struct Shared {
    /// The applied snapshot and its counters; `None` until one is applied (not ready).
    serving: ArcSwapOption<Serving>,
    pub limits: Limits,
    /// Peers trusted to report the client address; `None` when none are configured.
    pub trusted_proxies: Option<IpAcl>,
    pub upstream: Upstream,
    pub instance_id: String,
    pub node_id: String,
    connected: AtomicBool,
    throttle_settings: ThrottleSettings,
    clock: DefaultClock,
    /// The replica's share of cluster-wide limits. Held while a new `Serving` is built and
    /// stored, so installs and share changes never interleave (only the sync task takes it).
    share: Mutex<Share>,
}

// === impl Shared ===

impl Shared {
    /// `trusted_proxies` is `limits.trusted_proxies`, parsed by the caller.
    pub(crate) fn new(
        limits: Limits,
        trusted_proxies: Option<IpAcl>,
        instance_id: String,
        node_id: String,
    ) -> Self {
        let throttle_settings = ThrottleSettings {
            default_per_sec: limits.default_api_limit_per_sec,
            max_keys_per_counter: limits.max_limiter_keys,
            budget: KeyBudget::new(limits.max_limiter_keys_total),
        };
        Self {
            serving: ArcSwapOption::empty(),
            limits,
            trusted_proxies,
            upstream: Upstream::new(),
            instance_id,
            node_id,
            connected: AtomicBool::new(false),
            throttle_settings,
            clock: DefaultClock::default(),
            share: Mutex::new(Share::ALONE),
        }
    }

    /// What a request uses from start to end (later swaps do not affect it).
    pub(crate) fn serving(&self) -> Option<Arc<Serving>> {
        self.serving.load_full()
    }

    /// The applied runtime.
    pub(crate) fn runtime(&self) -> Option<Arc<Runtime>> {
        self.serving.load().as_ref().map(|s| Arc::clone(&s.runtime))
    }

    /// Swaps in a new runtime with its counters (carried over from the current ones where
    /// unchanged). Requests that loaded the old one finish with it.
    pub(crate) fn install(&self, runtime: Arc<Runtime>) {
        let share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuild(runtime, *share);
    }

    /// Sets the replica's share of cluster-wide limits and rebuilds the counters whose
    /// effective limit changes. Returns whether the share changed.
    pub(crate) fn set_share(&self, new: Share) -> bool {
        let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        if *share == new {
            return false;
        }
        *share = new;
        if let Some(current) = self.serving.load_full() {
            self.rebuild(Arc::clone(&current.runtime), new);
        }
        true
    }

    pub(crate) fn share(&self) -> Share {
        *self.share.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds and stores a `Serving`; the caller holds the share lock.
    fn rebuild(&self, runtime: Arc<Runtime>, share: Share) {
        let current = self.serving.load_full();
        let throttle = ThrottleSet::build(
            runtime.throttle_specs(),
            share,
            &self.throttle_settings,
            current.as_ref().map(|s| &s.throttle),
            &self.clock,
        );
        self.serving
            .store(Some(Arc::new(Serving { runtime, throttle })));
    }

    /// Drops idle keys of the current counters; returns the keys left in all counters (also
    /// those of counters older requests still hold).
    pub(crate) fn clean_up_limiters(&self) -> usize {
        if let Some(serving) = self.serving.load_full() {
            serving.throttle.retain_recent();
        }
        self.throttle_settings.budget.used()
    }

    /// Keys held by all keyed throttle counters.
    pub(crate) fn limiter_keys(&self) -> usize {
        self.throttle_settings.budget.used()
    }

    /// New throttle keys refused so far because a key bound was reached.
    pub(crate) fn refused_limiter_keys(&self) -> u64 {
        self.throttle_settings.budget.refused()
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.serving.load().is_some()
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
