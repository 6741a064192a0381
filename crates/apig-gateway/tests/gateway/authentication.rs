//! APP and IAM authentication and app authorization, end to end through the gateway (against
//! the FAKE control plane): requests signed with `apig_sign::Signer` as the APIG SDKs sign
//! them, AppCodes, control-plane tokens, and what the backend gets to see.

use std::net::SocketAddr;
use std::time::Duration;

use apig_proto::{
    App, AppAcl, AuthType, BackendParamOrigin as Origin, IamCredential, ParamLocation as Loc,
    Snapshot,
};
use apig_sign::TokenSigner;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::harness::*;

const SECRET_1: &str = "secret-of-app-one";
const CODE_1: &str = "Y29kZS1mb3ItYXBwLW9uZS13aXRoLWVub3VnaC1lbnRyb3B5LTAxMjM0NTY3ODlhYmNkZWY=";
const TOKEN_SEED: [u8; 32] = [5u8; 32];
const MSG_BAD_SIGNATURE: &str = "Incorrect app authentication information: verify signature fail";

/// Headers that carry credentials for the gateway and must never reach a backend.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "x-auth-token",
    "x-apig-appcode",
    "x-sdk-date",
    "x-sdk-content-sha256",
];

fn app(id: &str, key: &str, secret: &str, acl: Option<(bool, &[&str])>) -> App {
    App {
        id: id.into(),
        name: format!("name-{id}"),
        app_key: key.into(),
        app_secret: secret.into(),
        app_codes: vec![],
        acl: acl.map(|(permit, values)| AppAcl {
            permit,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }),
        quota: None,
    }
}

fn apps() -> Vec<App> {
    let mut one = app("app-1", "key-1", SECRET_1, None);
    one.app_codes = vec![CODE_1.into()];
    vec![
        one,
        // Valid, but authorized for nothing.
        app("app-2", "key-2", "secret-2", None),
        app("app-3", "key-3", "secret-3", Some((false, &["127.0.0.1"]))),
        app(
            "app-4",
            "key-4",
            "secret-4",
            Some((true, &["10.0.0.0/8", "192.168.0.1-192.168.0.9"])),
        ),
        app(
            "app-5",
            "key-5",
            "secret-5",
            Some((true, &["::1", "127.0.0.0/8"])),
        ),
    ]
}

fn with_auth(mut a: apig_proto::Api, auth: AuthType, authorized: &[&str]) -> apig_proto::Api {
    a.auth_type = auth as i32;
    a.authorized_app_ids = authorized.iter().map(|s| (*s).to_owned()).collect();
    a.backend_params = vec![
        backend_param(
            "X-App-Id",
            Loc::Header,
            Origin::System,
            "$context.appId",
            Loc::Path,
        ),
        backend_param(
            "X-App-Name",
            Loc::Header,
            Origin::System,
            "$context.appName",
            Loc::Path,
        ),
    ];
    a
}

fn auth_snapshot(backend: SocketAddr, version: u64, apps: Vec<App>) -> Snapshot {
    let all = ["app-1", "app-3", "app-4", "app-5"];
    let mut code = with_auth(
        with_http(api("code", "GET", "/code"), backend, "/code", 5_000),
        AuthType::App,
        &["app-1"],
    );
    code.app_code_auth_type = "HEADER".into();
    let apis = vec![
        with_auth(
            with_http(api("app", "ANY", "/app/{id}"), backend, "/echo/{id}", 5_000),
            AuthType::App,
            &all,
        ),
        with_auth(
            with_http(
                api("other", "ANY", "/other/{id}"),
                backend,
                "/other/{id}",
                5_000,
            ),
            AuthType::App,
            &all,
        ),
        code,
        with_auth(
            with_http(api("iam", "ANY", "/iam"), backend, "/iam", 5_000),
            AuthType::Iam,
            &[],
        ),
        with_http(api("open", "GET", "/open"), backend, "/open", 5_000),
    ];
    let mut s = snapshot("epoch-1", version, apis);
    s.apps = apps;
    s.iam_credentials = vec![IamCredential {
        access_key: "AK1".into(),
        secret_key: "SK1".into(),
    }];
    s.token_keys = vec![TokenSigner::from_seed(&TOKEN_SEED).public_key().to_vec()];
    s
}

