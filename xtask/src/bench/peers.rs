//! `peers`: the gateway against nginx and HAProxy as plain reverse proxies, and against the
//! backend called directly, in one run (scenarios 1 and 2 of the benchmark plan).
//!
//! - Every proxy is pinned to CPU 0 with one thread (`apig --worker-threads 1`, nginx
//!   `worker_processes 1`, HAProxy `nbthread 1`); the backend (nginx answering a small JSON
//!   body) and the load generator (`wrk -t1`) share CPU 1. So the proxy's core is the only
//!   contended resource, and per-core figures compare.
//! - Targets: `direct` (the backend: the limit), `apig` (auth NONE, no policy), `apig-full` (APP
//!   signature + throttling policy + IP ACL bound), `nginx` and `haproxy` (keep-alive upstream
//!   pools, no logs). Each round runs every target once, in an order that rotates from round to
//!   round; a short warm-up precedes the rounds. Medians are reported with the min–max spread.
//! - The proxy's CPU time comes from `/proc/PID/stat` (user + system, every thread) read around
//!   each run, divided by the requests wrk completed.
//! - Results: a table on stdout and the same text plus JSON under `target/bench/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use apig_testkit::{http_client, ControlPlane, Gateway};
use serde_json::{json, Value};

use super::{Fixture, RELEASE};
use crate::root;

/// The CPU the proxies run on; wrk and the backend run on the other one.
const PROXY_CPU: &str = "0";
const LOAD_CPU: &str = "1";

/// The backend's answer: a small JSON body, as an API would return.
const BACKEND_BODY: &str = r#"{"id":"4b7d9c1e","name":"benchmark","status":"ok","items":[1,2,3]}"#;

/// What one `cargo xtask bench peers` run does.
pub(super) struct Settings {
    pub rounds: usize,
    pub secs: u64,
    pub connections: usize,
    /// An `apig` binary to measure instead of building this tree's (e.g. to compare builds).
    pub bin: Option<PathBuf>,
    /// Another `apig` build, run as a second replica and measured as target `base` (the plain
    /// API), so two builds compare in the same run.
    pub baseline: Option<PathBuf>,
    /// Run only these targets (e.g. to profile one); all when empty.
    pub only: Vec<String>,
}

impl Settings {
    pub(super) fn parse(args: &[String]) -> Result<Settings> {
        let mut s = Settings {
            rounds: 5,
            secs: 10,
            connections: 64,
            bin: None,
            only: Vec::new(),
            baseline: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--rounds" => s.rounds = value.parse()?,
                "--secs" => s.secs = value.parse()?,
                "--connections" => s.connections = value.parse()?,
                "--bin" => s.bin = Some(PathBuf::from(value)),
                "--only" => s.only = value.split(',').map(str::to_owned).collect(),
                "--baseline" => s.baseline = Some(PathBuf::from(value)),
                other => bail!(
                    "unknown flag {other}: --rounds N --secs S --connections C --bin APIG \
                     --baseline APIG --only T1,T2"
                ),
            }
        }
        if s.rounds == 0 || s.secs == 0 || s.connections == 0 {
            bail!("--rounds, --secs and --connections must be positive");
        }
        Ok(s)
    }
}

/// One load run's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Proxy CPU time per completed request, µs (none for `direct`).
    cpu_us: Option<f64>,
}

/// A process we started (nginx, HAProxy), killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A proxy or backend under load: its URL, the headers to send, and the pid whose CPU counts.
struct Target {
    name: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    pid: Option<u32>,
}

