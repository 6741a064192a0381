//! Publish → gateway → backend, through the real binaries.

use serde_json::json;

use crate::support::{raw, Stack, RELEASE};

#[tokio::test(flavor = "multi_thread")]
async fn publish_makes_an_api_callable_and_offline_removes_it() {
    let s = Stack::start().await;
    let (group, host) = s.group("shop").await;
    let api = s
        .create_api(&s.http_api(&group, "list_items", "GET", "/items", json!({})))
        .await;

    // Not published yet: the gateway knows nothing of it.
    let r = s.call("GET", &host, "/items", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error_code"], "APIG.0101");

    s.publish(&api, RELEASE).await;
    let r = s.until_routed(&host, "/items?q=1", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["path"], "/items");
    assert_eq!(r.body["query"], "q=1");
    let rid = r
        .headers
        .get("x-request-id")
        .expect("X-Request-Id on responses")
        .to_str()
        .unwrap();
    assert_eq!(
        r.body["headers"]["x-request-id"], rid,
        "the backend sees the same request id"
    );

    s.offline(&api, RELEASE).await;
    s.until_gone(&host, "/items").await;
    let r = s.call("GET", &host, "/items", &[]).await;
    assert_eq!(r.body["error_code"], "APIG.0101");
    assert_eq!(r.body["request_id"].as_str().unwrap().len(), 32);
}

#[tokio::test(flavor = "multi_thread")]
async fn swa_prefix_normal_exact_and_path_parameters() {
    let s = Stack::start().await;
    let (group, host) = s.group("routing").await;
    // SWA prefix: /files and below, forwarded under /store.
    let swa = s
        .create_api(&s.http_api(
            &group,
            "files_prefix",
            "GET",
            "/files",
            json!({
                "match_mode": "SWA",
                "backend_api": {"req_uri": "/store"},
            }),
        ))
        .await;
    // NORMAL exact on a path below the prefix wins over the prefix.
    let exact = s
        .create_api(&s.http_api(
            &group,
            "files_readme",
            "GET",
            "/files/readme",
            json!({
                "backend_api": {"req_uri": "/exact-readme"},
            }),
        ))
        .await;
    // Path parameter mapped to a differently named backend path parameter, plus a greedy one.
    let user = s
        .create_api(&s.http_api(&group, "user", "GET", "/users/{id}/docs/{rest+}", json!({
            "req_params": [
                {"name": "id", "type": "STRING", "location": "PATH"},
                {"name": "rest", "type": "STRING", "location": "PATH"}
            ],
            "backend_api": {"req_uri": "/v2/accounts/{uid}/files/{tail}"},
            "backend_params": [
                {"origin": "REQUEST", "name": "uid", "location": "PATH", "value": "id"},
                {"origin": "REQUEST", "name": "tail", "location": "PATH", "value": "rest"},
                {"origin": "CONSTANT", "name": "X-Const", "location": "HEADER", "value": "c1"},
                {"origin": "SYSTEM", "name": "src", "location": "QUERY", "value": "$context.sourceIp"}
            ],
        })))
        .await;
    for id in [&swa, &exact, &user] {
        s.publish(id, RELEASE).await;
    }
    s.settled().await;
    let r = s.until_routed(&host, "/files/a/b", &[]).await;
    assert_eq!(r.body["path"], "/store/a/b", "SWA appends the remainder");
    let r = s.call("GET", &host, "/files", &[]).await;
    assert_eq!(r.body["path"], "/store");
    let r = s.call("GET", &host, "/filesX", &[]).await;
    assert_eq!(r.status, 404, "a prefix matches only on a segment boundary");
    let r = s.call("GET", &host, "/files/readme", &[]).await;
    assert_eq!(r.body["path"], "/exact-readme", "NORMAL beats SWA");

    let r = s.until_routed(&host, "/users/42/docs/a/b.txt", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["path"], "/v2/accounts/42/files/a/b.txt");
    assert_eq!(r.body["headers"]["x-const"], "c1");
    assert!(
        r.body["query"].as_str().unwrap().contains("src=127.0.0.1"),
        "{}",
        r.body["query"]
    );

    // Method mismatch: the route exists for GET only.
    let r = s.call("POST", &host, "/files/readme", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error_code"], "APIG.0101");
}

#[tokio::test(flavor = "multi_thread")]
async fn x_stage_selects_the_environment_and_variables_resolve_per_environment() {
    let s = Stack::start().await;
    let (group, host) = s.group("staged").await;
    let r = s
        .api
        .post(&s.inst("/envs"), &json!({"name": "DEV", "remark": "dev"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let dev = r.body["id"].as_str().unwrap().to_owned();
    // The backend path comes from an environment variable, different per environment.
    for (env, value) in [(RELEASE, "release"), (dev.as_str(), "dev")] {
        let r = s
            .api
            .post(&s.inst("/env-variables"), &json!({"group_id": group, "env_id": env, "variable_name": "base", "variable_value": value}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let api = s
        .create_api(&s.http_api(
            &group,
            "staged_api",
            "GET",
            "/where",
            json!({"backend_api": {"req_uri": "/#base#/where"}}),
        ))
        .await;
    s.publish(&api, RELEASE).await;
    s.publish(&api, &dev).await;
    s.settled().await;
    let r = s.until_routed(&host, "/where", &[]).await;
    assert_eq!(r.body["path"], "/release/where");
    let r = s.call("GET", &host, "/where", &[("x-stage", "DEV")]).await;
    assert_eq!(r.body["path"], "/dev/where");
    assert!(
        r.body["headers"].get("x-stage").is_none(),
        "x-stage is not forwarded"
    );
    let r = s.call("GET", &host, "/where", &[("x-stage", "NOPE")]).await;
    assert_eq!(r.status, 404);

    // A variable change takes effect without republishing.
    let vars = s
        .api
        .get(&s.inst(&format!("/env-variables?group_id={group}&env_id={dev}")))
        .await;
    let var_id = vars.body["variables"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .api
        .put(
            &s.inst(&format!("/env-variables/{var_id}")),
            &json!({"variable_value": "dev2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    apig_testkit::eventually(crate::support::WAIT, "the variable change", || async {
        let r = s.call("GET", &host, "/where", &[("x-stage", "DEV")]).await;
        (r.body["path"] == "/dev2/where").then_some(())
    })
    .await;
    // A variable a published API uses cannot be deleted.
    let r = s
        .api
        .delete(&s.inst(&format!("/env-variables/{var_id}")))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn mock_backend_answers_its_content() {
    let s = Stack::start().await;
    let (group, host) = s.group("mocks").await;
    let api = s
        .create_api(&json!({
            "name": "mocked", "type": 1, "req_protocol": "HTTP", "req_method": "ANY", "req_uri": "/mock",
            "auth_type": "NONE", "backend_type": "MOCK", "group_id": group,
            "mock_info": {"result_content": "{\"hello\":\"mock\"}"}
        }))
        .await;
    s.publish(&api, RELEASE).await;
    let r = s.until_routed(&host, "/mock", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "{\"hello\":\"mock\"}");
    let r = s.call("DELETE", &host, "/mock", &[]).await;
    assert_eq!(r.status, 200, "ANY matches every method");
    assert_eq!(s.backend.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_none_auth_fails_closed_and_required_parameters_are_checked() {
    let s = Stack::start().await;
    let (group, host) = s.group("guarded").await;
    let app = s
        .create_api(&s.http_api(
            &group,
            "app_api",
            "GET",
            "/app",
            json!({"auth_type": "APP"}),
        ))
        .await;
    let q = s
        .create_api(&s.http_api(&group, "needs_q", "GET", "/needs", json!({
            "req_params": [{"name": "q", "type": "NUMBER", "location": "QUERY", "required": 1, "valid_enable": 1, "min_num": 1, "max_num": 5}]
        })))
        .await;
    s.publish(&app, RELEASE).await;
    s.publish(&q, RELEASE).await;
    let r = s.until_routed(&host, "/app", &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error_code"], "APIG.0303");
    let r = s.until_routed(&host, "/needs", &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.call("GET", &host, "/needs?q=9", &[]).await;
    assert_eq!(r.status, 400, "out of range: {}", r.text);
    let r = s.call("GET", &host, "/needs?q=3", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.backend.hits(),
        1,
        "only the valid call reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_never_reach_the_backend() {
    let s = Stack::start().await;
    let (group, host) = s.group("hostile").await;
    let api = s
        .create_api(&s.http_api(&group, "open", "ANY", "/", json!({"match_mode": "SWA"})))
        .await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/ok", &[]).await;
    let hits = s.backend.hits();
    // Raw bytes: HTTP client libraries would normalise these before sending.
    for path in [
        "/a/%2e%2e/%2e%2e/etc/passwd",
        "/a/../../etc/passwd",
        "/a%2Fb",
        "/a%00b",
        "/a%5Cb",
        "/%zz",
        "/a/%C0%AF",
    ] {
        let answer = raw(
            &s.gw,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("APIG.0201"), "{path}: {answer}");
    }
    assert_eq!(s.backend.hits(), hits, "no hostile path was forwarded");
    // Dot segments that stay inside the root are removed and slashes merged, not rejected.
    let answer = raw(
        &s.gw,
        &format!("GET /x/%2E%2e/y//z HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.contains("\"path\":\"/y/z\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_failures_map_to_apig_errors() {
    let s = Stack::start().await;
    let (group, host) = s.group("failing").await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let down = s
        .create_api(&s.http_api(
            &group,
            "down",
            "GET",
            "/down",
            json!({"backend_api": {"url_domain": closed}}),
        ))
        .await;
    let slow = s
        .create_api(&s.http_api(
            &group,
            "slow",
            "GET",
            "/slow",
            json!({"backend_api": {"req_uri": "/sleep/3000", "timeout": 300}}),
        ))
        .await;
    s.publish(&down, RELEASE).await;
    s.publish(&slow, RELEASE).await;
    let r = s.until_routed(&host, "/down", &[]).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.body["error_code"].as_str().unwrap().starts_with("APIG.0"));
    let r = s.until_routed(&host, "/slow", &[]).await;
    assert_eq!(r.status, 504, "{}", r.text);
}
