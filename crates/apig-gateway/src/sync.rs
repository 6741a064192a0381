//! The discovery client: keeps one `Discovery.Stream` open to the control plane, applies the
//! snapshots it sends, and answers each with ACK or NACK.
//!
//! Per session: connect, send `Hello` (instance, node, the applied epoch and version), then for
//! every snapshot decide ([`evaluate`]):
//!
//! - another instance's snapshot → NACK;
//! - same epoch, older version → NACK; same epoch and version → ACK without re-applying when the
//!   content is identical (a re-send after reconnect), NACK when it differs (the control plane
//!   reused a version number);
//! - a snapshot with no API while the applied one has some, from a *different* epoch → NACK: a
//!   control plane whose data directory was wiped or replaced must not blank the fleet. Within
//!   one epoch, deleting everything is a normal publish and is applied. To make a replica accept
//!   the empty state of a new epoch on purpose, stop it, delete its cache file
//!   (`<cache_dir>/snapshot-<instance>.bin`) and start it again;
//! - a snapshot that does not compile or prepare → NACK with the reason;
//! - otherwise: swap it in, write the cache, ACK.
//!
//! Usage reports (`usage`) ride the same stream: on connect the report the previous stream left
//! unacknowledged is sent again, then each `UsageAck` or new reading lets the next one go.
//!
//! A `ReplicaShare` (this replica's index among the instance's `count` connected replicas) sets
//! the part of every cluster-wide throttle limit this replica enforces (`state::Shared::set_share`);
//! until one arrives the replica assumes it is alone, and it keeps the last one across
//! reconnects. An impossible share (`index >= count`) is ignored.
//!
//! After a NACK the replica keeps serving what it had. The session reconnects forever with
//! exponential backoff (100 ms doubling to 5 s, plus up to 25 % jitter), reset after a healthy
//! session (one that delivered a snapshot or stayed open for 10 s). An `Unauthenticated` answer
//! (wrong cluster token) is logged as such and retried like any other failure.

use std::sync::Arc;
use std::time::Duration;

use apig_policy::Share;
use apig_proto::cluster::TlsMaterial;
use apig_proto::discovery_client::DiscoveryClient;
use apig_proto::{
    control_message, replica_message, Ack, Hello, Nack, ReplicaMessage, ReplicaShare, Snapshot,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::cache::{self, SnapshotCache};
use crate::proxy::DisplayChain;
use crate::runtime::Runtime;
use crate::state::Shared;

/// Largest snapshot accepted from the control plane.
const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the sync loop needs besides the shared state.
#[derive(Debug, Clone)]
pub(crate) struct SyncSettings {
    pub endpoint: Endpoint,
    /// `Bearer <cluster token>`, checked at start-up.
    pub authorization: AsciiMetadataValue,
    pub cache: SnapshotCache,
}

/// What to do with a received snapshot.
pub(crate) enum Decision {
    /// Swap this in, cache `encoded`, ACK.
    Apply {
        runtime: Box<Runtime>,
        encoded: Vec<u8>,
        /// The decoded snapshot, no longer needed: freed after the swap, with the cache write.
        spent: Box<Snapshot>,
    },
    /// Already serving exactly this: ACK.
    AlreadyApplied,
    /// NACK with this reason; keep serving what we have.
    Reject(String),
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("control plane refused this replica ({0})")]
    Refused(String),
    #[error("stream failed: {0}")]
    Stream(Status),
    #[error("outbound stream closed")]
    Closed,
}

// === impl SyncSettings ===

