//! The data plane of the APIG-compatible gateway: one replica serving one gateway instance.
//!
//! It subscribes to its instance's snapshots over gRPC (`sync`), keeps the last good one on disk
//! (`cache`), compiles each into an immutable runtime (`runtime`) swapped in with `arc-swap`, and
//! serves HTTP/1.1 and h2c (`server`) through the request pipeline (`pipeline`): canonical path,
//! host, stage, route, the client address (`client_ip`: the peer, or what a trusted proxy
//! reports), the API's IP ACL, authentication and authorization (`auth`: APP signatures and
//! AppCodes, IAM tokens and AK/SK signatures, DOMAIN_ID and DOMAIN ACLs, authorized apps, app IP ACLs),
//! throttling (`apig_policy::throttle` counters kept in `state`, split among replicas by the
//! control plane's `ReplicaShare`), credential quotas (`apig_policy::quota` counters, split the
//! same way and saved across restarts by `quota_file`), limits, parameters, then a MOCK answer or
//! the mapped
//! (`mapping`) call to an HTTP backend (`proxy`), a gRPC backend over HTTP/2, or a WebSocket
//! tunnel opened after the backend's 101 (`tunnel`). Every gateway-made answer is an APIG error body
//! (`respond`). An admin listener answers `/health` and `/ready` (`admin`).
//!
//! Channels (`channel`), backend policies (`backend_policy`), signing (`backend_sign`),
//! functions (`function`), orchestration (`orchestration`), the HTTPS listener's certificates
//! (`tls`), metrics (`metrics`) and the access log (`access_log`) have their own modules.
//!
//! Not here (yet): custom authorizers (AUTHORIZER APIs fail closed with 401), CORS. This crate
//! never imports a control-plane crate.
//!
//! # Module map
//!
//! | module | what it is |
//! |---|---|
//! | `config` | [`GatewayConfig`] and [`Limits`] |
//! | `error` | [`GatewayError`]: start-up failures |
//! | `sync` | the discovery stream client: HELLO, snapshot evaluation, ACK/NACK, backoff |
//! | `cache` | the applied snapshot on disk (checksummed, atomic, 0600) |
//! | `quota_file` | the credential quota counters on disk (same framing and discipline), saved by a background task |
//! | `runtime` | an applied snapshot: route table, indexed credentials and pre-parsed APIs (ACLs, throttling policies) |
//! | `client_ip` | the client address: the TCP peer, or `X-Forwarded-For` from trusted proxies |
//! | `auth` | APP and IAM authentication, authorized apps, app ACLs; the caller identity |
//! | `state` | what requests and the sync loop share: the arc-swap slot (runtime + throttle and quota counters), the replica share |
//! | `server` | listeners: accept loop, connection cap, hyper bounds, graceful drain |
//! | `pipeline` | the request path, in order |
//! | `params` | request parameters: required, defaults, validation |
//! | `query` | query string parsing and editing |
//! | `mapping` | the backend request: path template, parameters, headers |
//! | `egress` | the backend address policy at connect time: the resolver and connector every backend connection goes through |
//! | `proxy` | the backend clients (pooled HTTP/1.1, pooled HTTP/2 for gRPC, one connection per upgrade), timeouts and error classification |
//! | `tunnel` | WebSocket upgrades: the 101 and the spliced connections, with an idle timeout |
//! | `mock` | MOCK backends |
//! | `respond` | error kind → status, `APIG.xxxx` code, message, JSON body |
//! | `body` | the response body type |
//! | `context` | request id, peer and local address, arrival time |
//! | `usage` | per-API usage counters (lock-free on the request path) and the acknowledged usage reports the sync stream ships |
//! | `admin` | `/health` and `/ready` |
//! | `otel` | the request span for OpenTelemetry and the backend's `traceparent` (off unless the binary exports) |

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// Nothing a request (or a snapshot) does may panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing
    )
)]

