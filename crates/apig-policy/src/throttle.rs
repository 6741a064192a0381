//! Request throttling (semantics digest §5): which counters an API's calls go through, how they
//! are keyed, this replica's share of each limit, and the set of live counters that survives
//! snapshot swaps.
//!
//! # Counters and their keys
//!
//! Every counter has a stable [`CounterId`]: its *scope* and its *kind*.
//!
//! - Scope: a type-2 (API-shared) policy is scoped by its policy id, so every API bound to it
//!   shares the counters; a type-1 (API-specific) policy by policy id + API id, so each bound API
//!   counts separately (an API published in several environments with the same policy shares
//!   them); an API without a policy by its API id, under the gateway-wide default limit (APIG's
//!   `ratelimit_api_limits`, calls per second, all environments: `X-Apig-RateLimit-api-allenv`).
//! - Kind: the API counter (one bucket), the user counter (a bucket per caller project id), the
//!   app counter (a bucket per app id), the IP counter (a bucket per client IP), and one bucket per
//!   excluded ("special") app or tenant, which replaces the app or user counter for that app or
//!   tenant (the API counter still applies).
//!
//! A call passes only if every counter that applies admits it: the IP counter always; the app
//! counter only for app callers; the user counter only for authenticated (APP or IAM) callers; the
//! API counter always. They are checked from the narrowest (IP) to the widest (API) and the first
//! refusal stops the check, so a throttled client does not also drain the API's shared quota;
//! a call refused by a wider counter has still used one call of the narrower ones.
//!
//! # Surviving swaps
//!
//! Counters live in a [`ThrottleSet`] outside the snapshot. A new set (a new snapshot, or a new
//! replica share) is built from the previous one: a counter whose id and effective quota (limit
//! after the share, window) are unchanged is the *same object*, state and all; a changed one
//! (new numbers for that counter) starts afresh, full; ids no longer used are dropped. So
//! republishing, or changing an unrelated API or policy, resets nothing, and changing one number
//! of a policy resets only the counters it changes.
//!
//! # Replica shares
//!
//! With `count` replicas, replica `index` enforces `floor(L / count) + (index < L % count)` of a
//! limit `L` ([`Share::apply`]); the shares add up to `L` exactly. A replica whose share is 0
//! refuses every call on that counter: the others carry the whole quota. When the share
//! changes, counters whose effective limit changes start afresh (full), so while the control
//! plane re-numbers replicas (one joins or leaves) one window may admit up to the old shares plus
//! the new shares, i.e. up to about twice the limit cluster-wide, once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};

use crate::limiter::{Counter, Decision, KeyBudget, KeyedCounter, Quota, MAX_WINDOW};

/// This replica's part of every cluster-wide limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    index: u32,
    count: u32,
}

/// A `Throttle` of a snapshot that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("throttle policy {policy_id:?}: {reason}")]
pub struct ThrottleError {
    pub policy_id: String,
    pub reason: String,
}

/// One throttling policy as bound to one API, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSpec {
    pub policy_id: Arc<str>,
    /// Type 2: counters shared by every API bound to the policy.
    pub shared: bool,
    pub window: Duration,
    /// Per window; 0: no such counter.
    pub api_limit: u64,
    pub user_limit: u64,
    pub app_limit: u64,
    pub ip_limit: u64,
    /// Sorted by id.
    pub app_specials: Vec<(Arc<str>, u64)>,
    /// Sorted by project id.
    pub user_specials: Vec<(Arc<str>, u64)>,
}

/// What kind of counter; also names its debug header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterKind {
    /// A policy's API counter.
    Api,
    User,
    App,
    Ip,
    /// The gateway-wide default API counter of an API without policy.
    Default,
}

/// The stable identity of a counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterId {
    scope: Scope,
    kind: CounterKind,
    /// The app or project id of an excluded ("special") limit.
    special: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Default { api: Arc<str> },
    Policy { policy: Arc<str> },
    PolicyApi { policy: Arc<str>, api: Arc<str> },
}

