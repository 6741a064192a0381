//! The HTTP listeners: accept loop, connection cap, HTTP/1.1 and h2c (hyper-util's auto
//! builder), bounds, and graceful shutdown.
//!
//! - Connections beyond `max_connections` are closed right after accept (fast feedback; a full
//!   kernel backlog would leave clients hanging instead). A connection upgraded to a WebSocket
//!   tunnel (`tunnel`) keeps its place until the tunnel closes.
//! - HTTP/1 connections are served with upgrades enabled, so the pipeline can hand an upgraded
//!   connection to a tunnel once the backend answered 101.
//! - HTTP/1: `header_read_timeout` bounds reading a request head and idle keep-alive time;
//!   `max_headers` and a head buffer bound what a client makes us hold before the pipeline runs.
//! - HTTP/2: concurrent streams, header list size, keep-alive pings, pending-reset budget.
//! - Shutdown: stop accepting, ask every connection to finish (HTTP/1 closes after the in-flight
//!   response, HTTP/2 sends GOAWAY), wait up to `shutdown_grace`, then close what remains.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::IntCounter;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::h2_flood::{ControlFrameBudget, FloodGuard};
use crate::send_timeout::SendTimeout;
use crate::tls::TlsAcceptor;

/// Longest a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

use crate::body::ResponseBody;
use crate::config::Limits;
use crate::pipeline::ConnInfo;

/// A client connection's place under `max_connections`, shared by its requests. A WebSocket
/// tunnel keeps a clone: once upgraded, the connection is no longer hyper's, but it is still an
/// open client connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnPermit {
    _held: Arc<OwnedSemaphorePermit>,
}

/// How one listener is run.
pub(crate) struct ListenerSettings {
    /// For logs: `gateway`, `gateway-tls` or `gateway-admin`.
    pub name: &'static str,
    pub builder: auto::Builder<TokioExecutor>,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub guards: ConnGuards,
}

/// The I/O guards put around every client connection's stream.
#[derive(Clone)]
pub(crate) struct ConnGuards {
    /// Client connections whose writes stay stalled this long are closed.
    pub send_timeout: Duration,
    /// HTTP/2 control frames a client connection may send (`h2_flood`).
    pub control_frames: ControlFrameBudget,
    /// Counts connections closed for going over `control_frames`.
    pub flood_closed: IntCounter,
}

impl ConnGuards {
    fn new(limits: &Limits, flood_closed: IntCounter) -> Self {
        Self {
            send_timeout: limits.send_timeout,
            control_frames: ControlFrameBudget::default(),
            flood_closed,
        }
    }

    fn wrap<S>(&self, stream: S) -> FloodGuard<SendTimeout<S>> {
        FloodGuard::new(
            SendTimeout::new(stream, self.send_timeout),
            self.control_frames,
            self.flood_closed.clone(),
        )
    }
}

// === impl ListenerSettings ===

impl ListenerSettings {
    /// The same settings under another name (for logs).
    pub(crate) fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The data-plane listener: HTTP/1.1 and h2c with the configured bounds.
    pub(crate) fn data_plane(limits: &Limits, flood_closed: IntCounter) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let head = limits.head_buffer_bytes();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(head)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(50))
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        Self {
            name: "gateway",
            builder,
            max_connections: limits.max_connections,
            shutdown_grace: limits.shutdown_grace,
            guards: ConnGuards::new(limits, flood_closed),
        }
    }

    /// The admin listener: HTTP/1.1 only, small bounds, few connections.
    pub(crate) fn admin(limits: &Limits, flood_closed: IntCounter) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_headers(64)
            .max_buf_size(16 * 1024);
        Self {
            name: "gateway-admin",
            builder,
            max_connections: 256,
            shutdown_grace: limits.shutdown_grace.min(Duration::from_secs(5)),
            // HTTP/1 only: the flood guard turns itself off at the first byte.
            guards: ConnGuards::new(limits, flood_closed),
        }
    }
}

/// Accepts connections on `listener` and serves them with `handler` until `shutdown` flips,
/// then drains.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    handler: F,
) where
    F: Fn(ConnInfo, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static,
{
    let name = settings.name;
    let listen_addr = listener
        .local_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;

    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    refused += 1;
                    if refused == 1 || refused.is_power_of_two() {
                        tracing::warn!(
                            listener = name,
                            %peer,
                            max = settings.max_connections,
                            refused,
                            "connection limit reached; closing new connection"
                        );
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let permit = ConnPermit {
                    _held: Arc::new(permit),
                };
                let mut conn = ConnInfo {
                    peer,
                    local: stream.local_addr().unwrap_or(listen_addr),
                    permit: permit.clone(),
                    tls: tls.is_some(),
                    client_verified: None,
                };
                let handler = handler.clone();
                match &tls {
                    None => {
                        let service = service_fn(move |request| handler(conn.clone(), request));
                        let connection = settings
                            .builder
                            .serve_connection_with_upgrades(
                                TokioIo::new(settings.guards.wrap(stream)),
                                service,
                            )
                            .into_owned();
                        let connection = graceful.watch(connection);
                        connections.spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
                            }
                            // A tunnel made from this connection holds its own clone.
                            drop(permit);
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, bounded, so a slow
                        // client never stalls the accept loop.
                        let (acceptor, builder, watcher) =
                            (acceptor.clone(), settings.builder.clone(), graceful.watcher());
                        let guards = settings.guards.clone();
                        connections.spawn(async move {
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                            let stream = match handshake.await {
                                Ok(Ok((stream, verified))) => {
                                    conn.client_verified = verified;
                                    stream
                                }
                                Ok(Err(error)) => {
                                    tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let service = service_fn(move |request| handler(conn.clone(), request));
                            let connection = builder
                                .serve_connection_with_upgrades(
                                    TokioIo::new(guards.wrap(stream)),
                                    service,
                                )
                                .into_owned();
                            if let Err(error) = watcher.watch(connection).await {
                                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
                            }
                            drop(permit);
                        });
                    }
                }
            }
        }
    }

    drop(listener);
    let open = graceful.count();
    tracing::info!(
        listener = name,
        open,
        "stopped accepting; draining connections"
    );
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            open = connections.len(),
            grace = ?settings.shutdown_grace,
            "shutdown grace elapsed; closing remaining connections"
        );
    }
    connections.shutdown().await;
}
