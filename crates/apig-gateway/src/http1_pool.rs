//! Keep-alive HTTP/1.1 connections to backends, pooled per worker thread.
//!
//! hyper-util's pooled client keeps one map of idle connections behind a mutex, clones its
//! connector for every checkout and spawns a task per response to wait for the connection to
//! become idle again. Measured by `cargo xtask bench peers` (BENCHMARKS.md), that bookkeeping is
//! a visible share of a proxied request. Here:
//!
//! - each worker thread has its own idle lists (a `thread_local!`, no lock, no contention), keyed
//!   by pool, scheme and authority; a connection checked out on one thread may come back to
//!   another's list, which is fine: connections are `Send`, and the lists only bound reuse;
//! - a connection goes back to the idle list when its response body has been read to the end
//!   ([`BackendBody`]), without a task; a body dropped early drops the connection (it still has
//!   unread bytes of that response, so it can never carry another);
//! - a connection idle for longer than `idle_timeout` is never reused (it would race the
//!   backend's own keep-alive timeout: that race is a 502), and is closed when its list is next
//!   used, or at the next sweep of its thread's lists. A thread that stops proxying altogether
//!   keeps its idle connections open until the backends close them (bounded by
//!   `max_idle_per_key` per backend and thread); hyper-util's pool ran a timer task for that.
//! - a request on a reused connection that the backend had closed before anything was written is
//!   sent again on a new connection, as hyper-util does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use tower_service::Service;

use crate::egress::GuardedConnector;
use crate::proxy::UpstreamBody;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// Which idle list a connection belongs to: its pool, whether it is TLS, and the backend's
/// authority (a cheap clone of the request URI's bytes).
#[derive(Clone)]
struct Key {
    pool: u64,
    https: bool,
    authority: Authority,
}

/// An idle connection and since when it has been idle.
struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<IdleLists> = RefCell::new(IdleLists::default());
}

#[derive(Default)]
struct IdleLists {
    /// By pool: usually one per process.
    pools: Vec<PoolLists>,
    /// Returns since the last sweep of every list.
    returns: u32,
}

/// One pool's idle lists on one thread, by authority. Looked up by `&str`, so a request hashes
/// its authority once and allocates nothing.
struct PoolLists {
    pool: u64,
    http: HashMap<Box<str>, Vec<Idle>>,
    https: HashMap<Box<str>, Vec<Idle>>,
}

impl PoolLists {
    fn by_authority(&mut self, https: bool) -> &mut HashMap<Box<str>, Vec<Idle>> {
        if https {
            &mut self.https
        } else {
            &mut self.http
        }
    }
}

impl IdleLists {
    fn list(&mut self, key: &Key) -> Option<&mut Vec<Idle>> {
        let pool = self.pools.iter_mut().find(|p| p.pool == key.pool)?;
        pool.by_authority(key.https).get_mut(key.authority.as_str())
    }

    /// The list of `key`, made when missing.
    fn list_or_new(&mut self, key: &Key) -> Option<&mut Vec<Idle>> {
        if !self.pools.iter().any(|p| p.pool == key.pool) {
            self.pools.push(PoolLists {
                pool: key.pool,
                http: HashMap::new(),
                https: HashMap::new(),
            });
        }
        let lists = self
            .pools
            .iter_mut()
            .find(|p| p.pool == key.pool)?
            .by_authority(key.https);
        if !lists.contains_key(key.authority.as_str()) {
            lists.insert(key.authority.as_str().into(), Vec::new());
        }
        lists.get_mut(key.authority.as_str())
    }

    /// Drops closed and expired connections, then empty lists.
    fn sweep(&mut self, idle_timeout: Duration) {
        let now = Instant::now();
        for pool in &mut self.pools {
            for lists in [&mut pool.http, &mut pool.https] {
                lists.retain(|_, list| {
                    list.retain(|c| {
                        !c.sender.is_closed() && now.duration_since(c.since) < idle_timeout
                    });
                    !list.is_empty()
                });
            }
        }
    }
}

/// Every this many returns on a thread, every list of that thread drops its closed and expired
/// connections, and empty lists go (backends that left the snapshot).
const SWEEP_EVERY: u32 = 4096;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Why a backend call failed.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// No connection could be made (or its handshake failed): nothing of the request was sent.
    Connect(BoxError),
    /// The exchange on an established connection failed.
    Exchange(hyper::Error),
}

/// The HTTP/1.1 client of `proxy::Upstream` for HTTP and HTTPS backends.
#[derive(Clone)]
pub(crate) struct Http1Pool {
    /// Tells this pool's connections from another gateway's in the same process (tests).
    id: u64,
    connector: HttpsConnector<GuardedConnector>,
    idle_timeout: Duration,
    max_idle_per_key: usize,
}

