//! The backend call, in clear or TLS (rustls; see `backend_tls` for what is trusted):
//!
//! - HTTP/1.1 over a pooled keep-alive client (HTTP and HTTPS backends);
//! - HTTP/2 over a second pooled client for gRPC backends: h2c with prior knowledge in clear,
//!   ALPN `h2` over TLS. Bodies stream frame by frame both ways, trailers included (gRPC's
//!   `grpc-status` arrives as trailers);
//! - a WebSocket upgrade request over a fresh HTTP/1.1 connection of its own
//!   ([`Upstream::send_upgrade`]): once upgraded, that connection belongs to the tunnel, so it must
//!   never be one the pool could hand to another request.
//!
//! The clients sit behind [`Upstream`] so they can be replaced (the design notes measure a
//! per-thread pool of `hyper::client::conn::http1` connections as noticeably cheaper than
//! hyper-util's generic pooled client) without touching the pipeline.
//!
//! - The API's timeout covers connecting and receiving the response head: past it → 504.
//! - Every connection is made by [`GuardedConnector`] (`egress`): an address the backend address
//!   policy refuses is never dialled, and the call fails with 502 (`SendError::refused`), never
//!   retried.
//! - Refused, reset or broken connections → 502. [`SendError::not_sent`] tells the pipeline a
//!   call never reached the backend (connect failure), the only case it retries.
//! - Redirects are passed to the client, never followed.
//! - A request body over `max_body_bytes` without a `Content-Length` is cut off; if the backend
//!   has not answered yet the client gets 413.
//! - A body the gateway already read (to check a signature) is sent from that buffer.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use crate::egress::{refusal_in, AddressGuard, GuardedConnector};
use crate::http1_pool::{origin_form, BackendBody, BoxError, Http1Pool, PoolError};
use crate::respond::GatewayErrorKind;

/// The request body sent to a backend: the client's body streamed through (bounded), or the
/// bytes the gateway already read from it.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    Streaming(Limited<Incoming>),
    /// `None` once sent.
    Buffered(Option<Bytes>),
}

impl UpstreamBody {
    pub(crate) fn buffered(bytes: Bytes) -> Self {
        Self::Buffered((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Streaming(body) => Pin::new(body).poll_frame(cx).map_err(|error| {
                if error.is::<LengthLimitError>() {
                    error
                } else {
                    Box::new(ClientBodyError(error))
                }
            }),
            Self::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Streaming(body) => body.is_end_stream(),
            Self::Buffered(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Streaming(body) => body.size_hint(),
            Self::Buffered(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Buffered(None) => SizeHint::with_exact(0),
        }
    }
}

/// The client's request body was malformed (a bad chunk, say) or broke off while it streamed to
/// the backend: the client's fault, not the backend's.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub(crate) struct ClientBodyError(#[source] Box<dyn StdError + Send + Sync>);

/// A backend call that failed.
#[derive(Debug)]
pub(crate) struct SendError {
    pub kind: GatewayErrorKind,
    /// The connection could not be made: the backend saw nothing of the request.
    pub not_sent: bool,
    /// The backend address policy refused every address of the backend (nothing was dialled;
    /// another attempt would be refused again).
    pub refused: bool,
}

impl SendError {
    /// The backend address policy refused the backend's address: 502, like any backend that
    /// cannot be reached.
    fn refused() -> Self {
        Self {
            kind: GatewayErrorKind::BackendUnavailable,
            not_sent: true,
            refused: true,
        }
    }
}

/// How a call failed, from either client.
enum CallFailure {
    /// No connection: nothing of the request was sent.
    Connect(BoxError),
    /// The exchange on an established connection failed.
    Exchange(BoxError),
}

/// The HTTP version a backend is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamProtocol {
    /// HTTP/1.1 (HTTP and HTTPS backends; WebSocket upgrades).
    Http1,
    /// HTTP/2 (gRPC backends).
    Http2,
}

type PooledClient = Client<HttpsConnector<GuardedConnector>, UpstreamBody>;

/// The backend clients (HTTP and HTTPS): pooled HTTP/1.1 (`http1_pool`), pooled HTTP/2, and the
/// connector of upgrade connections.
#[derive(Clone)]
pub(crate) struct Upstream {
    http1: Http1Pool,
    http2: PooledClient,
    /// Dials one HTTP/1.1 connection (TLS with ALPN `http/1.1` for https) per upgrade request.
    upgrade_connector: HttpsConnector<GuardedConnector>,
    guard: Arc<AddressGuard>,
}

// === impl Upstream ===

impl Upstream {
    /// `tls`: how HTTPS backends are verified (`backend_tls`); `guard`: the backend address
    /// policy every connection is checked against (`egress`).
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>, guard: Arc<AddressGuard>) -> Self {
        let http = GuardedConnector::new(Arc::clone(&guard), |http| {
            http.set_nodelay(true);
            // The per-API timeout bounds connecting; keep the connector's own out of the way.
            http.set_connect_timeout(None);
            http.set_keepalive(Some(Duration::from_secs(60)));
            // The TLS layer below decides by scheme.
            http.enforce_http(false);
        });
        let http1_connector = HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http.clone());
        // Only `h2` is offered in ALPN: a gRPC backend that cannot speak HTTP/2 fails the
        // handshake instead of silently getting HTTP/1.1 (which has no trailers for gRPC).
        let http2_connector = HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        // Shorter than common backend keep-alive timeouts (Node's is 5 s), so a pooled
        // connection is rarely reused just as the backend closes it (that race is a 502).
        let http1 = Http1Pool::new(http1_connector.clone(), Duration::from_secs(4), 256);
        // One multiplexed connection per backend address; pings find a dead one before a
        // request does. h2c is spoken with prior knowledge (gRPC backends expect it).
        let http2 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build(http2_connector);
        Self {
            http1,
            http2,
            upgrade_connector: http1_connector,
            guard,
        }
    }

