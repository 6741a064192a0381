//! Keep-alive HTTP/1.1 connections to backends, in idle lists sharded by worker thread.
//!
//! hyper-util's pooled client keeps one map of idle connections behind a mutex, clones its
//! connector for every checkout and spawns a task per response to wait for the connection to
//! become idle again. Measured by `cargo xtask bench instructions` (BENCHMARKS.md), that
//! bookkeeping was a visible share of a proxied request. Here:
//!
//! - each pool has one shard of idle lists per worker thread (up to `MAX_SHARDS`), each behind
//!   its own mutex: a thread gives connections back to, and takes them from, its home shard, so
//!   its lock is uncontended; when its home shard has none for a backend it takes one from
//!   another shard that is not locked at that moment (`try_lock`). Purely thread-local lists
//!   drifted: a work-stealing runtime moves connection tasks between threads, connections piled
//!   up on one thread while another kept dialling new ones (a soak test saw ~120 connections
//!   for 4 callers; `concurrent_callers_share_a_bounded_set_of_backend_connections`);
//! - lists are keyed by scheme and authority and looked up by `&str`, so a request hashes its
//!   authority once and allocates nothing (`http::uri::Authority`'s own `Hash` feeds the hasher
//!   byte by byte);
//! - a connection goes back to an idle list when its response body has been read to the end
//!   ([`BackendBody`]), without a task; a body dropped early drops the connection (it still has
//!   unread bytes of that response, so it can never carry another). A checkout takes the newest
//!   idle connection, and waits (briefly) for one whose connection task has not yet taken in the
//!   end of its last response;
//! - a connection idle for longer than `idle_timeout` is never reused (it would race the
//!   backend's own keep-alive timeout: that race is a 502), and is closed when its list is next
//!   used, or at the next sweep of its shard. A pool that stops proxying altogether keeps its
//!   idle connections open until the backends close them (bounded by `max_idle_per_key` per
//!   backend and shard); hyper-util's pool ran a timer task for that;
//! - a request on a reused connection that the backend had closed before anything was written is
//!   sent again on a new connection, as hyper-util does.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
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

/// Which idle list a connection belongs to: whether it is TLS, and the backend's authority (a
/// cheap clone of the request URI's bytes).
#[derive(Clone)]
struct Key {
    https: bool,
    authority: Authority,
}

/// An idle connection and since when it has been idle.
struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

/// The most shards a pool has (threads beyond share them).
const MAX_SHARDS: usize = 64;

static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot, given out in order of first use; its home shard is the slot modulo
    /// the shard count.
    static THREAD_SLOT: usize = NEXT_THREAD_SLOT.fetch_add(1, Ordering::Relaxed);
}

/// One shard's idle lists, by authority.
#[derive(Default)]
struct Shard {
    http: HashMap<Box<str>, Vec<Idle>>,
    https: HashMap<Box<str>, Vec<Idle>>,
    /// Returns since the last sweep of this shard.
    returns: u32,
}

impl Shard {
    fn lists(&mut self, https: bool) -> &mut HashMap<Box<str>, Vec<Idle>> {
        if https {
            &mut self.https
        } else {
            &mut self.http
        }
    }

    /// The newest open, unexpired connection of `key`; expired and closed ones met on the way
    /// are dropped.
    fn take(&mut self, key: &Key, idle_timeout: Duration) -> Option<SendRequest<UpstreamBody>> {
        let list = self.lists(key.https).get_mut(key.authority.as_str())?;
        let now = Instant::now();
        while let Some(candidate) = list.pop() {
            if now.duration_since(candidate.since) < idle_timeout && !candidate.sender.is_closed() {
                return Some(candidate.sender);
            }
        }
        None
    }