pub(super) async fn peers(bin: PathBuf, settings: Settings) -> Result<()> {
    install_tools()?;
    let work = tempfile::tempdir()?;
    let dir = work.path();

    let backend_port = free_port()?;
    let _backend = start_nginx(dir, "backend", &backend_conf(dir, backend_port), LOAD_CPU)?;
    let backend = format!("127.0.0.1:{backend_port}");
    wait_http(&format!("http://{backend}/"), &[]).await?;

    let nginx_port = free_port()?;
    let nginx = start_nginx(
        dir,
        "proxy",
        &nginx_proxy_conf(dir, nginx_port, backend_port),
        PROXY_CPU,
    )?;
    let haproxy_port = free_port()?;
    let haproxy = start_haproxy(dir, haproxy_port, backend_port)?;

    // The control plane idles on the load CPU; the replica alone is on the proxy CPU.
    let cp = ControlPlane::start(&bin, &dir.join("control"));
    pin(cp.pid(), LOAD_CPU)?;
    let gw = Gateway::start_with_args(
        &bin,
        &cp.grpc_url(),
        &cp.seed.instance_id,
        &dir.join("gw"),
        &cp.cluster_token,
        "127.0.0.1:0".parse()?,
        // No gateway-wide default limit: the plain scenario measures proxying, as the peers do.
        &["--default-api-rate-limit", "0", "--worker-threads", "1"],
    );
    pin(gw.pid(), PROXY_CPU)?;
    let base = match &settings.baseline {
        Some(bin) => {
            let gw = Gateway::start_with_args(
                bin,
                &cp.grpc_url(),
                &cp.seed.instance_id,
                &dir.join("gw-base"),
                &cp.cluster_token,
                "127.0.0.1:0".parse()?,
                &["--default-api-rate-limit", "0", "--worker-threads", "1"],
            );
            pin(gw.pid(), PROXY_CPU)?;
            Some(gw)
        }
        None => None,
    };
    let full = ApigApis::create(&cp, &backend).await?;
    let host = full.host.clone();
    let plain_headers = vec![("Host".to_owned(), host.clone())];

    let mut targets = vec![
        Target {
            name: "direct",
            url: format!("http://{backend}/bench"),
            headers: Vec::new(),
            pid: None,
        },
        Target {
            name: "apig",
            url: gw.url("/plain"),
            headers: plain_headers.clone(),
            pid: Some(gw.pid()),
        },
        Target {
            name: "apig-full",
            url: gw.url("/full"),
            headers: full.signed_headers()?,
            pid: Some(gw.pid()),
        },
        Target {
            name: "nginx",
            url: format!("http://127.0.0.1:{nginx_port}/bench"),
            headers: Vec::new(),
            pid: Some(nginx.0.id()),
        },
        Target {
            name: "haproxy",
            url: format!("http://127.0.0.1:{haproxy_port}/bench"),
            headers: Vec::new(),
            pid: Some(haproxy.0.id()),
        },
    ];
    if let Some(base) = &base {
        targets.push(Target {
            name: "base",
            url: base.url("/plain"),
            headers: plain_headers.clone(),
            pid: Some(base.pid()),
        });
    }
    if !settings.only.is_empty() {
        targets.retain(|t| settings.only.iter().any(|o| o == t.name));
    }
    for t in &targets {
        wait_http(&t.url, &t.headers).await?;
    }

    let machine = machine();
    let load_before = super::machine::loadavg();
    let (started, stamp) = super::machine::now_utc();
    eprintln!("bench peers: warm-up");
    for t in &targets {
        run_wrk(t, settings.connections, 2)?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); targets.len()];
    for round in 0..settings.rounds {
        // Re-sign each round: the signature's date must stay inside APIG's 15-minute window.
        if let Some(t) = targets.iter_mut().find(|t| t.name == "apig-full") {
            t.headers = full.signed_headers()?;
        }
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            let s = run_wrk(&targets[i], settings.connections, settings.secs)?;
            eprintln!(
                "bench peers: round {}/{} {:<9} {:>9.0} req/s",
                round + 1,
                settings.rounds,
                targets[i].name,
                s.rps
            );
            samples[i].push(s);
        }
    }
    let load_after = super::machine::loadavg();

    let report = Report {
        settings: &settings,
        names: targets.iter().map(|t| t.name).collect(),
        samples,
        machine,
        load: (load_before, load_after),
        started,
    };
    let text = report.text();
    print!("{text}");
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let stem = out.join(format!("peers-{stamp}"));
    std::fs::write(stem.with_extension("txt"), &text)?;
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    eprintln!("bench peers: written to {}.{{txt,json}}", stem.display());
    Ok(())
}

/// The two APIs on the gateway: `/plain` (auth NONE, nothing bound) and `/full` (APP auth, an
/// authorized app, a throttling policy that never refuses and an IP ACL that permits loopback).
struct ApigApis {
    host: String,
    key: String,
    secret: String,
}

