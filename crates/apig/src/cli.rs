//! The command line: every flag, its environment variable and its built-in default. A
//! configuration file (`--config`, see [`crate::config`]) supplies defaults for the same flags,
//! so `--help` describes every way to set a value.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "apig",
    version,
    about = "A self-hosted API gateway that speaks Huawei Cloud APIG",
    after_help = "Every flag can also be set in the configuration file (--config): a TOML file \
                  with one table per command ([control], [gateway], [up], [backup], [restore]) \
                  and the global flags at the top, keys being the long flag names in snake_case \
                  (--admin-listen is admin_listen). Precedence: flag > environment > file > \
                  built-in default. `apig config check` shows the result."
)]
pub struct Cli {
    /// TOML configuration file (one table per command, keys = long flag names in snake_case).
    /// Secrets in it are accepted only if it is not readable by group or others.
    #[arg(long, global = true, env = "APIG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, env = "APIG_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Export request spans (gateway: one per request with API id, environment, status and
    /// latency; control plane: one per management request) over OTLP/gRPC to this collector,
    /// e.g. `http://127.0.0.1:4317`, and propagate W3C `traceparent` to backends. Off unless
    /// given.
    #[arg(long, global = true, env = "APIG_OTLP_ENDPOINT", value_name = "URL", value_parser = otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// Threads of the runtime that serves requests (default: one per CPU this process may run
    /// on). 1 runs everything on one thread without work stealing: the cheapest for a replica
    /// pinned to a single core, with more replicas for more cores.
    #[arg(long, global = true, env = "APIG_WORKER_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

/// An OTLP/gRPC endpoint: `http://host:port` (plain gRPC; run a collector agent nearby for TLS).
fn otlp_endpoint(value: &str) -> Result<String, String> {
    let uri: http::Uri = value.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "TLS to the collector is not supported yet: use http:// to a \
                        collector (agent) on a trusted network"
                    .into(),
            )
        }
        _ => return Err("expected http://host:port".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("expected http://host:port".into());
    }
    Ok(value.to_owned())
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Check the configuration (file, environment, flags) without starting anything.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create the cluster CA and the certificates of the control plane ↔ replica mutual TLS.
    #[command(subcommand)]
    Certs(crate::certs::CertsCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate and print the effective configuration with secrets masked and where each value
    /// came from (flag, env, file, default). With a command (and its flags), that command's;
    /// without, every command that has a table in the file.
    Check {
        #[command(subcommand)]
        target: Option<Target>,
    },
}

/// A command whose configuration `apig config check` resolves.
#[derive(Subcommand, Debug)]
pub enum Target {
    /// The configuration of `apig control`.
    Control(ControlArgs),
    /// The configuration of `apig gateway`.
    Gateway(GatewayArgs),
    /// The configuration of `apig up`.
    Up(UpArgs),
    /// The configuration of `apig backup`.
    Backup(BackupArgs),
    /// The configuration of `apig restore`.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The data dir of the (stopped) control plane.
    #[arg(long, env = "APIG_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The backup file to write (owner-only, replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The data dir to restore into; its store must be absent or empty.
    #[arg(long, env = "APIG_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The backup file (from `apig backup` or `GET .../backup`).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// Where the store, the generated credentials and the cluster token live.
    #[arg(long, env = "APIG_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Management API (APIG V2 REST) listener.
    #[arg(long, env = "APIG_MGMT_LISTEN", default_value = "127.0.0.1:9080")]
    pub mgmt_listen: SocketAddr,
    /// gRPC listener that gateway replicas connect to.
    #[arg(long, env = "APIG_GRPC_LISTEN", default_value = "127.0.0.1:9090")]
    pub grpc_listen: SocketAddr,
    #[command(flatten)]
    pub common: CommonControl,
    #[command(flatten)]
    pub cluster_tls: ClusterTlsArgs,
}

