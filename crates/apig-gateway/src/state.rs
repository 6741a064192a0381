//! State shared by the listeners, the request pipeline and the sync loop.
//!
//! What requests see is one [`Serving`]: the applied runtime (immutable, per snapshot) and the
//! throttle counters built for it (per snapshot *and* replica share), swapped together with
//! arc-swap so a request never pairs a runtime with counters of another API list. Counters
//! outlive snapshots: a new `Serving` reuses every counter whose id and effective quota did not
//! change (`apig_policy::throttle`), so a republish or an unrelated change resets nothing.
//!
//! The credential quota counters (`apig_policy::quota`) ride along the same way: a `Serving`
//! holds the [`QuotaSet`] of its snapshot's apps, rebuilt with the throttle counters and keeping
//! every counter whose quota id and numbers are unchanged. Counts saved before a restart
//! (`quota_file`) are handed to the first set built, then dropped.
//!
//! Channel members' health (and the health-check tasks) carry over the same way
//! (`channel::ChannelSet`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use apig_policy::{
    BackendAddressPolicy, DefaultClock, IpAcl, KeyBudget, QuotaKey, QuotaSet, Share, ThrottleSet,
    ThrottleSettings, Usage,
};
use arc_swap::ArcSwapOption;

use crate::access_log::AccessLog;
use crate::authorizer::DecisionCache;
use crate::channel::ChannelSet;
use crate::config::Limits;
use crate::context::unix_millis;
use crate::egress::AddressGuard;
use crate::metric_slots::ApiMetricSlots;
use crate::metrics::{ApiMetrics, Metrics};
use crate::proxy::Upstream;
use crate::runtime::Runtime;
use crate::usage::UsageRecorder;

/// Asynchronous function calls in flight at most; beyond, new ones are refused (502).
const MAX_ASYNC_FUNCTION_CALLS: usize = 1024;

/// What requests run against: a runtime, its throttle counters and its apps' quota counters.
pub(crate) struct Serving {
    pub runtime: Arc<Runtime>,
    pub throttle: ThrottleSet,
    /// Indexed like the snapshot's apps.
    pub quotas: QuotaSet,
    /// Health and load of the runtime's channel members; indexed like `runtime.channels`.
    pub channels: ChannelSet,
    /// Metric handles of each API, made on its first answer; indexed like `runtime.apis`.
    pub api_metrics: ApiMetricSlots,
    /// For requests that matched no API.
    pub unmatched_metrics: Arc<ApiMetrics>,
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
    /// The backend address policy, for the health checks (the upstream clients hold it too).
    pub address_guard: Arc<AddressGuard>,
    /// TLS settings of backend connections (HTTPS health checks use them too).
    pub backend_tls: Arc<rustls::ClientConfig>,
    /// Decisions of custom authorizers with a ttl (`authorizer::cache`), kept across
    /// snapshots: entries name the authorizer definition they were made under.
    pub authorizer_cache: DecisionCache,
    /// Permits for asynchronous function calls in flight (`function`).
    pub function_calls: Arc<tokio::sync::Semaphore>,
    pub metrics: Metrics,
    /// Per-API usage counters and the outbox of usage reports (`usage`).
    pub usage: Arc<UsageRecorder>,
    pub access_log: AccessLog,
    pub instance_id: String,
    pub node_id: String,
    connected: AtomicBool,
    throttle_settings: ThrottleSettings,
    clock: DefaultClock,
    /// The replica's share of cluster-wide limits. Held while a new `Serving` is built and
    /// stored, so installs and share changes never interleave (only the sync task takes it).
    share: Mutex<Share>,
    /// Quota counts read from the quota file at start, for the first counters built; taken
    /// (and so dropped) by the first install.
    restored_quotas: Mutex<Option<HashMap<QuotaKey, Usage>>>,
}

// === impl Shared ===