impl ApigApis {
    async fn create(cp: &ControlPlane, backend: &str) -> Result<ApigApis> {
        let fx = Fixture::with_backend(cp, backend.to_owned()).await;
        let (api, inst) = (&fx.api, fx.inst.as_str());
        let plain = fx
            .create_api("bench_plain", "/plain", "NONE", "/bench")
            .await;
        fx.publish(&plain).await?;
        let full = fx.create_api("bench_full", "/full", "APP", "/bench").await;
        let publish_id = fx.publish(&full).await?;
        let t = api
            .post(
                &format!("{inst}/throttles"),
                &json!({"name": "bench_throttle", "api_call_limits": 1_000_000_000u64,
                        "app_call_limits": 1_000_000_000u64, "ip_call_limits": 1_000_000_000u64,
                        "time_interval": 1, "time_unit": "SECOND"}),
            )
            .await;
        let acl = api
            .post(
                &format!("{inst}/acls"),
                &json!({"acl_name": "bench_acl", "acl_type": "PERMIT", "entity_type": "IP",
                        "acl_value": "127.0.0.0/8"}),
            )
            .await;
        for (path, body) in [
            (
                "throttle-bindings",
                json!({"strategy_id": t.body["id"], "publish_ids": [publish_id]}),
            ),
            (
                "acl-bindings",
                json!({"acl_id": acl.body["id"], "publish_ids": [publish_id]}),
            ),
        ] {
            let r = api.post(&format!("{inst}/{path}"), &body).await;
            if r.status != 201 {
                bail!("{path} failed: {:?}", r.body);
            }
        }
        let app = api
            .post(&format!("{inst}/apps"), &json!({"name": "bench_app"}))
            .await;
        let field = |name: &str| app.body[name].as_str().unwrap_or_default().to_owned();
        let r = api
            .post(
                &format!("{inst}/app-auths"),
                &json!({"env_id": RELEASE, "app_ids": [field("id")], "api_ids": [full]}),
            )
            .await;
        if r.status != 201 {
            bail!("authorizing the app failed: {:?}", r.body);
        }
        Ok(ApigApis {
            host: fx.host.clone(),
            key: field("app_key"),
            secret: field("app_secret"),
        })
    }

    /// `GET /full` signed now. The gateway verifies the signature in full on every request;
    /// APIG has no nonce, so one signed request may be replayed within its date window.
    fn signed_headers(&self) -> Result<Vec<(String, String)>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let view_headers = [("host", self.host.as_str())];
        let view = apig_sign::RequestView {
            method: "GET",
            path: "/full",
            query: None,
            headers: &view_headers,
        };
        let signed = apig_sign::Signer {
            key: &self.key,
            secret: self.secret.as_bytes(),
        }
        .sign(&view, b"", now)?;
        let mut headers = vec![("Host".to_owned(), self.host.clone())];
        headers.extend(signed);
        Ok(headers)
    }
}

/// nginx, wrk and HAProxy from Debian's packages, installed when missing.
fn install_tools() -> Result<()> {
    let missing: Vec<&str> = [("nginx", "nginx"), ("haproxy", "haproxy"), ("wrk", "wrk")]
        .into_iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("bench peers: installing {missing:?} with apt-get");
    crate::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing),
    )
}

fn on_path(bin: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(bin).exists())
}

/// A free loopback port (bound, then released for the peer to take).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Pins every thread of `pid` to `cpu`.
fn pin(pid: u32, cpu: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -p {cpu} {pid} failed");
    }
    Ok(())
}

/// The nginx directives every nginx here shares: one process, no logs, long keep-alive.
fn nginx_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/{name}.pid;\n\
         error_log {d}/{name}-error.log warn;\nevents {{ worker_connections 4096; }}\n"
    )
}

fn nginx_http_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "access_log off;\nkeepalive_requests 10000000;\nkeepalive_timeout 60s;\n\
         client_body_temp_path {d}/{name}-body;\nproxy_temp_path {d}/{name}-proxy;\n\
         fastcgi_temp_path {d}/{name}-fcgi;\nuwsgi_temp_path {d}/{name}-uwsgi;\n\
         scgi_temp_path {d}/{name}-scgi;\n"
    )
}

fn backend_conf(dir: &Path, port: u16) -> String {
    format!(
        "{}http {{\n{}server {{\nlisten 127.0.0.1:{port} backlog=4096;\n\
         location / {{ default_type application/json; return 200 '{BACKEND_BODY}'; }}\n}}\n}}\n",
        nginx_common(dir, "backend"),
        nginx_http_common(dir, "backend"),
    )
}

fn nginx_proxy_conf(dir: &Path, port: u16, backend_port: u16) -> String {
    format!(
        "{}http {{\n{}upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 256; \
         keepalive_requests 10000000; }}\nserver {{\nlisten 127.0.0.1:{port} backlog=4096;\n\
         location / {{ proxy_pass http://backend; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; }}\n}}\n}}\n",
        nginx_common(dir, "proxy"),
        nginx_http_common(dir, "proxy"),
    )
}

fn start_nginx(dir: &Path, name: &str, conf: &str, cpu: &str) -> Result<Proc> {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf)?;
    let child = Command::new("taskset")
        .args(["-c", cpu, "nginx", "-e", "stderr", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Proc(child))
}