/// Gateway-wide throttling settings.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Calls per second of an API without policy; 0: unlimited.
    pub default_per_sec: u64,
    /// Most keys one keyed counter holds.
    pub max_keys_per_counter: usize,
    /// Most keys all keyed counters hold together.
    pub budget: Arc<KeyBudget>,
}

/// Who is calling, as the counters key it.
#[derive(Debug, Clone, Copy)]
pub struct CallerKeys<'a> {
    /// The client IP (already resolved through trusted proxies).
    pub ip: IpAddr,
    /// The app, for app callers.
    pub app: Option<&'a Arc<str>>,
    /// The caller's project id, for authenticated (APP or IAM) callers.
    pub user: Option<&'a Arc<str>>,
}

/// The counters one API's calls go through.
pub struct ApiThrottle<C: Clock = DefaultClock> {
    api: Option<(CounterKind, Arc<Counter<C>>)>,
    user: Option<Arc<KeyedCounter<Arc<str>, C>>>,
    app: Option<Arc<KeyedCounter<Arc<str>, C>>>,
    ip: Option<Arc<KeyedCounter<IpAddr, C>>>,
    user_specials: Specials<C>,
    app_specials: Specials<C>,
}

/// Excluded apps or tenants and their own counters, sorted by id.
type Specials<C> = Box<[(Arc<str>, Arc<Counter<C>>)]>;

/// The result of checking one call: allowed or not, and what each counter said (for the
/// `X-Apig-RateLimit-*` debug headers). No allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    checked: [Option<(CounterKind, Decision)>; 4],
}

/// Every live counter of a replica, and per API the ones it uses.
pub struct ThrottleSet<C: Clock = DefaultClock> {
    share: Share,
    counters: HashMap<CounterId, AnyCounter<C>>,
    apis: Vec<ApiThrottle<C>>,
}

enum AnyCounter<C: Clock> {
    Direct(Arc<Counter<C>>),
    ByText(Arc<KeyedCounter<Arc<str>, C>>),
    ByIp(Arc<KeyedCounter<IpAddr, C>>),
}

// === impl Share ===

impl Share {
    /// A replica alone: it enforces whole limits.
    pub const ALONE: Share = Share { index: 0, count: 1 };

    /// `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// This replica's part of `limit`.
    pub fn apply(&self, limit: u64) -> u64 {
        let count = u64::from(self.count.max(1));
        limit / count + u64::from(u64::from(self.index) < limit % count)
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::ALONE
    }
}

// === impl ThrottleSpec ===

impl ThrottleSpec {
    /// Checks a snapshot's throttle. Refused: an empty policy id, a type other than 1 or 2 (0,
    /// proto's unset, is taken as APIG's default 1), a zero window, an excluded limit of 0 or
    /// with an empty or repeated id. Windows beyond [`MAX_WINDOW`] are clamped to it.
    pub fn prepare(t: &apig_proto::Throttle) -> Result<Self, ThrottleError> {
        let fail = |reason: String| ThrottleError {
            policy_id: t.policy_id.chars().take(64).collect(),
            reason,
        };
        if t.policy_id.is_empty() {
            return Err(fail("empty policy id".into()));
        }
        let shared = match t.r#type {
            0 | 1 => false,
            2 => true,
            other => return Err(fail(format!("unknown type {other} (1 or 2)"))),
        };
        if t.window_ms == 0 {
            return Err(fail("the window is 0".into()));
        }
        let window = Duration::from_millis(t.window_ms).min(MAX_WINDOW);
        let specials = |what: &str, map: &std::collections::HashMap<String, u64>| {
            let mut out: Vec<(Arc<str>, u64)> = Vec::with_capacity(map.len());
            for (id, &limit) in map {
                if id.is_empty() {
                    return Err(fail(format!("an excluded {what} has an empty id")));
                }
                if limit == 0 {
                    return Err(fail(format!("excluded {what} {id:?} has a limit of 0")));
                }
                out.push((Arc::from(id.as_str()), limit));
            }
            out.sort_unstable();
            Ok(out)
        };
        Ok(Self {
            policy_id: Arc::from(t.policy_id.as_str()),
            shared,
            window,
            api_limit: t.api_limit,
            user_limit: t.user_limit,
            app_limit: t.app_limit,
            ip_limit: t.ip_limit,
            app_specials: specials("app", &t.app_specials)?,
            user_specials: specials("tenant", &t.user_specials)?,
        })
    }
}

