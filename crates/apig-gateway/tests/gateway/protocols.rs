//! WebSocket upgrades and gRPC backends, with real clients and real backends: tokio-tungstenite
//! on both ends of a WebSocket, tonic on both ends of gRPC (h2c and TLS with ALPN h2).

use std::net::SocketAddr;
use std::time::Duration;

use apig_proto::{AuthType, MatchMode};
use apig_testkit::grpc::{self, proto::CountRequest, proto::SayRequest};
use apig_testkit::{GrpcBackend, WsBackend};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tonic::Code;

use crate::harness::*;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `path` on the gateway with `Host: api.example.com`.
async fn ws_connect(
    gw: SocketAddr,
    path: &str,
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = format!("ws://{gw}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", http::HeaderValue::from_static(HOST));
    tokio_tungstenite::connect_async(request).await
}

/// The next text message, within 5 s.
async fn next_text(ws: &mut Ws) -> String {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message in time")
        .expect("the tunnel is open")
        .expect("a valid message");
    message.into_text().expect("a text message").to_string()
}

#[tokio::test]
async fn websocket_messages_round_trip_after_the_backends_101() {
    bounded(async {
        let backend = WsBackend::start().await;
        let ws = backend.addr;
        let stack = Stack::start(move |_| {
            let mut guarded = with_http(api("ws-iam", "GET", "/guarded"), ws, "/chat", 5_000);
            guarded.auth_type = AuthType::Iam as i32;
            vec![
                with_http(api("ws", "GET", "/chat"), ws, "/chat", 5_000),
                guarded,
            ]
        })
        .await;

        let (mut client, response) = ws_connect(stack.gw.addr, "/chat").await.unwrap();
        assert_eq!(response.status(), 101);
        assert!(response.headers().contains_key("sec-websocket-accept"));
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();

        // Backend → client: the greeting shows the upgrade went through the pipeline.
        let greeting: serde_json::Value =
            serde_json::from_str(&next_text(&mut client).await).unwrap();
        assert_eq!(greeting["path"], "/chat");
        assert_eq!(greeting["x-request-id"], request_id.as_str());
        assert_eq!(greeting["x-forwarded-for"], "127.0.0.1");

        // Client → backend → client, text and binary.
        for i in 0..3 {
            let text = format!("hello {i}");
            client.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next_text(&mut client).await, text);
        }
        let payload = vec![0u8, 1, 2, 254, 255];
        client.send(Message::binary(payload.clone())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_data().as_ref(), payload.as_slice());
        client.close(None).await.unwrap();

        // Authentication runs before any upgrade: no credentials, no tunnel.
        match ws_connect(stack.gw.addr, "/guarded").await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
    })
    .await;
}

