//! Benchmarks that need the real binaries.
//!
//! `propagation [N]`: one control plane and one gateway (release build); N times, publish or
//! take offline an API and measure the time from the management answer to the gateway's
//! answer changing. Reports median, p90 and worst.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};
use serde_json::json;

use crate::{cargo, root, run as run_cmd};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("propagation") => {
            let n = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
            run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(propagation(root().join("target/release/apig"), n))
        }
        _ => bail!("usage: cargo xtask bench propagation [N]"),
    }
}

const RELEASE: &str = "DEFAULT_ENVIRONMENT_RELEASE_ID";

async fn propagation(bin: PathBuf, n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(&bin, &dir.path().join("control"));
    let gw = Gateway::start(
        &bin,
        &cp.grpc_url(),
        &cp.seed.instance_id,
        &dir.path().join("gw"),
        &cp.cluster_token,
    );
    let backend = EchoBackend::start().await;
    let api = cp.client();
    let inst = format!("/instances/{}", cp.seed.instance_id);
    let g = api
        .post(&format!("{inst}/api-groups"), &json!({"name": "bench"}))
        .await;
    let (group, host) = (
        g.body["id"].as_str().unwrap_or_default().to_owned(),
        g.body["sl_domain"].as_str().unwrap_or_default().to_owned(),
    );
    let a = api
        .post(
            &format!("{inst}/apis"),
            &json!({"name": "bench_api", "type": 1, "req_protocol": "HTTP", "req_method": "GET", "req_uri": "/p",
                    "auth_type": "NONE", "backend_type": "HTTP", "group_id": group,
                    "backend_api": {"url_domain": backend.authority(), "req_protocol": "HTTP", "req_method": "GET", "req_uri": "/p", "timeout": 5000}}),
        )
        .await;
    let id = a.body["id"].as_str().unwrap_or_default().to_owned();
    let http = http_client();
    let url = gw.url("/p");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let online = i % 2 == 0;
        let action = if online { "online" } else { "offline" };
        let want = if online { 200 } else { 404 };
        let r = api
            .post(
                &format!("{inst}/apis/action"),
                &json!({"action": action, "api_id": id, "env_id": RELEASE}),
            )
            .await;
        if r.status != 201 {
            bail!("publish failed: {:?}", r.body);
        }
        let start = Instant::now();
        loop {
            let status = http
                .get(&url)
                .header("host", &host)
                .send()
                .await?
                .status()
                .as_u16();
            if status == want {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the change did not reach the gateway within 10 s");
            }
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!("publish → gateway answering, {n} changes, 1 gateway (loopback, release build):");
    println!(
        "  median {:?}  p90 {:?}  worst {:?}",
        pct(0.5),
        pct(0.9),
        samples[samples.len() - 1]
    );
    Ok(())
}
