//! Prometheus metrics of the control plane, served on its admin listener at `GET /metrics`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `apig_control_management_requests_total` | method, status | management API answers |
//! | `apig_control_store_commit_seconds` | | durable store commits (flush included) |
//! | `apig_control_snapshot_version` | instance | the current snapshot of each instance |
//! | `apig_control_replicas` | instance, status | known replicas, connected or disconnected |
//! | `apig_control_replica_applied_version` | instance, node | what each replica runs |
//! | `apig_control_replica_apply_lag_seconds` | instance, node | publish to the replica's ACK, last snapshot |
//!
//! The per-instance and per-replica gauges are computed when scraped, from the publisher's state.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::publisher::Publisher;

pub struct ControlMetrics {
    registry: Registry,
    management: IntCounterVec,
    pub store_commit: Histogram,
    snapshot_version: IntGaugeVec,
    replicas: IntGaugeVec,
    applied_version: IntGaugeVec,
    apply_lag: GaugeVec,
}

impl ControlMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let management = IntCounterVec::new(
            Opts::new(
                "apig_control_management_requests_total",
                "Management API answers by method and status.",
            ),
            &["method", "status"],
        )?;
        let store_commit = Histogram::with_opts(
            HistogramOpts::new(
                "apig_control_store_commit_seconds",
                "Durable store commits, flush included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let snapshot_version = gauge(
            "apig_control_snapshot_version",
            "Current snapshot version of each instance.",
            &["instance"],
        )?;
        let replicas = gauge(
            "apig_control_replicas",
            "Known replicas by instance and status.",
            &["instance", "status"],
        )?;
        let applied_version = gauge(
            "apig_control_replica_applied_version",
            "Snapshot version each replica runs.",
            &["instance", "node"],
        )?;
        let apply_lag = GaugeVec::new(
            Opts::new(
                "apig_control_replica_apply_lag_seconds",
                "From publishing a snapshot to the replica's ACK, for its last ACK.",
            ),
            &["instance", "node"],
        )?;
        registry.register(Box::new(management.clone()))?;
        registry.register(Box::new(store_commit.clone()))?;
        registry.register(Box::new(snapshot_version.clone()))?;
        registry.register(Box::new(replicas.clone()))?;
        registry.register(Box::new(applied_version.clone()))?;
        registry.register(Box::new(apply_lag.clone()))?;
        Ok(Self {
            registry,
            management,
            store_commit,
            snapshot_version,
            replicas,
            applied_version,
            apply_lag,
        })
    }

    /// Counts one management answer.
    pub fn management_request(&self, method: &str, status: u16) {
        self.management
            .with_label_values(&[method, &status.to_string()])
            .inc();
    }

    /// The text exposition, with the replica gauges as of now.
    pub fn render(&self, publisher: &Publisher) -> Vec<u8> {
        self.snapshot_version.reset();
        self.replicas.reset();
        self.applied_version.reset();
        self.apply_lag.reset();
        for (instance, version) in publisher.versions() {
            self.snapshot_version
                .with_label_values(&[instance.as_str()])
                .set(i64::try_from(version).unwrap_or(i64::MAX));
        }
        for r in publisher.all_replicas() {
            self.replicas
                .with_label_values(&[r.instance_id.as_str(), r.status])
                .inc();
            if r.status == "connected" {
                self.applied_version
                    .with_label_values(&[r.instance_id.as_str(), r.node_id.as_str()])
                    .set(i64::try_from(r.applied_version).unwrap_or(i64::MAX));
                if let Some(ms) = r.apply_lag_ms {
                    self.apply_lag
                        .with_label_values(&[r.instance_id.as_str(), r.node_id.as_str()])
                        .set(ms as f64 / 1000.0);
                }
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