fn start_haproxy(dir: &Path, port: u16, backend_port: u16) -> Result<Proc> {
    let path = dir.join("haproxy.cfg");
    std::fs::write(
        &path,
        format!(
            "global\n  nbthread 1\n  maxconn 4096\n\
             defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n\
             timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  server s1 127.0.0.1:{backend_port}\n"
        ),
    )?;
    let child = Command::new("taskset")
        .args(["-c", PROXY_CPU, "haproxy", "-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .context("starting haproxy")?;
    Ok(Proc(child))
}

/// Waits until `url` answers 200 (the gateway once the snapshot arrived, the peers once they
/// listen).
async fn wait_http(url: &str, headers: &[(String, String)]) -> Result<()> {
    let http = http_client();
    let start = Instant::now();
    loop {
        let mut req = http.get(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let last = match req.send().await {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > Duration::from_secs(15) {
            bail!("{url} did not answer 200 within 15 s: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// User + system CPU time of every thread of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .context("short /proc stat")?
            .parse()
            .context("/proc stat field")
    };
    Ok(get(14)? + get(15)?)
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One wrk run against `t` on the load CPU; errors (non-2xx, socket errors) fail the run.
fn run_wrk(t: &Target, connections: usize, secs: u64) -> Result<Sample> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", LOAD_CPU, "wrk", "-t1", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"));
    for (k, v) in &t.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let before = t.pid.map(cpu_ticks).transpose()?;
    let out = cmd.arg(&t.url).output().context("running wrk")?;
    let after = t.pid.map(cpu_ticks).transpose()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk against {} failed or saw errors:\n{text}", t.name);
    }
    let requests: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let percentile = |p: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(str::trim))
            .and_then(parse_duration_us)
            .with_context(|| format!("no {p} latency in wrk output:\n{text}"))
    };
    let cpu_us = match (before, after) {
        (Some(b), Some(a)) if requests > 0.0 => {
            Some((a - b) as f64 / clock_ticks_per_sec() * 1e6 / requests)
        }
        _ => None,
    };
    Ok(Sample {
        rps,
        p50_us: percentile("50%")?,
        p99_us: percentile("99%")?,
        cpu_us,
    })
}

/// wrk's `310.00us`, `1.23ms` or `2.00s`, in µs.
fn parse_duration_us(s: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// The machine, and the peers' versions (they differ between Debian releases).
fn machine() -> String {
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let all = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&all)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    format!(
        "{}; {}; {}; {}",
        super::machine::describe(),
        version("nginx", "-v"),
        version("haproxy", "-v"),
        version("wrk", "-v")
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

/// One ratio of the report: the median of per-round ratios, their spread, and the target with
/// whether higher is better.
struct Ratio {
    label: String,
    median: f64,
    spread: (f64, f64),
    target: Option<(f64, bool)>,
}

struct Report<'a> {
    settings: &'a Settings,
    names: Vec<&'static str>,
    samples: Vec<Vec<Sample>>,
    machine: String,
    load: (String, String),
    /// When the run started (UTC).
    started: String,
}

impl Report<'_> {
    fn runs(&self, name: &str) -> &[Sample] {
        self.names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.samples.get(i))
            .map_or(&[], Vec::as_slice)
    }

    fn med(&self, name: &str, f: impl Fn(&Sample) -> Option<f64>) -> f64 {
        median(self.runs(name).iter().filter_map(f).collect())
    }

    /// Each round's ratio of `a` to `b` (same round, so slow drifts of the machine cancel).
    fn round_ratios(&self, a: &str, b: &str, f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
        let (a, b) = (self.runs(a), self.runs(b));
        a.iter()
            .zip(b)
            .filter_map(|(x, y)| Some(f(x)? / f(y)?))
            .collect()
    }

    fn ratios(&self) -> Vec<Ratio> {
        let rps = |s: &Sample| Some(s.rps);
        let cpu = |s: &Sample| s.cpu_us;
        let mut out = Vec::new();
        let mut add = |label: String, v: Vec<f64>, target: Option<(f64, bool)>| {
            if v.is_empty() {
                return;
            }
            let (lo, hi) = spread(&v);
            out.push(Ratio {
                label,
                median: median(v),
                spread: (lo, hi),
                target,
            });
        };
        // (target, higher is better)
        add(
            "apig / haproxy requests/s".into(),
            self.round_ratios("apig", "haproxy", rps),
            Some((1.0, true)),
        );
        add(
            "apig / haproxy CPU per request".into(),
            self.round_ratios("apig", "haproxy", cpu),
            Some((1.0, false)),
        );
        add(
            "apig / nginx requests/s".into(),
            self.round_ratios("apig", "nginx", rps),
            None,
        );
        add(
            "apig / nginx CPU per request".into(),
            self.round_ratios("apig", "nginx", cpu),
            None,
        );
        add(
            "apig-full / apig requests/s".into(),
            self.round_ratios("apig-full", "apig", rps),
            Some((0.8, true)),
        );
        add(
            "apig / base requests/s".into(),
            self.round_ratios("apig", "base", rps),
            None,
        );
        add(
            "apig / base CPU per request".into(),
            self.round_ratios("apig", "base", cpu),
            None,
        );
        add(
            "apig / direct requests/s".into(),
            self.round_ratios("apig", "direct", rps),
            None,
        );
        out
    }

    fn text(&self) -> String {
        let s = self.settings;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# cargo xtask bench peers ({}): {} rounds × {} s, wrk -t1 -c{}",
            self.started, s.rounds, s.secs, s.connections
        );
        let _ = writeln!(t, "# machine: {}", self.machine);
        let _ = writeln!(
            t,
            "# load average before / after: {} / {}",
            self.load.0, self.load.1
        );
        let _ = writeln!(
            t,
            "# proxies on CPU {PROXY_CPU} with one thread; wrk and the backend on CPU {LOAD_CPU}\n"
        );
        let _ = writeln!(
            t,
            "{:<10} {:>10} {:>19} {:>9} {:>9} {:>10}",
            "target", "req/s", "(min–max)", "p50 µs", "p99 µs", "CPU µs/req"
        );
        for (i, name) in self.names.iter().enumerate() {
            let rps: Vec<f64> = self.samples[i].iter().map(|x| x.rps).collect();
            let (lo, hi) = spread(&rps);
            let cpu = self.med(name, |x| x.cpu_us);
            let _ = writeln!(
                t,
                "{:<10} {:>10.0} {:>19} {:>9.0} {:>9.0} {:>10}",
                name,
                median(rps),
                format!("({lo:.0}–{hi:.0})"),
                self.med(name, |x| Some(x.p50_us)),
                self.med(name, |x| Some(x.p99_us)),
                if cpu.is_nan() {
                    "-".to_owned()
                } else {
                    format!("{cpu:.2}")
                }
            );
        }
        let _ = writeln!(t, "\nratios (median of per-round ratios, min–max):");
        for Ratio {
            label,
            median: m,
            spread: (lo, hi),
            target,
        } in self.ratios()
        {
            let verdict = match target {
                Some((goal, true)) => {
                    format!(
                        "target ≥ {goal}: {}",
                        if m >= goal { "met" } else { "NOT met" }
                    )
                }
                Some((goal, false)) => {
                    format!(
                        "target ≤ {goal}: {}",
                        if m <= goal { "met" } else { "NOT met" }
                    )
                }
                None => String::new(),
            };
            let _ = writeln!(t, "  {label:<32} {m:>6.3}  ({lo:.3}–{hi:.3})  {verdict}");
        }
        t
    }

    fn json(&self) -> Value {
        let targets: Vec<Value> = self
            .names
            .iter()
            .zip(&self.samples)
            .map(|(name, runs)| {
                json!({
                    "target": name,
                    "runs": runs.iter().map(|x| json!({
                        "requests_per_sec": x.rps, "p50_us": x.p50_us, "p99_us": x.p99_us,
                        "cpu_us_per_request": x.cpu_us,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios()
            .into_iter()
            .map(|r| {
                let Ratio {
                    label,
                    median: m,
                    spread: (lo, hi),
                    target,
                } = r;
                json!({"ratio": label, "median": m, "min": lo, "max": hi,
                       "target": target.map(|t| t.0)})
            })
            .collect();
        json!({
            "bench": "peers",
            "started": self.started,
            "rounds": self.settings.rounds,
            "secs": self.settings.secs,
            "connections": self.settings.connections,
            "machine": self.machine,
            "load_before": self.load.0,
            "load_after": self.load.1,
            "targets": targets,
            "ratios": ratios,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(parse_duration_us("310.00us"), Some(310.0));
        assert_eq!(parse_duration_us("1.50ms"), Some(1500.0));
        assert_eq!(parse_duration_us("2.00s"), Some(2e6));
        assert_eq!(parse_duration_us("1.00m"), Some(60e6));
        assert_eq!(parse_duration_us("fast"), None);
    }

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (1.0, 3.0));
    }
}