/// Sends `request` on an open HTTP/1.1 client connection and reads the whole answer.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    upgrade: bool,
) -> (u16, Bytes) {
    let mut builder = Request::get(path).header("host", HOST);
    if upgrade {
        builder = builder
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    sender.ready().await.expect("connection still usable");
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(builder.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("answer in time")
    .expect("answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[tokio::test]
async fn an_upgrade_the_backend_refuses_is_passed_through_and_not_tunnelled() {
    bounded(async {
        let backend = WsBackend::start().await;
        let ws = backend.addr;
        let stack = Stack::start(move |echo| {
            vec![
                // A plain HTTP backend: answers 200 to the upgrade request.
                with_http(api("plain", "GET", "/plain"), echo, "/plain", 5_000),
                // A WebSocket backend that refuses: 403.
                with_http(api("refuse", "GET", "/refuse"), ws, "/refuse", 5_000),
                with_mock(
                    api("after", "GET", "/after"),
                    200,
                    "answered by the gateway",
                ),
            ]
        })
        .await;

        let stream = TcpStream::connect(stack.gw.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);

        let (status, body) = exchange(&mut sender, "/plain", true).await;
        assert_eq!(status, 200);
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // The backend saw the upgrade it declined.
        assert_eq!(echo["headers"]["upgrade"][0], "websocket");
        assert_eq!(echo["headers"]["connection"][0], "upgrade");
        // The connection still speaks HTTP to the gateway: the next request is routed (to a
        // MOCK), not spliced to the backend.
        let (status, body) = exchange(&mut sender, "/after", false).await;
        assert_eq!((status, &body[..]), (200, &b"answered by the gateway"[..]));

        let (status, body) = exchange(&mut sender, "/refuse", true).await;
        assert_eq!((status, &body[..]), (403, &b"refused"[..]));
        let (status, body) = exchange(&mut sender, "/after", false).await;
        assert_eq!((status, &body[..]), (200, &b"answered by the gateway"[..]));
    })
    .await;
}

#[tokio::test]
async fn a_websocket_idle_longer_than_the_backend_timeout_is_closed() {
    bounded(async {
        let backend = WsBackend::start().await;
        let ws = backend.addr;
        let stack =
            Stack::start(move |_| vec![with_http(api("ws", "GET", "/chat"), ws, "/chat", 400)])
                .await;
        let (mut client, _) = ws_connect(stack.gw.addr, "/chat").await.unwrap();
        next_text(&mut client).await;
        // Traffic keeps it open well past one timeout...
        for i in 0..6 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.send(Message::text(format!("{i}"))).await.unwrap();
            assert_eq!(next_text(&mut client).await, format!("{i}"));
        }
        // ...silence closes it.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let next = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("the gateway closes the idle tunnel");
        assert!(
            !matches!(next, Some(Ok(Message::Text(_) | Message::Binary(_)))),
            "{next:?}"
        );
    })
    .await;
}

/// Unary and server-streaming calls through the gateway, with an error status after streamed
/// messages (it can only travel in HTTP/2 trailers).
async fn grpc_calls_work(gateway: SocketAddr) {
    let mut client = grpc::client(gateway, HOST).await;

    let reply = client
        .say(SayRequest {
            message: "hi".into(),
            fail_code: 0,
        })
        .await
        .unwrap();
    let gateway_request_id = reply
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let reply = reply.into_inner();
    assert_eq!(reply.message, "hi");
    // The backend got the request id the gateway gave the call.
    assert_eq!(reply.request_id, gateway_request_id);

    let status = client
        .say(SayRequest {
            message: "no".into(),
            fail_code: Code::FailedPrecondition as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "refused: no");

    let mut stream = client
        .count(CountRequest {
            count: 3,
            fail_code: 0,
            fail_message: String::new(),
            interval_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        let reply = stream.message().await.unwrap().expect("a reply");
        assert_eq!((reply.index, reply.message), (i, format!("reply {i}")));
    }
    assert!(
        stream.message().await.unwrap().is_none(),
        "OK after the last reply"
    );
    // OK arrived as trailers (after the data), as gRPC sends it.
    stream
        .trailers()
        .await
        .unwrap()
        .expect("trailers after the last reply");

    let mut stream = client
        .count(CountRequest {
            count: 2,
            fail_code: Code::ResourceExhausted as i32,
            fail_message: "enough".into(),
            interval_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    for i in 0..2 {
        assert_eq!(stream.message().await.unwrap().expect("a reply").index, i);
    }
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "enough");
}

#[tokio::test]
async fn grpc_over_h2c_streams_messages_and_trailers() {
    bounded(async {
        let backend = GrpcBackend::start().await;
        let addr = backend.addr;
        let stack = Stack::start(move |_| {
            // APIG's widest gRPC route: every service and method, SWA on `/`.
            let mut all = with_grpc(api("grpc", "POST", "/"), addr, false, 5_000);
            all.match_mode = MatchMode::Swa as i32;
            vec![all]
        })
        .await;
        grpc_calls_work(stack.gw.addr).await;
    })
    .await;
}

#[tokio::test]
async fn gateway_errors_reach_grpc_clients_as_http_statuses() {
    bounded(async {
        let backend = GrpcBackend::start().await;
        let addr = backend.addr;
        let stack = Stack::start(move |_| {
            let mut service =
                with_grpc(api("grpc", "POST", grpc::SERVICE_PATH), addr, false, 5_000);
            service.match_mode = MatchMode::Swa as i32;
            service.auth_type = AuthType::Iam as i32;
            vec![service]
        })
        .await;
        let mut client = grpc::client(stack.gw.addr, HOST).await;
        // The gateway answers 401 with its APIG JSON body, plus the status as gRPC clients read
        // it (`grpc-status`, `grpc-message`).
        let status = client
            .say(SayRequest {
                message: "hi".into(),
                fail_code: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("Incorrect IAM authentication information"),
            "{status:?}"
        );
        assert_eq!(status.metadata().get("x-request-id").unwrap().len(), 32);
    })
    .await;
}

#[tokio::test]
async fn grpc_over_tls_negotiates_h2_and_streams_trailers() {
    bounded(async {
        let (backend, ca) = GrpcBackend::start_tls().await;
        let addr = backend.addr;
        let ca_dir = tempfile::tempdir().unwrap();
        let ca_file = ca_dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let stack = Stack::start_with(
            move |_| {
                let mut service =
                    with_grpc(api("grpcs", "POST", grpc::SERVICE_PATH), addr, true, 5_000);
                service.match_mode = MatchMode::Swa as i32;
                vec![service]
            },
            |config| config.backend_ca_file = Some(ca_file),
        )
        .await;
        grpc_calls_work(stack.gw.addr).await;
    })
    .await;
}