mod access_log;
mod admin;
mod auth;
mod authorizer;
mod backend_policy;
mod backend_sign;
mod backend_tls;
#[doc(hidden)]
pub mod bench_support;
mod body;
mod cache;
mod channel;
mod client_ip;
mod config;
mod context;
mod egress;
mod error;
mod function;
mod h2_flood;
mod header_names;
mod http1_pool;
mod mapping;
mod metric_slots;
mod metrics;
mod mock;
mod orchestration;
pub mod otel;
mod params;
mod pipeline;
mod proxy;
mod query;
mod quota_file;
mod respond;
mod runtime;
mod send_timeout;
mod server;
mod state;
mod sync;
mod tls;
mod tunnel;
mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apig_policy::IpAcl;
use tokio::net::TcpListener;
use tokio::sync::watch;

use access_log::AccessLog;
/// What a replica does with snapshot bytes before it swaps them in: decode, then compile the
/// runtime (routes, credentials, policies, channels). `Err` carries the reason it would NACK.
/// CPU only, no I/O; public for the fuzz targets (`apig-fuzz`) and for tools.
pub fn check_snapshot(encoded: &[u8]) -> std::result::Result<(), String> {
    use prost::Message;
    let snapshot = apig_proto::Snapshot::decode(encoded).map_err(|e| format!("decode: {e}"))?;
    runtime::Runtime::prepare(&snapshot, cache::digest(encoded))
        .map(drop)
        .map_err(|e| e.to_string())
}

pub use access_log::AccessLogSink;
/// The backend address policy ([`Limits::deny_backend_networks`], [`Limits::allow_backend_networks`]);
/// the binary checks the lists with it at start-up.
pub use apig_policy::{BackendAddressPolicy, BackendNetworkError};
pub use config::{GatewayConfig, Limits};
pub use error::{GatewayError, Result};

use cache::SnapshotCache;
use quota_file::{QuotaFile, QuotaSaver};
use server::ListenerSettings;
use state::Shared;
use sync::SyncSettings;

/// How long a stopping replica waits for the control plane to acknowledge its last usage.
const USAGE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one gateway replica until `shutdown` completes, then drains in-flight requests (at most
/// `limits.shutdown_grace`) and returns.
///
/// On start it serves the cached snapshot, if a valid one exists, while it connects to the
/// control plane. When each listener is bound it prints one line to stdout:
/// `apig: listening gateway http://ADDR` and `apig: listening gateway-admin http://ADDR`.
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Gateway::bind(config).await?.serve(shutdown).await
}

/// A gateway replica whose listeners are bound but not yet serving: [`run`] in two steps, for
/// callers (tests, `apig up`) that need the bound addresses before serving.
pub struct Gateway {
    config: GatewayConfig,
    shared: Arc<Shared>,
    sync_settings: SyncSettings,
    quota_saver: Arc<QuotaSaver>,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    /// The HTTPS listener, when asked for.
    tls_listener: Option<TcpListener>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
}

// === impl Gateway ===

