//! OpenAPI import and export (`ImportApiDefinitionsV2`, `ExportApiDefinitionsV2`) against the
//! real control plane and gateway: an imported Swagger document runs once published, an export
//! imports again to the same APIs, and bad documents change nothing.

use apig_testkit::MgmtClient;
use serde_json::{json, Value};

use crate::support::{call, Stack};

const RELEASE: &str = "DEFAULT_ENVIRONMENT_RELEASE_ID";

/// A Swagger 2.0 document (YAML) with an HTTP API to `backend` and a MOCK API rate limited to
/// 2 calls a minute.
fn swagger(title: &str, backend: &str) -> String {
    format!(
        r#"swagger: "2.0"
info:
  title: {title}
  version: "1.0"
schemes: [http]
paths:
  /orders/{{orderId}}:
    get:
      operationId: get_order
      parameters:
      - {{name: orderId, in: path, type: string, required: true}}
      - {{name: verbose, in: query, type: string, enum: ["yes", "no"]}}
      responses:
        200: {{description: the order}}
      x-apigateway-backend:
        type: HTTP
        parameters:
        - {{name: id, value: orderId, in: path, origin: REQUEST}}
        - {{name: X-Source, value: openapi, in: header, origin: CONSTANT}}
        httpEndpoints:
          address: "{backend}"
          scheme: http
          method: GET
          path: /backend/orders/{{id}}
          timeout: 5000
  /health:
    x-apigateway-any-method:
      operationId: health
      responses:
        default: {{description: ok}}
      x-apigateway-backend:
        type: MOCK
        mockEndpoints:
          result-content: "service up"
      x-apigateway-ratelimit: two_a_minute
x-apigateway-ratelimits:
  two_a_minute:
    api-limit: 2
    interval: 1
    unit: MINUTE
"#
    )
}

async fn import(
    api: &MgmtClient,
    inst: &str,
    fields: &[(&str, &str)],
    doc: &[u8],
) -> apig_testkit::Answer {
    api.post_multipart(
        &format!("/instances/{inst}/openapi/import"),
        fields,
        ("file_name", "api.yaml", doc),
    )
    .await
}

/// What the management API shows of an API, without what the server assigns (ids, times,
/// the group, publication state).
fn comparable(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "id",
                    "req_param_id",
                    "register_time",
                    "update_time",
                    "group_id",
                    "group_name",
                    "run_env_id",
                    "run_env_name",
                    "publish_id",
                    "publish_time",
                ] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

