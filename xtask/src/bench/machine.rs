//! What the benchmarks report about the machine and the processes they measure.

use std::time::Duration;

use anyhow::{Context, Result};

/// `nproc`, the CPU model and the load average, on one line.
pub(super) fn describe() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs ({model}); loadavg {}", loadavg())
}

/// `/proc/loadavg`'s first three figures.
pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The resident set of a process, in KiB (`VmRSS` of `/proc/PID/status`).
pub(super) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// The resident set once it stops moving: readings 500 ms apart until two in a row differ by
/// less than 0.5 % (at most 30 s, then the last reading).
pub(super) async fn settled_rss_kib(pid: u32) -> Result<u64> {
    let mut last = rss_kib(pid)?;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid)?;
        if now.abs_diff(last) * 200 < last.max(1) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// The Prometheus text exposition of an admin listener.
pub(super) async fn scrape(admin: std::net::SocketAddr) -> Result<String> {
    Ok(apig_testkit::http_client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The value of an unlabelled metric (or a `_sum`/`_count` line) in a scrape.
pub(super) fn metric(scrape: &str, name: &str) -> Result<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no metric {name}"))
}

/// The current time as `date -u` prints it, and a compact stamp for file names.
pub(super) fn now_utc() -> (String, String) {
    let run = |fmt: &str| {
        std::process::Command::new("date")
            .args(["-u", fmt])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    (run("+%Y-%m-%d %H:%M:%S UTC"), run("+%Y%m%dT%H%M%SZ"))
}
