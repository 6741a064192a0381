//! Test-only helpers: start the real `apig` binary on free loopback ports, real backends (an
//! HTTP echo backend, a gRPC backend, a WebSocket backend), and a management client that signs
//! like the official SDK.
//!
//! Processes are killed when their handle drops, so a failing test leaves nothing behind.

mod backend;
pub mod grpc;
mod mgmt;
mod process;
mod websocket;

pub use backend::{EchoBackend, FunctionReply, FunctionServer, SeenRequest};
pub use grpc::GrpcBackend;
pub use mgmt::{Answer, MgmtClient};
pub use process::{apig_command, ApigProcess, ControlPlane, Gateway, Seed};
pub use websocket::WsBackend;

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP client for calling the gateway (no proxy, short timeouts, no redirects).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}
