//! `propagation [N] [--replicas R]`: publish → the change answering on every replica, under
//! background load.
//!
//! One control plane, R gateway replicas (release build). N times, publish or take offline one
//! API (`/p`); from the management answer on, every replica is polled (1 ms apart) until it
//! answers the new state (200 or 404); a sample is the time until the *last* replica does.
//! Meanwhile a paced load calls another API (`/load`) on every replica; every error and the
//! worst latency it saw are reported, since a swap must never stall or fail a request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use apig_testkit::{http_client, ControlPlane, EchoBackend, Gateway};
use serde_json::json;

use super::{machine, Fixture, RELEASE};

/// Background load: per replica, this many callers, each one call every `LOAD_PERIOD`.
const LOAD_CALLERS: usize = 2;
const LOAD_PERIOD: Duration = Duration::from_millis(20);

pub(super) struct Options {
    pub publishes: usize,
    pub replicas: usize,
}

impl Options {
    /// `[N] [--replicas R]`, defaults 200 and 8.
    pub(super) fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            publishes: 200,
            replicas: 8,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--replicas" {
                o.replicas = it.next().context("--replicas needs a number")?.parse()?;
            } else {
                o.publishes = a.parse().with_context(|| format!("not a number: {a}"))?;
            }
        }
        if o.publishes == 0 || o.replicas == 0 {
            bail!("N and R must be at least 1");
        }
        Ok(o)
    }
}

/// What the background load saw.
#[derive(Default)]
struct Load {
    calls: AtomicU64,
    errors: AtomicU64,
    worst_us: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    first_errors: Mutex<Vec<String>>,
}

impl Load {
    fn record(&self, took: Duration, outcome: Result<u16, String>) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.worst_us.fetch_max(us, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(us);
        }
        let error = match outcome {
            Ok(200) => return,
            Ok(status) => format!("status {status}"),
            Err(e) => e,
        };
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_errors.lock() {
            if first.len() < 5 {
                first.push(error);
            }
        }
    }
}

fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(super) async fn propagation(bin: PathBuf, o: Options) -> Result<()> {
    let (started, stamp) = machine::now_utc();
    let machine_before = machine::describe();
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(&bin, &dir.path().join("control"));
    // No default per-API limit: the load must not be throttled.
    let gws = (0..o.replicas)
        .map(|r| {
            Ok(Gateway::start_with_args(
                &bin,
                &cp.grpc_url(),
                &cp.seed.instance_id,
                &dir.path().join(format!("gw{r}")),
                &cp.cluster_token,
                "127.0.0.1:0".parse()?,
                &["--default-api-rate-limit", "0"],
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let backend = EchoBackend::start().await;
    let fx = Fixture::new(&cp, &backend).await;
    let (api, inst, host) = (&fx.api, fx.inst.clone(), fx.host.clone());
    let load_id = fx.create_api("bench_load", "/load", "NONE", "/load").await;
    fx.publish(&load_id).await?;
    let id = fx.create_api("bench_api", "/p", "NONE", "/p").await;
    let http = http_client();
    for gw in &gws {
        until_status(&http, gw.url("/load"), &host, 200, Duration::from_secs(30)).await?;
    }

    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for gw in &gws {
        for _ in 0..LOAD_CALLERS {
            let (load, stop, http) = (load.clone(), stop.clone(), http.clone());
            let (url, host) = (gw.url("/load"), host.clone());
            callers.spawn(async move {
                let mut tick = tokio::time::interval(LOAD_PERIOD);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let t = Instant::now();
                    let outcome = http
                        .get(&url)
                        .header("host", &host)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string());
                    load.record(t.elapsed(), outcome);
                }
            });
        }
    }

    let mut samples = Vec::with_capacity(o.publishes);
    let mut calls = Vec::with_capacity(o.publishes);
    let run = Instant::now();
    for i in 0..o.publishes {
        let online = i % 2 == 0;
        let (action, want) = if online {
            ("online", 200)
        } else {
            ("offline", 404)
        };
        let t = Instant::now();
        let r = api
            .post(
                &format!("{inst}/apis/action"),
                &json!({"action": action, "api_id": id, "env_id": RELEASE}),
            )
            .await;
        calls.push(t.elapsed());
        if r.status != 201 {
            bail!("publish failed: {:?}", r.body);
        }
        let start = Instant::now();
        let mut polls = tokio::task::JoinSet::new();
        for gw in &gws {
            let (http, url, host) = (http.clone(), gw.url("/p"), host.clone());
            polls.spawn(async move {
                until_status(&http, url, &host, want, Duration::from_secs(10)).await
            });
        }
        while let Some(done) = polls.join_next().await {
            done??;
        }
        samples.push(start.elapsed());
    }
    let run_time = run.elapsed();
    stop.store(true, Ordering::Relaxed);
    while callers.join_next().await.is_some() {}

    samples.sort();
    calls.sort();
    let mut latencies = load
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let us_ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let p99 = pct(&samples, 0.99);
    let mut report = format!(
        "propagation benchmark, {started}\nmachine at start: {machine_before}\nmachine at end:   {}\n\
         release build; loopback; 1 control plane, {r} replicas; {n} publishes (online/offline alternating)\n\n\
         publish answer -> the change answering on every replica:\n\
         \x20 p50 {p50}  p90 {p90}  p99 {p99s}  max {max}   (target p99 <= 50 ms: {verdict})\n\
         publish call itself: p50 {c50}  p99 {c99}\n\
         background load during the {secs:.1} s run ({callers} callers per replica, one call per {period} ms each):\n\
         \x20 {total} calls, {errors} errors, latency p50 {l50}  p99 {l99}  worst {worst}\n",
        machine::describe(),
        r = o.replicas,
        n = o.publishes,
        p50 = ms(pct(&samples, 0.5)),
        p90 = ms(pct(&samples, 0.9)),
        p99s = ms(p99),
        max = ms(samples.last().copied().unwrap_or_default()),
        verdict = if p99 <= Duration::from_millis(50) { "met" } else { "NOT met" },
        c50 = ms(pct(&calls, 0.5)),
        c99 = ms(pct(&calls, 0.99)),
        secs = run_time.as_secs_f64(),
        callers = LOAD_CALLERS,
        period = LOAD_PERIOD.as_millis(),
        total = load.calls.load(Ordering::Relaxed),
        errors = load.errors.load(Ordering::Relaxed),
        l50 = us_ms(pct(&latencies, 0.5)),
        l99 = us_ms(pct(&latencies, 0.99)),
        worst = us_ms(load.worst_us.load(Ordering::Relaxed)),
    );
    if let Ok(first) = load.first_errors.lock() {
        for e in first.iter() {
            report.push_str(&format!("  load error: {e}\n"));
        }
    }
    println!("{report}");
    let out = crate::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let file = out.join(format!("propagation-{stamp}.txt"));
    std::fs::write(&file, &report)?;
    println!("written to {}", file.display());
    drop(gws);
    Ok(())
}

/// Polls `url` (1 ms apart) until it answers `want`; the time it took.
async fn until_status(
    http: &reqwest::Client,
    url: String,
    host: &str,
    want: u16,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let status = http
            .get(&url)
            .header("host", host)
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(s) if s == want) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{url} did not answer {want} within {timeout:?} (last: {status:?})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