impl SyncSettings {
    /// `tls` makes the link mutual TLS (the URL must then be `https://`); a plaintext link to a
    /// non-loopback host needs `allow_plaintext`.
    pub(crate) fn new(
        control_plane: &str,
        cluster_token: &str,
        tls: Option<&TlsMaterial>,
        allow_plaintext: bool,
        cache: SnapshotCache,
    ) -> Result<Self, String> {
        let mut endpoint = Endpoint::from_shared(control_plane.to_owned())
            .map_err(|e| format!("control plane URL {control_plane:?}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let uri = endpoint.uri().clone();
        match (uri.scheme_str(), tls) {
            (Some("https"), Some(tls)) => {
                let config = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
                endpoint = endpoint
                    .tls_config(config)
                    .map_err(|e| format!("cluster TLS: {}", DisplayChain(&e)))?;
            }
            (Some("https"), None) => {
                return Err(format!(
                    "control plane URL {control_plane:?} is https: give the cluster CA and this \
                     replica's certificate and key (--cluster-ca, --cluster-cert, --cluster-key)"
                ))
            }
            (Some("http"), Some(_)) => {
                return Err(format!(
                    "cluster TLS is configured but the control plane URL {control_plane:?} is \
                     http: use https://"
                ))
            }
            (Some("http"), None) if !allow_plaintext && !is_loopback_host(uri.host()) => {
                return Err(format!(
                    "control plane URL {control_plane:?} is plaintext to a non-loopback host: \
                     use https:// with mutual TLS (--cluster-ca, --cluster-cert, --cluster-key), \
                     or allow plaintext explicitly (--allow-plaintext-cluster)"
                ))
            }
            (Some("http"), None) => {}
            _ => {
                return Err(format!(
                    "control plane URL {control_plane:?}: the scheme must be http or https"
                ))
            }
        }
        if cluster_token.is_empty() {
            return Err("the cluster token is empty".into());
        }
        let authorization = AsciiMetadataValue::try_from(format!("Bearer {cluster_token}"))
            .map_err(|_| "the cluster token must be printable ASCII".to_owned())?;
        Ok(Self {
            endpoint,
            authorization,
            cache,
        })
    }
}

/// `localhost` or a loopback IP address (IPv6 in brackets, as URIs write it).
fn is_loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Decides what to do with `snapshot` given what is applied. Pure apart from CPU work
/// (encoding, compiling), so it runs on a blocking thread.
pub(crate) fn evaluate(
    current: Option<&Runtime>,
    instance_id: &str,
    snapshot: Snapshot,
) -> Decision {
    if snapshot.instance_id != instance_id {
        return Decision::Reject(format!(
            "snapshot is for instance {:?}, this replica serves {instance_id:?}",
            snapshot.instance_id
        ));
    }
    let encoded = snapshot.encode_to_vec();
    let digest = cache::digest(&encoded);
    if let Some(current) = current {
        if current.epoch() == snapshot.epoch {
            if snapshot.version < current.version() {
                return Decision::Reject(format!(
                    "version {} is older than the applied version {}",
                    snapshot.version,
                    current.version()
                ));
            }
            if snapshot.version == current.version() {
                return if digest == current.digest {
                    Decision::AlreadyApplied
                } else {
                    Decision::Reject(format!(
                        "version {} is already applied with different content",
                        snapshot.version
                    ))
                };
            }
        } else if snapshot.apis.is_empty() && !current.apis.is_empty() {
            return Decision::Reject(format!(
                "refusing an empty snapshot from a new control-plane epoch {:?} while serving {} \
                 APIs from epoch {:?} (delete the replica's cache file to accept it)",
                snapshot.epoch,
                current.apis.len(),
                current.epoch()
            ));
        }
    }
    match Runtime::prepare(&snapshot, digest) {
        Ok(runtime) => Decision::Apply {
            runtime: Box::new(runtime),
            encoded,
            spent: Box::new(snapshot),
        },
        Err(e) => Decision::Reject(e.to_string()),
    }
}

/// Loads the cache file at start-up; a usable one is applied at once (the replica is ready).
pub(crate) async fn load_cache(shared: &Shared, cache: &SnapshotCache) {
    let loader = cache.clone();
    let loaded = match tokio::task::spawn_blocking(move || loader.load()).await {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%error, "snapshot cache loader failed");
            return;
        }
    };
    let cached = match loaded {
        Ok(Some(cached)) => cached,
        Ok(None) => {
            tracing::info!(path = %cache.path().display(), "no snapshot cache; not ready until the control plane sends a snapshot");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "ignoring the snapshot cache; not ready until the control plane sends a snapshot");
            return;
        }
    };
    if cached.snapshot.instance_id != shared.instance_id {
        tracing::error!(
            path = %cache.path().display(),
            cached = %cached.snapshot.instance_id,
            expected = %shared.instance_id,
            "ignoring a snapshot cache of another instance"
        );
        return;
    }
    let (epoch, version) = (cached.snapshot.epoch.clone(), cached.snapshot.version);
    let prepared =
        tokio::task::spawn_blocking(move || Runtime::prepare(&cached.snapshot, cached.digest))
            .await;
    match prepared {
        Ok(Ok(runtime)) => {
            let apis = runtime.apis.len();
            shared.install(Arc::new(runtime));
            tracing::info!(%epoch, version, apis, "serving the cached snapshot");
        }
        Ok(Err(error)) => {
            tracing::error!(%epoch, version, %error, "the cached snapshot does not compile; ignoring it");
        }
        Err(error) => tracing::error!(%error, "snapshot cache preparation failed"),
    }
}

