//! `apig`: the control plane, a gateway replica, or both in one process.
//!
//! Only flag parsing lives here; the planes are libraries (`apig-control`, `apig-gateway`).

use std::net::SocketAddr;
use std::path::PathBuf;

mod certs;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apig",
    version,
    about = "A self-hosted API gateway that speaks Huawei Cloud APIG"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the management API (APIG V2) and the gRPC discovery service.
    Control(ControlArgs),
    /// Run a gateway replica that serves the published APIs of one instance.
    Gateway(GatewayArgs),
    /// Run a control plane and one gateway in one process, with embedded defaults.
    Up(UpArgs),
    /// Write a verified, checksummed backup of a stopped control plane's store (a running one
    /// answers the same file at `GET /v2/{project_id}/apigw/backup`, administrator only).
    Backup(BackupArgs),
    /// Load a backup into a new or empty data dir, after verifying the whole file.
    Restore(RestoreArgs),
    /// Create the cluster CA and the certificates of the control plane ↔ replica mutual TLS.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
}

/// Mutual TLS on the replica link. The control plane presents `--cluster-cert` and requires
/// replica certificates signed by `--cluster-ca`; a replica presents its own `--cluster-cert` and
/// requires the control plane's to be signed by the same CA (`apig certs` makes all of them).
#[derive(Args)]
struct ClusterTlsArgs {
    /// PEM file of the cluster CA certificate.
    #[arg(long, env = "APIG_CLUSTER_CA", requires_all = ["cluster_cert", "cluster_key"])]
    cluster_ca: Option<PathBuf>,
    /// PEM file of this process's certificate (chain) on the replica link.
    #[arg(long, env = "APIG_CLUSTER_CERT", requires_all = ["cluster_ca", "cluster_key"])]
    cluster_cert: Option<PathBuf>,
    /// PEM file of the private key of `--cluster-cert`.
    #[arg(long, env = "APIG_CLUSTER_KEY", requires_all = ["cluster_ca", "cluster_cert"])]
    cluster_key: Option<PathBuf>,
    /// Allow the replica link in plaintext off loopback (only the cluster token protects it).
    #[arg(
        long,
        env = "APIG_ALLOW_PLAINTEXT_CLUSTER",
        conflicts_with = "cluster_ca"
    )]
    allow_plaintext_cluster: bool,
}

impl ClusterTlsArgs {
    /// Reads and checks the three files, naming every problem.
    fn load(&self) -> anyhow::Result<Option<apig_proto::cluster::TlsMaterial>> {
        let (Some(ca), Some(cert), Some(key)) =
            (&self.cluster_ca, &self.cluster_cert, &self.cluster_key)
        else {
            return Ok(None);
        };
        let files = apig_proto::cluster::TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        files.load().map(Some).map_err(|errors| {
            let listed: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
            anyhow::anyhow!("cluster TLS files:\n{}", listed.join("\n"))
        })
    }
}

#[derive(Args)]
struct BackupArgs {
    /// The data dir of the (stopped) control plane.
    #[arg(long, env = "APIG_DATA_DIR")]
    data_dir: PathBuf,
    /// The backup file to write (owner-only, replaced atomically).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct RestoreArgs {
    /// The data dir to restore into; its store must be absent or empty.
    #[arg(long, env = "APIG_DATA_DIR")]
    data_dir: PathBuf,
    /// The backup file (from `apig backup` or `GET .../backup`).
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
}

#[derive(Args)]
struct ControlArgs {
    /// Where the store, the generated credentials and the cluster token live.
    #[arg(long, env = "APIG_DATA_DIR")]
    data_dir: PathBuf,
    /// Management API (APIG V2 REST) listener.
    #[arg(long, default_value = "127.0.0.1:9080")]
    mgmt_listen: SocketAddr,
    /// gRPC listener that gateway replicas connect to.
    #[arg(long, default_value = "127.0.0.1:9090")]
    grpc_listen: SocketAddr,
    #[command(flatten)]
    common: CommonControl,
    #[command(flatten)]
    cluster_tls: ClusterTlsArgs,
}

