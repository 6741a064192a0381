//! WebSocket tunnels: an HTTP/1.1 `Upgrade: websocket` request that went through the whole
//! pipeline is sent to the backend with its upgrade headers (`mapping`) over a connection of its
//! own (`proxy::Upstream::send_upgrade`). Only when the backend answers 101 does the client get
//! 101 (with the backend's `Upgrade`, `Sec-WebSocket-Accept`, ... headers) and are the two
//! upgraded connections spliced; any other answer is passed on as a normal response and nothing
//! is tunnelled (a request smuggled behind a refused upgrade stays HTTP, and is routed,
//! authenticated and throttled like any other).
//!
//! A tunnel copies bytes both ways until either side closes or nothing moved in either
//! direction for `Limits::tunnel_idle_timeout`. It holds the client connection's place under
//! `max_connections` and, for a channel member, its in-flight count (WLC sees long-lived
//! connections) until it ends. Tunnels are not drained at shutdown: they end with the process.
//!
//! HTTP/2 WebSockets (RFC 8441 extended CONNECT) are not supported.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderValue, Method, Response, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::channel::health::InFlight;
use crate::mapping::strip_hop_by_hop;
use crate::server::ConnPermit;

/// What a tunnel holds while it runs: the client connection's place under `max_connections`
/// and the channel member's in-flight count.
pub(crate) struct TunnelGuard {
    _conn: ConnPermit,
    _in_flight: Option<InFlight>,
}

impl TunnelGuard {
    pub(crate) fn new(conn: ConnPermit, in_flight: Option<InFlight>) -> Self {
        Self {
            _conn: conn,
            _in_flight: in_flight,
        }
    }
}

/// Whether the request asks to become a WebSocket: an HTTP/1.1 GET with `Connection: upgrade`
/// and `Upgrade: websocket` (RFC 6455 §4.1; tokens are case-insensitive).
pub(crate) fn is_websocket_upgrade(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts.method == Method::GET
        && has_token(parts.headers.get_all(CONNECTION), "upgrade")
        && has_token(parts.headers.get_all(UPGRADE), "websocket")
}

/// Whether a comma-separated header lists `token`.
fn has_token(values: http::header::GetAll<'_, HeaderValue>, token: &str) -> bool {
    values.iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Turns the backend's 101 into the client's and starts the tunnel between the two upgraded
/// connections. `client` is the client request's pending upgrade.
pub(crate) fn switch<B>(
    mut backend: Response<B>,
    client: OnUpgrade,
    idle_timeout: Duration,
    guard: TunnelGuard,
) -> Response<ResponseBody> {
    let backend_upgrade = hyper::upgrade::on(&mut backend);
    let (mut head, _empty) = backend.into_parts();
    keep_upgrade_headers(&mut head.headers);
    head.version = Version::HTTP_11;
    tokio::spawn(async move {
        // The client's side resolves once hyper has written the 101 below; both sides are
        // bounded in case the client vanishes first.
        let sides = tokio::time::timeout(idle_timeout, async {
            tokio::try_join!(client, backend_upgrade)
        })
        .await;
        match sides {
            Ok(Ok((client, backend))) => {
                splice(TokioIo::new(client), TokioIo::new(backend), idle_timeout).await;
            }
            Ok(Err(error)) => tracing::debug!(%error, "upgrade failed before the tunnel started"),
            Err(_elapsed) => tracing::debug!("upgrade did not complete in time"),
        }
        drop(guard);
    });
    Response::from_parts(head, ResponseBody::full(bytes::Bytes::new()))
}

/// The 101's headers for the client: the backend's, without hop-by-hop headers except the
/// upgrade itself.
fn keep_upgrade_headers(headers: &mut http::HeaderMap) {
    let upgrade = headers.get(UPGRADE).cloned();
    strip_hop_by_hop(headers);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        UPGRADE,
        upgrade.unwrap_or_else(|| HeaderValue::from_static("websocket")),
    );
}

/// Copies bytes both ways until either side closes, an I/O error, or `idle_timeout` without a
/// byte moving.
async fn splice<A, B>(client: A, mut backend: B, idle_timeout: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    // Every byte of both directions passes through the client side (read from it or written to
    // it), so watching that side sees all traffic.
    let mut client = Watched {
        inner: client,
        start,
        last_activity: &last_activity,
    };
    let idle = async {
        loop {
            let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
            let deadline = start + last + idle_timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut backend) => match result {
            Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
            Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
        },
        () = idle => tracing::debug!(?idle_timeout, "tunnel idle; closing"),
    }
}

/// An I/O object that records when bytes last moved through it (milliseconds since `start`).
struct Watched<'a, T> {
    inner: T,
    start: Instant,
    last_activity: &'a AtomicU64,
}

impl<T> Watched<'_, T> {
    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(millis, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn parts(version: Version, method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().version(version).method(method);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn recognises_websocket_upgrades_only() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert!(is_websocket_upgrade(&parts(
            Version::HTTP_11,
            Method::GET,
            &ws
        )));
        assert!(!is_websocket_upgrade(&parts(
            Version::HTTP_11,
            Method::POST,
            &ws
        )));
        assert!(!is_websocket_upgrade(&parts(
            Version::HTTP_10,
            Method::GET,
            &ws
        )));
        assert!(!is_websocket_upgrade(&parts(
            Version::HTTP_2,
            Method::GET,
            &ws
        )));
        let h2c = [("connection", "upgrade"), ("upgrade", "h2c")];
        assert!(!is_websocket_upgrade(&parts(
            Version::HTTP_11,
            Method::GET,
            &h2c
        )));
        let no_connection = [("upgrade", "websocket")];
        assert!(!is_websocket_upgrade(&parts(
            Version::HTTP_11,
            Method::GET,
            &no_connection
        )));
    }

    #[test]
    fn the_101_keeps_the_upgrade_and_drops_other_hop_by_hop_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade, x-hop"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("sec-websocket-accept", HeaderValue::from_static("abc"));
        keep_upgrade_headers(&mut h);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-accept"], "abc");
        assert!(h.get("x-hop").is_none());
        assert!(h.get("keep-alive").is_none());
    }

    #[tokio::test]
    async fn splice_copies_both_ways_and_closes_when_idle() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (backend, mut backend_peer) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(client, backend, Duration::from_millis(200)));
        client_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        backend_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        backend_peer.write_all(b"pong").await.unwrap();
        client_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // Activity keeps it open past one idle period...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(120)).await;
            client_peer.write_all(b"k").await.unwrap();
            backend_peer.read_exact(&mut buf[..1]).await.unwrap();
        }
        assert!(!task.is_finished());
        // ...silence closes it.
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("idle tunnel closes")
            .unwrap();
        assert_eq!(client_peer.read(&mut buf).await.unwrap(), 0);
    }
}