// === impl CounterKind ===

impl CounterKind {
    /// The debug response header: `x-apig-ratelimit-api`, `-user`, `-app`, `-ip`,
    /// `-api-allenv`.
    pub fn header_name(&self) -> &'static str {
        match self {
            Self::Api => "x-apig-ratelimit-api",
            Self::User => "x-apig-ratelimit-user",
            Self::App => "x-apig-ratelimit-app",
            Self::Ip => "x-apig-ratelimit-ip",
            Self::Default => "x-apig-ratelimit-api-allenv",
        }
    }
}

// === impl Verdict ===

impl Verdict {
    const fn new() -> Self {
        Self {
            allowed: true,
            checked: [None; 4],
        }
    }

    /// Records one counter's answer; `false` when it refused.
    fn record(&mut self, slot: usize, kind: CounterKind, decision: Decision) -> bool {
        if let Some(entry) = self.checked.get_mut(slot) {
            *entry = Some((kind, decision));
        }
        if !decision.allowed {
            self.allowed = false;
        }
        decision.allowed
    }

    /// What each counter checked said, widest (API) first.
    pub fn decisions(&self) -> impl Iterator<Item = (CounterKind, Decision)> + '_ {
        self.checked.iter().rev().flatten().copied()
    }
}

/// The debug header value: `remain:9,limit:10,time:10 second` (the limit is this replica's).
pub fn debug_header_value(decision: &Decision) -> String {
    format!(
        "remain:{},limit:{},time:{}",
        decision.remaining,
        decision.quota.limit,
        window_text(decision.quota.window)
    )
}

/// `10 second`, `1 minute`, `2 hour`, `1 day`, or `500 millisecond` when no larger unit fits.
pub fn window_text(window: Duration) -> String {
    let ms = window.as_millis();
    for (unit, size) in [
        ("day", 86_400_000u128),
        ("hour", 3_600_000),
        ("minute", 60_000),
        ("second", 1000),
    ] {
        if ms >= size && ms.checked_rem(size) == Some(0) {
            return format!("{} {unit}", ms / size);
        }
    }
    format!("{ms} millisecond")
}

// === impl ApiThrottle ===

impl<C: Clock> ApiThrottle<C> {
    /// An API no counter applies to.
    fn unlimited() -> Self {
        Self {
            api: None,
            user: None,
            app: None,
            ip: None,
            user_specials: Box::new([]),
            app_specials: Box::new([]),
        }
    }

    /// Whether any counter applies.
    pub fn is_unlimited(&self) -> bool {
        self.api.is_none()
            && self.user.is_none()
            && self.app.is_none()
            && self.ip.is_none()
            && self.user_specials.is_empty()
            && self.app_specials.is_empty()
    }

    /// Takes one call from every counter that applies to `who`, narrowest first, stopping at the
    /// first refusal.
    pub fn check(&self, who: &CallerKeys<'_>) -> Verdict {
        let mut verdict = Verdict::new();
        if let Some(ip) = &self.ip {
            if !verdict.record(0, CounterKind::Ip, ip.check(&who.ip)) {
                return verdict;
            }
        }
        if let Some(app) = who.app {
            let decision = match find(&self.app_specials, app) {
                Some(special) => Some(special.check()),
                None => self.app.as_ref().map(|c| c.check(app)),
            };
            if let Some(d) = decision {
                if !verdict.record(1, CounterKind::App, d) {
                    return verdict;
                }
            }
        }
        if let Some(user) = who.user {
            let decision = match find(&self.user_specials, user) {
                Some(special) => Some(special.check()),
                None => self.user.as_ref().map(|c| c.check(user)),
            };
            if let Some(d) = decision {
                if !verdict.record(2, CounterKind::User, d) {
                    return verdict;
                }
            }
        }
        if let Some((kind, api)) = &self.api {
            verdict.record(3, *kind, api.check());
        }
        verdict
    }
}

