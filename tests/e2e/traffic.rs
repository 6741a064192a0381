//! Throttling and access control through the real binaries.

use std::time::Duration;

use apig_testkit::{eventually, Gateway};
use serde_json::{json, Value};

use crate::support::{bin, call, raw, Stack, RELEASE, WAIT};

async fn throttle(s: &Stack, body: Value) -> String {
    let r = s.api.post(&s.inst("/throttles"), &body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn bind_throttle(s: &Stack, policy: &str, publish_id: &str) -> String {
    let r = s
        .api
        .post(
            &s.inst("/throttle-bindings"),
            &json!({"strategy_id": policy, "publish_ids": [publish_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["throttle_applys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The statuses of `n` calls in a row.
async fn statuses(gw: &Gateway, host: &str, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(call(gw, "GET", host, path, &[]).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_boundaries_bindings_and_republish() {
    let s = Stack::start().await;
    let (group, host) = s.group("throttled").await;
    let api = s
        .create_api(&s.http_api(&group, "limited", "GET", "/limited", json!({})))
        .await;
    let publish_id = s.publish(&api, RELEASE).await["publish_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.until_routed(&host, "/limited", &[]).await;

    // Invalid policies are refused: app above user, user above api.
    let r = s
        .api
        .post(&s.inst("/throttles"), &json!({"name": "bad_limits", "api_call_limits": 5, "user_call_limits": 6, "time_interval": 1, "time_unit": "SECOND"}))
        .await;
    assert_eq!(r.status, 400);

    let policy = throttle(&s, json!({"name": "three_per_2s", "api_call_limits": 3, "time_interval": 2, "time_unit": "SECOND"})).await;
    let bind_id = bind_throttle(&s, &policy, &publish_id).await;
    // The binding applies without a republish: wait for the first refusal, then for a fresh
    // window, and count exactly.
    eventually(WAIT, "the binding to apply", || async {
        (call(&s.gw, "GET", &host, "/limited", &[]).await.status == 429).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = statuses(&s.gw, &host, "/limited", 4).await;
    assert_eq!(
        got,
        vec![200, 200, 200, 429],
        "the (N+1)th call in a window is refused"
    );
    let r = call(&s.gw, "GET", &host, "/limited", &[("x-apig-mode", "debug")]).await;
    assert_eq!(r.body["error_code"], "APIG.0308");
    assert!(
        r.headers.get("x-apig-ratelimit-api").is_some(),
        "debug headers: {:?}",
        r.headers
    );
    let plain = call(&s.gw, "GET", &host, "/limited", &[]).await;
    assert!(plain.headers.get("x-apig-ratelimit-api").is_none());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        call(&s.gw, "GET", &host, "/limited", &[]).await.status,
        200,
        "the window resets"
    );

    // Counters survive a republish. A slow policy (3 a minute: one call back every 20 s) makes
    // the check exact; changing its numbers gives it a fresh counter.
    let r = s
        .api
        .put(&s.inst(&format!("/throttles/{policy}")), &json!({"name": "three_per_2s", "api_call_limits": 3, "time_interval": 1, "time_unit": "MINUTE"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.settled().await;
    assert_eq!(
        statuses(&s.gw, &host, "/limited", 4).await,
        vec![200, 200, 200, 429]
    );
    s.publish(&api, RELEASE).await;
    s.settled().await;
    assert_eq!(
        call(&s.gw, "GET", &host, "/limited", &[]).await.status,
        429,
        "the republish kept the counter"
    );

    // A bound policy cannot be deleted; unbinding lifts the limit without a republish.
    let r = s.api.delete(&s.inst(&format!("/throttles/{policy}"))).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error_code"], "APIG.3451");
    let r = s
        .api
        .get(&s.inst(&format!(
            "/throttle-bindings/binded-apis?throttle_id={policy}"
        )))
        .await;
    assert_eq!(r.body["total"], 1, "{:?}", r.body);
    let r = s
        .api
        .delete(&s.inst(&format!("/throttle-bindings/{bind_id}")))
        .await;
    assert_eq!(r.status, 204);
    eventually(WAIT, "unbinding to apply", || async {
        let got = statuses(&s.gw, &host, "/limited", 5).await;
        got.iter().all(|c| *c == 200).then_some(())
    })
    .await;
    assert_eq!(
        s.api
            .delete(&s.inst(&format!("/throttles/{policy}")))
            .await
            .status,
        204
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_together_allow_the_policy_limit() {
    let s = Stack::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let others: Vec<Gateway> = (0..2)
        .map(|n| {
            Gateway::start(
                &bin(),
                &s.cp.grpc_url(),
                &s.instance,
                &dirs.path().join(format!("gw{n}")),
                &s.cp.cluster_token,
            )
        })
        .collect();
    let (group, host) = s.group("cluster_limits").await;
    let api = s
        .create_api(&s.http_api(&group, "shared", "GET", "/shared", json!({})))
        .await;
    let publish_id = s.publish(&api, RELEASE).await["publish_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = throttle(&s, json!({"name": "ten_per_minute", "api_call_limits": 10, "time_interval": 1, "time_unit": "MINUTE"})).await;
    // Wait until the control plane sees three replicas and every one has the API.
    eventually(WAIT, "three connected replicas", || async {
        let r = s.api.get(&s.inst("/replicas")).await;
        let n = r.body["replicas"].as_array().map_or(0, |a| {
            a.iter().filter(|x| x["status"] == "connected").count()
        });
        (n == 3).then_some(())
    })
    .await;
    let gateways: Vec<&Gateway> = std::iter::once(&s.gw).chain(others.iter()).collect();
    for gw in &gateways {
        eventually(WAIT, "the API on every replica", || async {
            (call(gw, "GET", &host, "/shared", &[]).await.status == 200).then_some(())
        })
        .await;
    }
    bind_throttle(&s, &policy, &publish_id).await;
    s.settled().await;
    let mut ok = 0;
    for round in 0..10 {
        for gw in &gateways {
            let status = call(gw, "GET", &host, "/shared", &[]).await.status;
            assert!(status == 200 || status == 429, "round {round}: {status}");
            ok += usize::from(status == 200);
        }
    }
    assert_eq!(ok, 10, "30 calls over 3 replicas, a limit of 10 per minute");
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_access_control_with_spoofed_forwarded_for() {
    let s = Stack::start().await;
    let (group, host) = s.group("guarded_ips").await;
    let api = s
        .create_api(&s.http_api(&group, "ip_guarded", "GET", "/ip", json!({})))
        .await;
    let publish_id = s.publish(&api, RELEASE).await["publish_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.until_routed(&host, "/ip", &[]).await;
    let bad = s
        .api
        .post(&s.inst("/acls"), &json!({"acl_name": "bad_acl", "acl_type": "DENY", "entity_type": "IP", "acl_value": "300.1.1.1"}))
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let deny = s
        .api
        .post(&s.inst("/acls"), &json!({"acl_name": "no_loopback", "acl_type": "DENY", "entity_type": "IP", "acl_value": "10.0.0.0/8,127.0.0.1-127.0.0.5,::1"}))
        .await;
    assert_eq!(deny.status, 201, "{:?}", deny.body);
    let deny_id = deny.body["id"].as_str().unwrap().to_owned();
    let r = s
        .api
        .post(
            &s.inst("/acl-bindings"),
            &json!({"acl_id": deny_id, "publish_ids": [publish_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let bind_id = r.body["acl_bindings"][0]["id"].as_str().unwrap().to_owned();
    let r = eventually(WAIT, "the ACL to apply", || async {
        let r = call(&s.gw, "GET", &host, "/ip", &[]).await;
        (r.status == 403).then_some(r)
    })
    .await;
    assert_eq!(r.body["error_code"], "APIG.0402");
    // A client claiming another address from an untrusted peer is still the peer.
    let spoofed = raw(&s.gw, &format!("GET /ip HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 8.8.8.8\r\nX-Real-IP: 8.8.8.8\r\nConnection: close\r\n\r\n")).await;
    assert!(spoofed.starts_with("HTTP/1.1 403"), "{spoofed}");
    // Second ACL of the same entity type on the same API is refused; a bound ACL cannot go.
    let permit = s
        .api
        .post(&s.inst("/acls"), &json!({"acl_name": "only_loopback", "acl_type": "PERMIT", "entity_type": "IP", "acl_value": "127.0.0.0/8"}))
        .await;
    let permit_id = permit.body["id"].as_str().unwrap().to_owned();
    let r = s
        .api
        .post(
            &s.inst("/acl-bindings"),
            &json!({"acl_id": permit_id, "publish_ids": [publish_id]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = s.api.delete(&s.inst(&format!("/acls/{deny_id}"))).await;
    assert_eq!(r.body["error_code"], "APIG.3447");
    // Swap DENY for PERMIT 127.0.0.0/8: allowed again.
    assert_eq!(
        s.api
            .delete(&s.inst(&format!("/acl-bindings/{bind_id}")))
            .await
            .status,
        204
    );
    let r = s
        .api
        .post(
            &s.inst("/acl-bindings"),
            &json!({"acl_id": permit_id, "publish_ids": [publish_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .api
        .get(&s.inst(&format!("/acl-bindings/binded-acls?api_id={api}")))
        .await;
    assert_eq!(r.body["acls"][0]["acl_id"], permit_id.as_str());
    eventually(WAIT, "the PERMIT ACL", || async {
        (call(&s.gw, "GET", &host, "/ip", &[]).await.status == 200).then_some(())
    })
    .await;
    // Updating the policy's values takes effect without rebinding.
    let r = s
        .api
        .put(&s.inst(&format!("/acls/{permit_id}")), &json!({"acl_name": "only_loopback", "acl_type": "PERMIT", "entity_type": "IP", "acl_value": "192.168.0.0/16"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(WAIT, "the updated ACL", || async {
        (call(&s.gw, "GET", &host, "/ip", &[]).await.status == 403).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_quotas_count_across_apis_and_survive_a_gateway_restart() {
    let mut s = Stack::start().await;
    let (group, host) = s.group("quota_group").await;
    let mut apis = Vec::new();
    for (name, path) in [("quota_a", "/qa"), ("quota_b", "/qb")] {
        let api = s
            .create_api(&s.http_api(&group, name, "GET", path, json!({"auth_type": "APP"})))
            .await;
        s.publish(&api, RELEASE).await;
        apis.push(api);
    }
    let app = s
        .api
        .post(&s.inst("/apps"), &json!({"name": "quota_app"}))
        .await
        .body;
    let (app_id, key, secret) = (
        app["id"].as_str().unwrap().to_owned(),
        app["app_key"].as_str().unwrap().to_owned(),
        app["app_secret"].as_str().unwrap().to_owned(),
    );
    let r = s
        .api
        .post(
            &s.inst("/app-auths"),
            &json!({"env_id": RELEASE, "app_ids": [app_id], "api_ids": apis}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .api
        .post(&s.inst("/app-quotas"), &json!({"name": "three_a_day", "call_limits": 3, "time_unit": "DAY", "time_interval": 1, "reset_time": "2026-01-01 00:00:00"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let quota = r.body["app_quota_id"].as_str().unwrap().to_owned();
    let r = s
        .api
        .post(
            &s.inst(&format!("/app-quotas/{quota}/binding-apps")),
            &json!({"app_ids": [app_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .api
        .get(&s.inst(&format!("/app-quotas/{quota}/bound-apps")))
        .await;
    assert_eq!(r.body["total"], 1);
    let r = s.api.delete(&s.inst(&format!("/app-quotas/{quota}"))).await;
    assert_eq!(
        r.status, 400,
        "a bound quota cannot be deleted: {:?}",
        r.body
    );
    s.settled().await;

    // The restarted gateway listens on the same address.
    let gw_addr = s.gw.addr;
    let signed = |path: &'static str| {
        let (key, secret, host) = (key.clone(), secret.clone(), host.clone());
        async move {
            let now = chrono::Utc::now().timestamp();
            let headers = [("host", host.as_str())];
            let view = apig_sign::RequestView {
                method: "GET",
                path,
                query: None,
                headers: &headers,
            };
            let added = apig_sign::Signer {
                key: &key,
                secret: secret.as_bytes(),
            }
            .sign(&view, b"", now)
            .expect("sign");
            let mut req = apig_testkit::http_client()
                .get(format!("http://{gw_addr}{path}"))
                .header("host", &host);
            for (k, v) in &added {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("gateway answers");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    // Three calls across two APIs use the quota up.
    for path in ["/qa", "/qb", "/qa"] {
        let (status, body) = signed(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = signed("/qb").await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("APIG.0501"), "{body}");
    // A day-long window outlives a gateway restart.
    s.gw.restart_graceful();
    eventually(WAIT, "the restarted gateway", || async {
        s.gw.is_ready().await.then_some(())
    })
    .await;
    let (status, body) = signed("/qa").await;
    assert_eq!(status, 405, "the used quota survived the restart: {body}");
    // Unbinding lifts it.
    let r = s
        .api
        .delete(&s.inst(&format!("/app-quotas/{quota}/bound-apps/{app_id}")))
        .await;
    assert_eq!(r.status, 204);
    s.settled().await;
    let (status, body) = signed("/qa").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let behind_proxy = Gateway::start_with_args(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        dir.path(),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--trusted-proxy", "127.0.0.1"],
    );
    let (group, host) = s.group("proxied").await;
    let api = s
        .create_api(&s.http_api(&group, "who", "GET", "/who", json!({
            "backend_params": [{"origin": "SYSTEM", "name": "X-Src", "location": "HEADER", "value": "$context.sourceIp"}]
        })))
        .await;
    let publish_id = s.publish(&api, RELEASE).await["publish_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let acl = s
        .api
        .post(&s.inst("/acls"), &json!({"acl_name": "blocked_client", "acl_type": "DENY", "entity_type": "IP", "acl_value": "203.0.113.0/24,2001:db8::/32"}))
        .await;
    let r = s
        .api
        .post(
            &s.inst("/acl-bindings"),
            &json!({"acl_id": acl.body["id"], "publish_ids": [publish_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    s.settled().await;
    eventually(WAIT, "the API on the proxied replica", || async {
        (call(&behind_proxy, "GET", &host, "/who", &[]).await.status == 200).then_some(())
    })
    .await;
    // Through the trusted proxy (the peer is 127.0.0.1): the forwarded client counts.
    let r = call(
        &behind_proxy,
        "GET",
        &host,
        "/who",
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.body["error_code"], "APIG.0402");
    let r = call(
        &behind_proxy,
        "GET",
        &host,
        "/who",
        &[("x-forwarded-for", "2001:db8::5")],
    )
    .await;
    assert_eq!(r.status, 403, "IPv6 client behind the proxy: {}", r.text);
    let r = call(
        &behind_proxy,
        "GET",
        &host,
        "/who",
        &[("x-forwarded-for", "198.51.100.1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["headers"]["x-src"], "198.51.100.1");
    // The same header sent to a replica that trusts no proxy changes nothing.
    let r = call(
        &s.gw,
        "GET",
        &host,
        "/who",
        &[("x-forwarded-for", "198.51.100.1")],
    )
    .await;
    assert_eq!(r.body["headers"]["x-src"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_acls_by_account_name_for_iam_callers() {
    let s = Stack::start().await;
    let (group, host) = s.group("guarded_accounts").await;
    let api = s
        .create_api(&s.http_api(
            &group,
            "iam_guarded",
            "GET",
            "/iam",
            json!({"auth_type": "IAM"}),
        ))
        .await;
    let publish_id = s.publish(&api, RELEASE).await["publish_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = s.api.post("/tokens", &json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let iam = [("x-auth-token", token.as_str())];
    assert_eq!(s.until_routed(&host, "/iam", &iam).await.status, 200);

    // Account names: projects have one (here seeded as APIG_PROJECT_NAME); they are unique and
    // follow APIG's rules for DOMAIN entries.
    let own = s.cp.seed.project_name.as_str();
    let r = s.api.post("/projects", &json!({"name": own})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = s.api.post("/projects", &json!({"name": "12345"})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = s
        .api
        .post("/projects", &json!({"name": "partner-co"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["name"], "partner-co");
    for bad in ["12345", "a b", "x,,y"] {
        let r = s
            .api
            .post(&s.inst("/acls"), &json!({"acl_name": "bad_names", "acl_type": "DENY", "entity_type": "DOMAIN", "acl_value": bad}))
            .await;
        assert_eq!(r.status, 400, "{bad:?}: {:?}", r.body);
    }

    // PERMIT lists only the partner: the owner's IAM callers are refused.
    let permit = s
        .api
        .post(&s.inst("/acls"), &json!({"acl_name": "partners_only", "acl_type": "PERMIT", "entity_type": "DOMAIN", "acl_value": "partner-co"}))
        .await;
    assert_eq!(permit.status, 201, "{:?}", permit.body);
    assert_eq!(permit.body["entity_type"], "DOMAIN");
    let permit_id = permit.body["id"].as_str().unwrap().to_owned();
    let r = s
        .api
        .post(
            &s.inst("/acl-bindings"),
            &json!({"acl_id": permit_id, "publish_ids": [publish_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = eventually(WAIT, "the DOMAIN ACL to apply", || async {
        let r = call(&s.gw, "GET", &host, "/iam", &iam).await;
        (r.status == 403).then_some(r)
    })
    .await;
    assert_eq!(r.body["error_code"], "APIG.0302");
    // The same API without credentials still fails authentication first.
    assert_eq!(call(&s.gw, "GET", &host, "/iam", &[]).await.status, 401);

    // Listing the owner's name lets its callers in, without rebinding.
    let r = s
        .api
        .put(&s.inst(&format!("/acls/{permit_id}")), &json!({"acl_name": "partners_only", "acl_type": "PERMIT", "entity_type": "DOMAIN", "acl_value": format!("partner-co,{own}")}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(WAIT, "the updated DOMAIN ACL", || async {
        (call(&s.gw, "GET", &host, "/iam", &iam).await.status == 200).then_some(())
    })
    .await;
}
