//! APIG's statistics operations (ListLatelyApiStatisticsV2, ListLatelyGroupStatisticsV2,
//! ListMetricData) answered from the usage two real gateway replicas report over the discovery
//! stream.

use std::collections::HashMap;
use std::time::Duration;

use apig_testkit::{eventually, http_client, Gateway, MgmtClient};
use serde_json::{json, Value};

use crate::support::{bin, Stack, RELEASE, WAIT};

/// What one API should have been counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Expected {
    requests: u64,
    s2xx: u64,
    s4xx: u64,
    s5xx: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Bytes to clients of the calls a backend answered.
    backend_out: u64,
}

/// Calls `path` on `gw` and returns (status, body bytes received).
async fn hit(gw: &Gateway, host: &str, method: &str, path: &str, body: Option<&str>) -> (u16, u64) {
    let mut req = http_client()
        .request(method.parse().unwrap(), gw.url(path))
        .header("host", host);
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body").len() as u64;
    (status, bytes)
}

/// Sums a numeric field over a statistics list.
fn total(list: &[Value], field: &str) -> u64 {
    list.iter().map(|e| e[field].as_u64().unwrap_or(0)).sum()
}

fn list(body: &Value) -> Vec<Value> {
    body["list"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn statistics_count_every_call_of_every_replica_once() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fast = ["--usage-report-interval-ms", "200"];
    let replica = |name: &str| {
        Gateway::start_with_args(
            &bin(),
            &s.cp.grpc_url(),
            &s.instance,
            &dir.path().join(name),
            &s.cp.cluster_token,
            "127.0.0.1:0".parse().unwrap(),
            &fast,
        )
    };
    let mut gw1 = replica("gw1");
    let mut gw2 = replica("gw2");

    let (group, host) = s.group("stats").await;
    let (other_group, other_host) = s.group("stats_other").await;
    let mut apis = HashMap::new();
    for (name, group, method, uri, backend_uri, extra) in [
        ("ok", &group, "GET", "/ok", "/ok", json!({})),
        (
            "missing",
            &group,
            "GET",
            "/missing",
            "/status/404",
            json!({}),
        ),
        ("boom", &group, "GET", "/boom", "/status/500", json!({})),
        (
            "guarded",
            &group,
            "GET",
            "/guarded",
            "/ok",
            json!({"auth_type": "APP"}),
        ),
        ("upload", &group, "POST", "/upload", "/upload", json!({})),
        (
            "elsewhere",
            &other_group,
            "GET",
            "/elsewhere",
            "/ok",
            json!({}),
        ),
    ] {
        let mut def = s.http_api(group, &format!("stats_{name}"), method, uri, extra);
        def["backend_api"]["req_uri"] = backend_uri.into();
        let id = s.create_api(&def).await;
        s.publish(&id, RELEASE).await;
        apis.insert(name, id);
    }
    // Every replica serves the APIs: no call is needed to find out, so none is counted early.
    s.settled().await;

    let mut expected: HashMap<&str, Expected> = HashMap::new();
    let plan: [(&Gateway, &str, &str, usize); 11] = [
        (&gw1, "ok", "/ok", 5),
        (&gw1, "missing", "/missing", 2),
        (&gw1, "boom", "/boom", 1),
        (&gw1, "guarded", "/guarded", 2),
        (&gw1, "upload", "/upload", 2),
        (&gw1, "elsewhere", "/elsewhere", 1),
        (&gw2, "ok", "/ok", 3),
        (&gw2, "missing", "/missing", 1),
        (&gw2, "boom", "/boom", 2),
        (&gw2, "guarded", "/guarded", 1),
        (&gw2, "upload", "/upload", 1),
    ];
    let payload = "hello statistics";
    for (gw, name, path, n) in plan {
        let h = if name == "elsewhere" {
            &other_host
        } else {
            &host
        };
        for _ in 0..n {
            let (status, bytes) = if name == "upload" {
                hit(gw, h, "POST", path, Some(payload)).await
            } else {
                hit(gw, h, "GET", path, None).await
            };
            let want = match name {
                "missing" => 404,
                "boom" => 500,
                "guarded" => 401,
                _ => 200,
            };
            assert_eq!(status, want, "{name}");
            let e = expected.entry(name).or_default();
            e.requests += 1;
            match status / 100 {
                2 => e.s2xx += 1,
                4 => e.s4xx += 1,
                5 => e.s5xx += 1,
                _ => {}
            }
            e.bytes_out += bytes;
            if name == "upload" {
                e.bytes_in += payload.len() as u64;
            }
            if name != "guarded" {
                e.backend_out += bytes;
            }
        }
    }

    // Each API's minutes add up to exactly the calls made, over both replicas.
    let latest = |api: String, duration: &'static str| {
        let client = &s.api;
        let path = s.inst(&format!(
            "/statistics/api/latest?api_id={api}&duration={duration}"
        ));
        async move { client.get(&path).await }
    };
    for (name, want) in &expected {
        let api = apis[name].clone();
        let body = eventually(WAIT, &format!("the statistics of {name}"), || {
            let fetch = latest(api.clone(), "1h");
            async move {
                let r = fetch.await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                (total(&list(&r.body), "req_count") >= want.requests).then_some(r.body)
            }
        })
        .await;
        let l = list(&body);
        let got = Expected {
            requests: total(&l, "req_count"),
            s2xx: total(&l, "req_count2xx"),
            s4xx: total(&l, "req_count4xx"),
            s5xx: total(&l, "req_count5xx"),
            bytes_in: total(&l, "input_throughput"),
            bytes_out: total(&l, "output_throughput"),
            backend_out: want.backend_out,
        };
        assert_eq!(got, *want, "{name}: {body:#}");
        assert_eq!(total(&l, "req_count_error"), want.s4xx + want.s5xx);
        assert_eq!(body["code"], "APIG.0000");
        let (start, end) = (
            body["start_time"].as_i64().unwrap(),
            body["end_time"].as_i64().unwrap(),
        );
        assert_eq!(end % 60, 0);
        assert_eq!(end - start, 59 * 60);
        let want_group = if *name == "elsewhere" {
            &other_group
        } else {
            &group
        };
        for e in &l {
            let minute = e["current_minute"].as_i64().unwrap();
            assert!(minute % 60 == 0 && (start..=end).contains(&minute), "{e}");
            assert_eq!(e["cycle"], "MINUTE");
            assert_eq!(e["api_id"], apis[name].as_str());
            assert_eq!(e["group_id"], want_group.as_str());
            assert_eq!(e["provider"], s.cp.seed.project_id.as_str());
            assert_eq!(e["status"], 1);
            assert_eq!(e["req_time"].as_str().unwrap().len(), 19, "{e}");
            assert!(e["avg_latency"].as_f64().unwrap() >= 0.0, "{e}");
            assert!(e["max_latency"].as_u64().unwrap() >= 1, "{e}");
            assert!(e["max_inner_latency"].as_u64().unwrap() <= e["max_latency"].as_u64().unwrap());
            if *name == "guarded" {
                // The gateway answered: no backend time.
                assert_eq!(e["max_backend_latency"], 0, "{e}");
                assert_eq!(e["avg_backend_latency"], 0.0, "{e}");
            }
        }
    }

    // The group's minutes are the sums of its APIs' minutes; the other group's API is not in.
    let g = s
        .api
        .get(&s.inst(&format!("/statistics/group/latest?group_id={group}")))
        .await;
    assert_eq!(g.status, 200, "{:?}", g.body);
    let gl = list(&g.body);
    let mut per_minute: HashMap<i64, u64> = HashMap::new();
    for name in ["ok", "missing", "boom", "guarded", "upload"] {
        for e in list(&latest(apis[name].clone(), "1h").await.body) {
            *per_minute
                .entry(e["current_minute"].as_i64().unwrap())
                .or_default() += e["req_count"].as_u64().unwrap();
        }
    }
    for e in &gl {
        assert_eq!(e["group_id"], group.as_str());
        assert!(e.get("api_id").is_none(), "{e}");
        let minute = e["current_minute"].as_i64().unwrap();
        assert_eq!(
            e["req_count"].as_u64(),
            per_minute.get(&minute).copied(),
            "{e}"
        );
    }
    let in_group: Vec<&Expected> = ["ok", "missing", "boom", "guarded", "upload"]
        .iter()
        .map(|n| &expected[n])
        .collect();
    let sum = |f: fn(&Expected) -> u64| in_group.iter().map(|e| f(e)).sum::<u64>();
    assert_eq!(total(&gl, "req_count"), sum(|e| e.requests));
    assert_eq!(total(&gl, "req_count2xx"), sum(|e| e.s2xx));
    assert_eq!(total(&gl, "req_count4xx"), sum(|e| e.s4xx));
    assert_eq!(total(&gl, "req_count5xx"), sum(|e| e.s5xx));
    assert_eq!(total(&gl, "output_throughput"), sum(|e| e.bytes_out));
    let other = s
        .api
        .get(&s.inst(&format!("/statistics/group/latest?group_id={other_group}")))
        .await;
    assert_eq!(total(&list(&other.body), "req_count"), 1);

    // The instance's traffic over metric-data adds up to the same bytes, at every period.
    let everything = |f: fn(&Expected) -> u64| expected.values().map(f).sum::<u64>();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let metric = |dim: &str, name: &str, period: u32, filter: &str| {
        let path = s.inst(&format!(
            "/metric-data?dim={dim}&metric_name={name}&from={}&to={}&period={period}&filter={filter}",
            now_ms - 3_600_000,
            now_ms + 120_000
        ));
        let client = &s.api;
        let filter = filter.to_owned();
        async move {
            let r = client.get(&path).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let points = r.body["datapoints"].as_array().cloned().unwrap_or_default();
            points
                .iter()
                .map(|p| p[filter.as_str()].as_u64().unwrap_or(0))
                .sum::<u64>()
        }
    };
    for period in [1, 300, 3600] {
        assert_eq!(
            metric("inbound_eip", "up_stream", period, "sum").await,
            everything(|e| e.bytes_out),
            "period {period}"
        );
        assert_eq!(
            metric("inbound_eip", "down_stream", period, "sum").await,
            everything(|e| e.bytes_in)
        );
    }
    assert_eq!(
        metric("outbound_eip", "down_stream", 300, "sum").await,
        everything(|e| e.backend_out)
    );
    let points = s
        .api
        .get(&s.inst(&format!(
            "/metric-data?dim=inbound_eip&metric_name=up_stream&from={}&to={}&period=1&filter=max",
            now_ms - 600_000,
            now_ms + 120_000
        )))
        .await;
    let first = &points.body["datapoints"][0];
    assert_eq!(first["unit"], "Byte", "{:#}", points.body);
    assert!(first["timestamp"].as_i64().unwrap() % 60_000 == 0);
    assert!(first.get("sum").is_none());

    // Nothing is counted twice as the replicas keep reporting.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = latest(apis["ok"].clone(), "1h").await;
    assert_eq!(
        total(&list(&again.body), "req_count"),
        expected["ok"].requests
    );

    // Restarted replicas (stopped gracefully, or killed once their reports were in) report
    // under a new epoch: their new calls count, the old ones are not counted again.
    let ok_total = || async {
        total(
            &list(&latest(apis["ok"].clone(), "1h").await.body),
            "req_count",
        )
    };
    let until_total = |want: u64| async move {
        eventually(WAIT, &format!("{want} calls of ok"), || async {
            (ok_total().await == want).then_some(())
        })
        .await
    };
    gw1.restart_graceful();
    gw2.restart();
    for gw in [&gw1, &gw2] {
        eventually(WAIT, "the restarted replica", || async {
            gw.is_ready().await.then_some(())
        })
        .await;
        assert_eq!(hit(gw, &host, "GET", "/ok", None).await.0, 200);
    }
    until_total(expected["ok"].requests + 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ok_total().await, expected["ok"].requests + 2);

    // Bad queries answer APIG's codes.
    for (query, status, code) in [
        ("/statistics/api/latest?duration=1h".to_owned(), 400, "APIG.2001"),
        (format!("/statistics/api/latest?api_id={}", apis["ok"]), 400, "APIG.2001"),
        (format!("/statistics/api/latest?api_id={}&duration=2h", apis["ok"]), 400, "APIG.2012"),
        (format!("/statistics/api/latest?api_id={}&duration=0m", apis["ok"]), 400, "APIG.2012"),
        ("/statistics/api/latest?api_id=nope&duration=1m".to_owned(), 404, "APIG.3002"),
        ("/statistics/group/latest".to_owned(), 400, "APIG.2001"),
        ("/statistics/group/latest?group_id=nope".to_owned(), 404, "APIG.3001"),
        (
            "/metric-data?dim=inbound_eip&metric_name=up_stream&from=5&to=4&period=300&filter=sum"
                .to_owned(),
            400,
            "APIG.2012",
        ),
        (
            "/metric-data?dim=inbound_eip&metric_name=up_stream_usage&from=1&to=4&period=300&filter=sum"
                .to_owned(),
            400,
            "APIG.2012",
        ),
        (
            "/metric-data?dim=inbound_eip&metric_name=upstream_bandwidth_usage&from=1&to=4&period=300&filter=sum"
                .to_owned(),
            412,
            "APIG.3458",
        ),
        (
            "/metric-data?dim=inbound_eip&metric_name=up_stream&from=1&to=4&period=7&filter=sum"
                .to_owned(),
            400,
            "APIG.2012",
        ),
    ] {
        let r = s.api.get(&s.inst(&query)).await;
        assert_eq!(r.status, status, "{query}: {:?}", r.body);
        assert_eq!(r.body["error_code"], code, "{query}: {:?}", r.body);
    }

    // Another project cannot read this instance's statistics.
    let p = s.api.post("/projects", &json!({})).await;
    assert_eq!(p.status, 201, "{:?}", p.body);
    let tenant = MgmtClient::new(
        s.cp.mgmt,
        p.body["access_key"].as_str().unwrap(),
        p.body["secret_key"].as_str().unwrap(),
        p.body["project_id"].as_str().unwrap(),
    );
    let theirs = tenant
        .get(&s.inst(&format!(
            "/statistics/api/latest?api_id={}&duration=1h",
            apis["ok"]
        )))
        .await;
    assert_eq!(theirs.status, 404, "{:?}", theirs.body);
    assert_eq!(theirs.body["error_code"], "APIG.3030");
}
