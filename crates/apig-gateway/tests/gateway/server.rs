//! Listener behaviour: graceful shutdown, the connection cap, h2c, the admin endpoints.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    bounded(async {
        let mut stack = Stack::start(|backend| {
            vec![with_http(
                api("s", "GET", "/slow"),
                backend,
                "/slow",
                10_000,
            )]
        })
        .await;
        let addr = stack.gw.addr;
        let in_flight = tokio::spawn(async move { call(addr, "/slow").await });
        tokio::time::sleep(Duration::from_millis(300)).await;

        let stop = stack.gw.stop_signal();
        let task = stack.gw.take_task();
        let _ = stop.send(());
        // The listener closes promptly...
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "listener still accepting after shutdown");
        // ...the in-flight request completes, and then `serve` returns.
        let answer = in_flight.await.unwrap();
        assert_eq!(answer.status, 200);
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve returns")
            .unwrap();
        assert!(result.is_ok());
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed() {
    bounded(async {
        let stack = Stack::start_with(
            |_| vec![with_mock(api("m", "GET", "/m"), 200, "ok")],
            |c| c.limits.max_connections = 1,
        )
        .await;
        let addr = stack.gw.addr;
        let request = b"GET /m HTTP/1.1\r\nHost: api.example.com\r\n\r\n";

        // The first connection is served and kept open.
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

        // A second one is closed without an answer.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let _ = second.write_all(request).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut out))
            .await
            .expect("closed promptly");
        assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));

        // Once the first closes, new connections are served again.
        drop(first);
        let mut served = false;
        for _ in 0..50 {
            let mut third = TcpStream::connect(addr).await.unwrap();
            let _ = third
                .write_all(b"GET /m HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out)).await;
            if out.starts_with(b"HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served);
    })
    .await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![
                with_mock(api("m", "GET", "/m"), 200, "over h2"),
                with_http(api("e", "GET", "/e"), backend, "/e", 5_000),
            ]
        })
        .await;
        // hyper's low-level HTTP/2 client over a loopback socket, so `:authority` can name the
        // API's host while the TCP connection goes to the gateway.
        let stream = TcpStream::connect(stack.gw.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        for (path, check_backend) in [("/m", false), ("/e", true)] {
            let request = http::Request::builder()
                .uri(format!("http://{HOST}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response =
                tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["x-request-id"].len(), 32);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            if check_backend {
                let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(echo["path"], "/e");
                assert_eq!(echo["headers"]["x-forwarded-host"][0], HOST);
            } else {
                assert_eq!(&body[..], b"over h2");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn admin_endpoints() {
    bounded(async {
        let stack = Stack::start(|_| vec![with_mock(api("m", "GET", "/m"), 200, "ok")]).await;
        let admin = stack.gw.admin;
        let health = get(admin, "/health", &[]).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.headers["content-type"], "application/json");
        let ready = get(admin, "/ready", &[]).await;
        assert_eq!(ready.status, 200);
        let json = ready.json();
        assert_eq!(json["status"], "ready");
        assert_eq!(json["instance_id"], INSTANCE);
        assert_eq!(json["node_id"], "test-node");
        assert_eq!(json["applied_epoch"], "epoch-1");
        assert_eq!(json["applied_version"], 1);
        assert_eq!(json["apis"], 1);
        assert_eq!(get(admin, "/nope", &[]).await.status, 404);
        let post = send(admin, "POST", "/ready", &[], Bytes::new()).await;
        assert_eq!(post.status, 405);
    })
    .await;
}
