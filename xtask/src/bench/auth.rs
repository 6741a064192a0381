//! `auth [SECONDS]`: APP signature and policies against auth NONE through one gateway.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};
use serde_json::json;

use super::{wrk, Fixture, RELEASE};

/// Throughput of an APP-authenticated API against the same API with auth NONE, alternating
/// rounds in one run. One signed request is replayed: its signature stays valid for 15 minutes,
/// and the gateway verifies it in full on every request.
pub(super) async fn auth_ratio(bin: PathBuf, secs: u64) -> Result<()> {
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
