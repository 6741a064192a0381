//! `instructions [--bin APIG] [--baseline APIG]`: user-space instructions per proxied request,
//! counted by valgrind's callgrind, for the plain path (auth NONE) through one replica with
//! `--worker-threads 1`.
//!
//! Wall-clock benchmarks on a shared 2-core machine swing by tens of percent; an instruction
//! count much less, so this is the figure to compare two builds of the hot path by. The replica
//! runs under callgrind with instrumentation off through start-up and `WARM_UP` requests;
//! `callgrind_control -i on` then counts `REQUESTS` keep-alive requests, and the total divided by
//! `REQUESTS` is the cost of one (the replica's background work during those requests, a few
//! percent, is included). Kernel time (the socket calls) is not counted: `peers` measures it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};

use super::Fixture;

const WARM_UP: usize = 200;
const REQUESTS: usize = 5000;

/// `bins`: a name for each build and its binary.
pub(super) async fn instructions(bins: Vec<(String, PathBuf)>) -> Result<()> {
    if !Path::new("/usr/bin/valgrind").exists() {
        crate::run(std::process::Command::new("apt-get").args(["update", "-qq"]))?;
        crate::run(
            std::process::Command::new("apt-get").args(["install", "-y", "-qq", "valgrind"]),
        )?;
    }
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(&bins[0].1, &dir.path().join("control"));
    let backend = EchoBackend::start().await;
    let fx = Fixture::new(&cp, &backend).await;
    let id = fx.create_api("bench_plain", "/plain", "NONE", "/").await;
    fx.publish(&id).await?;
    for (name, bin) in &bins {
        let total = count(&cp, &fx.host, bin, dir.path(), name).await?;
        let per_request = total as f64 / REQUESTS as f64;
        // The profile of the longer run, for `callgrind_annotate`.
        let out = crate::root().join("target/bench");
        std::fs::create_dir_all(&out)?;
        let kept = out.join(format!("callgrind-{name}.out"));
        std::fs::copy(dir.path().join(format!("callgrind-{name}.out")), &kept)?;
        println!(
            "{name:<10} {per_request:>10.0} instructions per request ({}: {total} for {REQUESTS} \
             requests; profile in {})",
            bin.display(),
            kept.display()
        );
    }
    Ok(())
}

/// Instructions of one replica under callgrind while it serves `REQUESTS` requests.
async fn count(cp: &ControlPlane, host: &str, bin: &Path, dir: &Path, name: &str) -> Result<u64> {
    let out = dir.join(format!("callgrind-{name}.out"));
    let wrapper = dir.join("apig-callgrind");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={} {} \"$@\"\n",
            out.display(),
            bin.display()
        ),
    )?;
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()?;
    let mut gw = Gateway::start_with_args(
        &wrapper,
        &cp.grpc_url(),
        &cp.seed.instance_id,
        &dir.join(format!("gw-{name}")),
        &cp.cluster_token,
        "127.0.0.1:0".parse()?,
        &["--default-api-rate-limit", "0", "--worker-threads", "1"],
    );
    let http = http_client();
    let url = gw.url("/plain");
    // Until the snapshot is there (slow under valgrind).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ok =
            matches!(http.get(&url).header("host", host).send().await, Ok(r) if r.status() == 200);
        if ok {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("the replica under callgrind did not serve within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let send = |n: usize| {
        let (http, url) = (&http, &url);
        async move {
            for _ in 0..n {
                let r = http.get(url).header("host", host).send().await?;
                if r.status() != 200 {
                    bail!("request failed: {}", r.status());
                }
                r.bytes().await?;
            }
            Ok(())
        }
    };
    send(WARM_UP).await?;
    callgrind_control(gw.pid(), "on")?;
    send(REQUESTS).await?;
    callgrind_control(gw.pid(), "off")?;
    gw.terminate();
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    // `totals:` is what was collected; `summary:` stays 0 when collection starts switched off.
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no totals in {}", out.display()))
}

/// Turns callgrind's instrumentation of process `pid` on or off.
fn callgrind_control(pid: u32, state: &str) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(["-i", state, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("callgrind_control (valgrind)")?;
    if !status.success() {
        bail!("callgrind_control -i {state} {pid} failed");
    }
    Ok(())
}
