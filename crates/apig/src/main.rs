//! `apig`: the control plane, a gateway replica, or both in one process.
//!
//! Only configuration (flags, environment, the config file) lives here; the planes are libraries
//! (`apig-control`, `apig-gateway`).

mod certs;
mod cli;
mod config;
mod telemetry;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};

use cli::{
    BackupArgs, Cli, Command, CommonControl, ConfigCommand, ControlArgs, GatewayArgs, RestoreArgs,
    UpArgs,
};

// Measured by `cargo xtask bench peers` and `bench scale` (BENCHMARKS.md): less CPU per request
// than glibc's malloc, and far less memory kept after snapshot swaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        seed: common.seed.seed(),
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

/// Exit status for a configuration that was refused (as clap does for usage errors).
const EXIT_CONFIG: u8 = 2;

/// The configuration from flags, environment and file, or every problem found with it.
fn configure(argv: &[OsString]) -> Result<(Cli, config::Resolved), config::Failure> {
    let env = |k: &std::ffi::OsStr| std::env::var_os(k);
    let resolved = config::resolve(Cli::command(), argv, &env)?;
    let cli = Cli::from_arg_matches(&resolved.matches)
        .map_err(|e| config::Failure::Problems(vec![config::clap_message(&e)]))?;
    let problems = cli::problems(&cli);
    if !problems.is_empty() {
        return Err(config::Failure::Problems(problems));
    }
    Ok((cli, resolved))
}

/// Prints why the configuration was refused; the exit status to end with.
fn refuse(failure: config::Failure, what: &str) -> ExitCode {
    match failure {
        config::Failure::Clap(e) => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_CONFIG))
        }
        config::Failure::Problems(problems) => {
            let n = problems.len();
            let plural = if n == 1 { "problem" } else { "problems" };
            eprintln!("apig: {n} configuration {plural}; {what}:");
            for p in &problems {
                eprintln!("  - {p}");
            }
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `apig config check`: the effective configuration of one command, or of every command that
/// has a table in the file. The report goes to stdout (a closed pipe is not an error), refusals
/// to stderr.
fn config_check(argv: &[OsString], resolved: &config::Resolved, has_target: bool) -> ExitCode {
    let mut report = String::new();
    let mut status = ExitCode::SUCCESS;
    if has_target {
        report.push_str(&resolved.report());
    } else {
        let Some(file) = &resolved.file else {
            eprintln!(
                "apig config check: no configuration file (--config FILE or APIG_CONFIG); to \
                 check flags and environment alone, name the command: apig config check gateway"
            );
            return ExitCode::from(EXIT_CONFIG);
        };
        let tables = config::tables_in(file);
        if tables.is_empty() {
            eprintln!(
                "apig config check: {} has no [control], [gateway], [up], [backup] or [restore] \
                 table; name the command to check: apig config check gateway",
                file.path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        for (i, table) in tables.iter().enumerate() {
            let mut args = argv.to_vec();
            args.push(OsString::from(*table));
            if i > 0 {
                report.push('\n');
            }
            match configure(&args) {
                Ok((_, r)) => report.push_str(&r.report()),
                Err(f) => {
                    report.push_str(&format!("# [{table}]: refused (see stderr)\n"));
                    status = refuse(f, &format!("`apig {table}` would not start"));
                }
            }
        }
    }
    if status == ExitCode::SUCCESS {
        report.push_str("# apig config check: OK\n");
    }
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    status
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let (cli, resolved) = match configure(&argv) {
        Ok(c) => c,
        Err(f) => return refuse(f, "nothing was started"),
    };
    if let Command::Config(ConfigCommand::Check { target }) = &cli.command {
        return config_check(&argv, &resolved, target.is_some());
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let otlp = cli.otlp_endpoint.as_deref();
    let format = cli.log_format.as_str();
    let threads = cli.worker_threads;
    match cli.command {
        // Offline store tools: no runtime, no listeners, no spans.
        Command::Backup(a) => {
            telemetry::init(format, None, "apig")?;
            backup(a)
        }
        Command::Restore(a) => {
            telemetry::init(format, None, "apig")?;
            restore(a)
        }
        Command::Certs(c) => {
            telemetry::init(format, None, "apig")?;
            certs::run(c)
        }
        Command::Control(a) => serve(format, otlp, threads, "apig-control", control(a)),
        Command::Gateway(a) => serve(format, otlp, threads, "apig-gateway", gateway(a)),
        Command::Up(a) => serve(format, otlp, threads, "apig", up(a)),
        // Answered by `main` before anything runs.
        Command::Config(_) => Ok(()),
    }
}

/// Runs a server future on the runtime `threads` asks for (default: multi-threaded, one worker
/// per CPU; 1: a current-thread runtime), with logs and (with `otlp`) span export set up inside
/// it, and the spans still queued sent before the runtime goes.
fn serve(
    log_format: &str,
    otlp: Option<&str>,
    threads: Option<u16>,
    service: &'static str,
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(log_format, otlp, service)?
    };
    let result = runtime.block_on(f);
    telemetry.shutdown();
    result
}