impl Http1Pool {
    pub(crate) fn new(
        connector: HttpsConnector<GuardedConnector>,
        idle_timeout: Duration,
        max_idle_per_key: usize,
    ) -> Self {
        Self {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            connector,
            idle_timeout,
            max_idle_per_key,
        }
    }

    /// Sends `request` (absolute URI) and returns the response head; the body gives the
    /// connection back when read to the end.
    pub(crate) async fn send(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<BackendBody>, PoolError> {
        let uri = request.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(PoolError::Connect(
                "backend URI without scheme or host".into(),
            ));
        };
        let key = Key {
            pool: self.id,
            https: *scheme == Scheme::HTTPS,
            authority: authority.clone(),
        };
        *request.uri_mut() = origin_form(&uri);
        if let Some(mut sender) = self.checkout(&key) {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.pooled(response, sender, key)),
                Err(mut failed) => match failed.take_message() {
                    // The backend closed the idle connection before the request was written:
                    // nothing reached it, so a new connection may carry the request.
                    Some(unsent) => request = unsent,
                    None => return Err(PoolError::Exchange(failed.into_error())),
                },
            }
        }
        let mut sender = self.connect(uri).await?;
        match sender.send_request(request).await {
            Ok(response) => Ok(self.pooled(response, sender, key)),
            Err(error) => Err(PoolError::Exchange(error)),
        }
    }

    fn pooled(
        &self,
        response: Response<Incoming>,
        sender: SendRequest<UpstreamBody>,
        key: Key,
    ) -> Response<BackendBody> {
        let (max_idle, idle_timeout) = (self.max_idle_per_key, self.idle_timeout);
        response.map(|body| {
            let mut body = BackendBody {
                body,
                connection: Some(Returning {
                    sender,
                    key,
                    max_idle,
                    idle_timeout,
                }),
            };
            // A body known to be empty (204, 304, `Content-Length: 0`) is done already.
            body.give_back_if_done();
            body
        })
    }

    /// The most recently used idle connection that is still open and ready, dropping those
    /// expired or closed on the way.
    fn checkout(&self, key: &Key) -> Option<SendRequest<UpstreamBody>> {
        IDLE.with(|idle| {
            let mut idle = idle.try_borrow_mut().ok()?;
            let list = idle.list(key)?;
            let now = Instant::now();
            // Newest first; one still finishing its last response (rare) is put at the back.
            for _ in 0..list.len() {
                let candidate = list.pop()?;
                if now.duration_since(candidate.since) >= self.idle_timeout
                    || candidate.sender.is_closed()
                {
                    continue;
                }
                if candidate.sender.is_ready() {
                    return Some(candidate.sender);
                }
                list.insert(0, candidate);
            }
            None
        })
    }

    async fn connect(&self, uri: Uri) -> Result<SendRequest<UpstreamBody>, PoolError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(PoolError::Connect)?;
        let io = connector.call(uri).await.map_err(PoolError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| PoolError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %crate::proxy::DisplayChain(&error), "backend connection failed");
            }
        });
        Ok(sender)
    }
}

/// `/path?query` of an absolute URI: the request line of a connection already to the backend.
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// A connection to give back once its response is read.
struct Returning {
    sender: SendRequest<UpstreamBody>,
    key: Key,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Returning {
    fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        IDLE.with(|idle| {
            let Ok(mut idle) = idle.try_borrow_mut() else {
                return;
            };
            idle.returns += 1;
            if idle.returns >= SWEEP_EVERY {
                idle.returns = 0;
                idle.sweep(self.idle_timeout);
            }
            let Some(list) = idle.list_or_new(&self.key) else {
                return;
            };
            // Oldest first: close those that expired (usually none) before adding this one.
            let now = Instant::now();
            let expired = list
                .iter()
                .take_while(|c| now.duration_since(c.since) >= self.idle_timeout)
                .count();
            list.drain(..expired);
            if list.len() < self.max_idle {
                list.push(Idle {
                    sender: self.sender,
                    since: now,
                });
            }
        });
    }
}

/// A backend's response body; an HTTP/1.1 connection goes back to its pool once this body has
/// been read to the end.
pub struct BackendBody {
    body: Incoming,
    connection: Option<Returning>,
}

impl BackendBody {
    /// A body whose connection is not pooled (HTTP/2, upgrades).
    pub(crate) fn unpooled(body: Incoming) -> Self {
        Self {
            body,
            connection: None,
        }
    }

    fn give_back_if_done(&mut self) {
        if self.body.is_end_stream() {
            if let Some(connection) = self.connection.take() {
                connection.give_back();
            }
        }
    }
}

impl std::fmt::Debug for BackendBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendBody")
            .field("pooled", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(connection) = this.connection.take() {
                    connection.give_back();
                }
            }
            // A broken body leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => this.connection = None,
            Poll::Ready(Some(Ok(_))) => this.give_back_if_done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
