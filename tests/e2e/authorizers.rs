//! Custom authorizers on the real binaries: a function server started by the test decides,
//! the gateway enforces, the echo backend shows what reached it. Rows A11–A13 of
//! `reliability-and-security.md` §3 are marked where they are checked.

use apig_testkit::{eventually, FunctionServer};
use serde_json::{json, Value};

use crate::support::{Stack, RELEASE, WAIT};

/// The function's answer.
fn answer(status: &str, context: Value) -> String {
    json!({"statusCode": 200,
           "body": json!({"status": status, "context": context}).to_string()})
    .to_string()
}

/// The last request the echo backend saw: its header `name`, if any.
fn last_header(s: &Stack, name: &str) -> Option<String> {
    let seen = s.backend.seen();
    let last = seen.last()?;
    last.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn frontend_authorizers_decide_cache_and_pass_their_context() {
    let s = Stack::start().await;
    // Allows tokens starting with "good" (context: the user), answers a context with a CR/LF
    // for "crlf…", denies the rest.
    let function = FunctionServer::start(|event| {
        let token = event["headers"]["x-token"].as_str().unwrap_or_default();
        if token.starts_with("good") {
            answer("allow", json!({"user": token, "tier": "gold"}))
        } else if token.starts_with("crlf") {
            answer("allow", json!({"user": "x\r\nX-Injected: 1"}))
        } else {
            answer("deny", json!({}))
        }
    })
    .await;
    let url = format!("http://{}/authorize", function.addr);

    // Management: validation, FunctionGraph URNs, the always-refused addresses.
    let bad = s
        .api
        .post(
            &s.inst("/authorizers"),
            &json!({"name": "x", "type": "FRONTEND",
            "authorizer_type": "FUNC", "authorizer_uri": url}),
        )
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let urn = s
        .api
        .post(&s.inst("/authorizers"), &json!({"name": "urn_auth", "type": "FRONTEND",
            "authorizer_type": "FUNC", "authorizer_uri": "urn:fss:eu-de:1:function:default:a:latest"}))
        .await;
    assert_eq!(
        (urn.status, urn.body["error_code"].as_str()),
        (412, Some("APIG.3458"))
    );
    let metadata = s
        .api
        .post(
            &s.inst("/authorizers"),
            &json!({"name": "meta_auth", "type": "FRONTEND",
            "authorizer_type": "FUNC", "authorizer_uri": "http://169.254.169.254/latest"}),
        )
        .await;
    assert_eq!(
        metadata.body["error_code"], "APIG.2022",
        "{:?}",
        metadata.body
    );

    let created = s
        .api
        .post(
            &s.inst("/authorizers"),
            &json!({"name": "token_auth", "type": "FRONTEND", "authorizer_type": "FUNC",
                "authorizer_uri": url, "ttl": 60, "user_data": "tenant-a",
                "identities": [{"name": "X-Token", "location": "HEADER",
                                "validation": "^[a-z0-9]+$"}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let authorizer = created.body["id"].as_str().unwrap().to_owned();
    let dup = s
        .api
        .post(
            &s.inst("/authorizers"),
            &json!({"name": "token_auth", "type": "BACKEND",
            "authorizer_type": "FUNC", "authorizer_uri": url}),
        )
        .await;
    assert_eq!(dup.body["error_code"], "APIG.3211", "{:?}", dup.body);

    let (group, host) = s.group("authorized").await;
    let api = s
        .create_api(&s.http_api(
            &group,
            "orders",
            "GET",
            "/orders",
            json!({"auth_type": "AUTHORIZER", "authorizer_id": authorizer,
                "backend_params": [{"origin": "SYSTEM", "name": "X-User", "location": "HEADER",
                                    "value": "$context.authorizer.frontend.user"}]}),
        ))
        .await;
    s.publish(&api, RELEASE).await;

    // Allowed with the right identity; the backend sees the mapped context, not the token
    // check's internals.
    let ok = s
        .until_routed(&host, "/orders", &[("x-token", "good1")])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(last_header(&s, "x-user").as_deref(), Some("good1"));
    let calls = function.events().len();
    assert_eq!(calls, 1);
    let event = &function.events()[0];
    assert_eq!(event["user_data"], "tenant-a");
    assert_eq!(event["headers"]["x-token"], "good1");

    // Denied: AUTHORIZER_FAILURE, APIG's default 500; the backend is not called.
    let hits = s.backend.hits();
    let denied = s
        .call("GET", &host, "/orders", &[("x-token", "evil1")])
        .await;
    assert_eq!(denied.status, 500, "{}", denied.text);
    assert_eq!(denied.body["error_code"], "APIG.0305");
    assert_eq!(s.backend.hits(), hits);

    // A11: identity missing or failing its validation: 401 without calling the function.
    let before = function.events().len();
    for headers in [&[][..], &[("x-token", "UPPER")][..]] {
        let r = s.call("GET", &host, "/orders", headers).await;
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.body["error_code"], "APIG.0305");
    }
    assert_eq!(function.events().len(), before, "the function was called");
    assert_eq!(s.backend.hits(), hits);

    // ttl: the same identity is answered from the cache.
    for _ in 0..3 {
        let r = s
            .call("GET", &host, "/orders", &[("x-token", "good1")])
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        function.events().len(),
        before,
        "cached decisions called the function"
    );

    // A13: another identity value is another cache entry, with its own context.
    let r = s
        .call("GET", &host, "/orders", &[("x-token", "good2")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(last_header(&s, "x-user").as_deref(), Some("good2"));
    assert_eq!(function.events().len(), before + 1);

    // A12: a CR/LF in a context value fails closed; nothing reaches the backend.
    let hits = s.backend.hits();
    let r = s
        .call("GET", &host, "/orders", &[("x-token", "crlf1")])
        .await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.body["error_code"], "APIG.0601");
    assert_eq!(s.backend.hits(), hits);
    assert!(s
        .backend
        .seen()
        .iter()
        .all(|req| req.headers.iter().all(|(k, _)| k != "x-injected")));

    // An authorizer in use cannot be deleted; the type cannot change.
    let del = s
        .api
        .delete(&s.inst(&format!("/authorizers/{authorizer}")))
        .await;
    assert_eq!(
        (del.status, del.body["error_code"].as_str()),
        (400, Some("APIG.2012"))
    );
    let retype = s
        .api
        .put(
            &s.inst(&format!("/authorizers/{authorizer}")),
            &json!({"name": "token_auth", "type": "BACKEND", "authorizer_type": "FUNC",
                "authorizer_uri": url}),
        )
        .await;
    assert_eq!(retype.status, 400, "{:?}", retype.body);
    let missing = s.api.delete(&s.inst("/authorizers/nope")).await;
    assert_eq!(
        (missing.status, missing.body["error_code"].as_str()),
        (404, Some("APIG.3081"))
    );
    let listed = s
        .api
        .get(&s.inst("/authorizers?type=FRONTEND&name=token"))
        .await;
    assert_eq!(listed.body["total"], 1, "{:?}", listed.body);
    assert_eq!(listed.body["authorizer_list"][0]["id"], authorizer.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_authorizers_vouch_for_calls_and_changes_apply_without_republishing() {
    let s = Stack::start().await;
    let function = FunctionServer::start(|event| {
        if event["user_data"] == "backend-a" {
            answer("allow", json!({"sig": "signed-by-a"}))
        } else {
            answer("deny", json!({}))
        }
    })
    .await;
    let url = format!("http://{}/", function.addr);
    let body = |user_data: &str| {
        json!({"name": "backend_auth", "type": "BACKEND", "authorizer_type": "FUNC",
               "authorizer_uri": url, "user_data": user_data})
    };
    let created = s
        .api
        .post(&s.inst("/authorizers"), &body("backend-a"))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let authorizer = created.body["id"].as_str().unwrap().to_owned();

    let (group, host) = s.group("vouched").await;
    // A backend authorizer cannot be the frontend one.
    let wrong = s
        .api
        .post(
            &s.inst("/apis"),
            &s.http_api(
                &group,
                "wrong",
                "GET",
                "/wrong",
                json!({"auth_type": "AUTHORIZER", "authorizer_id": authorizer}),
            ),
        )
        .await;
    assert_eq!(wrong.status, 400, "{:?}", wrong.body);
    let api = s
        .create_api(&s.http_api(
            &group,
            "vouched",
            "GET",
            "/vouched",
            json!({"backend_api": {"authorizer_id": authorizer},
                "backend_params": [{"origin": "SYSTEM", "name": "X-Sig", "location": "HEADER",
                                    "value": "$context.authorizer.backend.sig"}]}),
        ))
        .await;
    s.publish(&api, RELEASE).await;
    let ok = s.until_routed(&host, "/vouched", &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(last_header(&s, "x-sig").as_deref(), Some("signed-by-a"));
    assert_eq!(function.events(), vec![json!({"user_data": "backend-a"})]);

    // The function now denies: the change reaches the gateway without republishing.
    let updated = s
        .api
        .put(
            &s.inst(&format!("/authorizers/{authorizer}")),
            &body("backend-b"),
        )
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    let denied = eventually(WAIT, "the updated authorizer to apply", || async {
        let r = s.call("GET", &host, "/vouched", &[]).await;
        (r.status == 500).then_some(r)
    })
    .await;
    assert_eq!(denied.body["error_code"], "APIG.0305", "{}", denied.text);
    // Calls made before the new snapshot arrived were still allowed; from the first denial on,
    // nothing reaches the backend.
    let hits = s.backend.hits();
    let again = s.call("GET", &host, "/vouched", &[]).await;
    assert_eq!(again.status, 500, "{}", again.text);
    assert_eq!(s.backend.hits(), hits);
}
