//! Restarts, outages and the cluster link.

use std::time::Duration;

use apig_testkit::{eventually, Gateway};
use serde_json::json;

use crate::support::{bin, call, Stack, RELEASE, WAIT};

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_restart_keeps_state_and_gateway_survives_outages() {
    let mut s = Stack::start().await;
    let (group, host) = s.group("durable").await;
    let api = s
        .create_api(&s.http_api(&group, "durable_api", "GET", "/d", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    assert_eq!(s.until_routed(&host, "/d", &[]).await.status, 200);

    // Control plane killed: the gateway keeps serving.
    s.cp.kill();
    for _ in 0..5 {
        assert_eq!(s.call("GET", &host, "/d", &[]).await.status, 200);
    }
    // Gateway restarted while the control plane is down: it serves from its cache.
    s.gw.restart();
    assert!(s.gw.is_ready().await, "ready from cache");
    assert_eq!(s.call("GET", &host, "/d", &[]).await.status, 200);

    // Control plane back on the same ports and data: everything is still there.
    s.cp.restart();
    let r = s.api.get(&s.inst(&format!("/apis/{api}"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["run_env_id"], RELEASE);
    // The gateway reconnects and follows new changes.
    s.offline(&api, RELEASE).await;
    s.until_gone(&host, "/d").await;
    // The replica reports what it runs: the control plane's current version, after its ACK.
    s.settled().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_with_a_wrong_cluster_token_is_refused() {
    let s = Stack::start().await;
    let (group, host) = s.group("tokens").await;
    let api = s
        .create_api(&s.http_api(&group, "tokens_api", "GET", "/t", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/t", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let intruder = Gateway::start(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        dir.path(),
        "wrong-token-wrong-token",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!intruder.is_ready().await, "never got a snapshot");
    let r = call(&intruder, "GET", &host, "/t", &[]).await;
    assert_eq!(r.status, 503, "no configuration loaded: {}", r.text);
    assert_eq!(r.body["error_code"], "APIG.0606");
    let r = s.api.get(&s.inst("/replicas")).await;
    assert_eq!(
        r.body["total"], 1,
        "only the real replica is listed: {:?}",
        r.body
    );
    // The real one is ready.
    eventually(WAIT, "the real replica ready", || async {
        s.gw.is_ready().await.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_before_exiting() {
    let mut s = Stack::start().await;
    let (group, host) = s.group("draining").await;
    let mut body = s.http_api(
        &group,
        "slow_api",
        "GET",
        "/slow",
        json!({"backend_api": {"req_uri": "/sleep/1500", "timeout": 10000}}),
    );
    body["backend_api"]["req_method"] = "GET".into();
    let api = s.create_api(&body).await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/slow", &[]).await;

    let url = s.gw.url("/slow");
    let in_flight: Vec<_> = (0..5)
        .map(|_| {
            let (url, host) = (url.clone(), host.clone());
            tokio::spawn(async move {
                apig_testkit::http_client()
                    .get(url)
                    .header("host", host)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Once the drain began, new connections are not accepted.
    let addr = s.gw.addr;
    let probe = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::net::TcpStream::connect(addr).await.is_err()
    });
    let started = std::time::Instant::now();
    // SIGTERM; returns once the process exited.
    tokio::task::block_in_place(|| s.gw.terminate());
    assert!(
        probe.await.unwrap(),
        "still accepting connections while draining"
    );
    for r in in_flight {
        assert_eq!(
            r.await.unwrap().ok(),
            Some(200),
            "an in-flight request was cut"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "exited at the deadline, not after the drain"
    );
}