/// How far one session got, to decide whether the next attempt starts from a short delay.
#[derive(Debug, Default)]
struct Progress {
    opened_at: Option<tokio::time::Instant>,
    snapshots: u64,
}

// === impl Progress ===

impl Progress {
    /// A session that delivered a snapshot or stayed open a while was healthy; one that opened
    /// and failed at once (a control plane closing every stream, say) must not reset the
    /// backoff, or the replica would reconnect ten times a second.
    fn was_healthy(&self) -> bool {
        self.snapshots > 0
            || self
                .opened_at
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(10))
    }
}

/// Runs the sync loop forever (the caller aborts it at shutdown).
pub(crate) async fn run(shared: Arc<Shared>, settings: SyncSettings) {
    let mut backoff = Backoff::new();
    let mut failures: u32 = 0;
    // Failures are logged at warn on the first and then every 20th attempt, at debug otherwise.
    let mut next_loud: u32 = 1;
    loop {
        let mut progress = Progress::default();
        let result = session(&shared, &settings, &mut progress).await;
        if shared.is_connected() {
            shared.set_connected(false);
            tracing::info!("disconnected from the control plane");
        }
        if progress.was_healthy() {
            backoff.reset();
            failures = 0;
            next_loud = 1;
        }
        failures = failures.saturating_add(1);
        let loud = failures >= next_loud;
        if loud {
            next_loud = failures.saturating_add(20);
        }
        match &result {
            Ok(()) => tracing::warn!("control plane closed the discovery stream; reconnecting"),
            Err(SessionError::Refused(message)) => tracing::error!(
                %message,
                attempts = failures,
                "control plane refused this replica; check APIG_CLUSTER_TOKEN and, with mutual \
                 TLS, the instance named by the replica certificate; retrying"
            ),
            Err(error) if loud => {
                tracing::warn!(%error, attempts = failures, "discovery stream failed; retrying")
            }
            Err(error) => {
                tracing::debug!(%error, attempts = failures, "discovery stream failed; retrying")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn session(
    shared: &Shared,
    settings: &SyncSettings,
    progress: &mut Progress,
) -> Result<(), SessionError> {
    let channel = settings
        .endpoint
        .connect()
        .await
        .map_err(|e| SessionError::Connect(DisplayChain(&e).to_string()))?;
    let mut client = DiscoveryClient::new(channel)
        .max_decoding_message_size(MAX_SNAPSHOT_BYTES)
        .max_encoding_message_size(MAX_SNAPSHOT_BYTES);

    let (tx, rx) = mpsc::channel::<ReplicaMessage>(8);
    let current = shared.runtime();
    let hello = Hello {
        instance_id: shared.instance_id.clone(),
        node_id: shared.node_id.clone(),
        applied_epoch: current
            .as_ref()
            .map(|r| r.epoch().to_owned())
            .unwrap_or_default(),
        applied_version: current.as_ref().map_or(0, |r| r.version()),
        gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    drop(current);
    tx.send(ReplicaMessage {
        msg: Some(replica_message::Msg::Hello(hello)),
    })
    .await
    .map_err(|_| SessionError::Closed)?;

    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", settings.authorization.clone());
    let response = client.stream(request).await.map_err(stream_error)?;
    let mut inbound = response.into_inner();
    progress.opened_at = Some(tokio::time::Instant::now());
    shared.set_connected(true);
    tracing::info!(
        instance_id = %shared.instance_id,
        node_id = %shared.node_id,
        "connected to the control plane"
    );

    // The report the previous stream left unacknowledged goes first, unchanged.
    if let Some(report) = shared.usage.on_connect() {
        send_usage(&tx, report).await?;
    }
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message.map_err(stream_error)? else {
                    return Ok(());
                };
                match message.msg {
                    Some(control_message::Msg::Snapshot(snapshot)) => {
                        progress.snapshots += 1;
                        let reply = apply(shared, &settings.cache, snapshot).await;
                        tx.send(reply).await.map_err(|_| SessionError::Closed)?;
                    }
                    Some(control_message::Msg::Share(share)) => apply_share(shared, &share),
                    // The report in flight is through: the next may go.
                    Some(control_message::Msg::UsageAck(ack))
                        if shared.usage.acknowledged(ack.seq) =>
                    {
                        if let Some(report) = shared.usage.next_report() {
                            send_usage(&tx, report).await?;
                        }
                    }
                    Some(control_message::Msg::UsageAck(_)) => {}
                    None => {}
                }
            }
            () = shared.usage.ready.notified() => {
                if let Some(report) = shared.usage.next_report() {
                    send_usage(&tx, report).await?;
                }
            }
        }
    }
}

async fn send_usage(
    tx: &mpsc::Sender<ReplicaMessage>,
    report: apig_proto::UsageReport,
) -> Result<(), SessionError> {
    tracing::debug!(
        seq = report.seq,
        entries = report.entries.len(),
        "sending usage report"
    );
    tx.send(ReplicaMessage {
        msg: Some(replica_message::Msg::Usage(report)),
    })
    .await
    .map_err(|_| SessionError::Closed)
}

/// Takes this replica's new share of cluster-wide limits. An impossible one (`index >= count`)
/// is logged and ignored. The share is kept across reconnects (the last word of the control
/// plane about the cluster), and counters whose effective limit changes start afresh.
fn apply_share(shared: &Shared, share: &ReplicaShare) {
    let Some(new) = Share::new(share.index, share.count) else {
        tracing::warn!(
            index = share.index,
            count = share.count,
            "ignoring an impossible replica share; keeping the current one"
        );
        return;
    };
    if shared.set_share(new) {
        tracing::info!(
            index = new.index(),
            count = new.count(),
            "replica share of cluster-wide limits changed"
        );
    }
}

fn stream_error(status: Status) -> SessionError {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            SessionError::Refused(status.message().to_owned())
        }
        _ => SessionError::Stream(status),
    }
}