async fn auth_stack() -> Stack {
    Stack::start_snapshot(|backend| auth_snapshot(backend, 1, apps()), |_| {}).await
}

/// Asserts the backend never saw any of the gateway's credential headers.
#[track_caller]
fn assert_no_credentials(echo: &serde_json::Value) {
    for name in CREDENTIAL_HEADERS {
        assert!(
            echo["headers"].get(name).is_none(),
            "{name} reached the backend: {echo}"
        );
    }
}

#[track_caller]
fn assert_msg(answer: &Answer, status: u16, code: &str, message: &str) {
    let json = answer.assert_apig_error(status, code);
    assert_eq!(json["error_msg"], message, "{json}");
}

#[tokio::test]
async fn signed_requests_reach_the_backend_without_credentials() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let now = now_unix();

        // GET with repeated, unordered query keys and characters that need encoding.
        let target = "/app/a%20b?a=1&a=0&b=%20~&c=x%2By";
        let h = sign(
            "GET",
            target,
            &[("host", HOST)],
            b"",
            "key-1",
            SECRET_1,
            now,
        );
        let answer = send_owned(addr, "GET", target, &h, b"").await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let echo = answer.json();
        assert_eq!(echo["path"], "/echo/a%20b");
        assert_eq!(echo["query"], "a=1&a=0&b=%20~&c=x%2By");
        assert_eq!(echo["headers"]["x-app-id"][0], "app-1");
        assert_eq!(echo["headers"]["x-app-name"][0], "name-app-1");
        assert_no_credentials(&echo);

        // POST with a JSON body: the body hash is signed and checked.
        let body = br#"{"order":42,"note":"caf\u00e9"}"#;
        let h = sign(
            "POST",
            "/app/orders",
            &[("host", HOST), ("content-type", "application/json")],
            body,
            "key-1",
            SECRET_1,
            now,
        );
        let answer = send_owned(addr, "POST", "/app/orders", &h, body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let echo = answer.json();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["body_len"], body.len());
        assert_no_credentials(&echo);

        // POST a non-JSON body with UNSIGNED-PAYLOAD (as the management SDK does): streamed.
        let body = b"\x00\x01binary payload\xff";
        let h = sign(
            "POST",
            "/app/upload",
            &[
                ("host", HOST),
                ("content-type", "application/octet-stream"),
                ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),
            ],
            body,
            "key-1",
            SECRET_1,
            now,
        );
        let answer = send_owned(addr, "POST", "/app/upload", &h, body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let echo = answer.json();
        assert_eq!(echo["body_len"], body.len());
        assert_no_credentials(&echo);

        // A port in Host is signed as sent.
        let host_port = format!("{HOST}:{}", addr.port());
        let h = sign(
            "GET",
            "/app/p",
            &[("host", &host_port)],
            b"",
            "key-1",
            SECRET_1,
            now,
        );
        assert_eq!(send_owned(addr, "GET", "/app/p", &h, b"").await.status, 200);

        // An app whose ACL allows loopback.
        let h = sign(
            "GET",
            "/app/5",
            &[("host", HOST)],
            b"",
            "key-5",
            "secret-5",
            now,
        );
        let echo = send_owned(addr, "GET", "/app/5", &h, b"").await.json();
        assert_eq!(echo["headers"]["x-app-id"][0], "app-5");
        assert_eq!(stack.backend.seen().len(), 5);
    })
    .await;
}

