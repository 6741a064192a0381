//! Benchmarks that need the real binaries.
//!
//! `auth [SECONDS]`: requests/s through an APP-authenticated API against the same API with
//! auth NONE, alternating wrk runs in one process tree.
//!
//! `cluster-throttle [SECONDS]`: 3 replicas share one policy (L calls per second); load from 48
//! concurrent clients spread over the replicas for SECONDS; reports admitted calls against what
//! a single gateway with the whole limit admits (its burst L plus L per second).
//!
//! `propagation [N]`: one control plane and one gateway (release build); N times, publish or
//! take offline an API and measure the time from the management answer to the gateway's
//! answer changing. Reports median, p90 and worst.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway, MgmtClient};
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
        Some("auth") => {
            let secs = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
            run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(auth_ratio(root().join("target/release/apig"), secs))
        }
        Some("cluster-throttle") => {
            let secs = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
            run_cmd(cargo().args(["build", "--release", "-p", "apig"]))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(cluster_throttle(root().join("target/release/apig"), secs))
        }
        _ => bail!("usage: cargo xtask bench propagation [N] | auth [SECONDS] | cluster-throttle [SECONDS]"),
    }
}

const RELEASE: &str = "DEFAULT_ENVIRONMENT_RELEASE_ID";

/// A group on the bootstrap instance, with APIs to the echo backend: the setup every benchmark
/// shares.
struct Fixture {
    api: MgmtClient,
    inst: String,
    group: String,
    host: String,
    backend: String,
}

impl Fixture {
    async fn new(cp: &ControlPlane, backend: &EchoBackend) -> Fixture {
        let api = cp.client();
        let inst = format!("/instances/{}", cp.seed.instance_id);
        let g = api
            .post(&format!("{inst}/api-groups"), &json!({"name": "bench"}))
            .await;
        Fixture {
            group: g.body["id"].as_str().unwrap_or_default().to_owned(),
            host: g.body["sl_domain"].as_str().unwrap_or_default().to_owned(),
            backend: backend.authority(),
            api,
            inst,
        }
    }