    fn put(&mut self, key: &Key, sender: SendRequest<UpstreamBody>, limits: (usize, Duration)) {
        let (max_idle, idle_timeout) = limits;
        self.returns += 1;
        if self.returns >= SWEEP_EVERY {
            self.returns = 0;
            self.sweep(idle_timeout);
        }
        let lists = self.lists(key.https);
        if !lists.contains_key(key.authority.as_str()) {
            lists.insert(key.authority.as_str().into(), Vec::new());
        }
        let Some(list) = lists.get_mut(key.authority.as_str()) else {
            return;
        };
        // Oldest first: close those that expired (usually none) before adding this one.
        let now = Instant::now();
        let expired = list
            .iter()
            .take_while(|c| now.duration_since(c.since) >= idle_timeout)
            .count();
        list.drain(..expired);
        if list.len() < max_idle {
            list.push(Idle { sender, since: now });
        }
    }

    /// Drops closed and expired connections, then empty lists (backends that left the
    /// snapshot).
    fn sweep(&mut self, idle_timeout: Duration) {
        let now = Instant::now();
        for lists in [&mut self.http, &mut self.https] {
            lists.retain(|_, list| {
                list.retain(|c| {
                    !c.sender.is_closed() && now.duration_since(c.since) < idle_timeout
                });
                !list.is_empty()
            });
        }
    }
}

/// A pool's shards.
struct Shards(Box<[Mutex<Shard>]>);

impl Shards {
    fn new() -> Self {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_SHARDS);
        Self((0..n).map(|_| Mutex::new(Shard::default())).collect())
    }

    fn home(&self) -> usize {
        THREAD_SLOT.with(|slot| *slot) % self.0.len().max(1)
    }
}

/// A shard's lock; a poisoned one is still a valid cache of connections.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every this many returns to a shard, its lists drop their closed and expired connections.
const SWEEP_EVERY: u32 = 4096;

/// How long a checkout waits for an idle connection that is not ready yet before dropping it.
const READY_WAIT: Duration = Duration::from_millis(20);

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
    shards: Arc<Shards>,
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
            shards: Arc::new(Shards::new()),
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
            https: *scheme == Scheme::HTTPS,
            authority: authority.clone(),
        };
        *request.uri_mut() = origin_form(&uri);
        if let Some(mut sender) = self.checkout(&key).await {
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
                    shards: Arc::clone(&self.shards),
                    limits: (max_idle, idle_timeout),
                }),
            };
            // A response without a body (204, 304, `Content-Length: 0`, an answer to HEAD) may
            // never be polled: its connection goes back now.
            body.give_back_if_ended();
            body
        })
    }

    /// The most recently used idle connection that is still open, from this thread's shard or
    /// else from another that is not locked just now. One that is not ready yet (its
    /// connection task has not taken in the end of its last response: a matter of a scheduler
    /// turn) is waited for, briefly.
    async fn checkout(&self, key: &Key) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let mut candidate = self.take_idle(key)?;
            if candidate.is_ready() {
                return Some(candidate);
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, candidate.ready()).await {
                return Some(candidate);
            }
            // Closed or stuck: dropped; try the next one.
        }
    }

    fn take_idle(&self, key: &Key) -> Option<SendRequest<UpstreamBody>> {
        let shards = &self.shards.0;
        let home = self.shards.home();
        if let Some(sender) = shards
            .get(home)
            .and_then(|s| lock(s).take(key, self.idle_timeout))
        {
            return Some(sender);
        }
        (1..shards.len()).find_map(|k| {
            let shard = shards.get((home + k) % shards.len())?;
            let mut guard = match shard.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return None,
            };
            guard.take(key, self.idle_timeout)
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
    shards: Arc<Shards>,
    /// Idle connections kept per backend and shard, and how long one may stay idle.
    limits: (usize, Duration),
}

impl Returning {
    fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        if let Some(shard) = self.shards.0.get(self.shards.home()) {
            lock(shard).put(&self.key, self.sender, self.limits);
        }
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

    fn give_back_if_ended(&mut self) {
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
            // After the last frame of a body of known length, the client side stops polling
            // (and drops this body): the connection goes back now, and its connection task takes
            // in the end of the message a moment later (a checkout waits for that).
            Poll::Ready(Some(Ok(_))) => this.give_back_if_ended(),
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
