//! WebSocket and gRPC APIs end to end: defined through the management API, published, and
//! called through the real gateway process with real clients (tokio-tungstenite, tonic) against
//! real backends on loopback.

use std::time::Duration;

use apig_testkit::grpc::{self, proto::CountRequest, proto::SayRequest};
use apig_testkit::{GrpcBackend, WsBackend};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tonic::Code;

use crate::support::{Stack, RELEASE};

#[tokio::test(flavor = "multi_thread")]
async fn websocket_api_tunnels_after_the_backends_101() {
    let s = Stack::start().await;
    let ws = WsBackend::start().await;
    let (group, host) = s.group("sockets").await;
    // APIG: a WebSocket API is an HTTP API with method GET; `ws://` is HTTP.
    let chat = s.http_api(
        &group,
        "chat",
        "GET",
        "/chat",
        json!({"backend_api": {"url_domain": ws.authority(), "req_uri": "/room"}}),
    );
    let chat = s.create_api(&chat).await;
    s.publish(&chat, RELEASE).await;
    let refused = s.http_api(
        &group,
        "refused",
        "GET",
        "/closed",
        json!({"backend_api": {"url_domain": ws.authority(), "req_uri": "/refuse"}}),
    );
    let refused = s.create_api(&refused).await;
    s.publish(&refused, RELEASE).await;
    s.settled().await;

    let mut request =
        s.gw.url("/chat")
            .replacen("http://", "ws://", 1)
            .into_client_request()
            .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    let (mut client, response) = tokio_tungstenite::connect_async(request.clone())
        .await
        .expect("the gateway upgrades");
    assert_eq!(response.status(), 101);
    let greeting = next(&mut client).await;
    let greeting: serde_json::Value = serde_json::from_str(&greeting).unwrap();
    // The backend path is the API's backend path; the gateway's request id went along.
    assert_eq!(greeting["path"], "/room");
    assert_eq!(
        greeting["x-request-id"],
        response.headers()["x-request-id"].to_str().unwrap()
    );
    for text in ["one", "two", "three"] {
        client.send(Message::text(text)).await.unwrap();
        assert_eq!(next(&mut client).await, text);
    }
    client.close(None).await.unwrap();

    // A backend that refuses the upgrade: its answer reaches the client, no tunnel.
    let mut request =
        s.gw.url("/closed")
            .replacen("http://", "ws://", 1)
            .into_client_request()
            .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            // tungstenite hands over the raw body: the backend's close-delimited body is relayed
            // chunked.
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("refused"), "{body:?}");
        }
        other => panic!("expected the backend's 403, got {other:?}"),
    }
}

