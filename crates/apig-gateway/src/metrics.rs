//! Prometheus metrics of a replica, served on the admin listener at `GET /metrics`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `apig_gateway_requests_total` | api, env, status, origin | answers; origin `backend` (relayed) or `gateway` (made here: errors, mocks) |
//! | `apig_gateway_request_duration_seconds` | api, env | arrival to response head |
//! | `apig_gateway_upstream_duration_seconds` | api, env | backend call to its response head |
//! | `apig_gateway_errors_total` | code, type | gateway errors by APIG code and gateway response type |
//! | `apig_gateway_auth_failures_total` | reason | authentication failures (`app_signature`, `app_missing`, `iam`, ...) |
//! | `apig_gateway_authorizer_total` | type, result | custom authorizer decisions: type `frontend` or `backend`; result `allow`, `deny`, `error` (function calls), `cache_hit`, `identities_failure` |
//! | `apig_gateway_throttled_total` | | 429 APIG.0308 |
//! | `apig_gateway_acl_denied_total` | | IP, app and account ACL refusals |
//! | `apig_gateway_backend_health_transitions_total` | channel, member, to | health check verdict changes |
//! | `apig_gateway_backend_address_refused_total` | | backend connections (requests, upgrades, function calls, health checks) the backend address policy refused |
//! | `apig_gateway_h2_flood_closed_total` | | HTTP/2 client connections closed for sending control frames (PING, SETTINGS, PRIORITY, empty frames) over their budget |
//! | `apig_gateway_snapshot_version` | | applied snapshot version |
//! | `apig_gateway_snapshot_apply_seconds` | | time to prepare and swap in a snapshot |
//! | `apig_gateway_snapshot_applied_timestamp_seconds` | | when the current snapshot was applied |
//! | `apig_gateway_control_plane_connected` | | 1 while the discovery stream is up |
//! | `apig_gateway_access_log_dropped_total` | | access log lines dropped (sink too slow) |
//! | `apig_gateway_usage_report_backlog` | | (minute, API) usage entries not yet acknowledged by the control plane |
//! | `apig_gateway_usage_report_dropped_total` | | usage entries dropped undelivered (outbox bounds) |
//!
//! `api` is the API id (`-` for requests that matched no API), `env` the environment name.
//!
//! The request path takes no shared lock: the per-API histograms and the counters of the common
//! statuses are resolved once per API into [`ApiMetrics`] (prometheus' label lookup takes a
//! read lock on the metric family) on the API's first answer (`metric_slots`); only an uncommon
//! status code goes through the lookup. An API's series exist from its first answer until it
//! leaves the snapshot ([`GatewayMetrics::forget`]).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::authorizer::Outcomes;
use crate::channel::health::Transitions;
use crate::usage::{ApiUsage, Call};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Statuses whose counters are cached per API.
const COMMON_STATUSES: [u16; 20] = [
    200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 429, 500, 502, 503, 504,
    101,
];

/// Latency buckets, seconds: 0.5 ms to 60 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The replica's metric families.
pub(crate) struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream: HistogramVec,
    errors: IntCounterVec,
    auth_failures: IntCounterVec,
    /// Resolved once: the request path never looks labels up.
    pub authorizer_frontend: Outcomes,
    pub authorizer_backend: Outcomes,
    pub throttled: IntCounter,
    pub acl_denied: IntCounter,
    health_transitions: IntCounterVec,
    pub backend_address_refused: IntCounter,
    pub h2_flood_closed: IntCounter,
    pub snapshot_version: IntGauge,
    pub snapshot_apply: Histogram,
    pub snapshot_applied_at: IntGauge,
    pub connected: IntGauge,
    pub access_log_dropped: IntCounter,
    pub usage_backlog: IntGauge,
    pub usage_dropped: IntCounter,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Gateway,
    Backend,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Backend => "backend",
        }
    }
}

/// One API's handles, resolved on its first answer.
pub(crate) struct ApiMetrics {
    /// The API's usage counters for the control plane's statistics (shared by its
    /// environments, carried over across snapshots).
    usage: Arc<ApiUsage>,
    api: String,
    env: String,
    duration: Histogram,
    upstream: Histogram,
    /// Per common status, per origin.
    by_status: [[OnceLock<IntCounter>; 2]; COMMON_STATUSES.len()],
    /// The uncommon statuses answered so far (their series are removed with the API's).
    uncommon: Mutex<Vec<(u16, Origin)>>,
}

