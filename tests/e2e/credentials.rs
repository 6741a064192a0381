//! Apps, IAM credentials and tokens, tenant isolation — through the real binaries.

use apig_testkit::{eventually, Gateway, MgmtClient};
use serde_json::{json, Value};

use crate::support::{bin, call, Stack, RELEASE, WAIT};

/// Signs a gateway call with `key`/`secret` (APP or IAM form) using the project's own signer.
async fn signed(
    gw: &Gateway,
    host: &str,
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
) -> crate::support::Resp {
    signed_for(gw, host, host, method, path, key, secret).await
}

/// Signs for `host` but sends with `Host: send_host` (a replay to another host).
async fn signed_for(
    gw: &Gateway,
    host: &str,
    send_host: &str,
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
) -> crate::support::Resp {
    let now = chrono::Utc::now().timestamp();
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let headers = [("host", host)];
    let view = apig_sign::RequestView {
        method,
        path: p,
        query: q,
        headers: &headers,
    };
    let added = apig_sign::Signer {
        key,
        secret: secret.as_bytes(),
    }
    .sign(&view, b"", now)
    .expect("sign");
    let owned: Vec<(String, String)> = added;
    let refs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    call(gw, method, send_host, path, &refs).await
}

async fn app_api(s: &Stack, group: &str, name: &str, path: &str, auth: &str) -> String {
    let api = s
        .create_api(&s.http_api(group, name, "GET", path, json!({
            "auth_type": auth,
            "backend_params": [
                {"origin": "SYSTEM", "name": "X-App-Id", "location": "HEADER", "value": "$context.appId"},
                {"origin": "SYSTEM", "name": "X-App-Name", "location": "HEADER", "value": "$context.appName"}
            ]
        })))
        .await;
    s.publish(&api, RELEASE).await;
    api
}