    /// Sends `request` over the pooled client of `protocol` and waits for the response head, at
    /// most `timeout`. `api`: the API id, for the log of a refused address.
    pub(crate) async fn send(
        &self,
        request: Request<UpstreamBody>,
        protocol: UpstreamProtocol,
        timeout: Duration,
        api: &str,
    ) -> Result<Response<BackendBody>, SendError> {
        let exchange = async {
            match protocol {
                UpstreamProtocol::Http1 => self.http1.send(request).await.map_err(|e| match e {
                    PoolError::Connect(error) => CallFailure::Connect(error),
                    PoolError::Exchange(error) => CallFailure::Exchange(Box::new(error)),
                }),
                UpstreamProtocol::Http2 => match self.http2.request(request).await {
                    Ok(response) => Ok(response.map(BackendBody::unpooled)),
                    Err(error) if error.is_connect() => Err(CallFailure::Connect(Box::new(error))),
                    Err(error) => Err(CallFailure::Exchange(Box::new(error))),
                },
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_elapsed) => Err(SendError {
                kind: GatewayErrorKind::BackendTimeout,
                not_sent: false,
                refused: false,
            }),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(CallFailure::Connect(error))) => {
                if let Some(refused) = refusal_in(&*error) {
                    self.guard.warn(api, "request", refused);
                    return Err(SendError::refused());
                }
                tracing::debug!(error = %DisplayChain(&*error), "backend connect failed");
                // Nothing of the request left the gateway (the body is only polled on an
                // established connection): safe to send elsewhere.
                Err(SendError {
                    kind: GatewayErrorKind::BackendUnavailable,
                    not_sent: true,
                    refused: false,
                })
            }
            Ok(Err(CallFailure::Exchange(error))) => Err(SendError {
                kind: classify_exchange(&*error),
                not_sent: false,
                refused: false,
            }),
        }
    }

    /// Sends an upgrade request (`Connection: upgrade`) over a new HTTP/1.1 connection of its
    /// own and waits for the response head, at most `timeout`. On a 101 the connection is
    /// handed over by `hyper::upgrade::on(&mut response)`; on any other answer it closes after
    /// the body. Only a failure to connect counts as not sent.
    pub(crate) async fn send_upgrade(
        &self,
        request: Request<UpstreamBody>,
        timeout: Duration,
        api: &str,
    ) -> Result<Response<BackendBody>, SendError> {
        match tokio::time::timeout(timeout, self.upgrade_exchange(request, api)).await {
            Err(_elapsed) => Err(SendError {
                kind: GatewayErrorKind::BackendTimeout,
                not_sent: false,
                refused: false,
            }),
            Ok(result) => result.map(|response| response.map(BackendBody::unpooled)),
        }
    }

    async fn upgrade_exchange(
        &self,
        mut request: Request<UpstreamBody>,
        api: &str,
    ) -> Result<Response<Incoming>, SendError> {
        let not_sent = |error: &(dyn StdError + 'static)| {
            if let Some(refused) = refusal_in(error) {
                self.guard.warn(api, "websocket upgrade", refused);
                return SendError::refused();
            }
            tracing::debug!(error = %DisplayChain(error), "backend connect failed");
            SendError {
                kind: GatewayErrorKind::BackendUnavailable,
                not_sent: true,
                refused: false,
            }
        };
        let mut connector = self.upgrade_connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| not_sent(&*e))?;
        let io = connector
            .call(request.uri().clone())
            .await
            .map_err(|e| not_sent(&*e))?;
        // Writes nothing: the request has not left the gateway yet.
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| not_sent(&e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(error = %DisplayChain(&error), "backend upgrade connection failed");
            }
        });
        // The connection is already to the backend: the request line takes the origin form.
        *request.uri_mut() = origin_form(request.uri());
        sender
            .send_request(request)
            .await
            .map_err(|error| SendError {
                kind: classify_exchange(&error),
                not_sent: false,
                refused: false,
            })
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// Maps a failed exchange to the answer: the body limit tripping (413) and a malformed or broken
/// client body (400) are the client's fault; everything else means the backend broke the
/// exchange (502).
fn classify_exchange(error: &(dyn StdError + 'static)) -> GatewayErrorKind {
    if caused_by::<LengthLimitError>(error) {
        return GatewayErrorKind::BodyTooLarge;
    }
    if caused_by::<ClientBodyError>(error) {
        tracing::debug!(error = %DisplayChain(error), "client request body failed");
        return GatewayErrorKind::BadRequest("malformed or incomplete request body".into());
    }
    tracing::debug!(error = %DisplayChain(error), "backend exchange failed");
    GatewayErrorKind::BackendUnavailable
}

/// Whether `E` is anywhere in the error's source chain.
fn caused_by<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Displays an error with its sources: `a: b: c`.
pub(crate) struct DisplayChain<'a>(pub &'a (dyn StdError + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] LengthLimitError);

    #[tokio::test]
    async fn finds_causes_in_the_chain() {
        use http_body_util::BodyExt;
        // LengthLimitError has no public constructor; get one from a body over its limit.
        let err = Limited::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"xx")),
            1,
        )
        .collect()
        .await
        .unwrap_err();
        let inner = err.downcast::<LengthLimitError>().unwrap();
        let outer = Outer(*inner);
        assert!(caused_by::<LengthLimitError>(&outer));
        assert!(!caused_by::<std::io::Error>(&outer));
        assert_eq!(
            DisplayChain(&outer).to_string(),
            "outer: length limit exceeded"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("send failed")]
    struct Exchange(#[source] Box<dyn StdError + Send + Sync>);

    #[test]
    fn a_broken_client_body_is_the_clients_fault() {
        let broken = std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid chunk size");
        let error = Exchange(Box::new(ClientBodyError(Box::new(broken))));
        assert!(matches!(
            classify_exchange(&error),
            GatewayErrorKind::BadRequest(_)
        ));
        let backend = Exchange(Box::new(std::io::Error::other("connection reset")));
        assert!(matches!(
            classify_exchange(&backend),
            GatewayErrorKind::BackendUnavailable
        ));
    }
}