#[derive(Args)]
struct CommonControl {
    /// Shared secret replicas must present; generated and stored under the data dir if unset.
    #[arg(long, env = "APIG_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// Groups get `<group id>.<suffix>` as generated sub-domain (`*.localhost` resolves to
    /// loopback in curl and browsers, so the default works without DNS).
    #[arg(long, default_value = "apig.localhost")]
    domain_suffix: String,
    /// The control plane's admin listener (`/health`, `/ready`, Prometheus `/metrics`); off
    /// unless given, e.g. `127.0.0.1:9091`.
    #[arg(long, env = "APIG_CONTROL_ADMIN_LISTEN")]
    control_admin_listen: Option<SocketAddr>,
}

#[derive(Args)]
struct GatewayArgs {
    /// gRPC URL of the control plane: `https://` with mutual TLS (`--cluster-*`), `http://` on
    /// loopback (or with `--allow-plaintext-cluster`).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    control_plane: String,
    /// The instance whose published APIs this replica serves.
    #[arg(long, env = "APIG_INSTANCE_ID")]
    instance_id: String,
    /// Data-plane HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Health/readiness listener (`GET /health`, `GET /ready`).
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Where the last applied snapshot is cached, so a restart serves without the control plane.
    #[arg(long)]
    cache_dir: PathBuf,
    /// Shared secret of the cluster (see `apig control`).
    #[arg(long, env = "APIG_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: String,
    /// Name of this replica in the control plane's replica list (default: host name + random).
    #[arg(long)]
    node_id: Option<String>,
    #[command(flatten)]
    cluster_tls: ClusterTlsArgs,
    #[command(flatten)]
    traffic: TrafficArgs,
}

#[derive(Args)]
struct TrafficArgs {
    /// Calls per second allowed to each API that has no throttling policy (APIG's
    /// `ratelimit_api_limits`), split among the instance's replicas; 0 = unlimited.
    #[arg(long, default_value_t = 200)]
    default_api_rate_limit: u64,
    /// A proxy in front of the gateway whose `X-Forwarded-For` is believed (IP, CIDR or a-b
    /// range; repeatable). Without one the client IP is always the TCP peer.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<String>,
    /// PEM file of CA certificates trusted for HTTPS backends and health checks, besides the
    /// Mozilla roots (backend certificates are always verified).
    #[arg(long, env = "APIG_BACKEND_CA_FILE")]
    backend_ca_file: Option<PathBuf>,
    /// HTTPS listener: bound domains' certificates, chosen by SNI; off unless given.
    #[arg(long, env = "APIG_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// Access log: one JSON line per request to `stdout`, `stderr` or a file path; `off`.
    #[arg(long, env = "APIG_ACCESS_LOG", default_value = "off")]
    access_log: String,
    /// How often (milliseconds) the gateway reports its per-API usage counters to the control
    /// plane, which answers the statistics APIs from them (also at every minute boundary).
    #[arg(long, env = "APIG_USAGE_REPORT_INTERVAL_MS", default_value_t = 5000)]
    usage_report_interval_ms: u64,
}

impl TrafficArgs {
    fn limits(&self) -> apig_gateway::Limits {
        apig_gateway::Limits {
            default_api_limit_per_sec: self.default_api_rate_limit,
            trusted_proxies: self.trusted_proxies.clone(),
            usage_report_interval: std::time::Duration::from_millis(
                self.usage_report_interval_ms.max(10),
            ),
            ..apig_gateway::Limits::default()
        }
    }
}