#[tokio::test(flavor = "multi_thread")]
async fn app_authentication_authorization_and_revocation_on_every_replica() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let second = Gateway::start(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        dir.path(),
        &s.cp.cluster_token,
    );
    let (group, host) = s.group("apps_group").await;
    let api = app_api(&s, &group, "app_api", "/app", "APP").await;
    let r = s
        .api
        .post(&s.inst("/apps"), &json!({"name": "billing", "remark": "r"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (app_id, key, secret) = (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["app_key"].as_str().unwrap().to_owned(),
        r.body["app_secret"].as_str().unwrap().to_owned(),
    );
    let shown = s.api.get(&s.inst(&format!("/apps/{app_id}"))).await;
    assert!(
        shown.body.get("app_secret").is_none(),
        "the secret is shown once: {:?}",
        shown.body
    );

    // Signed but not authorized yet.
    let r = eventually(WAIT, "the app to reach the gateway", || async {
        let r = signed(&s.gw, &host, "GET", "/app", &key, &secret).await;
        (r.status == 403).then_some(r)
    })
    .await;
    assert_eq!(r.body["error_code"], "APIG.0304");
    let r = s
        .api
        .post(
            &s.inst("/app-auths"),
            &json!({"env_id": RELEASE, "app_ids": [app_id], "api_ids": [api]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let auth_id = r.body["auths"][0]["id"].as_str().unwrap().to_owned();
    let again = s
        .api
        .post(
            &s.inst("/app-auths"),
            &json!({"env_id": RELEASE, "app_ids": [app_id], "api_ids": [api]}),
        )
        .await;
    assert_eq!(again.body["error_code"], "APIG.3316");
    for gw in [&s.gw, &second] {
        let r = eventually(WAIT, "the authorization on every replica", || async {
            let r = signed(gw, &host, "GET", "/app", &key, &secret).await;
            (r.status == 200).then_some(r)
        })
        .await;
        assert_eq!(r.body["headers"]["x-app-id"], app_id.as_str());
        assert_eq!(r.body["headers"]["x-app-name"], "billing");
        assert!(r.body["headers"].get("authorization").is_none());
    }
    // A request signed for this group's host does not pass at another group's host, even where
    // the same app may call the same path.
    let (group2, host2) = s.group("apps_group_two").await;
    let api2 = app_api(&s, &group2, "app_api_two", "/app", "APP").await;
    let r = s
        .api
        .post(
            &s.inst("/app-auths"),
            &json!({"env_id": RELEASE, "app_ids": [app_id], "api_ids": [api2]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    eventually(WAIT, "the second group", || async {
        (signed(&s.gw, &host2, "GET", "/app", &key, &secret)
            .await
            .status
            == 200)
            .then_some(())
    })
    .await;
    let r = signed_for(&s.gw, &host, &host2, "GET", "/app", &key, &secret).await;
    assert_eq!(r.status, 401, "replayed to another host: {}", r.text);
    // Cancelling the authorization, then deleting the app: denied on every replica.
    let r = s
        .api
        .delete(&s.inst(&format!("/app-auths/{auth_id}")))
        .await;
    assert_eq!(r.status, 204);
    for gw in [&s.gw, &second] {
        eventually(WAIT, "unbinding on every replica", || async {
            (signed(gw, &host, "GET", "/app", &key, &secret).await.status == 403).then_some(())
        })
        .await;
    }
    let r = s.api.delete(&s.inst(&format!("/apps/{app_id}"))).await;
    assert_eq!(r.status, 204);
    for gw in [&s.gw, &second] {
        let r = eventually(WAIT, "revocation on every replica", || async {
            let r = signed(gw, &host, "GET", "/app", &key, &secret).await;
            (r.status == 401).then_some(r)
        })
        .await;
        assert_eq!(r.body["error_code"], "APIG.0303");
    }
    // Unsigned calls never pass.
    let r = s.call("GET", &host, "/app", &[]).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn app_management_rules() {
    let s = Stack::start().await;
    let r = s.api.post(&s.inst("/apps"), &json!({"name": "keyed", "app_key": "my-app-key-0001", "app_secret": "my-app-secret-0001"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["app_key"], "my-app-key-0001");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let dup = s
        .api
        .post(
            &s.inst("/apps"),
            &json!({"name": "other_name", "app_key": "my-app-key-0001"}),
        )
        .await;
    assert_eq!(dup.body["error_code"], "APIG.3310");
    let bad = s
        .api
        .post(
            &s.inst("/apps"),
            &json!({"name": "x", "app_secret": "short"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    // At most five AppCodes.
    for _ in 0..5 {
        let r = s
            .api
            .put(&s.inst(&format!("/apps/{id}/app-codes")), &json!({}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let sixth = s
        .api
        .put(&s.inst(&format!("/apps/{id}/app-codes")), &json!({}))
        .await;
    assert_eq!(sixth.status, 403, "{:?}", sixth.body);
    let bad_code = s
        .api
        .post(
            &s.inst(&format!("/apps/{id}/app-codes")),
            &json!({"app_code": "too-short"}),
        )
        .await;
    assert_eq!(bad_code.status, 400);
    let r = s.api.get(&s.inst(&format!("/apps/validation/{id}"))).await;
    assert_eq!(r.body["name"], "keyed");
    let r = s.api.get(&s.inst("/apps/validation/nope")).await;
    assert_eq!(r.body["error_code"], "APIG.3004");
    let apps = s.api.get(&s.inst("/apps")).await;
    assert_eq!(apps.body["total"], 1);
    assert!(apps.body["apps"][0].get("app_secret").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_signature_and_tokens() {
    let s = Stack::start().await;
    let (group, host) = s.group("iam_group").await;
    app_api(&s, &group, "iam_api", "/iam", "IAM").await;
    // A second credential of the project, made through the credentials endpoint.
    let r = s.api.post("/credentials", &json!({})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (ak, sk) = (
        r.body["access_key"].as_str().unwrap().to_owned(),
        r.body["secret_key"].as_str().unwrap().to_owned(),
    );
    let listed = s.api.get("/credentials").await;
    assert_eq!(listed.body["total"], 2);
    assert!(
        listed.body.to_string().find(&sk).is_none(),
        "secrets are not listed"
    );

    let r = eventually(WAIT, "the IAM API", || async {
        let r = signed(&s.gw, &host, "GET", "/iam", &ak, &sk).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert!(r.body["headers"].get("authorization").is_none());
    let r = signed(
        &s.gw,
        &host,
        "GET",
        "/iam",
        &ak,
        "wrong-secret-wrong-secret",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error_code"], "APIG.0301");

    // Tokens: issued for the calling credential, verified by the replica on its own.
    let second = MgmtClient::new(s.cp.mgmt, &ak, &sk, &s.cp.seed.project_id);
    let t = second.post("/tokens", &json!({"ttl_seconds": 600})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let token = t.body["token"].as_str().unwrap().to_owned();
    let r = s
        .call("GET", &host, "/iam", &[("x-auth-token", &token)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["headers"].get("x-auth-token").is_none(),
        "the token does not reach the backend"
    );
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = s
        .call("GET", &host, "/iam", &[("x-auth-token", &tampered)])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error_code"], "APIG.0301");
    let bad_ttl = second.post("/tokens", &json!({"ttl_seconds": 10})).await;
    assert_eq!(bad_ttl.status, 400);

    // Deleting the credential revokes its signatures (tokens live until they expire).
    let r = s.api.delete(&format!("/credentials/{ak}")).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    eventually(WAIT, "the credential revocation", || async {
        (signed(&s.gw, &host, "GET", "/iam", &ak, &sk).await.status == 401).then_some(())
    })
    .await;
    // A credential cannot delete itself.
    let own = s
        .api
        .delete(&format!("/credentials/{}", s.cp.seed.ak))
        .await;
    assert_eq!(own.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_and_change_nothing_of_each_other() {
    let s = Stack::start().await;
    let (group, host) = s.group("tenant_a").await;
    let api = app_api(&s, &group, "tenant_api", "/iam", "IAM").await;
    let app = s
        .api
        .post(&s.inst("/apps"), &json!({"name": "tenant_app"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let env = s
        .api
        .post(&s.inst("/envs"), &json!({"name": "TENANT_ENV"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let var = s
        .api
        .post(&s.inst("/env-variables"), &json!({"group_id": group, "env_id": env, "variable_name": "vvv", "variable_value": "x"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let throttle = s
        .api
        .post(&s.inst("/throttles"), &json!({"name": "tenant_throttle", "api_call_limits": 5, "time_interval": 1, "time_unit": "SECOND"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let acl = s
        .api
        .post(&s.inst("/acls"), &json!({"acl_name": "tenant_acl", "acl_type": "DENY", "entity_type": "IP", "acl_value": "10.0.0.1"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let quota = s
        .api
        .post(&s.inst("/app-quotas"), &json!({"name": "tenant_quota", "call_limits": 5, "time_unit": "DAY", "time_interval": 1}))
        .await
        .body["app_quota_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The administrator creates project B; B's credential is B's only.
    let r = s.api.post("/projects", &json!({})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b = MgmtClient::new(
        s.cp.mgmt,
        r.body["access_key"].as_str().unwrap(),
        r.body["secret_key"].as_str().unwrap(),
        r.body["project_id"].as_str().unwrap(),
    );
    // B is not an administrator.
    assert_eq!(b.post("/projects", &json!({})).await.status, 403);
    // B cannot use A's project path...
    let cross = MgmtClient::new(
        s.cp.mgmt,
        r.body["access_key"].as_str().unwrap(),
        r.body["secret_key"].as_str().unwrap(),
        &s.cp.seed.project_id,
    );
    assert_eq!(cross.get("/instances").await.status, 401);
    // ...and A's instance does not exist for B, whatever the resource.
    let i = format!("/instances/{}", s.instance);
    let reads = [
        i.clone(),
        format!("{i}/api-groups"),
        format!("{i}/api-groups/{group}"),
        format!("{i}/apis"),
        format!("{i}/apis/{api}"),
        format!("{i}/apis/publish/{api}"),
        format!("{i}/apis/runtime/{api}"),
        format!("{i}/envs"),
        format!("{i}/env-variables"),
        format!("{i}/env-variables/{var}"),
        format!("{i}/apps"),
        format!("{i}/apps/{app}"),
        format!("{i}/apps/{app}/app-codes"),
        format!("{i}/apps/{app}/app-acl"),
        format!("{i}/app-auths/binded-apps?api_id={api}"),
        format!("{i}/replicas"),
        format!("{i}/throttles/{throttle}"),
        format!("{i}/throttles/{throttle}/throttle-specials"),
        format!("{i}/throttle-bindings/binded-throttles?api_id={api}"),
        format!("{i}/acls/{acl}"),
        format!("{i}/acl-bindings/binded-acls?api_id={api}"),
        format!("{i}/app-quotas/{quota}"),
        format!("{i}/app-quotas/{quota}/bound-apps"),
    ];
    for path in &reads {
        let r = b.get(path).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
        assert_eq!(r.body["error_code"], "APIG.3030", "{path}");
    }
    let writes: [(&str, String, Value); 11] = [
        ("DELETE", format!("{i}/throttles/{throttle}"), Value::Null),
        (
            "PUT",
            format!("{i}/acls/{acl}"),
            json!({"acl_name": "x_acl", "acl_type": "PERMIT", "entity_type": "IP", "acl_value": "1.1.1.1"}),
        ),
        (
            "POST",
            format!("{i}/app-quotas/{quota}/binding-apps"),
            json!({"app_ids": [app]}),
        ),
        ("POST", format!("{i}/api-groups"), json!({"name": "stolen"})),
        (
            "PUT",
            format!("{i}/api-groups/{group}"),
            json!({"name": "renamed"}),
        ),
        ("DELETE", format!("{i}/apis/{api}"), Value::Null),
        (
            "POST",
            format!("{i}/apis/action"),
            json!({"action": "offline", "api_id": api, "env_id": RELEASE}),
        ),
        ("DELETE", format!("{i}/envs/{env}"), Value::Null),
        (
            "PUT",
            format!("{i}/env-variables/{var}"),
            json!({"variable_value": "y"}),
        ),
        ("DELETE", format!("{i}/apps/{app}"), Value::Null),
        ("DELETE", i.clone(), Value::Null),
    ];
    for (method, path, body) in &writes {
        let r = match *method {
            "POST" => b.post(path, body).await,
            "PUT" => b.put(path, body).await,
            _ => b.delete(path).await,
        };
        assert_eq!(r.status, 404, "{method} {path}: {:?}", r.body);
    }
    // Nothing of A changed.
    assert_eq!(
        s.api
            .get(&s.inst(&format!("/api-groups/{group}")))
            .await
            .body["name"],
        "tenant_a"
    );
    assert_eq!(
        s.api.get(&s.inst(&format!("/apps/{app}"))).await.status,
        200
    );
    assert_eq!(s.api.get(&i).await.status, 200);
    // B's own instance list is empty; A sees only its own.
    assert_eq!(b.get("/instances").await.body["total"], 0);
    // B's token does not open A's IAM APIs.
    let token = b.post("/tokens", &json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .until_routed(&host, "/iam", &[("x-auth-token", &token)])
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
}