    /// A GET API with `auth` at `path`, forwarding to `backend_path`; returns its id.
    async fn create_api(&self, name: &str, path: &str, auth: &str, backend_path: &str) -> String {
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
    async fn publish(&self, id: &str) -> Result<String> {
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

/// Requests per second of `wrk` against `url` with extra headers; fails when wrk is missing.
fn wrk(url: &str, headers: &[(&str, &str)], secs: u64) -> Result<f64> {
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

/// Throughput of an APP-authenticated API against the same API with auth NONE, alternating
/// rounds in one run. One signed request is replayed: its signature stays valid for 15 minutes,
/// and the gateway verifies it in full on every request.
async fn auth_ratio(bin: PathBuf, secs: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(&bin, &dir.path().join("control"));
    // No default per-API limit: the benchmark measures the gateway, not the throttle.
    let gw = Gateway::start_with_args(
        &bin,
        &cp.grpc_url(),
        &cp.seed.instance_id,
        &dir.path().join("gw"),
        &cp.cluster_token,
        "127.0.0.1:0".parse()?,
        &["--default-api-rate-limit", "0"],
    );
    let backend = EchoBackend::start().await;
    let fx = Fixture::new(&cp, &backend).await;
    let (api, inst, host) = (&fx.api, fx.inst.clone(), fx.host.clone());
    let mut ids = Vec::new();
    let mut publish_ids = Vec::new();
    for (name, path, auth) in [
        ("bench_none", "/none", "NONE"),
        ("bench_app", "/app", "APP"),
        ("bench_policies", "/policies", "NONE"),
    ] {
        let id = fx.create_api(name, path, auth, "/").await;
        publish_ids.push(fx.publish(&id).await?);
        ids.push(id);
    }
    // /policies: a throttling policy (high enough never to refuse) and an IP ACL bound.
    let t = api
        .post(
            &format!("{inst}/throttles"),
            &json!({"name": "bench_throttle", "api_call_limits": 100_000_000, "ip_call_limits": 100_000_000,
                    "time_interval": 1, "time_unit": "SECOND"}),
        )
        .await;
    let acl = api
        .post(
            &format!("{inst}/acls"),
            &json!({"acl_name": "bench_acl", "acl_type": "PERMIT", "entity_type": "IP", "acl_value": "127.0.0.0/8"}),
        )
        .await;
    for (path, body) in [
        (
            "throttle-bindings",
            json!({"strategy_id": t.body["id"], "publish_ids": [publish_ids[2]]}),
        ),
        (
            "acl-bindings",
            json!({"acl_id": acl.body["id"], "publish_ids": [publish_ids[2]]}),
        ),
    ] {
        let r = api.post(&format!("{inst}/{path}"), &body).await;
        if r.status != 201 {
            bail!("binding failed: {:?}", r.body);
        }
    }
    let app = api
        .post(&format!("{inst}/apps"), &json!({"name": "bench_app"}))
        .await;
    let (app_id, key, secret) = (
        app.body["id"].as_str().unwrap_or_default().to_owned(),
        app.body["app_key"].as_str().unwrap_or_default().to_owned(),
        app.body["app_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    let r = api
        .post(
            &format!("{inst}/app-auths"),
            &json!({"env_id": RELEASE, "app_ids": [app_id], "api_ids": [ids[1]]}),
        )
        .await;
    if r.status != 201 {
        bail!("authorizing the app failed: {:?}", r.body);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let view_headers = [("host", host.as_str())];
    let view = apig_sign::RequestView {
        method: "GET",
        path: "/app",
        query: None,
        headers: &view_headers,
    };
    let signed = apig_sign::Signer {
        key: &key,
        secret: secret.as_bytes(),
    }
    .sign(&view, b"", now)?;
    let mut app_headers: Vec<(&str, &str)> = vec![("Host", host.as_str())];
    app_headers.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let none_headers = [("Host", host.as_str())];
    // Wait until both answer 200.
    let http = http_client();
    let start = Instant::now();
    let probes = [
        ("/none", &none_headers[..]),
        ("/app", &app_headers[..]),
        ("/policies", &none_headers[..]),
    ];
    loop {
        let mut answers = Vec::new();
        for (path, headers) in probes {
            let mut req = http.get(gw.url(path));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req.send().await?;
            answers.push((
                path,
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ));
        }
        if answers.iter().all(|(_, status, _)| *status == 200) {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the APIs did not become callable: {answers:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("Through one gateway (release build, wrk -t1 -c32, {secs}s per run, runs alternate):");
    println!("  round   NONE req/s    APP req/s   APP/NONE   throttle+ACL req/s   policies/NONE");
    let (mut app_ratios, mut policy_ratios) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        let none = tokio::task::block_in_place(|| wrk(&gw.url("/none"), &none_headers, secs))?;
        let app = tokio::task::block_in_place(|| wrk(&gw.url("/app"), &app_headers, secs))?;
        let policies =
            tokio::task::block_in_place(|| wrk(&gw.url("/policies"), &none_headers, secs))?;
        app_ratios.push(app / none);
        policy_ratios.push(policies / none);
        println!(
            "  {round:>5}   {none:>10.0}   {app:>10.0}   {:>8.3}   {policies:>18.0}   {:>13.3}",
            app / none,
            policies / none
        );
    }
    app_ratios.sort_by(|a, b| a.total_cmp(b));
    policy_ratios.sort_by(|a, b| a.total_cmp(b));
    println!("  median APP/NONE: {:.3} (target >= 0.8)", app_ratios[1]);
    println!("  median throttle+ACL/NONE: {:.3}", policy_ratios[1]);
    Ok(())
}

/// The cluster-wide throttling bound, measured: 3 replicas, one policy, sustained overload.
async fn cluster_throttle(bin: PathBuf, secs: u64) -> Result<()> {
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