async fn next(
    client: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    let message = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .expect("a message in time")
        .expect("the tunnel is open")
        .expect("a valid message");
    message.into_text().expect("text").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_api_streams_messages_and_trailers() {
    let s = Stack::start().await;
    let backend = GrpcBackend::start().await;
    let (group, host) = s.group("rpc").await;
    let api = json!({
        "name": "echo_service", "type": 1, "req_protocol": "GRPCS", "req_method": "POST",
        "req_uri": grpc::SERVICE_PATH, "match_mode": "SWA", "auth_type": "NONE",
        "backend_type": "GRPC", "group_id": group,
        "backend_api": {"url_domain": backend.authority(), "req_protocol": "GRPC",
                        "timeout": 5000}
    });
    let r = s.api.post(&s.inst("/apis"), &api).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // APIG fixes the backend's method and path for gRPC; they read back so.
    assert_eq!(r.body["backend_api"]["req_method"], "POST");
    assert_eq!(r.body["backend_api"]["req_uri"], "/");
    let id = r.body["id"].as_str().unwrap().to_owned();
    s.publish(&id, RELEASE).await;
    s.settled().await;

    // The same API over an HTTP frontend is refused, as APIG does.
    let mut http = api.clone();
    http["name"] = json!("echo_over_http");
    http["req_protocol"] = json!("HTTP");
    let r = s.api.post(&s.inst("/apis"), &http).await;
    assert_eq!(
        (r.status, r.body["error_code"].as_str()),
        (400, Some("APIG.2012")),
        "{:?}",
        r.body
    );

    let mut client = grpc::client(s.gw.addr, &host).await;
    let reply = client
        .say(SayRequest {
            message: "through the gateway".into(),
            fail_code: 0,
        })
        .await
        .expect("unary call")
        .into_inner();
    assert_eq!(reply.message, "through the gateway");
    assert_eq!(reply.request_id.len(), 32);

    let status = client
        .say(SayRequest {
            message: "x".into(),
            fail_code: Code::PermissionDenied as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut stream = client
        .count(CountRequest {
            count: 4,
            fail_code: Code::Aborted as i32,
            fail_message: "stopped after four".into(),
            interval_ms: 0,
        })
        .await
        .expect("streaming call")
        .into_inner();
    for i in 0..4 {
        assert_eq!(stream.message().await.unwrap().expect("a reply").index, i);
    }
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "stopped after four");
}

/// A snapshot swap must not cut connections on routes it leaves unchanged: a WebSocket tunnel and
/// an HTTP/2 (gRPC) stream opened before three publishes carry on after every replica applied
/// them, on the same connections.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_swaps_keep_live_websockets_and_http2_streams() {
    let s = Stack::start().await;
    let ws = WsBackend::start().await;
    let rpc = GrpcBackend::start().await;
    let (group, host) = s.group("live").await;
    let chat = s.http_api(
        &group,
        "live_chat",
        "GET",
        "/chat",
        json!({"backend_api": {"url_domain": ws.authority(), "req_uri": "/room"}}),
    );
    let chat = s.create_api(&chat).await;
    s.publish(&chat, RELEASE).await;
    let stream_api = json!({
        "name": "live_rpc", "type": 1, "req_protocol": "GRPCS", "req_method": "POST",
        "req_uri": grpc::SERVICE_PATH, "match_mode": "SWA", "auth_type": "NONE",
        "backend_type": "GRPC", "group_id": group,
        "backend_api": {"url_domain": rpc.authority(), "req_protocol": "GRPC", "timeout": 60000}
    });
    let stream_api = s.create_api(&stream_api).await;
    s.publish(&stream_api, RELEASE).await;
    s.settled().await;

    let mut request =
        s.gw.url("/chat")
            .replacen("http://", "ws://", 1)
            .into_client_request()
            .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the gateway upgrades");
    next(&mut socket).await; // the backend's greeting
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(next(&mut socket).await, "before");

    // 50 replies, one every 200 ms: the stream stays open for 10 s.
    const REPLIES: u32 = 50;
    let mut client = grpc::client(s.gw.addr, &host).await;
    let opened = std::time::Instant::now();
    let mut stream = client
        .count(CountRequest {
            count: REPLIES,
            fail_code: 0,
            fail_message: String::new(),
            interval_ms: 200,
        })
        .await
        .expect("streaming call")
        .into_inner();
    assert_eq!(stream.message().await.unwrap().expect("a reply").index, 0);

    // Three swaps, each applied by the replica: new routes in the same group and environment.
    let before = s.api.get(&s.inst("/replicas")).await.body["snapshot_version"].clone();
    for i in 0..3 {
        let other = s.http_api(
            &group,
            &format!("added_{i}"),
            "GET",
            &format!("/added/{i}"),
            json!({}),
        );
        let other = s.create_api(&other).await;
        s.publish(&other, RELEASE).await;
        s.settled().await;
    }
    let after = s.api.get(&s.inst("/replicas")).await.body["snapshot_version"].clone();
    assert_ne!(before, after, "the snapshot changed");
    let swapped_at = opened.elapsed();
    assert!(
        swapped_at < Duration::from_secs(8),
        "the swaps must land while the stream is open (took {swapped_at:?})"
    );
    assert_eq!(s.call("GET", &host, "/added/2", &[]).await.status, 200);

    // Both connections carry on.
    socket.send(Message::text("after")).await.unwrap();
    assert_eq!(next(&mut socket).await, "after");
    for i in 1..REPLIES {
        let reply = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("the stream keeps flowing")
            .expect("no error")
            .expect("a reply");
        assert_eq!(reply.index, i);
    }
    assert!(stream.message().await.unwrap().is_none(), "clean end");
    let reply = client
        .say(SayRequest {
            message: "same connection".into(),
            fail_code: 0,
        })
        .await
        .expect("unary call after the swaps")
        .into_inner();
    assert_eq!(reply.message, "same connection");
}