/// Mutual TLS on the replica link. The control plane presents `--cluster-cert` and requires
/// replica certificates signed by `--cluster-ca`; a replica presents its own `--cluster-cert` and
/// requires the control plane's to be signed by the same CA (`apig certs` makes all of them).
#[derive(Args, Debug)]
pub struct ClusterTlsArgs {
    /// PEM file of the cluster CA certificate.
    #[arg(long, env = "APIG_CLUSTER_CA", requires_all = ["cluster_cert", "cluster_key"])]
    pub cluster_ca: Option<PathBuf>,
    /// PEM file of this process's certificate (chain) on the replica link.
    #[arg(long, env = "APIG_CLUSTER_CERT", requires_all = ["cluster_ca", "cluster_key"])]
    pub cluster_cert: Option<PathBuf>,
    /// PEM file of the private key of `--cluster-cert`.
    #[arg(long, env = "APIG_CLUSTER_KEY", requires_all = ["cluster_ca", "cluster_cert"])]
    pub cluster_key: Option<PathBuf>,
    /// Allow the replica link in plaintext off loopback (only the cluster token protects it).
    #[arg(
        long,
        env = "APIG_ALLOW_PLAINTEXT_CLUSTER",
        conflicts_with = "cluster_ca"
    )]
    pub allow_plaintext_cluster: bool,
}

impl ClusterTlsArgs {
    /// Reads and checks the three files, naming every problem.
    pub fn load(&self) -> anyhow::Result<Option<apig_proto::cluster::TlsMaterial>> {
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

#[derive(Args, Debug)]
pub struct CommonControl {
    /// Shared secret replicas must present; generated and stored under the data dir if unset.
    #[arg(long, env = "APIG_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// Groups get `<group id>.<suffix>` as generated sub-domain (`*.localhost` resolves to
    /// loopback in curl and browsers, so the default works without DNS).
    #[arg(long, env = "APIG_DOMAIN_SUFFIX", default_value = "apig.localhost")]
    pub domain_suffix: String,
    /// The control plane's admin listener (`/health`, `/ready`, Prometheus `/metrics`); off
    /// unless given, e.g. `127.0.0.1:9091`.
    #[arg(long, env = "APIG_CONTROL_ADMIN_LISTEN")]
    pub control_admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub seed: SeedArgs,
}

/// The bootstrap identity, read on the first start of a data dir only; generated when unset.
#[derive(Args, Debug)]
pub struct SeedArgs {
    /// First start only: access key of the bootstrap (administrator) credential.
    #[arg(long, env = "APIG_ADMIN_AK")]
    pub admin_ak: Option<String>,
    /// First start only: its secret key (at least 16 characters). Prefer the environment or an
    /// owner-only config file: command lines are visible to other users.
    #[arg(long, env = "APIG_ADMIN_SK", hide_env_values = true)]
    pub admin_sk: Option<String>,
    /// First start only: the bootstrap project id (32 lowercase hex).
    #[arg(long, env = "APIG_PROJECT_ID")]
    pub project_id: Option<String>,
    /// First start only: the bootstrap project's account name.
    #[arg(long, env = "APIG_PROJECT_NAME")]
    pub project_name: Option<String>,
    /// First start only: the id of the first gateway instance (32 lowercase hex).
    #[arg(long, env = "APIG_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl SeedArgs {
    pub fn seed(&self) -> apig_control::Seed {
        let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        apig_control::Seed {
            admin_ak: some(&self.admin_ak),
            admin_sk: some(&self.admin_sk),
            project_id: some(&self.project_id),
            project_name: some(&self.project_name),
            instance_id: some(&self.instance_id),
        }
    }
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// gRPC URL of the control plane.
    #[arg(
        long,
        env = "APIG_CONTROL_PLANE",
        default_value = "http://127.0.0.1:9090"
    )]
    pub control_plane: String,
    /// The instance whose published APIs this replica serves.
    #[arg(long, env = "APIG_INSTANCE_ID")]
    pub instance_id: String,
    /// Data-plane HTTP listener.
    #[arg(long, env = "APIG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Health/readiness listener (`GET /health`, `GET /ready`, `GET /metrics`).
    #[arg(long, env = "APIG_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Where the last applied snapshot is cached, so a restart serves without the control plane.
    #[arg(long, env = "APIG_CACHE_DIR")]
    pub cache_dir: PathBuf,
    /// Shared secret of the cluster (see `apig control`).
    #[arg(long, env = "APIG_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: String,
    /// Name of this replica in the control plane's replica list (default: host name + random).
    #[arg(long, env = "APIG_NODE_ID")]
    pub node_id: Option<String>,
    #[command(flatten)]
    pub cluster_tls: ClusterTlsArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Args, Debug)]
