//! Routing and mapping: what the backend sees, and what the client gets back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use apig_proto::{BackendParamOrigin as Origin, MatchMode, ParamLocation as Loc};
use bytes::Bytes;

use crate::harness::*;

#[tokio::test]
async fn route_maps_path_query_and_headers() {
    bounded(async {
        let stack = Stack::start(|backend| {
            let mut a = with_http(
                api("users", "GET", "/users/{id}"),
                backend,
                "/v1/accounts/{uid}/info",
                5_000,
            );
            a.backend_params = vec![
                backend_param("uid", Loc::Path, Origin::Request, "id", Loc::Path),
                backend_param("X-User-Id", Loc::Header, Origin::Request, "id", Loc::Path),
                backend_param("lang", Loc::Query, Origin::Request, "X-Lang", Loc::Header),
            ];
            vec![a]
        })
        .await;

        let answer = get(
            stack.gw.addr,
            "/users/a%20b?keep=1&x=%2F",
            &[
                ("host", "API.example.com:8080"),
                ("x-lang", "fr"),
                ("x-custom", "c1"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-stage", "RELEASE"),
                ("connection", "x-custom-hop"),
                ("x-custom-hop", "gone"),
            ],
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.headers["x-backend"], "echo");
        let request_id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(request_id.len(), 32);
        let echo = answer.json();
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["path"], "/v1/accounts/a%20b/info");
        assert_eq!(echo["query"], "keep=1&x=%2F&lang=fr");
        let h = &echo["headers"];
        assert_eq!(
            h["host"][0],
            format!("127.0.0.1:{}", stack.backend.addr.port())
        );
        assert_eq!(h["x-user-id"][0], "a b");
        assert_eq!(h["x-custom"][0], "c1");
        assert!(h.get("x-lang").is_none(), "moved to the query");
        assert!(h.get("x-custom-hop").is_none());
        assert!(h.get("x-stage").is_none());
        assert_eq!(h["x-forwarded-for"].as_array().unwrap().len(), 1);
        assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"][0], "http");
        assert_eq!(h["x-forwarded-host"][0], "API.example.com:8080");
        assert_eq!(h["x-request-id"][0], request_id.as_str());
    })
    .await;
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    bounded(async {
        let stack =
            Stack::start(|backend| vec![with_http(api("ka", "GET", "/ka"), backend, "/ka", 5_000)])
                .await;
        for i in 0..20 {
            let answer = call(stack.gw.addr, &format!("/ka?i={i}")).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
        // Each call came on a new client connection; the backend saw one (a single-threaded
        // runtime has one idle list).
        assert_eq!(stack.backend.connections(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_a_bounded_set_of_backend_connections() {
    bounded(async {
        let stack = Stack::start_with(
            |backend| vec![with_http(api("ka", "GET", "/ka"), backend, "/ka", 5_000)],
            // Unthrottled: the callers send faster than the default per-API limit.
            |cfg| cfg.limits.default_api_limit_per_sec = 0,
        )
        .await;
        let addr = stack.gw.addr;
        let callers: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..250 {
                        assert_eq!(call(addr, "/ka").await.status, 200);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        // 4 callers on 2 threads need at most 8 connections; a connection handed back before
        // its connection task took in the end of the response must be waited for, not replaced
        // (that made the pool grow by the hundred).
        let made = stack.backend.connections();
        assert!(made <= 12, "{made} backend connections for 4 callers");
    })
    .await;
}

/// A backend that answers one request per connection and then closes it without saying so
/// (no `Connection: close`), as a backend whose keep-alive timeout just expired would.
async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropping the stream closes the connection.
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_replaced() {
    bounded(async {
        let (closing, accepted) = closing_backend().await;
        let stack =
            Stack::start(|_| vec![with_http(api("cl", "GET", "/cl"), closing, "/cl", 5_000)]).await;
        for _ in 0..10 {
            let answer = call(stack.gw.addr, "/cl").await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            assert_eq!(answer.body, Bytes::from_static(b"ok"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    })
    .await;
}

#[tokio::test]
async fn swa_remainder_is_appended() {
    bounded(async {
        let stack = Stack::start(|backend| {
            let mut a = with_http(api("swa", "ANY", "/test"), backend, "/test2", 5_000);
            a.match_mode = MatchMode::Swa as i32;
            vec![a]
        })
        .await;
        let answer = send(
            stack.gw.addr,
            "POST",
            "/test/AA/CC%20D?q=1",
            &[("host", HOST)],
            Bytes::from_static(b"hello"),
        )
        .await;
        assert_eq!(answer.status, 200);
        let echo = answer.json();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/test2/AA/CC%20D");
        assert_eq!(echo["query"], "q=1");
        assert_eq!(echo["body_len"], 5);

        // The prefix alone, and no match for a longer first segment.
        assert_eq!(call(stack.gw.addr, "/test").await.json()["path"], "/test2");
        call(stack.gw.addr, "/testing")
            .await
            .assert_apig_error(404, "APIG.0101");
    })
    .await;
}

#[tokio::test]
async fn greedy_path_params_keep_their_slashes() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![with_http(
                api("files", "GET", "/files/{path+}"),
                backend,
                "/store/{path}",
                5_000,
            )]
        })
        .await;
        let echo = call(stack.gw.addr, "/files/a/b%20c/d.txt").await.json();
        assert_eq!(echo["path"], "/store/a/b%20c/d.txt");
    })
    .await;
}

#[tokio::test]
async fn constants_and_system_parameters_reach_the_backend() {
    bounded(async {
        let stack = Stack::start(|backend| {
            let mut a = with_http(api("sys", "GET", "/sys"), backend, "/sys/{ver}", 5_000);
            a.backend_params = vec![
                backend_param("ver", Loc::Path, Origin::Constant, "v2", Loc::Path),
                backend_param("X-Const", Loc::Header, Origin::Constant, "fixed", Loc::Path),
                backend_param("mode", Loc::Query, Origin::Constant, "a b", Loc::Path),
                backend_param(
                    "X-Rid",
                    Loc::Header,
                    Origin::System,
                    "$context.requestId",
                    Loc::Path,
                ),
                backend_param(
                    "X-Ip",
                    Loc::Header,
                    Origin::System,
                    "$context.sourceIp",
                    Loc::Path,
                ),
                backend_param(
                    "X-Env",
                    Loc::Header,
                    Origin::System,
                    "$context.stage",
                    Loc::Path,
                ),
                backend_param(
                    "X-Id",
                    Loc::Header,
                    Origin::System,
                    "$context.apiId",
                    Loc::Path,
                ),
                backend_param(
                    "X-Name",
                    Loc::Header,
                    Origin::System,
                    "$context.apiName",
                    Loc::Path,
                ),
                backend_param(
                    "X-Srv",
                    Loc::Header,
                    Origin::System,
                    "$context.serverAddr",
                    Loc::Path,
                ),
                backend_param(
                    "X-T",
                    Loc::Header,
                    Origin::System,
                    "$context.handleTime",
                    Loc::Path,
                ),
            ];
            vec![a]
        })
        .await;
        let answer = call(stack.gw.addr, "/sys?mode=client").await;
        assert_eq!(answer.status, 200);
        let rid = answer.headers["x-request-id"].to_str().unwrap().to_owned();
        let echo = answer.json();
        assert_eq!(echo["path"], "/sys/v2");
        assert_eq!(echo["query"], "mode=a%20b");
        let h = &echo["headers"];
        assert_eq!(h["x-const"][0], "fixed");
        assert_eq!(h["x-rid"][0], rid.as_str());
        assert_eq!(h["x-ip"][0], "127.0.0.1");
        assert_eq!(h["x-env"][0], "RELEASE");
        assert_eq!(h["x-id"][0], "sys");
        assert_eq!(h["x-name"][0], "api_sys");
        assert_eq!(h["x-srv"][0], "127.0.0.1");
        assert!(h["x-t"][0].as_str().unwrap().ends_with(" +0000"));
    })
    .await;
}

#[tokio::test]
async fn x_stage_selects_the_environment() {
    bounded(async {
        let stack = Stack::start(|backend| {
            let release = with_http(api("rel", "GET", "/env"), backend, "/release", 5_000);
            let mut test = with_http(api("tst", "GET", "/env"), backend, "/test", 5_000);
            test.env_id = "env-test".into();
            vec![release, test]
        })
        .await;
        assert_eq!(call(stack.gw.addr, "/env").await.json()["path"], "/release");
        let test = get(
            stack.gw.addr,
            "/env",
            &[("host", HOST), ("x-stage", "TEST")],
        )
        .await;
        assert_eq!(test.json()["path"], "/test");
        get(
            stack.gw.addr,
            "/env",
            &[("host", HOST), ("x-stage", "NOPE")],
        )
        .await
        .assert_apig_error(404, "APIG.0101");
    })
    .await;
}

#[tokio::test]
async fn misses_are_apig_0101_with_a_request_id() {
    bounded(async {
        let stack =
            Stack::start(|backend| vec![with_http(api("a", "GET", "/a"), backend, "/a", 5_000)])
                .await;
        let json = call(stack.gw.addr, "/nothing-here")
            .await
            .assert_apig_error(404, "APIG.0101");
        assert_eq!(
            json["error_msg"],
            "The API does not exist or has not been published in the environment."
        );
        // Unknown host.
        get(stack.gw.addr, "/a", &[("host", "other.example.com")])
            .await
            .assert_apig_error(404, "APIG.0101");
        // Wrong method on an existing path.
        let json = send(
            stack.gw.addr,
            "DELETE",
            "/a",
            &[("host", HOST)],
            Bytes::new(),
        )
        .await
        .assert_apig_error(404, "APIG.0101");
        assert_eq!(json["error_msg"], "The API does not exist.");
        // Every answer carries a fresh request id.
        let a = call(stack.gw.addr, "/x").await;
        let b = call(stack.gw.addr, "/x").await;
        assert_ne!(a.headers["x-request-id"], b.headers["x-request-id"]);
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn mock_backend_answers_directly() {
    bounded(async {
        let stack = Stack::start(|_| {
            vec![
                with_mock(api("m", "GET", "/mock"), 0, r#"{"hello":"world"}"#),
                with_mock(api("t", "GET", "/teapot"), 418, "short and stout"),
            ]
        })
        .await;
        let answer = call(stack.gw.addr, "/mock").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["hello"], "world");
        assert_eq!(answer.headers["content-type"], "application/json");
        assert_eq!(answer.headers["x-request-id"].len(), 32);
        let answer = call(stack.gw.addr, "/teapot").await;
        assert_eq!(answer.status, 418);
        assert_eq!(&answer.body[..], b"short and stout");
    })
    .await;
}

#[tokio::test]
async fn closed_port_is_502() {
    bounded(async {
        // Reserve a port, then close it so nothing listens there.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let stack =
            Stack::start(|_| vec![with_http(api("c", "GET", "/closed"), closed, "/", 2_000)]).await;
        let json = call(stack.gw.addr, "/closed")
            .await
            .assert_apig_error(502, "APIG.0201");
        assert_eq!(json["error_msg"], "Backend unavailable.");
    })
    .await;
}

#[tokio::test]
async fn slow_backend_is_504() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![with_http(api("s", "GET", "/slow"), backend, "/slow", 300)]
        })
        .await;
        let started = std::time::Instant::now();
        let json = call(stack.gw.addr, "/slow")
            .await
            .assert_apig_error(504, "APIG.0201");
        assert_eq!(json["error_msg"], "Backend timeout.");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    })
    .await;
}

#[tokio::test]
async fn https_to_a_plain_text_backend_fails_the_handshake() {
    bounded(async {
        let stack = Stack::start(|backend| {
            let mut a = with_http(api("h", "GET", "/tls"), backend, "/", 1_000);
            if let Some(apig_proto::api::Backend::Http(h)) = a.backend.as_mut() {
                h.scheme = "https".into();
            }
            vec![a]
        })
        .await;
        // The backend speaks HTTP: no TLS session, no request delivered.
        call(stack.gw.addr, "/tls")
            .await
            .assert_apig_error(502, "APIG.0201");
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn required_and_validated_parameters() {
    bounded(async {
        let stack = Stack::start(|backend| {
            let mut a = with_http(api("p", "GET", "/params"), backend, "/params", 5_000);
            let mut n = req_param("n", Loc::Query, false);
            n.r#type = "NUMBER".into();
            n.validate = true;
            n.min_num = Some(1);
            n.max_num = Some(10);
            let mut page = req_param("page", Loc::Query, false);
            page.default_value = "1".into();
            a.req_params = vec![req_param("X-Token", Loc::Header, true), n, page];
            vec![a]
        })
        .await;
        let addr = stack.gw.addr;
        let json = call(addr, "/params")
            .await
            .assert_apig_error(400, "APIG.0201");
        assert!(
            json["error_msg"].as_str().unwrap().contains("X-Token"),
            "{json}"
        );

        let json = get(addr, "/params?n=11", &[("host", HOST), ("x-token", "t")])
            .await
            .assert_apig_error(400, "APIG.0201");
        assert!(json["error_msg"].as_str().unwrap().contains('n'), "{json}");
        get(addr, "/params?n=abc", &[("host", HOST), ("x-token", "t")])
            .await
            .assert_apig_error(400, "APIG.0201");
        assert!(stack.backend.seen().is_empty());

        let ok = get(addr, "/params?n=5", &[("host", HOST), ("x-token", "t")]).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json()["query"], "n=5&page=1");
    })
    .await;
}

#[tokio::test]
async fn auth_failures_never_reach_the_backend() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |backend| {
                let mut app = with_http(api("app", "GET", "/app"), backend, "/app", 5_000);
                app.auth_type = apig_proto::AuthType::App as i32;
                let mut iam = with_http(api("iam", "GET", "/iam"), backend, "/iam", 5_000);
                iam.auth_type = apig_proto::AuthType::Iam as i32;
                let mut custom = with_http(api("cus", "GET", "/custom"), backend, "/custom", 5_000);
                custom.auth_type = apig_proto::AuthType::Authorizer as i32;
                custom.authorizer_id = "authz-1".into();
                let mut s = snapshot("epoch-1", 1, vec![app, iam, custom]);
                // Its identity source is missing from the calls below, so the function (at a
                // port nothing listens on) is never called.
                s.authorizers = vec![apig_proto::Authorizer {
                    id: "authz-1".into(),
                    name: "token".into(),
                    url: "http://127.0.0.1:1/authorize".into(),
                    identities: vec![apig_proto::AuthorizerIdentity {
                        name: "x-token".into(),
                        location: apig_proto::ParamLocation::Header as i32,
                        validation: String::new(),
                    }],
                    ..Default::default()
                }];
                s
            },
            |_| {},
        )
        .await;
        let addr = stack.gw.addr;
        let json = get(
            addr,
            "/app",
            &[
                ("host", HOST),
                ("authorization", "SDK-HMAC-SHA256 Access=x, Signature=y"),
            ],
        )
        .await
        .assert_apig_error(401, "APIG.0303");
        assert!(json["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect app authentication information"));
        call(addr, "/iam").await.assert_apig_error(401, "APIG.0301");
        call(addr, "/custom")
            .await
            .assert_apig_error(401, "APIG.0305");
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn backend_redirects_are_passed_through_not_followed() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![with_http(
                api("r", "GET", "/go"),
                backend,
                "/redirect",
                5_000,
            )]
        })
        .await;
        let answer = call(stack.gw.addr, "/go").await;
        assert_eq!(answer.status, 302);
        assert_eq!(answer.headers["location"], "/elsewhere");
        assert_eq!(answer.headers["x-request-id"].len(), 32);
        let seen = stack.backend.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].path_and_query, "/redirect");
    })
    .await;
}