fn find<'a, T>(sorted: &'a [(Arc<str>, T)], id: &str) -> Option<&'a T> {
    sorted
        .binary_search_by(|(k, _)| (**k).cmp(id))
        .ok()
        .and_then(|i| sorted.get(i))
        .map(|(_, v)| v)
}

// === impl ThrottleSet ===

impl<C: Clock + Clone> ThrottleSet<C> {
    /// Builds the counters of `apis` (each API's id and its policy, if any, in the runtime's API
    /// order), reusing every counter of `previous` whose id and effective quota are unchanged.
    pub fn build<'a>(
        apis: impl IntoIterator<Item = (&'a str, Option<&'a ThrottleSpec>)>,
        share: Share,
        settings: &ThrottleSettings,
        previous: Option<&ThrottleSet<C>>,
        clock: &C,
    ) -> Self {
        let mut builder = Builder {
            share,
            settings,
            previous: previous.map(|p| &p.counters),
            clock,
            counters: HashMap::new(),
        };
        let apis = apis
            .into_iter()
            .map(|(api_id, spec)| builder.api(api_id, spec))
            .collect();
        Self {
            share,
            counters: builder.counters,
            apis,
        }
    }
}

impl<C: Clock> ThrottleSet<C> {
    /// The counters of the API at `index` (the runtime's API order).
    pub fn api(&self, index: usize) -> Option<&ApiThrottle<C>> {
        self.apis.get(index)
    }

    pub fn share(&self) -> Share {
        self.share
    }

    /// Number of distinct counters.
    pub fn counter_count(&self) -> usize {
        self.counters.len()
    }

    /// Drops idle keys of every keyed counter; returns the keys left.
    pub fn retain_recent(&self) -> usize {
        let mut left = 0;
        for counter in self.counters.values() {
            match counter {
                AnyCounter::Direct(_) => {}
                AnyCounter::ByText(c) => {
                    c.retain_recent();
                    left += c.len();
                }
                AnyCounter::ByIp(c) => {
                    c.retain_recent();
                    left += c.len();
                }
            }
        }
        left
    }

    /// Whether `other` holds the very counter object this set has under the same id (state
    /// kept), for tests and diagnostics.
    pub fn shares_counter_with(&self, other: &Self, api_index: usize) -> Option<bool> {
        let (_, a) = self.api(api_index)?.api.as_ref()?;
        let (_, b) = other.api(api_index)?.api.as_ref()?;
        Some(Arc::ptr_eq(a, b))
    }
}

struct Builder<'a, C: Clock> {
    share: Share,
    settings: &'a ThrottleSettings,
    previous: Option<&'a HashMap<CounterId, AnyCounter<C>>>,
    clock: &'a C,
    counters: HashMap<CounterId, AnyCounter<C>>,
}