pub struct TrafficArgs {
    /// Calls per second allowed to each API that has no throttling policy (APIG's
    /// `ratelimit_api_limits`), split among the instance's replicas; 0 = unlimited.
    #[arg(long, env = "APIG_DEFAULT_API_RATE_LIMIT", default_value_t = 200)]
    pub default_api_rate_limit: u64,
    /// A proxy in front of the gateway whose `X-Forwarded-For` is believed (IP, CIDR or a-b
    /// range; repeatable, or comma-separated). Without one the client IP is always the TCP peer.
    #[arg(
        long = "trusted-proxy",
        env = "APIG_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// A backend network (IP, CIDR or a-b range) the gateway refuses to connect to, checked on
    /// the resolved address of every backend connection (repeatable, or comma-separated).
    /// Unspecified, link-local (cloud metadata), multicast and broadcast addresses are always
    /// refused; loopback and private ranges are allowed unless denied here.
    #[arg(
        long = "deny-backend-network",
        env = "APIG_DENY_BACKEND_NETWORKS",
        value_delimiter = ','
    )]
    pub deny_backend_networks: Vec<String>,
    /// A backend network allowed even though denied, the always-refused addresses included
    /// (e.g. a link-local service). Risky: every API may then reach it (repeatable, or
    /// comma-separated).
    #[arg(
        long = "allow-backend-network",
        env = "APIG_ALLOW_BACKEND_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_backend_networks: Vec<String>,
    /// PEM file of CA certificates trusted for HTTPS backends and health checks, besides the
    /// Mozilla roots (backend certificates are always verified).
    #[arg(long, env = "APIG_BACKEND_CA_FILE")]
    pub backend_ca_file: Option<PathBuf>,
    /// HTTPS listener: bound domains' certificates, chosen by SNI; off unless given.
    #[arg(long, env = "APIG_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// Access log: one JSON line per request to `stdout`, `stderr` or a file path; `off`.
    #[arg(long, env = "APIG_ACCESS_LOG", default_value = "off")]
    pub access_log: String,
    /// How often (milliseconds) the gateway reports its per-API usage counters to the control
    /// plane, which answers the statistics APIs from them (also at every minute boundary).
    #[arg(long, env = "APIG_USAGE_REPORT_INTERVAL_MS", default_value_t = 5000)]
    pub usage_report_interval_ms: u64,
    /// A client connection that takes no byte of what the gateway writes for this many seconds
    /// is closed (slow or stopped readers; like nginx's `send_timeout`).
    #[arg(long, env = "APIG_SEND_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub send_timeout_secs: u64,
    /// Accept AppCodes (`X-Apig-AppCode`) on plain HTTP. APIG takes them over HTTPS only, and
    /// so does the gateway without this; for local development on loopback.
    #[arg(long, env = "APIG_ALLOW_APP_CODE_OVER_HTTP")]
    pub allow_app_code_over_http: bool,
}

