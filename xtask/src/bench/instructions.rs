//! `instructions [--bin APIG] [--baseline APIG]`: user-space instructions per proxied request,
//! counted by valgrind's callgrind, for the plain path (auth NONE) through one replica with
//! `--worker-threads 1`.
//!
//! Wall-clock benchmarks on a shared 2-core machine swing by tens of percent; an instruction
//! count does not, so this is the figure to compare two builds of the hot path by. The replica
//! runs under callgrind twice, serving `FEW` and then `MANY` keep-alive requests; the difference
//! of the two totals divided by `MANY - FEW` is the cost of one request, with start-up and
//! shutdown cancelled out. Kernel time (the socket calls) is not counted: `peers` measures it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};

use super::Fixture;

const FEW: usize = 500;
const MANY: usize = 2500;

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
        let few = count(&cp, &fx.host, bin, dir.path(), FEW).await?;
        let many = count(&cp, &fx.host, bin, dir.path(), MANY).await?;
        let per_request = (many as f64 - few as f64) / (MANY - FEW) as f64;
        // The profile of the longer run, for `callgrind_annotate`.
        let out = crate::root().join("target/bench");
        std::fs::create_dir_all(&out)?;
        let kept = out.join(format!("callgrind-{name}.out"));
        std::fs::copy(dir.path().join(format!("callgrind-{MANY}.out")), &kept)?;
        println!(
            "{name:<10} {per_request:>10.0} instructions per request ({}: {few} for {FEW} requests, \
             {many} for {MANY}; profile in {})",
            bin.display(),
            kept.display()
        );
    }
    Ok(())
}

/// Total instructions of one replica's life under callgrind, serving `requests` requests.
async fn count(
    cp: &ControlPlane,
    host: &str,
    bin: &Path,
    dir: &Path,
    requests: usize,
) -> Result<u64> {
    let out = dir.join(format!("callgrind-{requests}.out"));
    let wrapper = dir.join("apig-callgrind");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={} {} \"$@\"\n",
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
        &dir.join(format!("gw-{requests}")),
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
    for _ in 0..requests {
        let r = http.get(&url).header("host", host).send().await?;
        if r.status() != 200 {
            bail!("request failed: {}", r.status());
        }
        r.bytes().await?;
    }
    gw.terminate();
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no totals in {}", out.display()))
}
