//! The management API: authentication, bad input, uniqueness, unknown ids, tenancy.

use apig_testkit::{eventually, ControlPlane, MgmtClient};
use serde_json::{json, Value};

use crate::support::{bin, call, Stack, RELEASE, WAIT};

async fn group_count(s: &Stack) -> u64 {
    let r = s.api.get(&s.inst("/api-groups")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_and_badly_signed_calls_get_401_and_store_nothing() {
    let s = Stack::start().await;
    let body = json!({"name": "sneaky"});
    let url = format!("http://{}{}", s.cp.mgmt, s.api.path(&s.inst("/api-groups")));
    let http = apig_testkit::http_client();
    // No signature at all.
    let r = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["error_code"], "APIG.1000");
    // The right key with the wrong secret.
    let wrong = MgmtClient::new(
        s.cp.mgmt,
        &s.cp.seed.ak,
        "not-the-secret-at-all-000",
        &s.cp.seed.project_id,
    );
    let r = wrong.post(&s.inst("/api-groups"), &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error_code"], "APIG.1002");
    // An unknown key takes the same path.
    let unknown = MgmtClient::new(
        s.cp.mgmt,
        "UNKNOWNKEY123",
        &s.cp.seed.sk,
        &s.cp.seed.project_id,
    );
    let r = unknown.post(&s.inst("/api-groups"), &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error_code"], "APIG.1002");
    // A valid credential used on another project's path.
    let other = MgmtClient::new(
        s.cp.mgmt,
        &s.cp.seed.ak,
        &s.cp.seed.sk,
        "99999999999999999999999999999999",
    );
    let r = other.get("/instances").await;
    assert_eq!(r.status, 401);
    // A signed request whose body was changed after signing (replayed with another body).
    let stale = http
        .post(&url)
        .header("x-sdk-date", "20200101T000000Z")
        .header(
            "authorization",
            format!(
                "SDK-HMAC-SHA256 Access={}, SignedHeaders=host;x-sdk-date, Signature={}",
                s.cp.seed.ak,
                "0".repeat(64)
            ),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);
    assert_eq!(group_count(&s).await, 0, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_apig_errors_and_changes_nothing() {
    let s = Stack::start().await;
    let groups = s.inst("/api-groups");
    let path = s.api.path(&groups);
    // Malformed JSON.
    let r = s
        .api
        .send_raw("POST", &path, None, Some(b"{\"name\": "))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error_code"], "APIG.2000");
    // Wrong type.
    let r = s.api.post(&groups, &json!({"name": 42})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error_code"], "APIG.2012");
    // Missing and invalid fields are all reported.
    let r = s
        .api
        .post(&s.inst("/apis"), &json!({"name": "x", "type": "1"}))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = s.api.post(&s.inst("/apis"), &json!({"name": "x"})).await;
    assert_eq!(r.status, 400);
    let msg = r.body["error_msg"].as_str().unwrap();
    assert!(msg.contains("req_uri") && msg.contains("group_id"), "{msg}");
    assert_eq!(group_count(&s).await, 0);

    // Duplicates: APIG answers 400 with a specific code.
    let (group, _) = s.group("dup_group").await;
    let r = s.api.post(&groups, &json!({"name": "dup_group"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error_code"], "APIG.3201");
    let api = s.http_api(&group, "dup_api", "GET", "/dup", json!({}));
    s.create_api(&api).await;
    let mut same_route = api.clone();
    same_route["name"] = "other_name".into();
    let r = s.api.post(&s.inst("/apis"), &same_route).await;
    assert_eq!(r.body["error_code"], "APIG.3301", "{:?}", r.body);
    let r = s.api.post(&s.inst("/apis"), &api).await;
    assert_eq!(r.body["error_code"], "APIG.3202", "{:?}", r.body);
    let r = s.api.get(&s.inst("/apis")).await;
    assert_eq!(r.body["total"], 1);

    // Unknown ids.
    let r = s
        .api
        .get(&s.inst("/api-groups/00000000000000000000000000000000"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error_code"], "APIG.3001");
    let r = s.api.get(&s.inst("/apis/nope")).await;
    assert_eq!(r.body["error_code"], "APIG.3002");
    let r = s
        .api
        .get("/instances/ffffffffffffffffffffffffffffffff/api-groups")
        .await;
    assert_eq!(r.body["error_code"], "APIG.3030");
    let r = s
        .api
        .post(
            &s.inst("/apis/action"),
            &json!({"action": "online", "api_id": "nope", "env_id": RELEASE}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s.api.get(&s.inst("/no-such-resource")).await;
    assert_eq!(r.status, 404);

    // RELEASE is built in.
    let r = s.api.delete(&s.inst(&format!("/envs/{RELEASE}"))).await;
    assert_eq!(r.status, 403);
    let r = s.api.get(&s.inst("/envs")).await;
    assert_eq!(r.body["envs"][0]["name"], "RELEASE");

    // A group with APIs cannot be deleted; a published API cannot be deleted.
    let r = s.api.delete(&s.inst(&format!("/api-groups/{group}"))).await;
    assert_eq!(r.body["error_code"], "APIG.3415");

    // Paging.
    for n in 0..3 {
        s.group(&format!("page_{n}")).await;
    }
    let r = s.api.get(&s.inst("/api-groups?offset=1&limit=2")).await;
    assert_eq!(r.body["total"], 4);
    assert_eq!(r.body["size"], 2);
    let r = s.api.get(&s.inst("/api-groups?limit=0")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_history_and_runtime_definition() {
    let s = Stack::start().await;
    let (group, host) = s.group("versions").await;
    let mut body = s.http_api(
        &group,
        "versioned",
        "GET",
        "/v",
        json!({"backend_api": {"req_uri": "/one"}}),
    );
    let api = s.create_api(&body).await;
    let first = s.publish(&api, RELEASE).await;
    body["backend_api"]["req_uri"] = "/two".into();
    let r = s.api.put(&s.inst(&format!("/apis/{api}")), &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Edits need a republish: the gateway still runs /one.
    let r = s.until_routed(&host, "/v", &[]).await;
    assert_eq!(r.body["path"], "/one");
    let r = s
        .api
        .get(&s.inst(&format!("/apis/runtime/{api}?env_id={RELEASE}")))
        .await;
    assert_eq!(r.body["backend_api"]["req_uri"], "/one", "{:?}", r.body);
    s.publish(&api, RELEASE).await;
    apig_testkit::eventually(crate::support::WAIT, "the republish", || async {
        (s.call("GET", &host, "/v", &[]).await.body["path"] == "/two").then_some(())
    })
    .await;
    let r = s.api.get(&s.inst(&format!("/apis/publish/{api}"))).await;
    assert_eq!(r.body["total"], 2);
    assert_eq!(
        r.body["api_versions"][0]["status"], 1,
        "newest is effective"
    );
    assert_eq!(r.body["api_versions"][1]["status"], 2);
    // Switch back to the first version.
    let r = s
        .api
        .put(
            &s.inst(&format!("/apis/publish/{api}")),
            &json!({"version_id": first["version_id"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    apig_testkit::eventually(crate::support::WAIT, "the version switch", || async {
        (s.call("GET", &host, "/v", &[]).await.body["path"] == "/one").then_some(())
    })
    .await;
    // Published APIs cannot be deleted.
    let r = s.api.delete(&s.inst(&format!("/apis/{api}"))).await;
    assert_eq!(r.body["error_code"], "APIG.3416");
    // Batch offline of the whole group.
    let r = s
        .api
        .post(
            &s.inst("/apis/publish?action=offline"),
            &json!({"env_id": RELEASE, "group_id": group}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["success"].as_array().unwrap().len(), 1);
    s.until_gone(&host, "/v").await;
    let r = s.api.delete(&s.inst(&format!("/apis/{api}"))).await;
    assert_eq!(r.status, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&bin(), dir.path());
    let api = cp.client();
    // A second instance of the same project works; another project's path is refused.
    let r = api
        .post("/instances", &json!({"instance_name": "second_gw"}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = api.get("/instances").await;
    assert_eq!(r.body["total"], 2);
    let r = api
        .post(
            "/instances",
            &json!({"instance_name": "paid", "eip_id": "x"}),
        )
        .await;
    assert_eq!(r.status, 412, "cloud-only features say so: {:?}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_domains_route_to_their_group() {
    let s = Stack::start().await;
    let (group, host) = s.group("domained").await;
    let (other, _) = s.group("other_group").await;
    let api = s
        .create_api(&s.http_api(&group, "domain_api", "GET", "/d", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/d", &[]).await;

    let stack = &s;
    let bind = |g: &str, body: Value| {
        let path = stack.inst(&format!("/api-groups/{g}/domains"));
        async move { stack.api.post(&path, &body).await }
    };
    let r = bind(
        &group,
        json!({"url_domain": "Orders.Example.com", "min_ssl_version": "TLSv1.2"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["url_domain"], "orders.example.com");
    let domain_id = r.body["id"].as_str().unwrap().to_owned();
    let r = bind(&group, json!({"url_domain": "*.shop.example.com"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // One domain, one group; bad names; unsupported settings say so.
    let r = bind(&other, json!({"url_domain": "orders.example.com"})).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.3305"))
    );
    let r = bind(&group, json!({"url_domain": "not a domain"})).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2024"))
    );
    let r = bind(
        &group,
        json!({"url_domain": "x.example.com", "verified_client_certificate_enabled": true}),
    )
    .await;
    // Client certificates are verified against an attached certificate's CA: none yet.
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2012")),
        "{:?}",
        r.body
    );

    let shown = s.api.get(&s.inst(&format!("/api-groups/{group}"))).await;
    let mut domains: Vec<&str> = shown.body["url_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    domains.sort_unstable();
    assert_eq!(domains, vec!["*.shop.example.com", "orders.example.com"]);

    // Each binding is its own snapshot: wait for the last one, not just the first domain's.
    s.settled().await;
    eventually(WAIT, "the bound domain", || async {
        (call(&s.gw, "GET", "orders.example.com", "/d", &[])
            .await
            .status
            == 200)
            .then_some(())
    })
    .await;
    assert_eq!(
        call(&s.gw, "GET", "eu.shop.example.com:8080", "/d", &[])
            .await
            .status,
        200
    );
    assert_eq!(
        call(&s.gw, "GET", "shop.example.com", "/d", &[])
            .await
            .status,
        404
    );

    let r = s
        .api
        .delete(&s.inst(&format!("/api-groups/{group}/domains/{domain_id}")))
        .await;
    assert_eq!(r.status, 204);
    eventually(WAIT, "the unbound domain to stop routing", || async {
        (call(&s.gw, "GET", "orders.example.com", "/d", &[])
            .await
            .status
            == 404)
            .then_some(())
    })
    .await;
}

/// A test CA and a certificate it issues for `names`: (CA PEM, certificate PEM, key PEM).
fn issue(ca: &(rcgen::Certificate, rcgen::KeyPair), names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_listener_picks_certificates_by_sni() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = apig_testkit::Gateway::start_with_args(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        &dir.path().join("cache"),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--tls-listen", "127.0.0.1:0"],
    );
    let tls_addr = gw.extra_addr("gateway-tls").expect("the HTTPS listener");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = (ca_params.self_signed(&ca_key).unwrap(), ca_key);

    let (group, _) = s.group("secure_group").await;
    let api = s
        .create_api(&s.http_api(&group, "secure_api", "GET", "/s", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    let mut domains = Vec::new();
    for name in ["orders.example.com", "*.shop.example.com"] {
        let r = s
            .api
            .post(
                &s.inst(&format!("/api-groups/{group}/domains")),
                &json!({"url_domain": name}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        domains.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let (orders_cert, orders_key) = issue(&ca, &["orders.example.com"]);
    let (shop_cert, shop_key) = issue(&ca, &["*.shop.example.com"]);
    // A certificate for another name, or a key of another certificate, is refused.
    let cert_path = |d: &str| s.inst(&format!("/api-groups/{group}/domains/{d}/certificate"));
    let r = s
        .api
        .post(
            &cert_path(&domains[0]),
            &json!({"name": "wrong", "cert_content": shop_cert, "private_key": shop_key}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2103")),
        "{:?}",
        r.body
    );
    let r = s
        .api
        .post(
            &cert_path(&domains[0]),
            &json!({"name": "mismatch", "cert_content": orders_cert, "private_key": shop_key}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    for (d, cert, key) in [
        (&domains[0], &orders_cert, &orders_key),
        (&domains[1], &shop_cert, &shop_key),
    ] {
        let r = s
            .api
            .post(
                &cert_path(d),
                &json!({"name": "site_cert", "cert_content": cert, "private_key": key}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert!(r.body.get("private_key").is_none());
    }

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.0.pem().as_bytes()).unwrap())
        .resolve("orders.example.com", tls_addr)
        .resolve("eu.shop.example.com", tls_addr)
        .resolve("unknown.example.com", tls_addr)
        .build()
        .unwrap();
    let port = tls_addr.port();
    let r = eventually(WAIT, "HTTPS with the bound certificate", || async {
        client
            .get(format!("https://orders.example.com:{port}/s"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    // ALPN: HTTP/2 over TLS.
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    let r = client
        .get(format!("https://eu.shop.example.com:{port}/s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A name without a certificate: no handshake.
    assert!(client
        .get(format!("https://unknown.example.com:{port}/s"))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_domains_can_redirect_plain_get_and_head_to_https() {
    let s = Stack::start().await;
    let (group, _) = s.group("redirecting").await;
    let api = s
        .create_api(&s.http_api(&group, "redirect_api", "ANY", "/r", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    let r = s
        .api
        .post(
            &s.inst(&format!("/api-groups/{group}/domains")),
            &json!({"url_domain": "secure.example.com", "is_http_redirect_to_https": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["is_http_redirect_to_https"], true);
    let domain = r.body["id"].as_str().unwrap().to_owned();
    let get = |method: &'static str| {
        let gw = &s.gw;
        async move {
            crate::support::raw(
                gw,
                &format!("{method} /r?x=1 HTTP/1.1\r\nHost: Secure.Example.com:8080\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            )
            .await
        }
    };
    let answer = eventually(WAIT, "the redirect", || async {
        let a = get("GET").await;
        a.starts_with("HTTP/1.1 301").then_some(a)
    })
    .await;
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://secure.example.com/r?x=1\r\n"),
        "{answer}"
    );
    assert!(get("HEAD").await.starts_with("HTTP/1.1 301"));
    // A POST would lose its body in a redirect: it is served.
    assert!(get("POST").await.starts_with("HTTP/1.1 200"));
    // Switched off without rebinding.
    let r = s
        .api
        .put(
            &s.inst(&format!("/api-groups/{group}/domains/{domain}")),
            &json!({"is_http_redirect_to_https": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(WAIT, "the redirect to stop", || async {
        get("GET").await.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}