impl Gateway {
    /// Checks the configuration, loads the saved credential quota counters and the snapshot
    /// cache (a valid one makes the replica ready at once) and binds the listeners, printing one
    /// `apig: listening ...` line for each.
    pub async fn bind(config: GatewayConfig) -> Result<Self> {
        if config.instance_id.is_empty() {
            return Err(GatewayError::Config("the instance id is empty".into()));
        }
        let cache = SnapshotCache::new(&config.cache_dir, &config.instance_id);
        let sync_settings = SyncSettings::new(
            &config.control_plane,
            &config.cluster_token,
            config.cluster_tls.as_ref(),
            config.allow_plaintext_cluster,
            cache.clone(),
        )
        .map_err(GatewayError::Config)?;
        let node_id = config.node_id.clone().unwrap_or_else(default_node_id);
        let trusted_proxies = trusted_proxies(&config.limits.trusted_proxies)?;
        let address_policy = apig_policy::BackendAddressPolicy::parse(
            &config.limits.deny_backend_networks,
            &config.limits.allow_backend_networks,
        )
        .map_err(|e| GatewayError::Config(e.to_string()))?;
        let backend_tls = backend_tls::client_config(config.backend_ca_file.as_deref())
            .map_err(|e| GatewayError::Config(format!("backend CA file: {e}")))?;
        let metrics = Arc::new(
            metrics::GatewayMetrics::new()
                .map_err(|e| GatewayError::Config(format!("metrics: {e}")))?,
        );
        let access_log = AccessLog::start(config.access_log.as_ref(), Arc::clone(&metrics))
            .await
            .map_err(|e| GatewayError::Config(format!("access log: {e}")))?;
        let shared = Arc::new(Shared::new(
            config.limits.clone(),
            trusted_proxies,
            address_policy,
            config.instance_id.clone(),
            node_id.clone(),
            backend_tls,
            metrics,
            access_log,
        ));
        tracing::info!(
            instance_id = %config.instance_id,
            %node_id,
            control_plane = %config.control_plane,
            "starting gateway"
        );

        // Before the cache is applied: its counters are the first built.
        let quota_saver = Arc::new(load_quotas(&shared, &config).await);
        sync::load_cache(&shared, &cache).await;

        let listener = bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        println!("apig: listening gateway http://{local_addr}");
        let (admin_listener, admin_addr) = match config.admin_listen {
            Some(addr) => {
                let l = bind(addr).await?;
                let bound = l.local_addr()?;
                println!("apig: listening gateway-admin http://{bound}");
                (Some(l), Some(bound))
            }
            None => (None, None),
        };
        let tls_listener = match config.tls_listen {
            Some(addr) => {
                let l = bind(addr).await?;
                println!("apig: listening gateway-tls https://{}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        Ok(Self {
            config,
            shared,
            sync_settings,
            quota_saver,
            listener,
            admin_listener,
            tls_listener,
            local_addr,
            admin_addr,
        })
    }

    /// The bound data-plane address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound admin address, if an admin listener was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Connects to the control plane and serves until `shutdown` completes, then drains and
    /// saves the credential quota counters.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self {
            config,
            shared,
            sync_settings,
            quota_saver,
            listener,
            admin_listener,
            tls_listener,
            ..
        } = self;

        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        let sync_task = tokio::spawn(sync::run(Arc::clone(&shared), sync_settings));
        let cleanup_task = tokio::spawn(clean_up_limiters(
            Arc::clone(&shared),
            config.limits.limiter_cleanup_interval,
        ));
        let usage_task = tokio::spawn(usage::run_sampler(
            Arc::clone(&shared.usage),
            Arc::clone(&shared.metrics),
            config.limits.usage_report_interval,
        ));
        let quota_task = tokio::spawn(save_quotas_periodically(
            Arc::clone(&shared),
            Arc::clone(&quota_saver),
            config.limits.quota_save_interval,
        ));

        let admin_task = admin_listener.map(|l| {
            let shared = Arc::clone(&shared);
            tokio::spawn(server::serve(
                l,
                ListenerSettings::admin(&config.limits, shared.metrics.h2_flood_closed.clone()),
                stop_rx.clone(),
                None,
                move |_conn, request| admin::handle(Arc::clone(&shared), request),
            ))
        });
        let tls_task = match tls_listener {
            Some(l) => {
                let acceptor = tls::TlsAcceptor::new(Arc::clone(&shared))
                    .map_err(|e| GatewayError::Config(format!("TLS: {e}")))?;
                let tls_shared = Arc::clone(&shared);
                Some(tokio::spawn(server::serve(
                    l,
                    ListenerSettings::data_plane(
                        &config.limits,
                        shared.metrics.h2_flood_closed.clone(),
                    )
                    .named("gateway-tls"),
                    stop_rx.clone(),
                    Some(acceptor),
                    move |conn, request| pipeline::handle(Arc::clone(&tls_shared), conn, request),
                )))
            }
            None => None,
        };

        let data_shared = Arc::clone(&shared);
        server::serve(
            listener,
            ListenerSettings::data_plane(&config.limits, shared.metrics.h2_flood_closed.clone()),
            stop_rx,
            None,
            move |conn, request| pipeline::handle(Arc::clone(&data_shared), conn, request),
        )
        .await;
        if let Some(task) = tls_task {
            let _ = task.await;
        }