impl GatewayMetrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram_vec = |name: &str, help: &str| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                &["api", "env"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let snapshot_apply = Histogram::with_opts(
            HistogramOpts::new(
                "apig_gateway_snapshot_apply_seconds",
                "Time to prepare and swap in a snapshot.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(snapshot_apply.clone()))?;
        let authorizer = counter_vec(
            "apig_gateway_authorizer_total",
            "Custom authorizer decisions by authorizer type and result.",
            &["type", "result"],
        )?;
        let outcomes = |kind: &str| Outcomes {
            allow: authorizer.with_label_values(&[kind, "allow"]),
            deny: authorizer.with_label_values(&[kind, "deny"]),
            error: authorizer.with_label_values(&[kind, "error"]),
            cache_hit: authorizer.with_label_values(&[kind, "cache_hit"]),
            identities_failure: authorizer.with_label_values(&[kind, "identities_failure"]),
        };
        let (authorizer_frontend, authorizer_backend) = (outcomes("frontend"), outcomes("backend"));
        Ok(Self {
            authorizer_frontend,
            authorizer_backend,
            requests: counter_vec(
                "apig_gateway_requests_total",
                "Answers by API, environment, status and origin.",
                &["api", "env", "status", "origin"],
            )?,
            duration: histogram_vec(
                "apig_gateway_request_duration_seconds",
                "From arrival to the response head.",
            )?,
            upstream: histogram_vec(
                "apig_gateway_upstream_duration_seconds",
                "Backend calls, to the backend's response head.",
            )?,
            errors: counter_vec(
                "apig_gateway_errors_total",
                "Gateway errors by APIG code and gateway response type.",
                &["code", "type"],
            )?,
            auth_failures: counter_vec(
                "apig_gateway_auth_failures_total",
                "Authentication failures by reason.",
                &["reason"],
            )?,
            throttled: counter(
                "apig_gateway_throttled_total",
                "Calls refused by throttling.",
            )?,
            acl_denied: counter(
                "apig_gateway_acl_denied_total",
                "Calls refused by an access control policy.",
            )?,
            health_transitions: counter_vec(
                "apig_gateway_backend_health_transitions_total",
                "Channel member health changes.",
                &["channel", "member", "to"],
            )?,
            backend_address_refused: counter(
                "apig_gateway_backend_address_refused_total",
                "Backend connections refused by the backend address policy.",
            )?,
            h2_flood_closed: counter(
                "apig_gateway_h2_flood_closed_total",
                "HTTP/2 client connections closed for a control frame flood.",
            )?,
            snapshot_version: gauge(
                "apig_gateway_snapshot_version",
                "Version of the applied snapshot.",
            )?,
            snapshot_apply,
            snapshot_applied_at: gauge(
                "apig_gateway_snapshot_applied_timestamp_seconds",
                "Unix time the current snapshot was applied.",
            )?,
            connected: gauge(
                "apig_gateway_control_plane_connected",
                "1 while the discovery stream to the control plane is up.",
            )?,
            access_log_dropped: counter(
                "apig_gateway_access_log_dropped_total",
                "Access log lines dropped because the sink could not keep up.",
            )?,
            usage_backlog: gauge(
                "apig_gateway_usage_report_backlog",
                "Usage entries (minute, API) not yet acknowledged by the control plane.",
            )?,
            usage_dropped: counter(
                "apig_gateway_usage_report_dropped_total",
                "Usage entries dropped before the control plane acknowledged them.",
            )?,
            registry,
        })
    }

    /// Handles for one API in one environment.
    pub(crate) fn api(&self, api: &str, env: &str, usage: Arc<ApiUsage>) -> ApiMetrics {
        ApiMetrics {
            usage,
            duration: self.duration.with_label_values(&[api, env]),
            upstream: self.upstream.with_label_values(&[api, env]),
            api: api.to_owned(),
            env: env.to_owned(),
            by_status: Default::default(),
            uncommon: Mutex::default(),
        }
    }

    /// Removes every series of `api` (its API left the snapshot): the histograms and each
    /// status counter it made.
    pub(crate) fn forget(&self, api: &ApiMetrics) {
        let labels = [api.api.as_str(), api.env.as_str()];
        // An error only says the series did not exist.
        let _ = self.duration.remove_label_values(&labels);
        let _ = self.upstream.remove_label_values(&labels);
        let made = COMMON_STATUSES
            .iter()
            .zip(&api.by_status)
            .flat_map(|(status, per_origin)| {
                [Origin::Gateway, Origin::Backend]
                    .into_iter()
                    .filter(|o| {
                        per_origin
                            .get(*o as usize)
                            .is_some_and(|c| c.get().is_some())
                    })
                    .map(|o| (*status, o))
            });
        let uncommon = api
            .uncommon
            .lock()
            .map(|u| u.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        for (status, origin) in made.chain(uncommon) {
            let _ = self.requests.remove_label_values(&[
                api.api.as_str(),
                api.env.as_str(),
                &status.to_string(),
                origin.label(),
            ]);
        }
    }

    /// Counts one answer (`bytes`: body bytes from and to the client, as far as known).
    pub(crate) fn record(
        &self,
        api: &ApiMetrics,
        status: u16,
        origin: Origin,
        total: Duration,
        upstream: Option<Duration>,
        bytes: (u64, u64),
    ) {
        api.usage.record(&Call {
            status,
            latency: total,
            backend: upstream,
            bytes_in: bytes.0,
            bytes_out: bytes.1,
        });
        api.duration.observe(total.as_secs_f64());
        if let Some(u) = upstream {
            api.upstream.observe(u.as_secs_f64());
        }
        let slot = COMMON_STATUSES
            .iter()
            .position(|s| *s == status)
            .and_then(|i| api.by_status.get(i))
            .and_then(|per_origin| per_origin.get(origin as usize));
        match slot {
            Some(cell) => cell
                .get_or_init(|| self.requests_counter(api, status, origin))
                .inc(),
            None => {
                self.requests_counter(api, status, origin).inc();
                let mut uncommon = api.uncommon.lock().unwrap_or_else(|e| e.into_inner());
                if !uncommon.contains(&(status, origin)) {
                    uncommon.push((status, origin));
                }
            }
        }
    }

    fn requests_counter(&self, api: &ApiMetrics, status: u16, origin: Origin) -> IntCounter {
        self.requests.with_label_values(&[
            api.api.as_str(),
            api.env.as_str(),
            &status.to_string(),
            origin.label(),
        ])
    }

    /// Counts a gateway error (and its family: auth failure, throttling, ACL).
    pub(crate) fn error(&self, code: &str, response_type: &str, auth_reason: Option<&str>) {
        self.errors.with_label_values(&[code, response_type]).inc();
        if let Some(reason) = auth_reason {
            self.auth_failures.with_label_values(&[reason]).inc();
        }
        match response_type {
            "THROTTLED" => self.throttled.inc(),
            "ACCESS_DENIED" => self.acl_denied.inc(),
            _ => {}
        }
    }

    /// The health transition counters of one channel member.
    pub(crate) fn transitions(&self, channel: &str, member: &str) -> Transitions {
        Transitions {
            to_healthy: self
                .health_transitions
                .with_label_values(&[channel, member, "healthy"]),
            to_unhealthy: self.health_transitions.with_label_values(&[
                channel,
                member,
                "unhealthy",
            ]),
        }
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics")
            .field("api", &self.api)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl ApiMetrics {
    pub(crate) fn api_id(&self) -> &str {
        &self.api
    }

    pub(crate) fn env(&self) -> &str {
        &self.env
    }
}

/// Shared handle type.
pub(crate) type Metrics = Arc<GatewayMetrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_render_as_prometheus_text() {
        let m = GatewayMetrics::new().unwrap();
        let api = m.api("api-1", "RELEASE", Arc::default());
        m.record(
            &api,
            200,
            Origin::Backend,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
            (0, 0),
        );
        m.record(
            &api,
            200,
            Origin::Backend,
            Duration::from_millis(3),
            None,
            (0, 0),
        );
        m.record(
            &api,
            418,
            Origin::Gateway,
            Duration::from_millis(1),
            None,
            (0, 0),
        );
        m.error("APIG.0308", "THROTTLED", None);
        m.error("APIG.0303", "AUTH_FAILURE", Some("app_signature"));
        m.transitions("c1", "10.0.0.1:80").to_unhealthy.inc();
        m.authorizer_frontend.cache_hit.inc();
        let text = String::from_utf8(m.render()).unwrap();
        for want in [
            r#"apig_gateway_requests_total{api="api-1",env="RELEASE",origin="backend",status="200"} 2"#,
            r#"apig_gateway_requests_total{api="api-1",env="RELEASE",origin="gateway",status="418"} 1"#,
            r#"apig_gateway_request_duration_seconds_count{api="api-1",env="RELEASE"} 3"#,
            r#"apig_gateway_upstream_duration_seconds_count{api="api-1",env="RELEASE"} 1"#,
            "apig_gateway_throttled_total 1",
            r#"apig_gateway_authorizer_total{result="cache_hit",type="frontend"} 1"#,
            r#"apig_gateway_auth_failures_total{reason="app_signature"} 1"#,
            r#"apig_gateway_backend_health_transitions_total{channel="c1",member="10.0.0.1:80",to="unhealthy"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
    }

    #[test]
    fn forgetting_an_api_removes_every_series_it_made() {
        let m = GatewayMetrics::new().unwrap();
        let gone = m.api("gone", "RELEASE", Arc::default());
        let kept = m.api("kept", "RELEASE", Arc::default());
        for api in [&gone, &kept] {
            let ms = Duration::from_millis(1);
            m.record(api, 200, Origin::Backend, ms, Some(ms), (0, 0));
            m.record(api, 418, Origin::Gateway, ms, None, (0, 0));
        }
        let before = String::from_utf8(m.render()).unwrap();
        assert!(before.contains(r#"api="gone""#), "{before}");
        m.forget(&gone);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains(r#"api="gone""#), "{text}");
        for want in [
            r#"apig_gateway_requests_total{api="kept",env="RELEASE",origin="backend",status="200"} 1"#,
            r#"apig_gateway_requests_total{api="kept",env="RELEASE",origin="gateway",status="418"} 1"#,
            r#"apig_gateway_request_duration_seconds_count{api="kept",env="RELEASE"} 2"#,
            r#"apig_gateway_upstream_duration_seconds_count{api="kept",env="RELEASE"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
    }
}
