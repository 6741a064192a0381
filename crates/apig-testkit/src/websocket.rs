//! A real WebSocket backend on loopback (tokio-tungstenite). On connect it first sends one text
//! message, a JSON greeting with what the upgrade request carried (`path`, `x-request-id`,
//! `x-forwarded-for`), then echoes every text and binary message. A request whose path starts
//! with `/refuse` is answered `403` with the body `refused` instead of being upgraded.
//! Dropping it closes the listener and every open connection.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

pub struct WsBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WsBackend {
    pub async fn start() -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind WebSocket backend");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            // Connection tasks live in the set: aborting the accept task drops them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(serve(stream));
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        WsBackend { addr, task }
    }

    /// `host:port` for an API's `url_domain`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// The handshake callback's error type is tungstenite's (a whole HTTP response).
#[allow(clippy::result_large_err)]
async fn serve(stream: tokio::net::TcpStream) {
    let mut greeting = serde_json::Value::Null;
    let callback = |request: &Request, response: Response| {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        greeting = serde_json::json!({
            "path": request.uri().path(),
            "x-request-id": header("x-request-id"),
            "x-forwarded-for": header("x-forwarded-for"),
        });
        if request.uri().path().starts_with("/refuse") {
            let mut refused = ErrorResponse::new(Some("refused".to_owned()));
            *refused.status_mut() = StatusCode::FORBIDDEN;
            return Err(refused);
        }
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    if ws.send(Message::text(greeting.to_string())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself.
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}
