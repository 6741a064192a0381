//! SSL certificates as resources (`/certificates`): management answers and errors, sharing and
//! switching certificates on the HTTPS listener without a restart, and client-certificate
//! verification (mTLS) of bound domains.

use std::net::SocketAddr;

use apig_testkit::{eventually, Gateway, MgmtClient};
use serde_json::{json, Value};

use crate::support::{bin, call, Stack, RELEASE, WAIT};

/// A test CA: its certificate (PEM) and what signs with it.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (the first is the common name): (cert PEM, key PEM).
    fn server(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate: cert and key in one PEM (what `reqwest::Identity` reads).
    fn client(&self, name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }
}

/// A gateway replica with the HTTPS listener; returns it and the HTTPS address.
fn tls_gateway(s: &Stack, dir: &tempfile::TempDir) -> (Gateway, SocketAddr) {
    let gw = Gateway::start_with_args(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        &dir.path().join("cache"),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--tls-listen", "127.0.0.1:0"],
    );
    let addr = gw.extra_addr("gateway-tls").expect("the HTTPS listener");
    (gw, addr)
}

/// A client that trusts only `ca`, resolves `names` to the HTTPS listener and opens a fresh
/// connection per client (so every call is a new handshake).
fn client(
    ca: &Ca,
    addr: SocketAddr,
    names: &[&str],
    identity: Option<&str>,
    http1: bool,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(5));
    for n in names {
        b = b.resolve(n, addr);
    }
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// GET `https://{host}:{port}/path` with a fresh client: the status, or None when the
/// handshake (or the request) failed.
async fn https_status(
    ca: &Ca,
    addr: SocketAddr,
    host: &str,
    path: &str,
    identity: Option<&str>,
) -> Option<u16> {
    client(ca, addr, &[host], identity, false)
        .get(format!("https://{host}:{}{path}", addr.port()))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// (status, APIG error code) of a management answer.
macro_rules! code {
    ($r:expr) => {
        (
            $r.status,
            $r.body["error_code"].as_str().unwrap_or_default(),
        )
    };
}

async fn bind_domain(s: &Stack, group: &str, name: &str) -> String {
    let r = s
        .api
        .post(
            &s.inst(&format!("/api-groups/{group}/domains")),
            &json!({"url_domain": name}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn create_cert(api: &MgmtClient, body: Value) -> String {
    let r = api.post("/certificates", &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_resources_answer_like_apig_and_refuse_bad_input() {
    let s = Stack::start().await;
    let ca = Ca::new("Mgmt Test CA");
    let (cert, key) = ca.server(&["shop.example.com", "*.shop.example.com"]);
    let (_, other_key) = ca.server(&["shop.example.com"]);
    let (elsewhere, elsewhere_key) = ca.server(&["elsewhere.example.org"]);

    // Bad input: the APIG code, and nothing is created.
    for (body, want) in [
        (
            json!({"name": "bad_pem", "cert_content": "not a certificate", "private_key": key}),
            (400, "APIG.2106"),
        ),
        (
            json!({"name": "bad_key", "cert_content": cert, "private_key": other_key}),
            (400, "APIG.2101"),
        ),
        (
            json!({"name": "bad-name!", "cert_content": cert, "private_key": key}),
            (400, "APIG.2012"),
        ),
        (
            json!({"name": "no_key", "cert_content": cert}),
            (400, "APIG.2001"),
        ),
        (
            json!({"name": "bad_ca", "cert_content": cert, "private_key": key,
                   "trusted_root_ca": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
            (400, "APIG.2012"),
        ),
        (
            json!({"name": "rsa_claim", "cert_content": cert, "private_key": key, "algorithm_type": "RSA"}),
            (409, "APIG.3709"),
        ),
        (
            json!({"name": "inst_cert", "cert_content": cert, "private_key": key,
                   "type": "instance", "instance_id": "0123456789abcdef0123456789abcdef"}),
            (404, "APIG.3030"),
        ),
    ] {
        let r = s.api.post("/certificates", &body).await;
        assert_eq!(code!(r), want, "{body}: {:?}", r.body);
    }
    assert_eq!(s.api.get("/certificates").await.body["total"], 0);

    // Create: what the certificate says, never the key.
    let r = s
        .api
        .post(
            "/certificates",
            &json!({"name": "shop_cert", "cert_content": cert, "private_key": key}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let created_at = r.body["create_time"].clone();
    assert_eq!(r.body["type"], "global");
    assert_eq!(r.body["instance_id"], "common");
    assert_eq!(r.body["common_name"], "shop.example.com");
    assert_eq!(
        r.body["san"],
        json!(["shop.example.com", "*.shop.example.com"])
    );
    assert_eq!(r.body["signature_algorithm"], "ECDSA-SHA256");
    assert_eq!(r.body["algorithm_type"], "ECC");
    assert_eq!(r.body["issuer"], json!(["Mgmt Test CA"]));
    assert_eq!(r.body["is_has_trusted_root_ca"], false);
    assert!(r.body["not_after"].as_str().unwrap().ends_with('Z'));
    let key_body = key.lines().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&r.raw).contains(key_body));
    assert!(r.body.get("private_key").is_none());
    let inst_id = create_cert(
        &s.api,
        json!({"name": "inst_cert", "cert_content": elsewhere, "private_key": elsewhere_key,
               "type": "instance", "instance_id": s.instance, "trusted_root_ca": ca.pem()}),
    )
    .await;

    // Show, list and its filters.
    let shown = s.api.get(&format!("/certificates/{id}")).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["name"], "shop_cert");
    assert!(!String::from_utf8_lossy(&shown.raw).contains(key_body));
    let list = s.api.get("/certificates").await;
    assert_eq!(
        (list.body["total"].as_u64(), list.body["size"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(!list.body.to_string().contains(key_body));
    let count = |q: String| {
        let api = &s.api;
        async move { api.get(&format!("/certificates?{q}")).await.body["total"].clone() }
    };
    assert_eq!(count("name=shop".into()).await, 1);
    assert_eq!(count("type=instance".into()).await, 1);
    assert_eq!(count("common_name=elsewhere".into()).await, 1);
    assert_eq!(count(format!("instance_id={}", s.instance)).await, 2);
    let inst = s.api.get(&format!("/certificates/{inst_id}")).await;
    assert_eq!(inst.body["is_has_trusted_root_ca"], true);
    assert_eq!(inst.body["instance_id"], s.instance.as_str());
    let r = s
        .api
        .get("/certificates/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(code!(r), (404, "APIG.3021"));

    // Another project sees none of them.
    let p = s.api.post("/projects", &json!({})).await;
    let other = MgmtClient::new(
        s.cp.mgmt,
        p.body["access_key"].as_str().unwrap(),
        p.body["secret_key"].as_str().unwrap(),
        p.body["project_id"].as_str().unwrap(),
    );
    assert_eq!(other.get("/certificates").await.body["total"], 0);
    let r = other.get(&format!("/certificates/{id}")).await;
    assert_eq!(code!(r), (404, "APIG.3021"));
    let r = other.delete(&format!("/certificates/{id}")).await;
    assert_eq!(code!(r), (404, "APIG.3021"));

    // Attach: to a bound domain the certificate names, from the certificate's side.
    let (group, _) = s.group("cert_group").await;
    let shop = bind_domain(&s, &group, "api.shop.example.com").await;
    let wrong = bind_domain(&s, &group, "other.example.com").await;
    let attach = |cert: &str, body: Value| {
        let api = &s.api;
        let path = format!("/certificates/{cert}/domains/attach");
        async move { api.post(&path, &body).await }
    };
    let r = attach(&id, json!({"domains": [{"domain": "unbound.example.com"}]})).await;
    assert_eq!(code!(r), (404, "APIG.3020"), "{:?}", r.body);
    let r = attach(&id, json!({"domains": [{"domain": "other.example.com"}]})).await;
    assert_eq!(code!(r), (400, "APIG.2103"), "{:?}", r.body);
    let r = attach(
        &id,
        json!({"domains": [{"domain": "api.shop.example.com", "verified_client_certificate_enabled": true}]}),
    )
    .await;
    assert_eq!(
        code!(r),
        (400, "APIG.2012"),
        "no CA to verify with: {:?}",
        r.body
    );
    let r = attach(
        &id,
        json!({"domains": [{"domain": "api.shop.example.com", "instance_ids": [s.instance]}]}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let bound = s
        .api
        .get(&format!("/certificates/{id}/attached-domains"))
        .await;
    assert_eq!(bound.body["total"], 1, "{:?}", bound.body);
    let d = &bound.body["bound_domains"][0];
    assert_eq!(d["id"], shop.as_str());
    assert_eq!(d["url_domain"], "api.shop.example.com");
    assert_eq!(d["ssl_id"], id.as_str());
    assert_eq!(d["ssl_name"], "shop_cert");
    assert_eq!(d["api_group_id"], group.as_str());
    assert_eq!(d["api_group_name"], "cert_group");
    assert_eq!(d["instance_id"], s.instance.as_str());
    assert_eq!(d["verified_client_certificate_enabled"], false);
    let g = s.api.get(&s.inst(&format!("/api-groups/{group}"))).await;
    let shown: Vec<&Value> = g.body["url_domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["id"] == shop.as_str())
        .collect();
    assert_eq!(shown[0]["ssl_id"], id.as_str());
    assert_eq!(shown[0]["ssl_infos"][0]["ssl_name"], "shop_cert");

    // A domain presents one certificate: another one is refused until the first is detached.
    let domain_side = |domain: &str, verb: &str| {
        s.inst(&format!(
            "/api-groups/{group}/domains/{domain}/certificates/{verb}"
        ))
    };
    let r = s
        .api
        .post(
            &domain_side(&shop, "attach"),
            &json!({"certificate_ids": [inst_id]}),
        )
        .await;
    assert_eq!(code!(r), (400, "APIG.2103"), "{:?}", r.body);
    let (shop2, shop2_key) = ca.server(&["*.shop.example.com"]);
    let second = create_cert(
        &s.api,
        json!({"name": "shop_cert_two", "cert_content": shop2, "private_key": shop2_key,
               "trusted_root_ca": ca.pem()}),
    )
    .await;
    let r = s
        .api
        .post(
            &domain_side(&shop, "attach"),
            &json!({"certificate_ids": [second]}),
        )
        .await;
    assert_eq!(code!(r), (400, "APIG.2051"), "{:?}", r.body);
    let r = s
        .api
        .post(
            &domain_side(&shop, "attach"),
            &json!({"certificate_ids": [second, id]}),
        )
        .await;
    assert_eq!(code!(r), (400, "APIG.2012"), "{:?}", r.body);
    let r = s
        .api
        .post(
            &domain_side(&wrong, "detach"),
            &json!({"certificate_ids": [id]}),
        )
        .await;
    assert_eq!(code!(r), (404, "APIG.3097"), "{:?}", r.body);
    let r = s
        .api
        .post(
            &domain_side(&shop, "attach"),
            &json!({"certificate_ids": ["0123456789abcdef0123456789abcdef"]}),
        )
        .await;
    assert_eq!(code!(r), (404, "APIG.3021"), "{:?}", r.body);

    // Verification needs a CA; the domain's PUT says so.
    let domain_path = s.inst(&format!("/api-groups/{group}/domains/{shop}"));
    let r = s
        .api
        .put(
            &domain_path,
            &json!({"verified_client_certificate_enabled": true}),
        )
        .await;
    assert_eq!(code!(r), (400, "APIG.2012"), "{:?}", r.body);

    // An attached certificate cannot be deleted, nor replaced by one for other names.
    let r = s.api.delete(&format!("/certificates/{id}")).await;
    assert_eq!(code!(r), (400, "APIG.2012"), "{:?}", r.body);
    let r = s
        .api
        .put(
            &format!("/certificates/{id}"),
            &json!({"name": "shop_cert", "cert_content": elsewhere, "private_key": elsewhere_key}),
        )
        .await;
    assert_eq!(code!(r), (400, "APIG.2103"), "{:?}", r.body);
    assert_eq!(
        s.api.get(&format!("/certificates/{id}")).await.body["common_name"],
        "shop.example.com"
    );
    // A valid update keeps the id and its domains.
    let (renewed, renewed_key) = ca.server(&["api.shop.example.com"]);
    let r = s
        .api
        .put(
            &format!("/certificates/{id}"),
            &json!({"name": "shop_cert_renewed", "cert_content": renewed, "private_key": renewed_key}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["common_name"], "api.shop.example.com");
    assert_eq!(r.body["create_time"], created_at);
    assert_eq!(r.body["id"], id.as_str());

    // Switch the domain to the second certificate (which has a CA: verification on by default).
    let r = s
        .api
        .post(
            &format!("/certificates/{id}/domains/detach"),
            &json!({"domains": [{"domain": "api.shop.example.com"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s
        .api
        .post(
            &domain_side(&shop, "attach"),
            &json!({"certificate_ids": [second]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s
        .api
        .get(&format!(
            "/certificates/{second}/attached-domains?url_domain=shop"
        ))
        .await;
    assert_eq!(
        r.body["bound_domains"][0]["verified_client_certificate_enabled"],
        true
    );
    // Removing the CA while a domain verifies with it is refused.
    let r = s
        .api
        .put(
            &format!("/certificates/{second}"),
            &json!({"name": "shop_cert_two", "cert_content": shop2, "private_key": shop2_key}),
        )
        .await;
    assert_eq!(code!(r), (400, "APIG.2012"), "{:?}", r.body);
    let r = s.api.delete(&format!("/certificates/{id}")).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s.api.get(&format!("/certificates/{id}")).await;
    assert_eq!(code!(r), (404, "APIG.3021"));

    // The audit log has the writes, with the private keys masked.
    let log = s
        .api
        .get("/audit-logs?resource=certificates&limit=100")
        .await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    assert!(log.body["total"].as_u64().unwrap() >= 10, "{:#}", log.body);
    let text = log.body.to_string();
    assert!(text.contains("\"private_key\":\"******\""), "{text}");
    for k in [&key, &other_key, &elsewhere_key, &renewed_key, &shop2_key] {
        assert!(
            !text.contains(k.lines().nth(1).unwrap()),
            "a private key leaked into the audit log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn domains_share_and_switch_certificates_without_restart() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_gw, addr) = tls_gateway(&s, &dir);
    let (group, _) = s.group("https_group").await;
    let api = s
        .create_api(&s.http_api(&group, "https_api", "GET", "/h", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    let a = bind_domain(&s, &group, "a.example.com").await;
    let b = bind_domain(&s, &group, "b.example.com").await;

    // One certificate for both names, attached to both domains in one call.
    let (ca1, ca2, ca3) = (Ca::new("CA one"), Ca::new("CA two"), Ca::new("CA three"));
    let (shared, shared_key) = ca1.server(&["a.example.com", "b.example.com"]);
    let shared_id = create_cert(
        &s.api,
        json!({"name": "shared_cert", "cert_content": shared, "private_key": shared_key}),
    )
    .await;
    let r = s
        .api
        .post(
            &format!("/certificates/{shared_id}/domains/attach"),
            &json!({"domains": [{"domain": "a.example.com"}, {"domain": "b.example.com"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for host in ["a.example.com", "b.example.com"] {
        let status = eventually(WAIT, "HTTPS with the shared certificate", || async {
            https_status(&ca1, addr, host, "/h", None)
                .await
                .filter(|s| *s == 200)
        })
        .await;
        assert_eq!(status, 200);
    }

    // b gets a certificate of its own (another CA): a keeps the shared one.
    let (own, own_key) = ca2.server(&["b.example.com"]);
    let own_id = create_cert(
        &s.api,
        json!({"name": "b_cert", "cert_content": own, "private_key": own_key,
               "type": "instance", "instance_id": s.instance}),
    )
    .await;
    let b_side = |verb: &str| {
        s.inst(&format!(
            "/api-groups/{group}/domains/{b}/certificates/{verb}"
        ))
    };
    let r = s
        .api
        .post(&b_side("detach"), &json!({"certificate_ids": [shared_id]}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s
        .api
        .post(&b_side("attach"), &json!({"certificate_ids": [own_id]}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    eventually(WAIT, "b to present its own certificate", || async {
        https_status(&ca2, addr, "b.example.com", "/h", None)
            .await
            .filter(|s| *s == 200)
    })
    .await;
    assert_eq!(
        https_status(&ca1, addr, "b.example.com", "/h", None).await,
        None
    );
    assert_eq!(
        https_status(&ca1, addr, "a.example.com", "/h", None).await,
        Some(200)
    );

    // Renewing the shared certificate (another issuer) reaches a without a restart.
    let (renewed, renewed_key) = ca3.server(&["a.example.com", "b.example.com"]);
    let r = s
        .api
        .put(
            &format!("/certificates/{shared_id}"),
            &json!({"name": "shared_cert", "cert_content": renewed, "private_key": renewed_key}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(WAIT, "a to present the renewed certificate", || async {
        https_status(&ca3, addr, "a.example.com", "/h", None)
            .await
            .filter(|s| *s == 200)
    })
    .await;
    assert_eq!(
        https_status(&ca1, addr, "a.example.com", "/h", None).await,
        None
    );

    // The domain route's inline certificate becomes a resource of its own.
    let (inline, inline_key) = ca1.server(&["a.example.com"]);
    let r = s
        .api
        .post(
            &s.inst(&format!("/api-groups/{group}/domains/{a}/certificate")),
            &json!({"name": "inline_cert", "cert_content": inline, "private_key": inline_key}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["id"], a.as_str());
    assert_eq!(r.body["ssl_name"], "inline_cert");
    let inline_id = r.body["ssl_id"].as_str().unwrap().to_owned();
    let shown = s.api.get(&format!("/certificates/{inline_id}")).await;
    assert_eq!(shown.body["type"], "instance", "{:?}", shown.body);
    eventually(WAIT, "a to present the inline certificate", || async {
        https_status(&ca1, addr, "a.example.com", "/h", None)
            .await
            .filter(|s| *s == 200)
    })
    .await;
    let detail = s
        .api
        .get(&s.inst(&format!(
            "/api-groups/{group}/domains/{a}/certificate/{inline_id}"
        )))
        .await;
    assert_eq!(
        detail.body["common_name"], "a.example.com",
        "{:?}",
        detail.body
    );
    // Unbinding it on the domain route detaches it: no handshake for a any more.
    let r = s
        .api
        .delete(&s.inst(&format!(
            "/api-groups/{group}/domains/{a}/certificate/{inline_id}"
        )))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    eventually(WAIT, "a to present no certificate", || async {
        https_status(&ca1, addr, "a.example.com", "/h", None)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        s.api
            .get(&format!("/certificates/{inline_id}"))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn domains_can_require_client_certificates() {
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_gw, addr) = tls_gateway(&s, &dir);
    let (group, _) = s.group("mtls_group").await;
    let api = s
        .create_api(&s.http_api(&group, "mtls_api", "GET", "/m", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    let m = bind_domain(&s, &group, "m.example.com").await;
    bind_domain(&s, &group, "open.example.com").await;

    let server_ca = Ca::new("Server CA");
    let client_ca = Ca::new("Client CA");
    let rogue_ca = Ca::new("Rogue CA");
    let (cert, key) = server_ca.server(&["m.example.com", "open.example.com"]);
    let with_ca = create_cert(
        &s.api,
        json!({"name": "mtls_cert", "cert_content": cert, "private_key": key,
               "trusted_root_ca": client_ca.pem()}),
    )
    .await;
    let (open_cert, open_key) = server_ca.server(&["open.example.com"]);
    let without_ca = create_cert(
        &s.api,
        json!({"name": "open_cert", "cert_content": open_cert, "private_key": open_key}),
    )
    .await;
    // A certificate with a CA turns verification on by default.
    let r = s
        .api
        .post(
            &format!("/certificates/{with_ca}/domains/attach"),
            &json!({"domains": [{"domain": "m.example.com"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s
        .api
        .post(
            &format!("/certificates/{without_ca}/domains/attach"),
            &json!({"domains": [{"domain": "open.example.com"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    let good = client_ca.client("good-client");
    let rogue = rogue_ca.client("rogue-client");
    let status = eventually(WAIT, "HTTPS with a verified client certificate", || async {
        https_status(&server_ca, addr, "m.example.com", "/m", Some(&good))
            .await
            .filter(|s| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    // No client certificate, or one from another CA: no handshake.
    assert_eq!(
        https_status(&server_ca, addr, "m.example.com", "/m", None).await,
        None
    );
    assert_eq!(
        https_status(&server_ca, addr, "m.example.com", "/m", Some(&rogue)).await,
        None
    );
    // The other domain on the same listener does not ask for one.
    assert_eq!(
        https_status(&server_ca, addr, "open.example.com", "/m", None).await,
        Some(200)
    );
    // Nor can a connection made for it (SNI) carry requests for the verifying domain, and
    // plain HTTP cannot either.
    let sneaky = client(&server_ca, addr, &["open.example.com"], None, true)
        .get(format!("https://open.example.com:{}/m", addr.port()))
        .header("host", "m.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(sneaky.status(), 400);
    let body: Value = sneaky.json().await.unwrap();
    assert_eq!(body["error_code"], "APIG.0205");
    // `s.gw` is a second replica: it takes the same snapshot on its own stream, so it may
    // trail the TLS gateway polled above by a moment.
    eventually(
        WAIT,
        "plain HTTP to the verifying domain refused",
        || async {
            let plain = call(&s.gw, "GET", "m.example.com", "/m", &[]).await;
            (plain.status == 400 && plain.body["error_code"] == "APIG.0205").then_some(())
        },
    )
    .await;

    // Switching verification off on the domain applies without a restart.
    let r = s
        .api
        .put(
            &s.inst(&format!("/api-groups/{group}/domains/{m}")),
            &json!({"verified_client_certificate_enabled": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["verified_client_certificate_enabled"], false);
    eventually(WAIT, "HTTPS without a client certificate", || async {
        https_status(&server_ca, addr, "m.example.com", "/m", None)
            .await
            .filter(|s| *s == 200)
    })
    .await;
    // And back on.
    let r = s
        .api
        .put(
            &s.inst(&format!("/api-groups/{group}/domains/{m}")),
            &json!({"verified_client_certificate_enabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(WAIT, "client certificates required again", || async {
        https_status(&server_ca, addr, "m.example.com", "/m", None)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        https_status(&server_ca, addr, "m.example.com", "/m", Some(&good)).await,
        Some(200)
    );
}