        usage_task.abort();
        // After the drain: the last calls' usage goes to the control plane while the stream is
        // still up.
        usage::flush(&shared.usage, shared.is_connected(), USAGE_FLUSH_TIMEOUT).await;
        sync_task.abort();
        cleanup_task.abort();
        quota_task.abort();
        // After the drain, so every admitted call is in; serialised with a periodic save that
        // may still be writing.
        save_quotas(Arc::clone(&shared), quota_saver).await;
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("instance_id", &self.config.instance_id)
            .field("local_addr", &self.local_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

/// Parses `Limits::trusted_proxies`; `None` when empty.
fn trusted_proxies(values: &[String]) -> Result<Option<IpAcl>> {
    if values.is_empty() {
        return Ok(None);
    }
    IpAcl::parse(true, values)
        .map(Some)
        .map_err(|e| GatewayError::Config(format!("trusted proxies: {e}")))
}

/// Drops idle keys of the throttle counters every `every`, for the replica's life.
async fn clean_up_limiters(shared: Arc<Shared>, every: std::time::Duration) {
    let every = every.max(std::time::Duration::from_millis(10));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused_before = 0;
    loop {
        ticker.tick().await;
        // Walking large maps is CPU work: off the request threads.
        let cleaner = Arc::clone(&shared);
        let Ok(keys) = tokio::task::spawn_blocking(move || cleaner.clean_up_limiters()).await
        else {
            continue;
        };
        let refused = shared.refused_limiter_keys();
        if refused > refused_before {
            tracing::warn!(
                refused = refused - refused_before,
                keys,
                "throttle counters are full: new clients were refused (429) since the last cleanup"
            );
            refused_before = refused;
        }
    }
}

/// Reads the quota file and hands its counts to the first counters built. A missing file means
/// nothing was saved; an unreadable or corrupt one is ignored with a warning (counters start from
/// 0) and overwritten by the first save.
async fn load_quotas(shared: &Shared, config: &GatewayConfig) -> QuotaSaver {
    let file = QuotaFile::new(&config.cache_dir, &config.instance_id);
    let loader = file.clone();
    let loaded = tokio::task::spawn_blocking(move || loader.load()).await;
    let on_disk = match loaded {
        Ok(Ok(Some(saved))) => {
            tracing::info!(
                path = %file.path().display(),
                counters = saved.len(),
                "read the saved credential quota counters"
            );
            shared.restore_quotas(saved.iter().cloned());
            Some(saved)
        }
        Ok(Ok(None)) => Some(Vec::new()),
        Ok(Err(error)) => {
            tracing::warn!(%error, "ignoring the saved credential quota counters; they start from 0");
            None
        }
        Err(error) => {
            tracing::error!(%error, "credential quota loader failed");
            None
        }
    };
    QuotaSaver::new(file, on_disk)
}

/// Saves the credential quota counters every `every` when they changed, for the replica's life.
async fn save_quotas_periodically(shared: Arc<Shared>, saver: Arc<QuotaSaver>, every: Duration) {
    let every = every.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        save_quotas(Arc::clone(&shared), Arc::clone(&saver)).await;
    }
}

/// One save, on a blocking thread; failures are logged (the counters keep working in memory).
async fn save_quotas(shared: Arc<Shared>, saver: Arc<QuotaSaver>) {
    let result = tokio::task::spawn_blocking(move || {
        let now = context::unix_millis(std::time::SystemTime::now());
        let result = saver.save(shared.quota_usage(now), now);
        (result, saver)
    })
    .await;
    match result {
        Ok((Ok(true), saver)) => {
            tracing::debug!(path = %saver.path().display(), "saved the credential quota counters")
        }
        Ok((Ok(false), _)) => {}
        Ok((Err(error), _)) => {
            tracing::error!(%error, "cannot save the credential quota counters")
        }
        Err(error) => tracing::error!(%error, "credential quota saver failed"),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })
}

/// Host name (or `gw`) plus a random suffix, so two replicas on one host differ.
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gw".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}