impl TrafficArgs {
    pub fn limits(&self) -> apig_gateway::Limits {
        apig_gateway::Limits {
            default_api_limit_per_sec: self.default_api_rate_limit,
            trusted_proxies: self.trusted_proxies.clone(),
            usage_report_interval: std::time::Duration::from_millis(
                self.usage_report_interval_ms.max(10),
            ),
            deny_backend_networks: self.deny_backend_networks.clone(),
            allow_backend_networks: self.allow_backend_networks.clone(),
            send_timeout: std::time::Duration::from_secs(self.send_timeout_secs),
            allow_app_code_over_http: self.allow_app_code_over_http,
            ..apig_gateway::Limits::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where the store, credentials and the gateway's snapshot cache live.
    #[arg(long, env = "APIG_DATA_DIR", default_value = "./apig-data")]
    pub data_dir: PathBuf,
    /// Management API (APIG V2 REST) listener.
    #[arg(long, env = "APIG_MGMT_LISTEN", default_value = "127.0.0.1:9080")]
    pub mgmt_listen: SocketAddr,
    /// gRPC listener of the control plane (the embedded gateway connects to it).
    #[arg(long, env = "APIG_GRPC_LISTEN", default_value = "127.0.0.1:9090")]
    pub grpc_listen: SocketAddr,
    /// Data-plane HTTP listener of the embedded gateway.
    #[arg(long, env = "APIG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Health/readiness listener of the embedded gateway.
    #[arg(long, env = "APIG_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub common: CommonControl,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// Problems of an otherwise well-typed configuration that no single flag shows: listeners that
/// would collide, files that cannot be read, values that contradict each other. All of them.
pub fn problems(cli: &Cli) -> Vec<String> {
    let mut out = Vec::new();
    match &cli.command {
        Command::Control(a)
        | Command::Config(ConfigCommand::Check {
            target: Some(Target::Control(a)),
        }) => control_problems(a, &mut out),
        Command::Gateway(a)
        | Command::Config(ConfigCommand::Check {
            target: Some(Target::Gateway(a)),
        }) => gateway_problems(a, &mut out),
        Command::Up(a)
        | Command::Config(ConfigCommand::Check {
            target: Some(Target::Up(a)),
        }) => up_problems(a, &mut out),
        Command::Backup(_)
        | Command::Restore(_)
        | Command::Certs(_)
        | Command::Config(ConfigCommand::Check {
            target: Some(Target::Backup(_) | Target::Restore(_)) | None,
        }) => {}
    }
    out
}

fn control_problems(a: &ControlArgs, out: &mut Vec<String>) {
    let mut listeners = vec![
        ("mgmt_listen", a.mgmt_listen),
        ("grpc_listen", a.grpc_listen),
    ];
    listeners.extend(
        a.common
            .control_admin_listen
            .map(|l| ("control_admin_listen", l)),
    );
    distinct(&listeners, out);
    directory("data_dir", &a.data_dir, out);
    cluster_tls_problems(&a.cluster_tls, out);
}

/// Every unreadable or wrong certificate file of the replica link.
fn cluster_tls_problems(a: &ClusterTlsArgs, out: &mut Vec<String>) {
    if let (Some(ca), Some(cert), Some(key)) = (&a.cluster_ca, &a.cluster_cert, &a.cluster_key) {
        let files = apig_proto::cluster::TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        if let Err(errors) = files.load() {
            out.extend(errors.iter().map(|e| format!("cluster TLS: {e}")));
        }
    }
}

fn gateway_problems(a: &GatewayArgs, out: &mut Vec<String>) {
    let mut listeners = vec![("listen", a.listen), ("admin_listen", a.admin_listen)];
    listeners.extend(a.traffic.tls_listen.map(|l| ("tls_listen", l)));
    distinct(&listeners, out);
    directory("cache_dir", &a.cache_dir, out);
    cluster_tls_problems(&a.cluster_tls, out);
    if !(a.control_plane.starts_with("http://") || a.control_plane.starts_with("https://"))
        || a.control_plane.parse::<http::Uri>().is_err()
    {
        out.push(format!(
            "control_plane {:?}: not an http:// or https:// URL",
            a.control_plane
        ));
    }
    if a.cluster_token.is_empty() {
        out.push("cluster_token: empty".into());
    }
    if a.instance_id.is_empty() {
        out.push("instance_id: empty".into());
    }
    traffic_problems(&a.traffic, out);
}

fn up_problems(a: &UpArgs, out: &mut Vec<String>) {
    let mut listeners = vec![
        ("mgmt_listen", a.mgmt_listen),
        ("grpc_listen", a.grpc_listen),
        ("listen", a.listen),
        ("admin_listen", a.admin_listen),
    ];
    listeners.extend(
        a.common
            .control_admin_listen
            .map(|l| ("control_admin_listen", l)),
    );
    listeners.extend(a.traffic.tls_listen.map(|l| ("tls_listen", l)));
    distinct(&listeners, out);
    directory("data_dir", &a.data_dir, out);
    traffic_problems(&a.traffic, out);
}

fn traffic_problems(t: &TrafficArgs, out: &mut Vec<String>) {
    // Each list on its own, so the problem names the list it is in.
    if let Err(e) = apig_gateway::BackendAddressPolicy::parse(&t.deny_backend_networks, &[]) {
        out.push(format!("deny_backend_network: {}", e.source));
    }
    if let Err(e) = apig_gateway::BackendAddressPolicy::parse(&[], &t.allow_backend_networks) {
        out.push(format!("allow_backend_network: {}", e.source));
    }
    if let Some(ca) = &t.backend_ca_file {
        if let Err(e) = std::fs::File::open(ca) {
            out.push(format!(
                "backend_ca_file {}: cannot read it: {e}",
                ca.display()
            ));
        }
    }
    if let Some(apig_gateway::AccessLogSink::File(path)) =
        apig_gateway::AccessLogSink::parse(&t.access_log)
    {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            if !dir.is_dir() {
                out.push(format!(
                    "access_log {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
        }
    }
}

/// Two listeners collide when they share a port (other than 0) on the same address, or one of
/// them is the unspecified address (0.0.0.0 or ::), which takes the port on every address.
fn distinct(listeners: &[(&str, SocketAddr)], out: &mut Vec<String>) {
    for (i, (name_a, a)) in listeners.iter().enumerate() {
        for (name_b, b) in &listeners[i + 1..] {
            let same_ip = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() != 0 && a.port() == b.port() && same_ip {
                out.push(format!(
                    "{name_a} {a} and {name_b} {b}: two listeners cannot share a port"
                ));
            }
        }
    }
}

fn directory(key: &str, path: &std::path::Path, out: &mut Vec<String>) {
    if path.exists() && !path.is_dir() {
        out.push(format!(
            "{key} {}: exists and is not a directory",
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_backend_networks_are_problems() {
        let cli = Cli::try_parse_from([
            "apig",
            "gateway",
            "--instance-id",
            "i",
            "--cache-dir",
            "/nonexistent-apig-cache",
            "--cluster-token",
            "t",
            "--deny-backend-network",
            "127.0.0.0/8,10.0.0.0/33",
            "--allow-backend-network",
            "nope",
        ])
        .unwrap();
        let Command::Gateway(g) = &cli.command else {
            panic!("not the gateway command");
        };
        assert_eq!(g.traffic.deny_backend_networks.len(), 2);
        let out = problems(&cli);
        assert!(
            out.iter()
                .any(|p| p.starts_with("deny_backend_network:") && p.contains("10.0.0.0/33")),
            "{out:?}"
        );
        assert!(
            out.iter()
                .any(|p| p.starts_with("allow_backend_network:") && p.contains("nope")),
            "{out:?}"
        );
        let limits = g.traffic.limits();
        assert_eq!(limits.allow_backend_networks, vec!["nope".to_owned()]);
    }

    #[test]
    fn otlp_endpoints() {
        assert!(otlp_endpoint("http://127.0.0.1:4317").is_ok());
        assert!(otlp_endpoint("http://collector.observability:4317/").is_ok());
        for bad in [
            "127.0.0.1:4317",
            "https://c:4317",
            "ftp://c",
            "http://",
            "not a url",
        ] {
            assert!(otlp_endpoint(bad).is_err(), "{bad}");
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listeners_that_share_a_port_are_reported() {
        let mut out = Vec::new();
        distinct(
            &[
                ("listen", addr("0.0.0.0:8080")),
                ("admin_listen", addr("127.0.0.1:8080")),
                ("tls_listen", addr("127.0.0.1:0")),
                ("other", addr("127.0.0.2:0")),
            ],
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("listen 0.0.0.0:8080 and admin_listen 127.0.0.1:8080"));

        let mut out = Vec::new();
        distinct(
            &[("a", addr("127.0.0.1:80")), ("b", addr("127.0.0.2:80"))],
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }
}