/// Applies one snapshot and returns the answer for the control plane.
async fn apply(shared: &Shared, cache: &SnapshotCache, snapshot: Snapshot) -> ReplicaMessage {
    let version = snapshot.version;
    let epoch = snapshot.epoch.clone();
    let current = shared.runtime();
    let instance_id = shared.instance_id.clone();
    let started = std::time::Instant::now();
    let decision =
        tokio::task::spawn_blocking(move || evaluate(current.as_deref(), &instance_id, snapshot))
            .await
            .unwrap_or_else(|e| Decision::Reject(format!("internal error while preparing: {e}")));

    let ack = ReplicaMessage {
        msg: Some(replica_message::Msg::Ack(Ack { version })),
    };
    match decision {
        Decision::Apply {
            runtime,
            encoded,
            spent,
        } => {
            let apis = runtime.apis.len();
            let replaced = shared.install(Arc::from(runtime));
            shared
                .metrics
                .snapshot_apply
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(%epoch, version, apis, "applied snapshot");
            let cache = cache.clone();
            match tokio::task::spawn_blocking(move || {
                let stored = cache.store(&encoded);
                drop(spent);
                drop(replaced);
                stored
            })
            .await
            {
                Ok(Ok(())) => {}
                // The snapshot is applied and served; only a restart without the control plane
                // would miss it. Say so loudly, but do not NACK what is running.
                Ok(Err(error)) => {
                    tracing::error!(%error, version, "cannot write the snapshot cache")
                }
                Err(error) => {
                    tracing::error!(%error, version, "snapshot cache writer failed")
                }
            }
            ack
        }
        Decision::AlreadyApplied => {
            tracing::debug!(%epoch, version, "snapshot already applied");
            ack
        }
        Decision::Reject(reason) => {
            tracing::warn!(%epoch, version, %reason, "rejected snapshot; keeping the applied one");
            ReplicaMessage {
                msg: Some(replica_message::Msg::Nack(Nack { version, reason })),
            }
        }
    }
}

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
}

// === impl Backoff ===

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    /// The delay before the next attempt: the current step plus up to 25 % jitter.
    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let jitter_ms = u64::try_from(base.as_millis() / 4).unwrap_or(0);
        let jitter = if jitter_ms == 0 {
            0
        } else {
            rand::random::<u64>() % (jitter_ms + 1)
        };
        base + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests;
