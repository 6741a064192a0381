//! Bounds and hostile input: each answers with a clear APIG error and never reaches the backend.

use std::net::SocketAddr;
use std::time::Duration;

use apig_proto::MatchMode;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Every path on api.example.com goes to the echo backend.
fn catch_all(backend: SocketAddr) -> Vec<apig_proto::Api> {
    let mut a = with_http(api("all", "ANY", "/"), backend, "/", 5_000);
    a.match_mode = MatchMode::Swa as i32;
    vec![a]
}

/// Sends raw bytes and reads until the server closes; returns (status, whole response text).
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn hostile_paths_are_refused_before_the_backend() {
    bounded(async {
        let stack = Stack::start(catch_all).await;
        let addr = stack.gw.addr;
        for path in [
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2e%2E/%2E%2e/etc",
            "/a/%2F..%2Fadmin",
            "/a%2fb",
            "/a/..%5cadmin",
            "/a/%00",
            "/a/x%00.json",
            "/a/%zz",
            "/a/%c0%ae%c0%ae/admin",
        ] {
            let json = call(addr, path).await.assert_apig_error(400, "APIG.0201");
            assert!(
                json["error_msg"].as_str().unwrap().contains("path"),
                "{path}: {json}"
            );
        }
        assert!(
            stack.backend.seen().is_empty(),
            "backend saw {:?}",
            stack.backend.seen()
        );

        // Dot segments that stay inside the root are normalised; the backend sees the result.
        let echo = call(addr, "/a/./b/../c//d").await.json();
        assert_eq!(echo["path"], "/a/c/d");
        let seen = stack.backend.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path_and_query, "/a/c/d");
    })
    .await;
}

