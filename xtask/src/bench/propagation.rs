//! `propagation [N]`: publish → every gateway answering the change.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};
use serde_json::json;

use super::{Fixture, RELEASE};

pub(super) async fn propagation(bin: PathBuf, n: usize) -> Result<()> {
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
    let fx = Fixture::new(&cp, &backend).await;
    let (api, inst, host) = (&fx.api, fx.inst.clone(), fx.host.clone());
    let id = fx.create_api("bench_api", "/p", "NONE", "/p").await;
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
