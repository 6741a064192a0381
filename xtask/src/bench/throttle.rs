//! `cluster-throttle [SECONDS]`: cluster-wide throttling accuracy over 3 replicas.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};
use serde_json::json;

use super::Fixture;

/// The cluster-wide throttling bound, measured: 3 replicas, one policy, sustained overload.
pub(super) async fn cluster_throttle(bin: PathBuf, secs: u64) -> Result<()> {
    const LIMIT: u64 = 200;
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(&bin, &dir.path().join("control"));
    let gateways: Vec<Gateway> = (0..3)
        .map(|n| {
            Gateway::start_with_args(
                &bin,
                &cp.grpc_url(),
                &cp.seed.instance_id,
                &dir.path().join(format!("gw{n}")),
                &cp.cluster_token,
                "127.0.0.1:0".parse().expect("address"),
                &["--default-api-rate-limit", "0"],
            )
        })
        .collect();
    let backend = EchoBackend::start().await;
    let fx = Fixture::new(&cp, &backend).await;
    let (api, inst, host) = (&fx.api, fx.inst.clone(), fx.host.clone());
    let id = fx.create_api("cluster_api", "/c", "NONE", "/").await;
    let publish_id = fx.publish(&id).await?;
    let t = api
        .post(
            &format!("{inst}/throttles"),
            &json!({"name": "cluster_limit", "api_call_limits": LIMIT, "time_interval": 1, "time_unit": "SECOND"}),
        )
        .await;
    let r = api
        .post(
            &format!("{inst}/throttle-bindings"),
            &json!({"strategy_id": t.body["id"], "publish_ids": [publish_id]}),
        )
        .await;
    if r.status != 201 {
        bail!("binding failed: {:?}", r.body);
    }
    // Wait until all three replicas are connected and run the current snapshot.
    let start = Instant::now();
    loop {
        let r = api.get(&format!("{inst}/replicas")).await;
        let current = r.body["snapshot_version"].clone();
        let all = r.body["replicas"].as_array().cloned().unwrap_or_default();
        let connected: Vec<_> = all.iter().filter(|x| x["status"] == "connected").collect();
        if connected.len() == 3 && connected.iter().all(|x| x["applied_version"] == current) {
            break;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("replicas not ready: {:?}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..48 {
        let url = gateways[worker % 3].url("/c");
        let (http, host) = (http.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            while Instant::now() < deadline {
                match http
                    .get(&url)
                    .header("host", &host)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                {
                    Ok(200) => ok += 1,
                    Ok(429) => refused += 1,
                    _ => {}
                }
            }
            (ok, refused)
        }));
    }
    let (mut ok, mut refused) = (0u64, 0u64);
    for t in tasks {
        let (o, r) = t.await?;
        ok += o;
        refused += r;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let single = LIMIT as f64 + LIMIT as f64 * elapsed;
    println!("3 replicas, one policy of {LIMIT} calls/s, 48 clients for {elapsed:.1} s:");
    println!("  admitted {ok}, refused {refused}");
    println!(
        "  one gateway with the whole limit would admit {single:.0} (burst {LIMIT} + {LIMIT}/s)"
    );
    println!(
        "  cluster overshoot: {:+.2} % (target <= 2 %)",
        (ok as f64 - single) / single * 100.0
    );
    Ok(())
}
