//! Process settings of a gateway replica: where the control plane is, what to listen on, and the
//! bounds every request is held to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::run`] needs to start one gateway replica.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// gRPC URL of the control plane's discovery service, e.g. `http://127.0.0.1:9090`.
    pub control_plane: String,
    /// The gateway instance whose published snapshots this replica serves.
    pub instance_id: String,
    /// Stable name of this replica in the control plane's status; default: host name (or `gw`)
    /// plus a random suffix.
    pub node_id: Option<String>,
    /// Data-plane HTTP listener (port 0 picks a free port; the bound address is printed).
    pub listen: SocketAddr,
    /// HTTPS listener (certificates of bound domains, chosen by SNI); none when `None`.
    pub tls_listen: Option<SocketAddr>,
    /// Admin listener for `GET /health` and `GET /ready`; none when `None`.
    pub admin_listen: Option<SocketAddr>,
    /// Directory of the applied-snapshot cache file and of the credential quota counters file
    /// (created 0700 when missing). One replica per directory.
    pub cache_dir: PathBuf,
    /// Shared secret sent as `authorization: Bearer <token>` on the discovery stream.
    pub cluster_token: String,
    /// Mutual TLS to the control plane (`https://` URL): the cluster CA and this replica's
    /// certificate, whose identity names the instance (see [`apig_proto::cluster`]).
    pub cluster_tls: Option<apig_proto::cluster::TlsMaterial>,
    /// Connect in plaintext to a control plane that is not on loopback.
    pub allow_plaintext_cluster: bool,
    /// PEM CA certificates trusted for HTTPS backends besides the Mozilla roots.
    pub backend_ca_file: Option<PathBuf>,
    /// Where the access log goes; `None`: no access log.
    pub access_log: Option<crate::AccessLogSink>,
    /// Bounds on requests and connections.
    pub limits: Limits,
}

/// Bounds on what one client may make the gateway hold, and the process-wide traffic settings
/// (default throttling, trusted proxies). Defaults follow APIG (§11 of the semantics digest) where
/// APIG documents a number, and common edge-proxy practice elsewhere.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted (APIG: 12 MiB); larger → 413 `APIG.0201`.
    pub max_body_bytes: u64,
    /// Largest body of an `SDK-HMAC-SHA256` signed request whose body hash is signed: such a
    /// body is read whole before the backend is called, to check the signature (APIG caps
    /// app-signed bodies at 12 MB). The smaller of this and `max_body_bytes` applies; larger →
    /// 413 `APIG.0201`.
    pub max_signed_body_bytes: u64,
    /// How long a client may take to send a body the gateway reads whole (signed requests);
    /// longer → 408 `APIG.0201`.
    pub body_read_timeout: Duration,
    /// Longest request target (path and query) accepted (APIG: 32 KiB); longer → 414 `APIG.0201`.
    pub max_uri_bytes: usize,
    /// Largest total size of all request header names and values (APIG: 128 KiB); larger →
    /// 494 `APIG.0201`.
    pub max_header_bytes: usize,
    /// Largest single request header, name plus value (APIG: 32 KiB); larger → 494 `APIG.0201`.
    pub max_header_line_bytes: usize,
    /// Most request headers accepted on HTTP/1 (hyper answers 431 beyond it).
    pub max_headers: usize,
    /// Most client connections open at once; connections beyond it are closed on accept.
    pub max_connections: usize,
    /// Deadline for a client to send a complete request head (also closes idle HTTP/1
    /// keep-alive connections after this long).
    pub header_read_timeout: Duration,
    /// Most concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
    /// How long a write to a client may stay stalled (the client reads nothing) before the
    /// connection is closed, like nginx's `send_timeout`; restarts at every byte written.
    pub send_timeout: Duration,
    /// Calls per second each API without a throttling policy may take, all environments together
    /// (APIG's gateway parameter `ratelimit_api_limits`, default 200); 0: unlimited. Like every
    /// limit it is split among the replicas (`ReplicaShare`).
    pub default_api_limit_per_sec: u64,
    /// Peers (IP addresses, CIDR blocks or `a-b` ranges) trusted to report the client address
    /// in `X-Forwarded-For` (or `X-Real-IP`). Empty (the default): the client is always the TCP
    /// peer and those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Backend networks (IP, CIDR or `a-b` range) the gateway refuses to connect to, on top of
    /// the always-refused set (unspecified, link-local and cloud metadata, multicast,
    /// broadcast; see `apig_policy::backend_address`). Checked on the resolved address of
    /// every backend connection; a refused one answers `502 APIG.0201`.
    pub deny_backend_networks: Vec<String>,
    /// Backend networks allowed even when denied, the always-refused set included (for a
    /// service that really is on a link-local address; opening one opens it to every API).
    pub allow_backend_networks: Vec<String>,
    /// Most keys (client IPs, apps, projects) one keyed throttle counter holds. A new key
    /// beyond it is refused with 429 until idle keys are cleaned up.
    pub max_limiter_keys: usize,
    /// Most keys all keyed throttle counters hold together (about 50-100 bytes each).
    pub max_limiter_keys_total: usize,
    /// How often idle keys (whose bucket is full again) are dropped from throttle counters.
    pub limiter_cleanup_interval: Duration,
    /// How often the credential quota counters are saved to the cache directory when they
    /// changed (they are also saved at graceful shutdown). A crash loses at most this much
    /// counting.
    pub quota_save_interval: Duration,
    /// How often the usage counters are read and reported to the control plane (its
    /// statistics APIs); also at every minute boundary, so at least once a minute.
    pub usage_report_interval: Duration,
    /// Accept `X-Apig-AppCode` on requests that did not arrive over TLS. APIG accepts AppCodes
    /// (bearer secrets) over HTTPS only, and so does this gateway unless this is set (local
    /// development over loopback). A request from a trusted proxy that says
    /// `X-Forwarded-Proto: https` counts as arrived over TLS.
    pub allow_app_code_over_http: bool,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 12 * 1024 * 1024,
            max_signed_body_bytes: 12 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(60),
            max_uri_bytes: 32 * 1024,
            max_header_bytes: 128 * 1024,
            max_header_line_bytes: 32 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(20),
            max_concurrent_streams: 100,
            shutdown_grace: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            default_api_limit_per_sec: 200,
            trusted_proxies: Vec::new(),
            deny_backend_networks: Vec::new(),
            allow_backend_networks: Vec::new(),
            max_limiter_keys: 100_000,
            max_limiter_keys_total: 1_000_000,
            limiter_cleanup_interval: Duration::from_secs(10),
            quota_save_interval: Duration::from_secs(5),
            usage_report_interval: Duration::from_secs(5),
            allow_app_code_over_http: false,
        }
    }
}

impl Limits {
    /// The read buffer hyper may grow to for one request head. It is larger than our own URI and
    /// header limits so that the pipeline, not hyper, answers those with APIG error bodies; heads
    /// beyond it get hyper's bare 431.
    pub(crate) fn head_buffer_bytes(&self) -> usize {
        self.max_uri_bytes
            .saturating_mul(2)
            .saturating_add(self.max_header_bytes)
            .saturating_add(16 * 1024)
            .max(8 * 1024)
    }
}
