//! Metrics and the access log of a gateway replica, through the real binary.

use apig_testkit::{eventually, Gateway};
use serde_json::{json, Value};

use crate::support::{bin, call, sample, scrape, Stack, RELEASE, WAIT};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_and_every_request_is_access_logged() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start_with_args(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        &dir.path().join("cache"),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--access-log", log.to_str().unwrap()],
    );
    let (group, host) = s.group("observed").await;
    let api = s
        .create_api(&s.http_api(&group, "observed_api", "GET", "/seen", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    let app_api = s
        .create_api(&s.http_api(
            &group,
            "guarded_api",
            "GET",
            "/guarded",
            json!({"auth_type": "APP"}),
        ))
        .await;
    s.publish(&app_api, RELEASE).await;
    s.settled().await;
    eventually(WAIT, "the replica", || async {
        (call(&gw, "GET", &host, "/seen", &[]).await.status == 200).then_some(())
    })
    .await;

    let before = scrape(gw.admin).await;
    let ok_series = format!(
        "apig_gateway_requests_total{{api=\"{api}\",env=\"RELEASE\",origin=\"backend\",status=\"200\"}}"
    );
    let base = sample(&before, &ok_series).unwrap_or(0.0);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = call(&gw, "GET", &host, "/seen", &[]).await;
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(
        call(&gw, "GET", &host, "/nothing-here", &[]).await.status,
        404
    );
    assert_eq!(call(&gw, "GET", &host, "/guarded", &[]).await.status, 401);

    let after = scrape(gw.admin).await;
    assert_eq!(sample(&after, &ok_series), Some(base + 3.0), "{after}");
    assert!(
        sample(
            &after,
            "apig_gateway_requests_total{api=\"-\",env=\"-\",origin=\"gateway\",status=\"404\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{after}"
    );
    assert!(sample(
        &after,
        "apig_gateway_errors_total{code=\"APIG.0101\",type=\"NOT_FOUND\"}"
    )
    .is_some_and(|v| v >= 1.0));
    assert!(sample(
        &after,
        "apig_gateway_auth_failures_total{reason=\"app_missing\"}"
    )
    .is_some_and(|v| v >= 1.0));
    assert!(sample(
        &after,
        &format!("apig_gateway_upstream_duration_seconds_count{{api=\"{api}\",env=\"RELEASE\"}}")
    )
    .is_some_and(|v| v >= 3.0));
    assert!(sample(&after, "apig_gateway_snapshot_version").is_some_and(|v| v >= 1.0));
    assert_eq!(
        sample(&after, "apig_gateway_control_plane_connected"),
        Some(1.0)
    );

    // The control plane's metrics: the replicas, their versions and apply lag, store commits.
    let control = scrape(s.cp.admin).await;
    assert!(
        sample(
            &control,
            &format!(
                "apig_control_replicas{{instance=\"{}\",status=\"connected\"}}",
                s.instance
            )
        )
        .is_some_and(|v| v >= 2.0),
        "{control}"
    );
    assert!(
        sample(&control, "apig_control_store_commit_seconds_count").is_some_and(|v| v >= 4.0),
        "{control}"
    );
    assert!(
        sample(&control, "apig_control_replica_apply_lag_seconds{").is_some(),
        "{control}"
    );
    assert!(
        sample(
            &control,
            "apig_control_management_requests_total{method=\"POST\",status=\"201\"}"
        )
        .is_some_and(|v| v >= 4.0),
        "{control}"
    );
    assert!(control.contains(&format!(
        "apig_control_snapshot_version{{instance=\"{}\"}}",
        s.instance
    )));

    // The access log has one JSON line per request, findable by request id.
    let lines = eventually(WAIT, "the access log lines", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        ids.iter()
            .all(|id| lines.iter().any(|l| l["request_id"] == id.as_str()))
            .then_some(lines)
    })
    .await;
    let line = lines
        .iter()
        .find(|l| l["request_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(line["api_id"], api.as_str());
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/seen");
    assert_eq!(line["upstream_addr"], s.backend.addr.to_string().as_str());
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(line["latency_ms"].as_f64().is_some());
    assert!(lines
        .iter()
        .any(|l| l["status"] == 401 && l["error_code"] == "APIG.0303"));
}