#[tokio::test]
async fn malformed_hosts_are_400() {
    bounded(async {
        let stack = Stack::start(catch_all).await;
        let addr = stack.gw.addr;
        let (status, text) = raw(addr, b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("APIG.0201"), "{text}");
        let (status, text) = raw(
            addr,
            b"GET http://internal.example.com/admin HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 400, "{text}");
        for host in ["a@api.example.com", "api.example.com:http"] {
            get(addr, "/x", &[("host", host)])
                .await
                .assert_apig_error(400, "APIG.0201");
        }
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn uri_over_the_limit_is_414() {
    bounded(async {
        let stack = Stack::start(catch_all).await;
        let long = format!("/{}", "a".repeat(33 * 1024));
        let json = call(stack.gw.addr, &long)
            .await
            .assert_apig_error(414, "APIG.0201");
        assert_eq!(json["error_msg"], "Request URI too large.");
        let long_query = format!("/x?q={}", "b".repeat(33 * 1024));
        call(stack.gw.addr, &long_query)
            .await
            .assert_apig_error(414, "APIG.0201");
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn headers_over_the_limits() {
    bounded(async {
        let stack = Stack::start(catch_all).await;
        let addr = stack.gw.addr;
        let big = "v".repeat(33 * 1024);
        let json = get(addr, "/x", &[("host", HOST), ("x-big", big.as_str())])
            .await
            .assert_apig_error(494, "APIG.0201");
        assert_eq!(json["error_msg"], "Request headers too large.");

        // Many small headers: hyper refuses past max_headers (100) before the pipeline runs.
        let mut request = String::from("GET /x HTTP/1.1\r\nHost: api.example.com\r\n");
        for i in 0..150 {
            request.push_str(&format!("x-h{i}: v\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        let (status, _) = raw(addr, request.as_bytes()).await;
        assert_eq!(status, 431);
        assert!(stack.backend.seen().is_empty());
    })
    .await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    bounded(async {
        let stack = Stack::start_with(catch_all, |c| c.limits.max_body_bytes = 1024).await;
        let addr = stack.gw.addr;

        // Declared length over the limit: refused before anything is forwarded.
        let json = send(
            addr,
            "POST",
            "/upload",
            &[("host", HOST)],
            Bytes::from(vec![b'x'; 2048]),
        )
        .await
        .assert_apig_error(413, "APIG.0201");
        assert_eq!(json["error_msg"], "Request entity too large.");
        assert!(stack.backend.seen().is_empty());

        // Within the limit: forwarded.
        let ok = send(
            addr,
            "POST",
            "/upload",
            &[("host", HOST)],
            Bytes::from(vec![b'x'; 1000]),
        )
        .await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json()["body_len"], 1000);

        // Chunked (no Content-Length) and over the limit: cut off, 413 since the backend has
        // not answered yet.
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..8)
            .map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; 512]))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/upload"))
            .header("host", HOST)
            .body(body)
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 413);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error_code"], "APIG.0201");
    })
    .await;
}

/// R1 (slowloris): connections that trickle a request head are closed at the header deadline,
/// and a well-behaved client is served meanwhile.
#[tokio::test]
async fn slowloris_connections_are_closed_at_the_header_deadline() {
    bounded(async {
        let stack = Stack::start_with(catch_all, |c| {
            c.limits.header_read_timeout = Duration::from_secs(1);
        })
        .await;
        let addr = stack.gw.addr;
        let started = std::time::Instant::now();
        let trickles: Vec<_> = (0..50)
            .map(|_| {
                tokio::spawn(async move {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    s.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX-A: ")
                        .await
                        .unwrap();
                    // One byte every 200 ms, never finishing the head.
                    for _ in 0..50 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if s.write_all(b"a").await.is_err() {
                            break;
                        }
                    }
                    let mut out = Vec::new();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
                    (
                        started.elapsed(),
                        String::from_utf8_lossy(&out).into_owned(),
                    )
                })
            })
            .collect();
        // Served while the trickles hold their connections.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(call(addr, "/ok").await.status, 200);
        for t in trickles {
            let (closed_after, answer) = t.await.unwrap();
            assert!(
                closed_after < Duration::from_secs(4),
                "a trickling connection lived {closed_after:?}"
            );
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer:?}"
            );
        }
        let seen: Vec<_> = stack
            .backend
            .seen()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect();
        assert_eq!(seen, vec!["/ok".to_owned()], "only the complete request");
    })
    .await;
}

/// R2 (slow POST): a body trickled to a backend is cut off by the API's backend timeout; the
/// client gets an answer, and its connection is not held open.
#[tokio::test]
async fn a_trickled_body_is_cut_off_by_the_backend_timeout() {
    bounded(async {
        let stack = Stack::start(|b| {
            let mut a = with_http(api("slowpost", "POST", "/upload"), b, "/upload", 1_000);
            a.match_mode = MatchMode::Normal as i32;
            vec![a]
        })
        .await;
        let mut s = TcpStream::connect(stack.gw.addr).await.unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let writer = async {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if s.write_all(b"x").await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(4), writer).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        let answer = String::from_utf8_lossy(&out);
        assert!(
            answer.starts_with("HTTP/1.1 504") || answer.starts_with("HTTP/1.1 408"),
            "after {:?}: {answer:?}",
            started.elapsed()
        );
    })
    .await;
}

/// R3 (slow reader): a client that never reads a large answer has its connection closed at the
/// send timeout instead of holding it (and the answer's buffers) for good.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_at_the_send_timeout() {
    bounded(async {
        const SIZE: usize = 32 * 1024 * 1024;
        let stack = Stack::start_with(
            |_| {
                let mut a = api("big", "GET", "/big");
                a.backend = Some(apig_proto::api::Backend::Mock(apig_proto::MockBackend {
                    status_code: 200,
                    result_content: "x".repeat(SIZE),
                }));
                vec![a]
            },
            |c| c.limits.send_timeout = Duration::from_secs(1),
        )
        .await;
        let mut s = TcpStream::connect(stack.gw.addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            .await
            .unwrap();
        // Read nothing for longer than the send timeout; the socket buffers fill long before.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut got = 0usize;
        let mut buf = vec![0u8; 1024 * 1024];
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the connection stayed open");
        assert!(got < SIZE, "the whole answer was still sent ({got} bytes)");
        // Others are served as usual.
        assert_eq!(call(stack.gw.addr, "/big").await.status, 200);
    })
    .await;
}