#[tokio::test]
async fn tampered_requests_are_refused_before_the_backend() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let now = now_unix();
        let target = "/app/x?a=1&b=2";
        let body = br#"{"amount":10}"#;
        let base = [
            ("host", HOST),
            ("content-type", "application/json"),
            ("x-account", "alice"),
        ];
        let h = sign("PUT", target, &base, body, "key-1", SECRET_1, now);
        let set = |name: &str, value: &str| -> Vec<(String, String)> {
            h.iter()
                .map(|(n, v)| {
                    if n.eq_ignore_ascii_case(name) {
                        (n.clone(), value.to_owned())
                    } else {
                        (n.clone(), v.clone())
                    }
                })
                .collect()
        };

        type Case<'a> = (&'a str, &'a str, Vec<(String, String)>, &'a [u8]);
        let cases: Vec<Case<'_>> = vec![
            ("method", target, h.clone(), body),
            ("path", "/app/y?a=1&b=2", h.clone(), body),
            ("query value", "/app/x?a=1&b=3", h.clone(), body),
            ("extra query", "/app/x?a=1&b=2&c=3", h.clone(), body),
            ("dropped query", "/app/x?a=1", h.clone(), body),
            ("body", target, h.clone(), br#"{"amount":99}"#),
            ("signed header", target, set("x-account", "mallory"), body),
            (
                "content type",
                target,
                set("content-type", "text/plain"),
                body,
            ),
        ];
        for (what, target, headers, body) in cases {
            let method = if what == "method" { "POST" } else { "PUT" };
            let answer = send_owned(addr, method, target, &headers, body).await;
            let json = answer.assert_apig_error(401, "APIG.0303");
            assert_eq!(json["error_msg"], MSG_BAD_SIGNATURE, "tampered {what}");
        }
        // Replayed against another API of the same group: the path is signed.
        let answer = send_owned(addr, "PUT", "/other/x?a=1&b=2", &h, body).await;
        assert_msg(&answer, 401, "APIG.0303", MSG_BAD_SIGNATURE);
        assert!(
            stack.backend.seen().is_empty(),
            "{:?}",
            stack.backend.seen()
        );

        // The untampered request still goes through.
        let answer = send_owned(addr, "PUT", target, &h, body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    })
    .await;
}

#[tokio::test]
async fn wrong_secret_and_unknown_key_answer_alike() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let now = now_unix();
        let wrong = sign(
            "GET",
            "/app/x",
            &[("host", HOST)],
            b"",
            "key-1",
            "guess",
            now,
        );
        let unknown = sign(
            "GET",
            "/app/x",
            &[("host", HOST)],
            b"",
            "no-such-key",
            SECRET_1,
            now,
        );
        let a = send_owned(addr, "GET", "/app/x", &wrong, b"").await;
        let b = send_owned(addr, "GET", "/app/x", &unknown, b"").await;
        let (ja, jb) = (
            a.assert_apig_error(401, "APIG.0303"),
            b.assert_apig_error(401, "APIG.0303"),
        );
        assert_eq!(ja["error_msg"], jb["error_msg"]);
        assert_eq!(ja["error_msg"], MSG_BAD_SIGNATURE);
        // An IAM key is not an app key.
        let iam = sign("GET", "/app/x", &[("host", HOST)], b"", "AK1", "SK1", now);
        assert_msg(
            &send_owned(addr, "GET", "/app/x", &iam, b"").await,
            401,
            "APIG.0303",
            MSG_BAD_SIGNATURE,
        );
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_clock_window_is_fifteen_minutes_both_ways() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let now = now_unix();
        for skew in [-16 * 60, 16 * 60, -86_400] {
            let h = sign(
                "GET",
                "/app/t",
                &[("host", HOST)],
                b"",
                "key-1",
                SECRET_1,
                now + skew,
            );
            let json = send_owned(addr, "GET", "/app/t", &h, b"")
                .await
                .assert_apig_error(401, "APIG.0303");
            let msg = json["error_msg"].as_str().unwrap();
            let date = &h.iter().find(|(n, _)| n == "X-Sdk-Date").unwrap().1;
            assert!(
                msg.starts_with(&format!(
                    "Incorrect app authentication information: signature expired, signature \
                     time:{date},server time:"
                )),
                "{msg}"
            );
        }
        for skew in [-14 * 60, 14 * 60] {
            let h = sign(
                "GET",
                "/app/t",
                &[("host", HOST)],
                b"",
                "key-1",
                SECRET_1,
                now + skew,
            );
            assert_eq!(send_owned(addr, "GET", "/app/t", &h, b"").await.status, 200);
        }
    })
    .await;
}