async fn apis_of(s: &Stack, group: &str) -> Vec<Value> {
    let r = s
        .api
        .get(&s.inst(&format!("/apis?group_id={group}&limit=500")))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut apis: Vec<Value> = r.body["apis"].as_array().cloned().unwrap_or_default();
    apis.sort_by_key(|a| a["name"].as_str().unwrap_or_default().to_owned());
    apis
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_swagger_runs_once_published() {
    let s = Stack::start().await;
    let doc = swagger("imported_orders", &s.backend.authority());
    let r = import(
        &s.api,
        &s.instance,
        &[("is_create_group", "true")],
        doc.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["failure"], json!([]), "{:?}", r.body);
    let success = r.body["success"].as_array().unwrap();
    assert_eq!(success.len(), 2, "{:?}", r.body);
    assert!(success.iter().all(|x| x["action"] == "create"));
    let group = r.body["group_id"].as_str().unwrap().to_owned();
    let g = s.api.get(&s.inst(&format!("/api-groups/{group}"))).await;
    assert_eq!(g.body["name"], "imported_orders");
    let host = g.body["sl_domain"].as_str().unwrap().to_owned();

    // The throttling policy was created and bound (in RELEASE) to the API that names it.
    let t = s.api.get(&s.inst("/throttles?name=two_a_minute")).await;
    assert_eq!(t.body["throttles"][0]["api_call_limits"], 2, "{:?}", t.body);
    assert_eq!(t.body["throttles"][0]["bind_num"], 1, "{:?}", t.body);

    for x in success {
        s.publish(x["id"].as_str().unwrap(), RELEASE).await;
    }
    let first = s.until_routed(&host, "/orders/42?verbose=yes", &[]).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["path"], "/backend/orders/42");
    assert_eq!(first.body["headers"]["x-source"], "openapi");
    // The request parameter's enumeration is enforced.
    let bad = call(&s.gw, "GET", &host, "/orders/42?verbose=maybe", &[]).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    // The MOCK API answers any method, two calls a minute.
    let mock = call(&s.gw, "POST", &host, "/health", &[]).await;
    assert_eq!((mock.status, mock.text.as_str()), (200, "service up"));
    assert_eq!(call(&s.gw, "GET", &host, "/health", &[]).await.status, 200);
    let limited = call(&s.gw, "DELETE", &host, "/health", &[]).await;
    assert_eq!(limited.status, 429, "{}", limited.text);

    // Importing again into that group: merge keeps the APIs and reports them, override
    // updates them in place.
    let again = import(
        &s.api,
        &s.instance,
        &[("is_create_group", "false"), ("group_id", &group)],
        doc.as_bytes(),
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["success"], json!([]));
    let failures = again.body["failure"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert!(
        failures.iter().all(|f| f["error_code"] == "APIG.3301"),
        "{failures:?}"
    );
    let over = import(
        &s.api,
        &s.instance,
        &[
            ("is_create_group", "false"),
            ("group_id", &group),
            ("api_mode", "override"),
        ],
        doc.replace("service up", "service renewed").as_bytes(),
    )
    .await;
    assert_eq!(over.status, 200, "{:?}", over.body);
    let updated = over.body["success"].as_array().unwrap();
    assert!(
        updated.iter().all(|x| x["action"] == "update"),
        "{:?}",
        over.body
    );
    let ids: Vec<&Value> = success.iter().map(|x| &x["id"]).collect();
    assert!(updated.iter().all(|x| ids.contains(&&x["id"])));
    assert_eq!(apis_of(&s, &group).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_imports_again_to_the_same_apis() {
    let s = Stack::start().await;
    let doc = swagger("round_trip", &s.backend.authority());
    let r = import(&s.api, &s.instance, &[], doc.as_bytes()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let group = r.body["group_id"].as_str().unwrap().to_owned();
    for x in r.body["success"].as_array().unwrap() {
        s.publish(x["id"].as_str().unwrap(), RELEASE).await;
    }
    let original = apis_of(&s, &group).await;
    assert_eq!(original.len(), 2);

    for (oas, format) in [("2.0", "json"), ("3.0", "yaml")] {
        let exported = s
            .api
            .post(
                &s.inst(&format!("/openapi/export?oas_version={oas}")),
                &json!({"env_id": RELEASE, "group_id": group, "define": "all", "type": format}),
            )
            .await;
        assert_eq!(
            exported.status,
            200,
            "{}",
            String::from_utf8_lossy(&exported.raw)
        );
        let text = String::from_utf8(exported.raw.clone()).unwrap();
        assert!(text.contains("x-apigateway-ratelimits"), "{text}");
        assert!(text.contains("two_a_minute"), "{text}");

        let (fresh, _) = s.group(&format!("copy_{format}")).await;
        let r = import(
            &s.api,
            &s.instance,
            &[("is_create_group", "false"), ("group_id", &fresh)],
            text.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["failure"], json!([]), "{:?}\n{text}", r.body);
        let copy = apis_of(&s, &fresh).await;
        assert_eq!(
            copy.into_iter().map(comparable).collect::<Vec<_>>(),
            original
                .iter()
                .cloned()
                .map(|a| {
                    // The copies are not published yet.
                    comparable(a)
                })
                .collect::<Vec<_>>(),
            "{oas} {format}:\n{text}"
        );
    }
    // The policy was reused (extend_mode merge), not duplicated, and bound to the copies.
    let t = s.api.get(&s.inst("/throttles?name=two_a_minute")).await;
    assert_eq!(t.body["total"], 1, "{:?}", t.body);
    assert_eq!(t.body["throttles"][0]["bind_num"], 3, "{:?}", t.body);

    // define=spec leaves the backends out; an unknown group or environment is APIG's 404.
    let spec = s
        .api
        .post(
            &s.inst("/openapi/export"),
            &json!({"env_id": RELEASE, "group_id": group}),
        )
        .await;
    let text = String::from_utf8(spec.raw).unwrap();
    assert!(
        text.contains("get_order") && !text.contains("x-apigateway-backend"),
        "{text}"
    );
    let r = s
        .api
        .post(
            &s.inst("/openapi/export"),
            &json!({"env_id": RELEASE, "group_id": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (404, Some("APIG.3001"))
    );
    let r = s
        .api
        .post(&s.inst("/openapi/export"), &json!({"group_id": group}))
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2001"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_documents_answer_400_and_change_nothing() {
    let s = Stack::start().await;
    let (group, _) = s.group("untouched").await;
    let state = |s: &Stack| {
        let api = s.api.clone();
        let inst = s.inst("");
        async move {
            let mut out = Vec::new();
            for what in ["/api-groups", "/apis", "/throttles", "/acls"] {
                out.push(api.get(&format!("{inst}{what}")).await.body["total"].clone());
            }
            out
        }
    };
    let before = state(&s).await;

    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    bomb.push_str("swagger: '2.0'\ninfo: {title: bomb}\npaths: {}\n");
    let started = std::time::Instant::now();
    let r = import(&s.api, &s.instance, &[], bomb.as_bytes()).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body["error_msg"].as_str().unwrap().contains("refused"),
        "{:?}",
        r.body
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    for (doc, code) in [
        (&b"swagger: '2.0'\npaths: {/a: [unclosed"[..], "APIG.2012"),
        (b"{\"openapi\": \"3.1.0\", \"paths\": {}}", "APIG.2012"),
        (b"just text", "APIG.2012"),
        (b"\xff\xfe\x00", "APIG.2012"),
    ] {
        let r = import(&s.api, &s.instance, &[], doc).await;
        assert_eq!(
            (r.status, r.body["error_code"].as_str()),
            (400, Some(code)),
            "{}: {:?}",
            doc.escape_ascii(),
            r.body
        );
    }
    // Over the management body limit: APIG's 413.
    let huge = vec![b'#'; 9 * 1024 * 1024];
    let r = import(&s.api, &s.instance, &[], &huge).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (413, Some("APIG.2003"))
    );
    // Not a form, or a form without the file.
    let r = s
        .api
        .post(&s.inst("/openapi/import"), &json!({"file_name": "x"}))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = s
        .api
        .post_multipart(&s.inst("/openapi/import"), &[], ("other", "x.json", b"{}"))
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2001"))
    );
    // A valid document whose only API fails validation (a backend path parameter without a
    // mapping): answered in `failure`, nothing created; is_create_group=false needs group_id.
    let broken = swagger("broken", &s.backend.authority())
        .replace(
            "        - {name: id, value: orderId, in: path, origin: REQUEST}\n",
            "",
        )
        .replace("      x-apigateway-ratelimit: two_a_minute\n", "");
    let r = import(
        &s.api,
        &s.instance,
        &[("is_create_group", "false"), ("group_id", &group)],
        broken.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let failed: Vec<&str> = r.body["failure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["/orders/{orderId}"], "{:?}", r.body);
    // The MOCK API imported; remove it so the state compares.
    let mock = r.body["success"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.api.delete(&s.inst(&format!("/apis/{mock}"))).await.status,
        204
    );
    let r = import(
        &s.api,
        &s.instance,
        &[("is_create_group", "false")],
        broken.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2001"))
    );
    // Async variants are not offered.
    let r = s
        .api
        .post(&s.inst("/openapi/async-export"), &json!({}))
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (412, Some("APIG.3458"))
    );

    assert_eq!(state(&s).await, before, "nothing changed");
}
