//! Benchmarks that need the real binaries.
//!
//! `peers [--rounds N] [--secs S] [--connections C] [--bin APIG]`: the gateway against nginx, HAProxy and
//! the backend called directly, each proxy pinned to one core (`peers.rs`): plain proxying and
//! the full path (APP signature + throttling + ACL), with ratios to the targets.
//!
//! `cluster-throttle [SECONDS]`: 3 replicas share one policy (L calls per second); load from 48
//! concurrent clients spread over the replicas for SECONDS; reports admitted calls against what
//! a single gateway with the whole limit admits (its burst L plus L per second).
//!
//! `instructions [--bin APIG] [--baseline APIG]`: user-space instructions per proxied request
//! under callgrind (`instructions.rs`): the low-noise figure to compare builds of the hot path.
//!
//! `scale [N ...]` (default 10000 100000): a gateway serving N published APIs (path parameters,
//! 8 groups; loaded by cloning one API in a backup file) against one serving a single API:
//! start to serving, publish to answering and the gateway's prepare + swap time, RSS per API,
//! wrk throughput ratio. Written to `target/bench/scale-<time>.txt`.
//!
//! `propagation [N] [--replicas R]` (default 200 publishes, 8 replicas): N times, publish or
//! take offline an API and measure the time from the management answer until every replica
//! answers the change (p50, p90, p99, max), with a paced background load on every replica whose
//! errors and worst latency are reported. Written to `target/bench/propagation-<time>.txt`.
//!
//! The replica's side of `scale` alone, without processes: `cargo bench -p apig-gateway --bench
//! snapshot` (decode + prepare time, bytes held per API). Figures: `BENCHMARKS.md`.

mod clone;
mod instructions;
mod machine;
mod peers;
mod propagation;
mod scale;
mod throttle;

use std::path::PathBuf;

use anyhow::{bail, Result};
use apig_testkit::{ControlPlane, EchoBackend, MgmtClient};
use serde_json::json;

use crate::{cargo, root, run as run_cmd};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("propagation") => {
            let options = propagation::Options::parse(&args[1..])?;
            run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(propagation::propagation(
                root().join("target/release/apig"),
                options,
            ))
        }
        Some("scale") => {
            let sizes = scale::sizes(&args[1..])?;
            run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(scale::scale(root().join("target/release/apig"), &sizes))
        }
        Some("instructions") => {
            let mut bins = Vec::new();
            let mut rest = args[1..].iter();
            while let Some(flag) = rest.next() {
                let Some(path) = rest.next() else {
                    bail!("{flag} needs a path");
                };
                match flag.as_str() {
                    "--bin" => bins.insert(0, ("apig".to_owned(), PathBuf::from(path))),
                    "--baseline" => bins.push((format!("base{}", bins.len()), PathBuf::from(path))),
                    other => bail!("unknown flag {other}: --bin APIG --baseline APIG"),
                }
            }
            if !bins.iter().any(|(name, _)| *name == "apig") {
                run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
                bins.insert(0, ("apig".to_owned(), root().join("target/release/apig")));
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(instructions::instructions(bins))
        }
        Some("peers") => {
            let settings = peers::Settings::parse(&args[1..])?;
            let bin = match &settings.bin {
                Some(bin) => bin.clone(),
                None => {
                    run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
                    root().join("target/release/apig")
                }
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(peers::peers(bin, settings))
        }
        Some("cluster-throttle") => {
            let secs = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
            run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(throttle::cluster_throttle(
                root().join("target/release/apig"),
                secs,
            ))
        }
        _ => bail!(
            "usage: cargo xtask bench peers [--rounds N] [--secs S] [--connections C] [--bin APIG] \
             [--baseline APIG] [--only T,..] | instructions [--bin APIG] [--baseline APIG] | \
             scale [N ...] | propagation [N] [--replicas R] | cluster-throttle [SECONDS]"
        ),
    }
}

pub(super) const RELEASE: &str = "DEFAULT_ENVIRONMENT_RELEASE_ID";

/// A group on the bootstrap instance, with APIs to the echo backend: the setup every benchmark
/// shares.
pub(super) struct Fixture {
    pub api: MgmtClient,
    pub inst: String,
    pub group: String,
    pub host: String,
    pub backend: String,
}

impl Fixture {
    pub(super) async fn new(cp: &ControlPlane, backend: &EchoBackend) -> Fixture {
        Self::with_backend(cp, backend.authority()).await
    }

    /// The fixture with APIs forwarding to `backend` (`host:port`).
    pub(super) async fn with_backend(cp: &ControlPlane, backend: String) -> Fixture {
        let api = cp.client();
        let inst = format!("/instances/{}", cp.seed.instance_id);
        let g = api
            .post(&format!("{inst}/api-groups"), &json!({"name": "bench"}))
            .await;
        Fixture {
            group: g.body["id"].as_str().unwrap_or_default().to_owned(),
            host: g.body["sl_domain"].as_str().unwrap_or_default().to_owned(),
            backend,
            api,
            inst,
        }
    }

    /// A GET API with `auth` at `path`, forwarding to `backend_path`; returns its id.
    pub(super) async fn create_api(
        &self,
        name: &str,
        path: &str,
        auth: &str,
        backend_path: &str,
    ) -> String {
        let a = self
            .api
            .post(
                &format!("{}/apis", self.inst),
                &json!({"name": name, "type": 1, "req_protocol": "HTTP", "req_method": "GET", "req_uri": path,
                        "auth_type": auth, "backend_type": "HTTP", "group_id": self.group,
                        "backend_api": {"url_domain": self.backend, "req_protocol": "HTTP", "req_method": "GET",
                                        "req_uri": backend_path, "timeout": 5000}}),
            )
            .await;
        a.body["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Publishes in RELEASE; returns the publication id.
    pub(super) async fn publish(&self, id: &str) -> Result<String> {
        let p = self
            .api
            .post(
                &format!("{}/apis/action", self.inst),
                &json!({"action": "online", "api_id": id, "env_id": RELEASE}),
            )
            .await;
        if p.status != 201 {
            bail!("publishing failed: {:?}", p.body);
        }
        Ok(p.body["publish_id"].as_str().unwrap_or_default().to_owned())
    }
}

/// Requests per second of `wrk` against `url` with extra headers; fails when wrk is missing.
pub(super) fn wrk(url: &str, headers: &[(&str, &str)], secs: u64) -> Result<f64> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t1", "-c32", &format!("-d{secs}s")]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd
        .arg(url)
        .output()
        .map_err(|e| anyhow::anyhow!("wrk ({e}); install it: apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        bail!("wrk saw errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output:\n{text}"))
}