/// A correctly computed signature over exactly `signed` (which may leave out what the rules
/// require).
fn craft(target: &str, headers: &[(&str, &str)], signed: &[&str]) -> Vec<(String, String)> {
    let view = apig_sign::RequestView {
        method: "GET",
        path: target,
        query: None,
        headers,
    };
    let date = headers
        .iter()
        .find(|(n, _)| *n == "x-sdk-date")
        .map_or("", |(_, v)| *v);
    let canonical = apig_sign::canonical_request(&view, signed, apig_sign::EMPTY_SHA256).unwrap();
    let sig = apig_sign::signature(
        SECRET_1.as_bytes(),
        &apig_sign::string_to_sign(date, &canonical),
    );
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    out.push((
        "authorization".into(),
        apig_sign::authorization_header("key-1", signed, &sig),
    ));
    out
}

#[tokio::test]
async fn host_and_date_must_be_signed_and_credentials_present() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let date = apig_sign::format_sdk_date(now_unix());
        let headers = [("host", HOST), ("x-sdk-date", date.as_str())];

        // Sanity: the crafted form verifies when both are signed.
        let ok = craft("/app/c", &headers, &["host", "x-sdk-date"]);
        assert_eq!(
            send_owned(addr, "GET", "/app/c", &ok, b"").await.status,
            200
        );

        let no_host = craft("/app/c", &headers, &["x-sdk-date"]);
        assert_msg(
            &send_owned(addr, "GET", "/app/c", &no_host, b"").await,
            401,
            "APIG.0303",
            "Incorrect app authentication information: host is not in SignedHeaders",
        );
        let no_date = craft("/app/c", &headers, &["host"]);
        assert_msg(
            &send_owned(addr, "GET", "/app/c", &no_date, b"").await,
            401,
            "APIG.0303",
            "Incorrect app authentication information: x-sdk-date is not in SignedHeaders",
        );
        // Nothing at all, or a scheme the gateway does not verify.
        assert_msg(
            &call(addr, "/app/c").await,
            401,
            "APIG.0303",
            "Incorrect app authentication information: Authorization header is missing",
        );
        let bearer = get(
            addr,
            "/app/c",
            &[("host", HOST), ("authorization", "Bearer x")],
        )
        .await;
        assert_msg(
            &bearer,
            401,
            "APIG.0303",
            "Incorrect app authentication information: Authorization header is missing",
        );
        let empty_access = get(
            addr,
            "/app/c",
            &[
                ("host", HOST),
                (
                    "authorization",
                    "SDK-HMAC-SHA256 Access=, SignedHeaders=host;x-sdk-date, Signature=00",
                ),
            ],
        )
        .await;
        assert_msg(
            &empty_access,
            401,
            "APIG.0303",
            "Incorrect app authentication information: \
             Access or Credential is empty in Authorization",
        );
        assert_eq!(stack.backend.seen().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn authorization_and_app_acls() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let now = now_unix();
        let go = |key: &'static str, secret: &'static str| {
            let h = sign("GET", "/app/z", &[("host", HOST)], b"", key, secret, now);
            async move { send_owned(addr, "GET", "/app/z", &h, b"").await }
        };
        assert_msg(
            &go("key-2", "secret-2").await,
            403,
            "APIG.0304",
            "The app is not authorized to access the API.",
        );
        // DENY list hit (127.0.0.1), PERMIT list miss (loopback is not in 10/8 or the range).
        for (key, secret) in [("key-3", "secret-3"), ("key-4", "secret-4")] {
            assert_msg(
                &go(key, secret).await,
                403,
                "APIG.0405",
                "The app is not accessed from a trusted IP address.",
            );
        }
        assert!(stack.backend.seen().is_empty());
        assert_eq!(go("key-5", "secret-5").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn app_codes() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let answer = get(addr, "/code", &[("host", HOST), ("x-apig-appcode", CODE_1)]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let echo = answer.json();
        assert_eq!(echo["headers"]["x-app-id"][0], "app-1");
        assert_no_credentials(&echo);

        // A backend's own Authorization passes next to an AppCode.
        let echo = get(
            addr,
            "/code",
            &[
                ("host", HOST),
                ("x-apig-appcode", CODE_1),
                ("authorization", "Bearer backend-token"),
            ],
        )
        .await
        .json();
        assert_eq!(echo["headers"]["authorization"][0], "Bearer backend-token");

        let wrong = format!("{}A", &CODE_1[..CODE_1.len() - 1]);
        assert_msg(
            &get(addr, "/code", &[("host", HOST), ("x-apig-appcode", &wrong)]).await,
            401,
            "APIG.0303",
            "Incorrect app authentication information: invalid AppCode",
        );
        // The /app API leaves AppCode disabled.
        assert_msg(
            &get(
                addr,
                "/app/c",
                &[("host", HOST), ("x-apig-appcode", CODE_1)],
            )
            .await,
            401,
            "APIG.0303",
            "Incorrect app authentication information: Authorization header is missing",
        );
        // NONE APIs never forward an AppCode either.
        let echo = get(addr, "/open", &[("host", HOST), ("x-apig-appcode", CODE_1)])
            .await
            .json();
        assert!(echo["headers"].get("x-apig-appcode").is_none());
        assert_eq!(echo["headers"]["x-app-id"], serde_json::Value::Null);
        assert_eq!(stack.backend.seen().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn iam_signatures_and_tokens() {
    bounded(async {
        let stack = auth_stack().await;
        let addr = stack.gw.addr;
        let now = now_unix();
        let signer = TokenSigner::from_seed(&TOKEN_SEED);

        // AK/SK signature by a project credential.
        let body = br#"{"k":"v"}"#;
        let h = sign(
            "POST",
            "/iam",
            &[("host", HOST), ("content-type", "application/json")],
            body,
            "AK1",
            "SK1",
            now,
        );
        let answer = send_owned(addr, "POST", "/iam", &h, body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let echo = answer.json();
        assert_no_credentials(&echo);
        assert_eq!(echo["headers"]["x-app-id"][0], "");

        // An app key is not an IAM credential.
        let h = sign(
            "GET",
            "/iam",
            &[("host", HOST)],
            b"",
            "key-1",
            SECRET_1,
            now,
        );
        assert_msg(
            &send_owned(addr, "GET", "/iam", &h, b"").await,
            401,
            "APIG.0301",
            "Incorrect IAM authentication information: verify signature fail",
        );

        // A token.
        let token = signer.issue(PROJECT, "AK1", now, 3600, "t-1");
        let answer = get(addr, "/iam", &[("host", HOST), ("x-auth-token", &token)]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_no_credentials(&answer.json());

        let tampered = {
            let mut parts = token.split('.');
            let (prefix, claims, sig) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let json = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
            let forged = json.replace(&format!("\"exp\":{}", now + 3600), "\"exp\":9999999999");
            assert_ne!(forged, json);
            format!("{prefix}.{}.{sig}", URL_SAFE_NO_PAD.encode(forged))
        };
        let cases = [
            (
                signer.issue(PROJECT, "AK1", now - 7200, 3600, "t-2"),
                "token expired",
            ),
            (tampered, "decrypt token fail"),
            (
                TokenSigner::from_seed(&[6u8; 32]).issue(PROJECT, "AK1", now, 3600, "t-3"),
                "token signed by an unknown key",
            ),
            (
                signer.issue("another-project", "AK1", now, 3600, "t-4"),
                "the token is not valid in this project",
            ),
        ];
        for (bad, reason) in cases {
            assert_msg(
                &get(addr, "/iam", &[("host", HOST), ("x-auth-token", &bad)]).await,
                401,
                "APIG.0301",
                &format!("Incorrect IAM authentication information: {reason}"),
            );
        }
        call(addr, "/iam").await.assert_apig_error(401, "APIG.0301");
        assert_eq!(stack.backend.seen().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_new_snapshot_revokes_old_credentials_at_once() {
    bounded(async {
        let stack = auth_stack().await;
        let (addr, cp, backend) = (stack.gw.addr, &stack.cp, stack.backend.addr);
        let signer = TokenSigner::from_seed(&TOKEN_SEED);
        let token = signer.issue(PROJECT, "AK1", now_unix(), 3600, "t");
        let signed = |secret: &str| {
            sign(
                "GET",
                "/app/r",
                &[("host", HOST)],
                b"",
                "key-1",
                secret,
                now_unix(),
            )
        };
        assert_eq!(
            send_owned(addr, "GET", "/app/r", &signed(SECRET_1), b"")
                .await
                .status,
            200
        );

        // Version 2: app-1's secret changes.
        let mut changed = apps();
        changed[0].app_secret = "rotated-secret".into();
        cp.push(auth_snapshot(backend, 2, changed));
        assert_eq!(cp.answer(2).await, Ok(()));
        assert_msg(
            &send_owned(addr, "GET", "/app/r", &signed(SECRET_1), b"").await,
            401,
            "APIG.0303",
            MSG_BAD_SIGNATURE,
        );
        assert_eq!(
            send_owned(addr, "GET", "/app/r", &signed("rotated-secret"), b"")
                .await
                .status,
            200
        );

        // Version 3: app-1 and the IAM credential are gone.
        let mut s = auth_snapshot(backend, 3, apps().split_off(1));
        s.iam_credentials.clear();
        cp.push(s);
        assert_eq!(cp.answer(3).await, Ok(()));
        assert_msg(
            &send_owned(addr, "GET", "/app/r", &signed("rotated-secret"), b"").await,
            401,
            "APIG.0303",
            MSG_BAD_SIGNATURE,
        );
        assert_msg(
            &get(addr, "/code", &[("host", HOST), ("x-apig-appcode", CODE_1)]).await,
            401,
            "APIG.0303",
            "Incorrect app authentication information: invalid AppCode",
        );
        assert_msg(
            &get(addr, "/iam", &[("host", HOST), ("x-auth-token", &token)]).await,
            401,
            "APIG.0301",
            "Incorrect IAM authentication information: the token's credential no longer exists",
        );
        assert_eq!(stack.backend.seen().len(), 2);
    })
    .await;
}

/// A9: an AppCode is a bearer secret, so by default (as APIG) it is taken over TLS only: over
/// plain HTTP it is refused before it is looked up, valid or not. A trusted proxy that
/// terminated TLS says so with `X-Forwarded-Proto: https`; anyone else saying it is ignored.
#[tokio::test]
async fn app_codes_travel_encrypted_only() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |backend| auth_snapshot(backend, 1, apps()),
            |c| {
                c.limits.allow_app_code_over_http = false;
                c.limits.trusted_proxies = vec!["10.0.0.0/8".into()];
            },
        )
        .await;
        let addr = stack.gw.addr;
        let https = ("x-forwarded-proto", "https");
        for code in [CODE_1, "not-a-code-but-long-enough-to-look-like-one"] {
            for extra in [vec![], vec![https]] {
                let mut headers = vec![("host", HOST), ("x-apig-appcode", code)];
                headers.extend(extra);
                assert_msg(
                    &get(addr, "/code", &headers).await,
                    401,
                    "APIG.0303",
                    "Incorrect app authentication information: AppCode authentication requires HTTPS",
                );
            }
        }
        // Signatures are unaffected.
        let now = now_unix();
        let h = sign("GET", "/code", &[("host", HOST)], b"", "key-1", SECRET_1, now);
        assert_eq!(send_owned(addr, "GET", "/code", &h, b"").await.status, 200);
        assert_eq!(stack.backend.seen().len(), 1);
    })
    .await;

    // From a trusted proxy (the test connects from 127.0.0.1).
    bounded(async {
        let stack = Stack::start_snapshot(
            |backend| auth_snapshot(backend, 1, apps()),
            |c| {
                c.limits.allow_app_code_over_http = false;
                c.limits.trusted_proxies = vec!["127.0.0.1".into()];
            },
        )
        .await;
        let addr = stack.gw.addr;
        let code = |proto: &'static str| {
            vec![
                ("host", HOST),
                ("x-apig-appcode", CODE_1),
                ("x-forwarded-proto", proto),
            ]
        };
        assert_eq!(get(addr, "/code", &code("https")).await.status, 200);
        assert_eq!(get(addr, "/code", &code("HTTPS")).await.status, 200);
        assert_eq!(get(addr, "/code", &code("http")).await.status, 401);
        let mut twice = code("https");
        twice.push(("x-forwarded-proto", "https"));
        assert_eq!(get(addr, "/code", &twice).await.status, 401);
        assert_eq!(stack.backend.seen().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_unparseable_app_acl_is_nacked_and_the_old_snapshot_serves() {
    bounded(async {
        let stack = auth_stack().await;
        let (addr, cp) = (stack.gw.addr, &stack.cp);
        let mut bad = apps();
        bad[1].acl = Some(AppAcl {
            permit: true,
            values: vec!["192.168.0.10-192.168.0.1".into()],
        });
        cp.push(auth_snapshot(stack.backend.addr, 2, bad));
        let reason = cp.answer(2).await.unwrap_err();
        assert!(
            reason.contains("app app-2 (name-app-2): app ACL")
                && reason.contains("192.168.0.10-192.168.0.1"),
            "{reason}"
        );
        let h = sign(
            "GET",
            "/app/n",
            &[("host", HOST)],
            b"",
            "key-1",
            SECRET_1,
            now_unix(),
        );
        assert_eq!(send_owned(addr, "GET", "/app/n", &h, b"").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn signed_bodies_are_bounded() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |backend| auth_snapshot(backend, 1, apps()),
            |cfg| cfg.limits.max_signed_body_bytes = 1024,
        )
        .await;
        let addr = stack.gw.addr;
        let now = now_unix();
        let big = vec![b'x'; 4096];
        let h = sign(
            "POST",
            "/app/big",
            &[("host", HOST), ("content-type", "text/plain")],
            &big,
            "key-1",
            SECRET_1,
            now,
        );
        send_owned(addr, "POST", "/app/big", &h, &big)
            .await
            .assert_apig_error(413, "APIG.0201");
        // Within the bound it passes; UNSIGNED-PAYLOAD bodies are not read, so not bounded by it.
        let small = vec![b'y'; 1000];
        let h = sign(
            "POST",
            "/app/s",
            &[("host", HOST)],
            &small,
            "key-1",
            SECRET_1,
            now,
        );
        assert_eq!(
            send_owned(addr, "POST", "/app/s", &h, &small).await.status,
            200
        );
        let h = sign(
            "POST",
            "/app/u",
            &[("host", HOST), ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD")],
            &big,
            "key-1",
            SECRET_1,
            now,
        );
        let answer = send_owned(addr, "POST", "/app/u", &h, &big).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["body_len"], 4096);
        assert_eq!(stack.backend.seen().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn http2_signs_the_authority_as_host() {
    bounded(async {
        let stack = auth_stack().await;
        let signed = sign(
            "GET",
            "/app/h2",
            &[("host", HOST)],
            b"",
            "key-1",
            SECRET_1,
            now_unix(),
        );
        let stream = TcpStream::connect(stack.gw.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut builder = http::Request::builder().uri(format!("http://{HOST}/app/h2"));
        for (name, value) in signed.iter().filter(|(n, _)| n != "host") {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder.body(Full::new(Bytes::new())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["headers"]["x-app-id"][0], "app-1");
        assert_no_credentials(&echo);
    })
    .await;
}
