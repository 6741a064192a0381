//! Load-balance channels end to end: members on loopback, weights, health checks, backups,
//! retries and member changes without republishing.

use std::collections::HashMap;
use std::time::Duration;

use apig_testkit::{eventually, http_client, EchoBackend};
use serde_json::{json, Value};

use crate::support::{call, Stack, RELEASE, WAIT};

/// Which member answered each of `n` calls (the echo backend's own address).
async fn spread(s: &Stack, host: &str, path: &str, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let r = call(&s.gw, "GET", host, path, &[]).await;
        let who = if r.status == 200 {
            r.body["server"].as_str().unwrap_or("?").to_owned()
        } else {
            format!(
                "{} {}",
                r.status,
                r.body["error_code"].as_str().unwrap_or("")
            )
        };
        *out.entry(who).or_default() += 1;
    }
    out
}

async fn channel_api(
    s: &Stack,
    group: &str,
    name: &str,
    path: &str,
    channel: &str,
    extra: Value,
) -> String {
    let mut body = s.http_api(
        group,
        name,
        "GET",
        path,
        json!({"backend_api": {"vpc_channel_status": 1,
            "vpc_channel_info": {"vpc_channel_id": channel}}}),
    );
    crate::support::merge(&mut body, extra);
    let api = s.create_api(&body).await;
    s.publish(&api, RELEASE).await;
    api
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_members_health_checks_backups_and_no_backend() {
    let s = Stack::start().await;
    let a = EchoBackend::start().await;
    let b = EchoBackend::start().await;
    let spare = EchoBackend::start().await;
    let (group, host) = s.group("balanced").await;

    let r = s
        .api
        .post(
            &s.inst("/vpc-channels"),
            &json!({
                "name": "orders-lb", "port": a.addr.port(), "balance_strategy": 1, "member_type": "ip",
                "members": [
                    {"host": "127.0.0.1", "weight": 3},
                    {"host": "127.0.0.1", "port": b.addr.port(), "weight": 1},
                    {"host": "127.0.0.1", "port": spare.addr.port(), "weight": 1, "is_backup": true}
                ],
                "vpc_health_config": {"protocol": "HTTP", "path": "/health", "method": "GET",
                    "http_code": "200-299", "threshold_normal": 2, "threshold_abnormal": 2,
                    "time_interval": 2, "timeout": 1}
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    // Same name again: APIG.3208.
    let dup = s
        .api
        .post(
            &s.inst("/vpc-channels"),
            &json!({"name": "orders-lb", "port": 80}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body["error_code"].as_str()),
        (400, Some("APIG.3208"))
    );
    // An API naming a channel that does not exist: APIG.3023.
    let bad = s
        .api
        .post(
            &s.inst("/apis"),
            &s.http_api(
                &group,
                "ghost_api",
                "GET",
                "/ghost",
                json!({"backend_api": {
                "vpc_channel_status": 1, "vpc_channel_info": {"vpc_channel_id": "nope"}}}),
            ),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error_code"].as_str()),
        (404, Some("APIG.3023"))
    );

    channel_api(&s, &group, "balanced_api", "/lb", &channel, json!({})).await;
    s.until_routed(&host, "/lb", &[]).await;

    // WRR 3:1, the backup idle.
    let got = spread(&s, &host, "/lb", 40).await;
    assert_eq!(got.get(&a.addr.to_string()), Some(&30), "{got:?}");
    assert_eq!(got.get(&b.addr.to_string()), Some(&10), "{got:?}");

    // The channel can be read back with its members and health check.
    let shown = s
        .api
        .get(&s.inst(&format!("/vpc-channels/{channel}")))
        .await;
    assert_eq!(shown.body["members"].as_array().unwrap().len(), 3);
    assert_eq!(shown.body["vpc_health_config"]["threshold_abnormal"], 2);
    // It cannot be deleted while an API uses it.
    let r = s
        .api
        .delete(&s.inst(&format!("/vpc-channels/{channel}")))
        .await;
    assert_eq!(r.body["error_code"], "APIG.3414", "{:?}", r.body);

    // Member a dies: no request fails (a GET that cannot connect is retried on another member),
    // and the health check takes it out.
    let a_addr = a.addr;
    drop(a);
    let got = spread(&s, &host, "/lb", 12).await;
    assert_eq!(got.get(&b.addr.to_string()), Some(&12), "{got:?}");
    // Both primaries down: the backup serves.
    drop(b);
    eventually(WAIT, "the backup to take over", || async {
        let got = spread(&s, &host, "/lb", 4).await;
        (got.get(&spare.addr.to_string()) == Some(&4)).then_some(())
    })
    .await;
    // a comes back on its port: healthy after two good checks, and preferred over the backup.
    let a = EchoBackend::start_at(a_addr).await;
    eventually(
        Duration::from_secs(15),
        "the restored member to get traffic",
        || async {
            let got = spread(&s, &host, "/lb", 4).await;
            (got.get(&a.addr.to_string()) == Some(&4)).then_some(())
        },
    )
    .await;

    // Disabling members applies without republishing; no usable member → 502 APIG.0610.
    let members = s
        .api
        .get(&s.inst(&format!("/vpc-channels/{channel}/members")))
        .await;
    assert_eq!(members.body["total"], 3);
    let ids: Vec<String> = members.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let r = s
        .api
        .post(
            &s.inst(&format!("/vpc-channels/{channel}/members/batch-disable")),
            &json!({"member_ids": ids}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = eventually(WAIT, "no backend", || async {
        let r = call(&s.gw, "GET", &host, "/lb", &[]).await;
        (r.status == 502).then_some(r)
    })
    .await;
    assert_eq!(r.body["error_code"], "APIG.0610");
    assert_eq!(r.body["error_msg"], "No backend available.");
}

#[tokio::test(flavor = "multi_thread")]
async fn hashing_strategies_are_sticky_and_posts_are_not_retried() {
    let s = Stack::start().await;
    let members: Vec<EchoBackend> =
        futures_util::future::join_all((0..3).map(|_| EchoBackend::start())).await;
    let (group, host) = s.group("hashed").await;
    let member_list: Vec<Value> = members
        .iter()
        .map(|m| json!({"host": "127.0.0.1", "port": m.addr.port(), "weight": 1}))
        .collect();
    let r = s
        .api
        .post(
            &s.inst("/vpc-channels"),
            &json!({"name": "by-uri", "port": 80, "balance_strategy": 4, "members": member_list}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    let mut api = s.http_api(
        &group,
        "hashed_api",
        "ANY",
        "/items",
        json!({"match_mode": "SWA", "backend_api": {"vpc_channel_status": 1, "retry_count": "-1",
            "vpc_channel_info": {"vpc_channel_id": channel, "vpc_channel_proxy_host": "items.internal"}}}),
    );
    api["backend_api"]["req_method"] = "ANY".into();
    let id = s.create_api(&api).await;
    s.publish(&id, RELEASE).await;
    s.until_routed(&host, "/items/1", &[]).await;

    // One URI, one member; different URIs spread over members.
    let mut owners = HashMap::new();
    for i in 0..30 {
        let path = format!("/items/{i}");
        let first = call(&s.gw, "GET", &host, &path, &[]).await;
        assert_eq!(first.status, 200, "{}", first.text);
        // The proxy host replaces the client's Host on the way to the member.
        assert_eq!(first.body["headers"]["host"], "items.internal");
        for _ in 0..2 {
            let again = call(&s.gw, "GET", &host, &path, &[]).await;
            assert_eq!(again.body["server"], first.body["server"], "{path}");
        }
        *owners
            .entry(first.body["server"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(owners.len(), 3, "{owners:?}");

    // A POST with retry_count -1 is never retried: with its member down it fails once (502)
    // while a GET to the same URI is retried on another member.
    let path = "/items/7";
    let owner = call(&s.gw, "GET", &host, path, &[]).await.body["server"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut members = members;
    let idx = members
        .iter()
        .position(|m| m.addr.to_string() == owner)
        .unwrap();
    let down = members.remove(idx);
    let hits_elsewhere: usize = members.iter().map(|m| m.hits()).sum();
    drop(down);
    let post = call(&s.gw, "POST", &host, path, &[]).await;
    assert_eq!(post.status, 502, "{}", post.text);
    assert_eq!(
        members.iter().map(|m| m.hits()).sum::<usize>(),
        hits_elsewhere,
        "the POST must not reach another member"
    );
    let get = call(&s.gw, "GET", &host, path, &[]).await;
    assert_eq!(get.status, 200, "{}", get.text);
    assert_ne!(get.body["server"], owner.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn https_backends_and_health_checks_verify_certificates() {
    let s = Stack::start().await;
    let (tls_backend, ca_pem) = EchoBackend::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("backend-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let trusting = apig_testkit::Gateway::start_with_args(
        &crate::support::bin(),
        &s.cp.grpc_url(),
        &s.instance,
        &dir.path().join("cache"),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--backend-ca-file", ca_file.to_str().unwrap()],
    );
    let (group, host) = s.group("secure_backends").await;
    let api = s
        .create_api(&s.http_api(
            &group,
            "tls_api",
            "GET",
            "/tls",
            json!({"backend_api": {"req_protocol": "HTTPS",
                "url_domain": format!("localhost:{}", tls_backend.addr.port())}}),
        ))
        .await;
    s.publish(&api, RELEASE).await;
    let r = s.until_routed(&host, "/tls", &[]).await;
    // The default replica does not know the test CA: the certificate is refused.
    assert_eq!(r.status, 502, "{}", r.text);
    let r = eventually(WAIT, "the trusting replica", || async {
        let r = call(&trusting, "GET", &host, "/tls", &[]).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.body["path"], "/tls");

    // A channel of HTTPS members with an HTTPS health check.
    let r = s
        .api
        .post(
            &s.inst("/vpc-channels"),
            &json!({"name": "tls-lb", "port": tls_backend.addr.port(), "members": [{"host": "127.0.0.1"}],
                "vpc_health_config": {"protocol": "HTTPS", "path": "/health", "http_code": "200",
                    "threshold_normal": 1, "threshold_abnormal": 1, "time_interval": 2, "timeout": 1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let channel = r.body["id"].as_str().unwrap().to_owned();
    channel_api(
        &s,
        &group,
        "tls_lb_api",
        "/tls-lb",
        &channel,
        json!({"backend_api": {"req_protocol": "HTTPS", "req_uri": "/via-channel"}}),
    )
    .await;
    let r = eventually(WAIT, "the HTTPS channel", || async {
        let r = call(&trusting, "GET", &host, "/tls-lb", &[]).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.body["path"], "/via-channel");
    // On the replica that does not trust the CA, the HTTPS health check fails: the member
    // is taken out (APIG.0610), where a plain connect failure would have said 502 APIG.0201.
    let r = eventually(WAIT, "the failing health check", || async {
        let r = call(&s.gw, "GET", &host, "/tls-lb", &[]).await;
        (r.body["error_code"] == "APIG.0610").then_some(r)
    })
    .await;
    assert_eq!(r.status, 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_policies_pick_the_backend_by_conditions() {
    let s = Stack::start().await;
    let gold = EchoBackend::start().await;
    let (group, host) = s.group("policies").await;
    let policy = |name: &str, mode: &str, uri: &str, conditions: Value| {
        json!({"name": name, "effect_mode": mode, "url_domain": gold.authority(),
            "req_protocol": "HTTP", "req_method": "GET", "req_uri": uri, "timeout": 5000,
            "backend_params": [{"origin": "CONSTANT", "name": "X-Policy", "location": "HEADER", "value": name}],
            "conditions": conditions})
    };
    let body = s.http_api(
        &group,
        "shop_api",
        "GET",
        "/shop",
        json!({
            "req_params": [{"name": "tier", "type": "STRING", "location": "QUERY", "default_value": "basic"}],
            "policy_https": [
                policy("gold_tier", "ANY", "/gold", json!([
                    {"condition_origin": "param", "req_param_name": "tier", "condition_type": "enum", "condition_value": "gold,platinum"}])),
                policy("beta_users", "ALL", "/beta", json!([
                    {"condition_origin": "cookie", "cookie_param_name": "beta", "condition_type": "exact", "condition_value": "1"},
                    {"condition_origin": "system", "sys_param_name": "req_method", "condition_type": "exact", "condition_value": "GET"}])),
                policy("office_only", "ANY", "/office", json!([
                    {"condition_origin": "source", "condition_value": "10.0.0.0/8"}]))
            ]
        }),
    );
    // A condition on an undefined parameter is refused, and nothing is stored.
    let mut bad = body.clone();
    bad["name"] = "bad_policy_api".into();
    bad["policy_https"][0]["conditions"][0]["req_param_name"] = "nope".into();
    let r = s.api.post(&s.inst("/apis"), &bad).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    let api = s.create_api(&body).await;
    let shown = s.api.get(&s.inst(&format!("/apis/{api}"))).await;
    let policies = shown.body["policy_https"].as_array().unwrap();
    assert_eq!(policies.len(), 3);
    assert!(policies.iter().all(|p| p["id"].is_string()));
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/shop", &[]).await;

    let who = |r: &crate::support::Resp| {
        (
            r.body["server"].as_str().unwrap_or_default().to_owned(),
            r.body["path"].as_str().unwrap_or_default().to_owned(),
            r.body["headers"]["x-policy"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let gold_addr = gold.addr.to_string();
    let default_addr = s.backend.addr.to_string();
    let r = call(&s.gw, "GET", &host, "/shop?tier=platinum", &[]).await;
    assert_eq!(
        who(&r),
        (gold_addr.clone(), "/gold".into(), "gold_tier".into())
    );
    // The default value of the parameter counts as its value: "basic" is no policy's.
    let r = call(&s.gw, "GET", &host, "/shop", &[]).await;
    assert_eq!(
        who(&r),
        (default_addr.clone(), "/shop".into(), String::new())
    );
    let r = call(
        &s.gw,
        "GET",
        &host,
        "/shop?tier=silver",
        &[("cookie", "theme=dark; beta=1")],
    )
    .await;
    assert_eq!(
        who(&r),
        (gold_addr.clone(), "/beta".into(), "beta_users".into())
    );
    // First match wins: gold_tier comes before beta_users.
    let r = call(
        &s.gw,
        "GET",
        &host,
        "/shop?tier=gold",
        &[("cookie", "beta=1")],
    )
    .await;
    assert_eq!(who(&r).1, "/gold");

    // MOCK APIs choose among mock policies.
    let mock = s
        .create_api(&json!({
            "name": "mocked_api", "type": 1, "req_protocol": "HTTP", "req_method": "GET",
            "req_uri": "/mocked", "match_mode": "SWA", "auth_type": "NONE", "backend_type": "MOCK",
            "group_id": group, "mock_info": {"result_content": "default answer"},
            "policy_mocks": [{"name": "special_path", "effect_mode": "ANY", "result_content": "special answer",
                "conditions": [{"condition_origin": "system", "sys_param_name": "req_path",
                    "condition_type": "pattern", "condition_value": "^/mocked/special(/|$)"}]}]
        }))
        .await;
    s.publish(&mock, RELEASE).await;
    s.until_routed(&host, "/mocked/x", &[]).await;
    assert_eq!(
        call(&s.gw, "GET", &host, "/mocked/x", &[]).await.text,
        "default answer"
    );
    assert_eq!(
        call(&s.gw, "GET", &host, "/mocked/special/7", &[])
            .await
            .text,
        "special answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn function_backends_get_an_event_and_answer_with_its_result() {
    use apig_testkit::FunctionServer;
    let s = Stack::start().await;
    // The function answers with what it saw, as FunctionGraph functions do.
    let function = FunctionServer::start(|event| {
        let body = base64_decode(event["body"].as_str().unwrap_or_default());
        json!({
            "statusCode": 201,
            "headers": {"x-fn": "orders", "set-cookie": ["a=1", "b=2"]},
            "body": json!({"method": event["httpMethod"], "path": event["path"],
                "id": event["pathParameters"]["id"], "q": event["queryStringParameters"]["q"],
                "got": body, "tag": event["headers"]["x-tag"],
                "stage": event["requestContext"]["stage"]}).to_string(),
            "isBase64Encoded": false
        })
        .to_string()
    })
    .await;
    let broken = FunctionServer::start(|_| "\"not a function answer\"".into()).await;
    let (group, host) = s.group("functions").await;
    let func_api = |name: &str, uri: &str, url: String, invocation: &str| {
        json!({"name": name, "type": 1, "req_protocol": "HTTP", "req_method": "POST",
            "req_uri": uri, "auth_type": "NONE", "backend_type": "FUNCTION", "group_id": group,
            "req_params": [{"name": "id", "type": "STRING", "location": "PATH", "required": 1}],
            "backend_params": [{"origin": "CONSTANT", "name": "x-tag", "location": "HEADER", "value": "from-gateway"}],
            "func_info": {"function_urn": url, "invocation_type": invocation, "network_type": "V2", "timeout": 5000}})
    };
    // A FunctionGraph URN cannot be called here: a clear 412, nothing stored.
    let urn = s
        .api
        .post(
            &s.inst("/apis"),
            &func_api(
                "urn_api",
                "/urn/{id}",
                "urn:fss:eu-de:1:function:default:f:latest".into(),
                "sync",
            ),
        )
        .await;
    assert_eq!(urn.status, 412, "{:?}", urn.body);

    let url = format!("http://{}/function/orders", function.addr);
    let api = s
        .create_api(&func_api("orders_fn", "/orders/{id}", url.clone(), "sync"))
        .await;
    s.publish(&api, RELEASE).await;
    let bad = s
        .create_api(&func_api(
            "broken_fn",
            "/broken/{id}",
            format!("http://{}/", broken.addr),
            "sync",
        ))
        .await;
    s.publish(&bad, RELEASE).await;
    let later = s
        .create_api(&func_api("async_fn", "/later/{id}", url, "async"))
        .await;
    s.publish(&later, RELEASE).await;
    s.settled().await;

    let r = http_client()
        .post(s.gw.url("/orders/42?q=x%20y"))
        .header("host", &host)
        .body("payload \u{1F600}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-fn"], "orders");
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"method": "POST", "path": "/orders/42", "id": "42", "q": "x y",
            "got": "payload \u{1F600}", "tag": "from-gateway", "stage": "RELEASE"})
    );

    // A function that answers something else: 502 APIG.0202.
    let r = call(&s.gw, "POST", &host, "/broken/1", &[]).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (502, Some("APIG.0202")),
        "{}",
        r.text
    );

    // Asynchronous: 202 at once, the function still gets the event.
    let before = function.events().len();
    let r = call(&s.gw, "POST", &host, "/later/7", &[]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["request_id"].as_str().map(str::len), Some(32));
    eventually(WAIT, "the asynchronous call", || async {
        (function.events().len() > before).then_some(())
    })
    .await;
    assert_eq!(
        function.events().last().unwrap()["pathParameters"]["id"],
        "7"
    );
}

fn base64_decode(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn orchestration_rules_map_a_parameter_for_the_backend() {
    let s = Stack::start().await;
    let (group, host) = s.group("orchestrated").await;
    let stack = &s;
    let rule = |body: Value| async move {
        let r = stack.api.post(&stack.inst("/orchestrations"), &body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["orchestration_id"].as_str().unwrap().to_owned()
    };
    let tier = json!({"mapped_param_name": "x-tier", "mapped_param_type": "string", "mapped_param_location": "header"});
    let anon = rule(json!({"orchestration_name": "anon", "orchestration_strategy": "none_value",
        "orchestration_mapped_param": tier.clone(), "orchestration_map": [{"mapped_param_value": "anonymous"}]})).await;
    let prefix = rule(
        json!({"orchestration_name": "prefix3", "orchestration_strategy": "head_n",
        "is_preprocessing": true, "orchestration_map": [{"intercept_length": 3}]}),
    )
    .await;
    let vip = rule(
        json!({"orchestration_name": "vip_list", "orchestration_strategy": "list",
        "orchestration_mapped_param": tier.clone(),
        "orchestration_map": [{"map_param_list": ["vip", "gol"], "mapped_param_value": "gold"}]}),
    )
    .await;
    let shard = rule(json!({"orchestration_name": "shard_range", "orchestration_strategy": "range",
        "orchestration_mapped_param": {"mapped_param_name": "shard", "mapped_param_type": "string", "mapped_param_location": "query"},
        "orchestration_map": [{"map_param_range": {"range_start": "100", "range_end": "199"}, "mapped_param_value": "shard-1"}]})).await;
    let fallback = rule(json!({"orchestration_name": "fallback", "orchestration_strategy": "default",
        "orchestration_mapped_param": tier.clone(), "orchestration_map": [{"mapped_param_value": "basic"}]})).await;
    // Same name again: APIG.3331.
    let dup = s
        .api
        .post(&s.inst("/orchestrations"), &json!({"orchestration_name": "anon", "orchestration_strategy": "hash", "orchestration_mapped_param": tier.clone()}))
        .await;
    assert_eq!(dup.body["error_code"], "APIG.3331", "{:?}", dup.body);

    let user_param = |rules: Vec<&String>| json!({"req_params": [{"name": "user", "type": "STRING", "location": "QUERY", "orchestrations": rules}]});
    // A preprocessing rule cannot end the sequence.
    let bad = s
        .api
        .post(
            &s.inst("/apis"),
            &s.http_api(
                &group,
                "bad_orch",
                "GET",
                "/bad",
                user_param(vec![&vip, &prefix]),
            ),
        )
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    // A backend policy can use the orchestrated parameter as its condition.
    let gold = EchoBackend::start().await;
    let mut orch_body = user_param(vec![&anon, &prefix, &vip, &shard, &fallback]);
    orch_body["policy_https"] = json!([{"name": "gold_backend", "effect_mode": "ANY",
        "url_domain": gold.authority(), "req_protocol": "HTTP", "req_method": "GET", "req_uri": "/orch",
        "timeout": 5000, "conditions": [{"condition_origin": "orchestration", "mapped_param_name": "x-tier",
            "mapped_param_location": "header", "condition_type": "exact", "condition_value": "gold"}]}]);
    let api = s
        .create_api(&s.http_api(&group, "orch_api", "GET", "/orch", orch_body))
        .await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/orch", &[]).await;
    let seen = |path: &'static str| {
        let (s, host) = (&s, &host);
        async move {
            let r = call(&s.gw, "GET", host, path, &[]).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            (
                r.body["headers"]["x-tier"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r.body["query"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    assert_eq!(seen("/orch?user=vip-42").await.0, "gold");
    let r = call(&s.gw, "GET", &host, "/orch?user=vip-42", &[]).await;
    assert_eq!(r.body["server"], gold.addr.to_string().as_str());
    let r = call(&s.gw, "GET", &host, "/orch?user=zzz", &[]).await;
    assert_eq!(r.body["server"], s.backend.addr.to_string().as_str());
    let (tier_of, query) = seen("/orch?user=15077").await;
    assert_eq!(tier_of, "");
    assert!(query.contains("shard=shard-1"), "{query}");
    assert_eq!(seen("/orch?user=zzz").await.0, "basic");
    assert_eq!(seen("/orch").await.0, "anonymous");

    // Rules in use cannot go; the listing shows who uses them.
    let r = s
        .api
        .delete(&s.inst(&format!("/orchestrations/{vip}")))
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (409, Some("APIG.3716"))
    );
    let r = s
        .api
        .get(&s.inst(&format!("/orchestrations/{vip}/attached-apis")))
        .await;
    assert_eq!(r.body["apis"][0]["api_id"], api.as_str());

    // Without a default, an unmatched value is 400 APIG.0106.
    let strict = s
        .create_api(&s.http_api(
            &group,
            "strict_orch",
            "GET",
            "/strict",
            user_param(vec![&vip]),
        ))
        .await;
    s.publish(&strict, RELEASE).await;
    s.until_routed(&host, "/strict?user=vip", &[]).await;
    let r = call(&s.gw, "GET", &host, "/strict?user=nobody", &[]).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.0106")),
        "{}",
        r.text
    );

    // Editing a rule applies to published APIs without republishing.
    let r = s
        .api
        .put(
            &s.inst(&format!("/orchestrations/{vip}")),
            &json!({"orchestration_name": "vip_list",
            "orchestration_strategy": "list", "orchestration_mapped_param": tier.clone(),
            "orchestration_map": [{"map_param_list": ["nobody"], "mapped_param_value": "silver"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(WAIT, "the edited rule", || async {
        let r = call(&s.gw, "GET", &host, "/strict?user=nobody", &[]).await;
        (r.body["headers"]["x-tier"] == "silver").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn least_requests_and_source_ip_hash_strategies() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Behind a trusted proxy, X-Forwarded-For gives each call its own client IP.
    let proxied = apig_testkit::Gateway::start_with_args(
        &crate::support::bin(),
        &s.cp.grpc_url(),
        &s.instance,
        &dir.path().join("cache"),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--trusted-proxy", "127.0.0.1"],
    );
    let members: Vec<EchoBackend> =
        futures_util::future::join_all((0..2).map(|_| EchoBackend::start())).await;
    let (group, host) = s.group("strategies").await;
    let channel = |name: &'static str, strategy: u32| {
        let (s, members) = (&s, &members);
        async move {
            let list: Vec<Value> = members
                .iter()
                .map(|m| json!({"host": "127.0.0.1", "port": m.addr.port(), "weight": 1}))
                .collect();
            let r = s
                .api
                .post(&s.inst("/vpc-channels"), &json!({"name": name, "port": 80, "balance_strategy": strategy, "members": list}))
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let wlc = channel("least-lb", 2).await;
    let by_ip = channel("by-ip-lb", 3).await;
    let mut slow = s.http_api(
        &group,
        "slow_api",
        "GET",
        "/slow/{ms}",
        json!({"req_params": [{"name": "ms", "type": "STRING", "location": "PATH", "required": 1}],
            "backend_params": [{"origin": "REQUEST", "name": "ms", "location": "PATH", "value": "ms"}],
            "backend_api": {"req_uri": "/sleep/{ms}", "vpc_channel_status": 1,
            "vpc_channel_info": {"vpc_channel_id": wlc}}}),
    );
    slow["backend_api"]["timeout"] = 10_000.into();
    let id = s.create_api(&slow).await;
    s.publish(&id, RELEASE).await;
    channel_api(&s, &group, "ip_api", "/ip", &by_ip, json!({})).await;
    s.settled().await;
    eventually(WAIT, "the proxied replica", || async {
        (call(&proxied, "GET", &host, "/ip", &[]).await.status == 200).then_some(())
    })
    .await;

    // WLC: while one member holds a slow request, the others go to the idle member.
    let busy = {
        let (gw, host) = (&s.gw, host.clone());
        let url = gw.url("/slow/1500");
        tokio::spawn(async move {
            http_client()
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One at a time: the idle member has 0 in flight, the busy one 1.
    let mut quick = Vec::new();
    for _ in 0..4 {
        let r = call(&s.gw, "GET", &host, "/slow/0", &[]).await;
        quick.push(r.body["server"].as_str().unwrap_or_default().to_owned());
    }
    let held = busy.await.unwrap()["server"].as_str().unwrap().to_owned();
    assert!(quick.iter().all(|q| *q != held), "{held} got {quick:?}");

    // Source-IP hash: each client IP sticks to one member; many IPs use both.
    let mut owners = HashMap::new();
    for i in 0..24 {
        let ip = format!("198.51.100.{i}");
        let mut seen = Vec::new();
        for _ in 0..3 {
            let r = call(&proxied, "GET", &host, "/ip", &[("x-forwarded-for", &ip)]).await;
            seen.push(r.body["server"].as_str().unwrap_or_default().to_owned());
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{ip}: {seen:?}");
        *owners.entry(seen[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(owners.len(), 2, "{owners:?}");
}