impl<C: Clock + Clone> Builder<'_, C> {
    fn api(&mut self, api_id: &str, spec: Option<&ThrottleSpec>) -> ApiThrottle<C> {
        let Some(spec) = spec else {
            if self.settings.default_per_sec == 0 {
                return ApiThrottle::unlimited();
            }
            let id = CounterId {
                scope: Scope::Default {
                    api: Arc::from(api_id),
                },
                kind: CounterKind::Default,
                special: None,
            };
            let quota = self.quota(self.settings.default_per_sec, Duration::from_secs(1));
            let mut out = ApiThrottle::unlimited();
            out.api = Some((CounterKind::Default, self.direct(id, quota)));
            return out;
        };
        let scope = if spec.shared {
            Scope::Policy {
                policy: Arc::clone(&spec.policy_id),
            }
        } else {
            Scope::PolicyApi {
                policy: Arc::clone(&spec.policy_id),
                api: Arc::from(api_id),
            }
        };
        let id = |kind, special: Option<&Arc<str>>| CounterId {
            scope: scope.clone(),
            kind,
            special: special.cloned(),
        };
        let window = spec.window;
        let mut out = ApiThrottle::unlimited();
        if spec.api_limit > 0 {
            let q = self.quota(spec.api_limit, window);
            out.api = Some((CounterKind::Api, self.direct(id(CounterKind::Api, None), q)));
        }
        if spec.user_limit > 0 {
            let q = self.quota(spec.user_limit, window);
            out.user = Some(self.by_text(id(CounterKind::User, None), q));
        }
        if spec.app_limit > 0 {
            let q = self.quota(spec.app_limit, window);
            out.app = Some(self.by_text(id(CounterKind::App, None), q));
        }
        if spec.ip_limit > 0 {
            let q = self.quota(spec.ip_limit, window);
            out.ip = Some(self.by_ip(id(CounterKind::Ip, None), q));
        }
        out.app_specials = spec
            .app_specials
            .iter()
            .map(|(app, limit)| {
                let q = self.quota(*limit, window);
                (
                    Arc::clone(app),
                    self.direct(id(CounterKind::App, Some(app)), q),
                )
            })
            .collect();
        out.user_specials = spec
            .user_specials
            .iter()
            .map(|(user, limit)| {
                let q = self.quota(*limit, window);
                (
                    Arc::clone(user),
                    self.direct(id(CounterKind::User, Some(user)), q),
                )
            })
            .collect();
        out
    }

    fn quota(&self, limit: u64, window: Duration) -> Quota {
        Quota {
            limit: self.share.apply(limit),
            window,
        }
    }

    /// The counter already made for `id` in this build, else the previous set's if its quota is
    /// the same, else a new one.
    fn reuse(&self, id: &CounterId, quota: Quota) -> Option<&AnyCounter<C>> {
        let found = self
            .counters
            .get(id)
            .or_else(|| self.previous.and_then(|p| p.get(id)))?;
        (found.quota() == quota).then_some(found)
    }

    fn direct(&mut self, id: CounterId, quota: Quota) -> Arc<Counter<C>> {
        if let Some(AnyCounter::Direct(c)) = self.reuse(&id, quota) {
            let c = Arc::clone(c);
            self.counters
                .entry(id)
                .or_insert_with(|| AnyCounter::Direct(Arc::clone(&c)));
            return c;
        }
        let c = Arc::new(Counter::new(quota, self.clock));
        self.counters.insert(id, AnyCounter::Direct(Arc::clone(&c)));
        c
    }

    fn by_text(&mut self, id: CounterId, quota: Quota) -> Arc<KeyedCounter<Arc<str>, C>> {
        if let Some(AnyCounter::ByText(c)) = self.reuse(&id, quota) {
            let c = Arc::clone(c);
            self.counters
                .entry(id)
                .or_insert_with(|| AnyCounter::ByText(Arc::clone(&c)));
            return c;
        }
        let c = Arc::new(KeyedCounter::new(
            quota,
            self.settings.max_keys_per_counter,
            &self.settings.budget,
            self.clock,
        ));
        self.counters.insert(id, AnyCounter::ByText(Arc::clone(&c)));
        c
    }

    fn by_ip(&mut self, id: CounterId, quota: Quota) -> Arc<KeyedCounter<IpAddr, C>> {
        if let Some(AnyCounter::ByIp(c)) = self.reuse(&id, quota) {
            let c = Arc::clone(c);
            self.counters
                .entry(id)
                .or_insert_with(|| AnyCounter::ByIp(Arc::clone(&c)));
            return c;
        }
        let c = Arc::new(KeyedCounter::new(
            quota,
            self.settings.max_keys_per_counter,
            &self.settings.budget,
            self.clock,
        ));
        self.counters.insert(id, AnyCounter::ByIp(Arc::clone(&c)));
        c
    }
}

impl<C: Clock> AnyCounter<C> {
    fn quota(&self) -> Quota {
        match self {
            Self::Direct(c) => c.quota(),
            Self::ByText(c) => c.quota(),
            Self::ByIp(c) => c.quota(),
        }
    }
}

impl<C: Clock> std::fmt::Debug for ThrottleSet<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleSet")
            .field("share", &self.share)
            .field("counters", &self.counters.len())
            .field("apis", &self.apis.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