#[derive(Args)]
struct UpArgs {
    /// Where the store, credentials and the gateway's snapshot cache live.
    #[arg(long, env = "APIG_DATA_DIR", default_value = "./apig-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9080")]
    mgmt_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9090")]
    grpc_listen: SocketAddr,
    /// Data-plane HTTP listener of the embedded gateway.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Health/readiness listener of the embedded gateway.
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    #[command(flatten)]
    common: CommonControl,
    #[command(flatten)]
    traffic: TrafficArgs,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

fn control_config(
    data_dir: PathBuf,
    mgmt: SocketAddr,
    grpc: SocketAddr,
    common: CommonControl,
    cluster_tls: Option<apig_proto::cluster::TlsMaterial>,
    allow_plaintext_grpc: bool,
) -> apig_control::ControlConfig {
    apig_control::ControlConfig {
        data_dir,
        mgmt_listen: mgmt,
        grpc_listen: grpc,
        cluster_token: common.cluster_token,
        domain_suffix: common.domain_suffix,
        admin_listen: common.control_admin_listen,
        seed: apig_control::Seed::from_env(),
        cluster_tls,
        allow_plaintext_grpc,
    }
}

async fn control(args: ControlArgs) -> anyhow::Result<()> {
    let config = control_config(
        args.data_dir,
        args.mgmt_listen,
        args.grpc_listen,
        args.common,
        args.cluster_tls.load()?,
        args.cluster_tls.allow_plaintext_cluster,
    );
    let running = apig_control::start(config, shutdown_signal())
        .await
        .context("starting the control plane")?;
    running.wait().await.context("control plane")?;
    Ok(())
}

async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let config = apig_gateway::GatewayConfig {
        control_plane: args.control_plane,
        instance_id: args.instance_id,
        node_id: args.node_id,
        listen: args.listen,
        admin_listen: Some(args.admin_listen),
        cache_dir: args.cache_dir,
        cluster_token: args.cluster_token,
        cluster_tls: args.cluster_tls.load()?,
        allow_plaintext_cluster: args.cluster_tls.allow_plaintext_cluster,
        limits: args.traffic.limits(),
        access_log: apig_gateway::AccessLogSink::parse(&args.traffic.access_log),
        tls_listen: args.traffic.tls_listen,
        backend_ca_file: args.traffic.backend_ca_file,
    };
    apig_gateway::run(config, shutdown_signal())
        .await
        .context("gateway")?;
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let config = control_config(
        args.data_dir.clone(),
        args.mgmt_listen,
        args.grpc_listen,
        args.common,
        None,
        false,
    );
    let control = apig_control::start(config, stopped(stop_rx.clone()))
        .await
        .context("starting the control plane")?;
    let gateway = apig_gateway::GatewayConfig {
        control_plane: format!("http://{}", control.grpc_addr),
        instance_id: control.bootstrap.instance_id.clone(),
        node_id: Some("embedded".into()),
        listen: args.listen,
        admin_listen: Some(args.admin_listen),
        cache_dir: args.data_dir.join("gateway-cache"),
        cluster_token: control.cluster_token.clone(),
        cluster_tls: None,
        allow_plaintext_cluster: false,
        limits: args.traffic.limits(),
        access_log: apig_gateway::AccessLogSink::parse(&args.traffic.access_log),
        tls_listen: args.traffic.tls_listen,
        backend_ca_file: args.traffic.backend_ca_file.clone(),
    };
    let gateway = tokio::spawn(apig_gateway::run(gateway, stopped(stop_rx)));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    gateway.await.context("gateway task")?.context("gateway")?;
    control.wait().await.context("control plane")?;
    Ok(())
}

fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let s = apig_control::backup::backup_data_dir(&args.data_dir, &args.out)
        .context("backup failed")?;
    println!(
        "apig: backup of {} entries (store revision {}) written to {} (sha256 {})",
        s.entries,
        s.revision,
        args.out.display(),
        s.sha256
    );
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let s = apig_control::backup::restore_data_dir(&args.data_dir, &args.input)
        .context("restore failed")?;
    println!(
        "apig: restored {} entries (sha256 {}) into {}",
        s.entries,
        s.sha256,
        args.data_dir.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    // Offline store tools: no runtime, no listeners.
    let command = match cli.command {
        Command::Backup(a) => return backup(a),
        Command::Restore(a) => return restore(a),
        Command::Certs(c) => return certs::run(c),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            Command::Control(a) => control(a).await,
            Command::Gateway(a) => gateway(a).await,
            Command::Up(a) => up(a).await,
            Command::Backup(_) | Command::Restore(_) | Command::Certs(_) => {
                unreachable!("handled above")
            }
        }
    })
}