impl Shared {
    /// `trusted_proxies` is `limits.trusted_proxies`, parsed by the caller, as is
    /// `address_policy` from the backend network lists.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        limits: Limits,
        trusted_proxies: Option<IpAcl>,
        address_policy: BackendAddressPolicy,
        instance_id: String,
        node_id: String,
        backend_tls: Arc<rustls::ClientConfig>,
        metrics: Metrics,
        access_log: AccessLog,
    ) -> Self {
        let throttle_settings = ThrottleSettings {
            default_per_sec: limits.default_api_limit_per_sec,
            max_keys_per_counter: limits.max_limiter_keys,
            budget: KeyBudget::new(limits.max_limiter_keys_total),
        };
        let address_guard = Arc::new(AddressGuard::new(
            address_policy,
            metrics.backend_address_refused.clone(),
        ));
        Self {
            serving: ArcSwapOption::empty(),
            limits,
            trusted_proxies,
            upstream: Upstream::new(Arc::clone(&backend_tls), Arc::clone(&address_guard)),
            address_guard,
            backend_tls,
            authorizer_cache: DecisionCache::new(crate::authorizer::cache::DEFAULT_MAX_ENTRIES),
            function_calls: Arc::new(tokio::sync::Semaphore::new(MAX_ASYNC_FUNCTION_CALLS)),
            metrics,
            usage: Arc::new(UsageRecorder::new()),
            access_log,
            instance_id,
            node_id,
            connected: AtomicBool::new(false),
            throttle_settings,
            clock: DefaultClock::default(),
            share: Mutex::new(Share::ALONE),
            restored_quotas: Mutex::new(None),
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
    /// unchanged). Requests that loaded the old one finish with it. Returns the replaced state:
    /// freeing a large one takes a while (100k APIs: a few hundred ms), so the sync task frees
    /// it on a blocking thread, where it stalls no request (when requests still hold it, the
    /// last of them frees it).
    pub(crate) fn install(&self, runtime: Arc<Runtime>) -> Option<Arc<Serving>> {
        let share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuild(runtime, *share)
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
            // The replaced state shares this runtime: freeing it here is cheap.
            drop(self.rebuild(Arc::clone(&current.runtime), new));
        }
        true
    }

    pub(crate) fn share(&self) -> Share {
        *self.share.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds and stores a `Serving`, returning the replaced one; the caller holds the share
    /// lock.
    fn rebuild(&self, runtime: Arc<Runtime>, share: Share) -> Option<Arc<Serving>> {
        let current = self.serving.load_full();
        let throttle = ThrottleSet::build(
            runtime.throttle_specs(),
            share,
            &self.throttle_settings,
            current.as_ref().map(|s| &s.throttle),
            &self.clock,
        );
        let restored = self
            .restored_quotas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let quotas = QuotaSet::build(
            runtime.app_quotas(),
            share,
            current.as_ref().map(|s| &s.quotas),
            restored.as_ref(),
            unix_millis(SystemTime::now()),
        );
        let channels = ChannelSet::build(
            &runtime.channels,
            current.as_ref().map(|s| &s.channels),
            &self.backend_tls,
            &self.address_guard,
            &self.metrics,
        );
        let api_metrics = ApiMetricSlots::build(
            Arc::clone(&runtime),
            current.as_ref().map(|s| &s.api_metrics),
            &self.metrics,
            &self.usage,
        );
        self.metrics
            .snapshot_version
            .set(i64::try_from(runtime.version()).unwrap_or(i64::MAX));
        self.metrics
            .snapshot_applied_at
            .set(unix_millis(SystemTime::now()) / 1000);
        self.serving.swap(Some(Arc::new(Serving {
            runtime,
            throttle,
            quotas,
            channels,
            api_metrics,
            unmatched_metrics: Arc::new(self.metrics.api("-", "-", self.usage.counter(""))),
        })))
    }

    /// Hands counts saved before a restart to the first counters built (call before the first
    /// install).
    pub(crate) fn restore_quotas(&self, saved: impl IntoIterator<Item = (QuotaKey, Usage)>) {
        *self
            .restored_quotas
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(saved.into_iter().collect());
    }

    /// The quota counts of the current windows, sorted: what the quota file should hold.
    pub(crate) fn quota_usage(&self, now_unix_ms: i64) -> Vec<(QuotaKey, Usage)> {
        self.serving
            .load()
            .as_ref()
            .map(|s| s.quotas.usage(now_unix_ms))
            .unwrap_or_default()
    }

    /// Quota counters of the current snapshot.
    pub(crate) fn quota_counters(&self) -> usize {
        self.serving.load().as_ref().map_or(0, |s| s.quotas.len())
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
        self.metrics.connected.set(i64::from(connected));
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;
    use apig_proto::{App, AppQuota, Snapshot};
    use prost::Message;

    const DAY: u64 = 86_400_000;

    fn runtime(version: u64, quota: Option<AppQuota>) -> Arc<Runtime> {
        let app = |id: &str, quota| App {
            id: id.into(),
            name: format!("name-{id}"),
            app_key: format!("key-{id}"),
            app_secret: "secret".into(),
            quota,
            ..Default::default()
        };
        let snapshot = Snapshot {
            instance_id: "inst".into(),
            epoch: "e1".into(),
            version,
            apps: vec![app("free", None), app("metered", quota)],
            ..Default::default()
        };
        let digest = cache::digest(&snapshot.encode_to_vec());
        Arc::new(Runtime::prepare(&snapshot, digest).unwrap())
    }

    fn quota(limit: u64, anchor: i64) -> Option<AppQuota> {
        Some(AppQuota {
            quota_id: "q1".into(),
            limit,
            window_ms: DAY,
            anchor_unix_ms: anchor,
        })
    }

    fn shared() -> Shared {
        Shared::new(
            Limits::default(),
            None,
            BackendAddressPolicy::default(),
            "inst".into(),
            "node".into(),
            crate::backend_tls::client_config(None).unwrap(),
            Arc::new(crate::metrics::GatewayMetrics::new().unwrap()),
            AccessLog::disabled(Arc::new(crate::metrics::GatewayMetrics::new().unwrap())),
        )
    }

    fn admitted(shared: &Shared, now: i64) -> usize {
        let serving = shared.serving().unwrap();
        let q = serving.quotas.app(1).unwrap();
        (0..100).take_while(|_| q.check(now).allowed).count()
    }

    #[tokio::test]
    async fn saved_counts_come_back_on_the_first_install_only() {
        let now = unix_millis(SystemTime::now());
        // The window started an hour ago: the test cannot cross a boundary.
        let anchor = now - 3_600_000;
        let key = QuotaKey {
            quota_id: Arc::from("q1"),
            app_id: Arc::from("metered"),
            limit: 10,
            window_ms: DAY,
            anchor_unix_ms: anchor,
        };
        let shared = shared();
        assert!(shared.quota_usage(now).is_empty(), "nothing served yet");
        shared.restore_quotas([
            (
                key.clone(),
                Usage {
                    window: 0,
                    count: 7,
                },
            ),
            // Another app, a stale window: ignored.
            (
                QuotaKey {
                    app_id: Arc::from("gone"),
                    ..key.clone()
                },
                Usage {
                    window: 0,
                    count: 1,
                },
            ),
        ]);
        shared.install(runtime(1, quota(10, anchor)));
        assert_eq!(shared.quota_counters(), 1);
        assert!(shared.serving().unwrap().quotas.app(0).is_none());
        assert_eq!(admitted(&shared, now), 3);
        assert_eq!(
            shared.quota_usage(now),
            vec![(
                key.clone(),
                Usage {
                    window: 0,
                    count: 10
                }
            )]
        );

        // A republish keeps the counter; the restored counts are not applied twice.
        shared.install(runtime(2, quota(10, anchor)));
        assert_eq!(admitted(&shared, now), 0);

        // New numbers: a fresh counter (and the saved count, consumed, does not come back).
        shared.install(runtime(3, quota(12, anchor)));
        assert_eq!(admitted(&shared, now), 12);

        // A share change keeps the window's count: 12 used, the new share is 4.
        assert!(shared.set_share(Share::new(0, 3).unwrap()));
        assert_eq!(admitted(&shared, now), 0);
        let decision = shared.serving().unwrap().quotas.app(1).unwrap().check(now);
        assert_eq!(decision.quota.limit, 4);
    }

    #[tokio::test]
    async fn a_saved_count_for_other_numbers_or_a_past_window_is_ignored() {
        let now = unix_millis(SystemTime::now());
        let anchor = now - 3_600_000;
        let key = |limit| QuotaKey {
            quota_id: Arc::from("q1"),
            app_id: Arc::from("metered"),
            limit,
            window_ms: DAY,
            anchor_unix_ms: anchor,
        };
        for (saved_key, window) in [(key(10), -1), (key(11), 0)] {
            let shared = shared();
            shared.restore_quotas([(saved_key, Usage { window, count: 9 })]);
            shared.install(runtime(1, quota(10, anchor)));
            assert_eq!(admitted(&shared, now), 10);
        }
    }

    /// A runtime serving MOCK APIs with these ids in RELEASE.
    fn runtime_with_apis(version: u64, ids: &[&str]) -> Arc<Runtime> {
        use apig_proto::{api, Api, Environment, Group, MockBackend};
        let snapshot = Snapshot {
            instance_id: "inst".into(),
            epoch: "e1".into(),
            version,
            groups: vec![Group {
                id: "g".into(),
                name: "g".into(),
                domains: vec!["g.example.com".into()],
            }],
            environments: vec![Environment {
                id: "env-release".into(),
                name: "RELEASE".into(),
            }],
            apis: ids
                .iter()
                .map(|id| Api {
                    id: (*id).into(),
                    name: format!("name_{id}"),
                    group_id: "g".into(),
                    env_id: "env-release".into(),
                    req_method: "GET".into(),
                    req_uri: format!("/{id}"),
                    backend: Some(api::Backend::Mock(MockBackend {
                        status_code: 200,
                        result_content: String::new(),
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let digest = cache::digest(&snapshot.encode_to_vec());
        Arc::new(Runtime::prepare(&snapshot, digest).unwrap())
    }

    /// Answers one call of the API at `index` of the current runtime in the metrics.
    fn answer(shared: &Shared, index: usize) {
        let serving = shared.serving().unwrap();
        let api = serving.api_metrics.get(index).unwrap();
        shared.metrics.record(
            api,
            200,
            crate::metrics::Origin::Gateway,
            std::time::Duration::from_millis(1),
            None,
            (0, 0),
        );
    }

    fn series(shared: &Shared) -> String {
        String::from_utf8(shared.metrics.render()).unwrap()
    }

    #[tokio::test]
    async fn install_hands_back_the_replaced_state_for_the_caller_to_free() {
        let shared = shared();
        assert!(shared.install(runtime(1, None)).is_none());
        let replaced = shared.install(runtime(2, None)).unwrap();
        assert_eq!(replaced.runtime.version(), 1);
        assert_eq!(shared.runtime().unwrap().version(), 2);
    }

    #[tokio::test]
    async fn api_series_exist_from_the_first_answer_until_the_api_leaves() {
        let shared = shared();
        shared.install(runtime_with_apis(1, &["a1", "a2"]));
        assert!(
            !series(&shared).contains("api=\"a1\""),
            "no series before an API answers"
        );
        answer(&shared, 0);
        assert!(series(&shared).contains(
            r#"apig_gateway_requests_total{api="a1",env="RELEASE",origin="gateway",status="200"} 1"#
        ));
        assert!(!series(&shared).contains("api=\"a2\""));

        // a1 stays through a republish that moves it; its handles carry over, so a later
        // removal still finds and removes its series although it did not answer in between.
        shared.install(runtime_with_apis(2, &["a0", "a2", "a1"]));
        assert!(series(&shared).contains(r#"api="a1""#));
        shared.install(runtime_with_apis(3, &["a2"]));
        let text = series(&shared);
        assert!(!text.contains(r#"api="a1""#), "{text}");

        // An API answering again after coming back starts from zero.
        shared.install(runtime_with_apis(4, &["a2", "a1"]));
        answer(&shared, 1);
        assert!(series(&shared).contains(
            r#"apig_gateway_requests_total{api="a1",env="RELEASE",origin="gateway",status="200"} 1"#
        ));
    }
}
