//! `scale [N ...]`: one gateway serving N published APIs against one serving a single API.
//!
//! The N APIs (paths `/v1/svc{i}/items/{id}`, round robin over 8 groups, RELEASE) are clones of
//! one API created and published through the management API, loaded with `apig backup` /
//! `apig restore` (`clone.rs` says why and how). Measured per N, in one run:
//!
//! - gateway start → first snapshot applied and the first and last API answering, and the
//!   gateway's own apply time of that snapshot (`apig_gateway_snapshot_apply_seconds`);
//! - one more API published: the publish call, publish answer → the new API answering on the
//!   gateway, and the gateway's prepare + swap time (medians of several);
//! - gateway RSS with N APIs minus RSS with one API, divided by N, read once RSS settles after
//!   the same warm-up on both;
//! - wrk throughput against the same API on both gateways, alternating rounds, and the ratio.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use apig_testkit::{apig_command, http_client, ControlPlane, EchoBackend, Gateway};
use serde_json::json;

use super::clone::{clone_api, Template};
use super::{machine, wrk, RELEASE};

const GROUPS: usize = 8;
/// Publishes measured per N (each also creates its API first, which is not timed).
const PUBLISHES: usize = 5;
const WRK_ROUNDS: usize = 3;
const WRK_SECS: u64 = 5;
const WARM_UP_REQUESTS: usize = 500;

/// The bootstrap instance with 8 groups and one published API (`/v1/svc0/items/{id}` in the
/// first group); its backup is the template for every N.
struct Seed {
    cp: ControlPlane,
    inst: String,
    groups: Vec<String>,
    hosts: Vec<String>,
    backup: Vec<u8>,
    api_id: String,
    backend: EchoBackend,
}

/// One N's figures.
struct Row {
    n: usize,
    control_start: Duration,
    ready_one: Duration,
    ready_n: Duration,
    first_apply_n: f64,
    publish_call: Duration,
    publish_to_answer: Duration,
    publish_apply: f64,
    rss_one_kib: u64,
    rss_n_kib: u64,
    rps_one: f64,
    rps_n: f64,
    ratio: f64,
    /// Every round's req/s, 1 API and N APIs.
    rounds: Vec<(f64, f64)>,
}

pub(super) async fn scale(bin: PathBuf, sizes: &[usize]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (started, stamp) = machine::now_utc();
    let machine_before = machine::describe();
    eprintln!("scale: {machine_before}");
    let seed = seed(&bin, dir.path()).await?;
    let mut rows = Vec::new();
    for &n in sizes {
        if n < 2 {
            bail!("N must be at least 2 (the baseline already serves one API)");
        }
        rows.push(measure(&bin, dir.path(), &seed, n).await?);
    }
    let report = report(&rows, &started, &machine_before);
    println!("{report}");
    let out = crate::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let file = out.join(format!("scale-{stamp}.txt"));
    std::fs::write(&file, &report)?;
    println!("written to {}", file.display());
    Ok(())
}

async fn seed(bin: &Path, dir: &Path) -> Result<Seed> {
    let data = dir.join("seed");
    let mut cp = ControlPlane::start(bin, &data);
    let backend = EchoBackend::start().await;
    let api = cp.client();
    let inst = format!("/instances/{}", cp.seed.instance_id);
    let (mut groups, mut hosts) = (Vec::new(), Vec::new());
    for g in 0..GROUPS {
        let r = api
            .post(
                &format!("{inst}/api-groups"),
                &json!({"name": format!("scale_g{g}")}),
            )
            .await;
        if r.status != 201 {
            bail!("creating a group failed: {:?}", r.body);
        }
        groups.push(r.body["id"].as_str().unwrap_or_default().to_owned());
        hosts.push(r.body["sl_domain"].as_str().unwrap_or_default().to_owned());
    }
    let api_id = create_api(
        &api,
        &inst,
        "scale_api_0",
        "/v1/svc0/items/{id}",
        &groups[0],
        &backend.authority(),
    )
    .await?;
    publish(&api, &inst, &api_id).await?;
    // sled admits one process per store: the backup is taken from the stopped control plane.
    cp.kill();
    let file = dir.join("seed.backup");
    let status = apig_command(bin)
        .args(["backup", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&file)
        .status()?;
    if !status.success() {
        bail!("apig backup failed: {status}");
    }
    let backup = std::fs::read(&file)?;
    cp.restart();
    Ok(Seed {
        cp,
        inst,
        groups,
        hosts,
        backup,
        api_id,
        backend,
    })
}

async fn create_api(
    api: &apig_testkit::MgmtClient,
    inst: &str,
    name: &str,
    path: &str,
    group: &str,
    backend: &str,
) -> Result<String> {
    let r = api
        .post(
            &format!("{inst}/apis"),
            &json!({"name": name, "type": 1, "req_protocol": "HTTP", "req_method": "GET", "req_uri": path,
                    "auth_type": "NONE", "backend_type": "HTTP", "group_id": group,
                    "req_params": [{"name": "id", "type": "STRING", "location": "PATH", "required": 1}],
                    "backend_api": {"url_domain": backend, "req_protocol": "HTTP", "req_method": "GET",
                                    "req_uri": "/echo", "timeout": 5000}}),
        )
        .await;
    if r.status != 201 {
        bail!("creating an API failed: {:?}", r.body);
    }
    Ok(r.body["id"].as_str().unwrap_or_default().to_owned())
}

async fn publish(api: &apig_testkit::MgmtClient, inst: &str, id: &str) -> Result<()> {
    let r = api
        .post(
            &format!("{inst}/apis/action"),
            &json!({"action": "online", "api_id": id, "env_id": RELEASE}),
        )
        .await;
    if r.status != 201 {
        bail!("publishing failed: {:?}", r.body);
    }
    Ok(())
}

/// A gateway of the instance without the default per-API limit (the benchmark measures the
/// gateway, not the throttle).
fn gateway(bin: &Path, cp: &ControlPlane, cache: &Path) -> Result<Gateway> {
    Ok(Gateway::start_with_args(
        bin,
        &cp.grpc_url(),
        &cp.seed.instance_id,
        cache,
        &cp.cluster_token,
        "127.0.0.1:0".parse()?,
        &["--default-api-rate-limit", "0"],
    ))
}

/// Polls (2 ms apart, so the poller does not take the CPU the gateway needs) until `path` on
/// `host` answers 200; the time it took.
async fn until_ok(gw: &Gateway, host: &str, path: &str, timeout: Duration) -> Result<Duration> {
    let http = http_client();
    let start = Instant::now();
    loop {
        let status = http
            .get(gw.url(path))
            .header("host", host)
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{host}{path} did not answer 200 within {timeout:?} (last: {status:?})");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn warm_up(gw: &Gateway, host: &str) -> Result<()> {
    let http = http_client();
    for i in 0..WARM_UP_REQUESTS {
        let r = http
            .get(gw.url(&format!("/v1/svc0/items/{i}")))
            .header("host", host)
            .send()
            .await?;
        if r.status() != 200 {
            bail!("warm-up answered {}", r.status());
        }
    }
    Ok(())
}

/// The `_sum` and `_count` of the gateway's snapshot apply histogram, from one scrape.
async fn apply_seconds(gw: &Gateway) -> Result<(f64, f64)> {
    let text = machine::scrape(gw.admin).await?;
    Ok((
        machine::metric(&text, "apig_gateway_snapshot_apply_seconds_sum")?,
        machine::metric(&text, "apig_gateway_snapshot_apply_seconds_count")?,
    ))
}

/// The apply histogram once its count reaches `count`: the gateway records the time just after
/// the swap, so a request may see the new API a moment before the figure is there.
async fn apply_seconds_at(gw: &Gateway, count: f64) -> Result<f64> {
    let start = Instant::now();
    loop {
        let (sum, seen) = apply_seconds(gw).await?;
        if seen == count {
            return Ok(sum);
        }
        if seen > count || start.elapsed() > Duration::from_secs(10) {
            bail!("the gateway applied {seen} snapshots, expected {count}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn median_duration(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn measure(bin: &Path, dir: &Path, seed: &Seed, n: usize) -> Result<Row> {
    eprintln!("scale: N = {n}: cloning the template into a backup and restoring it");
    let groups = seed.groups.clone();
    let template = Template {
        instance: seed.inst.trim_start_matches("/instances/"),
        api_id: &seed.api_id,
        name: "scale_api_0",
        name_prefix: "scale_api_",
        path: "/v1/svc0/",
        path_prefix: "/v1/svc",
        groups: &groups,
        shared_ids: &[
            seed.cp.seed.instance_id.clone(),
            seed.cp.seed.project_id.clone(),
        ],
    };
    let bytes = clone_api(&seed.backup, &template, n - 1)?;
    let file = dir.join(format!("n{n}.backup"));
    std::fs::write(&file, bytes)?;
    let data = dir.join(format!("n{n}"));
    let status = apig_command(bin)
        .args(["restore", "--data-dir"])
        .arg(&data)
        .arg("--in")
        .arg(&file)
        .status()?;
    if !status.success() {
        bail!("apig restore failed: {status}");
    }
    let t = Instant::now();
    let cp = ControlPlane::start(bin, &data);
    let control_start = t.elapsed();
    let last = n - 1;
    let last_host = &seed.hosts[last % GROUPS];
    let host = &seed.hosts[0];

    eprintln!("scale: N = {n}: starting the gateways");
    let t = Instant::now();
    let gw_one = gateway(bin, &seed.cp, &dir.join(format!("gw-one-{n}")))?;
    until_ok(&gw_one, host, "/v1/svc0/items/1", Duration::from_secs(30)).await?;
    let ready_one = t.elapsed();
    let t = Instant::now();
    let gw_n = gateway(bin, &cp, &dir.join(format!("gw-n-{n}")))?;
    until_ok(&gw_n, host, "/v1/svc0/items/1", Duration::from_secs(120)).await?;
    until_ok(
        &gw_n,
        last_host,
        &format!("/v1/svc{last}/items/1"),
        Duration::from_secs(5),
    )
    .await?;
    let ready_n = t.elapsed();
    let first_apply_n = apply_seconds_at(&gw_n, 1.0).await?;

    eprintln!("scale: N = {n}: RSS");
    warm_up(&gw_one, host).await?;
    warm_up(&gw_n, host).await?;
    let rss_one_kib = machine::settled_rss_kib(gw_one.pid()).await?;
    let rss_n_kib = machine::settled_rss_kib(gw_n.pid()).await?;

    eprintln!("scale: N = {n}: {PUBLISHES} publishes");
    let api = cp.client();
    let (mut calls, mut answers, mut applies) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..PUBLISHES {
        let path = format!("/v1/extra{k}/items/{{id}}");
        let id = create_api(
            &api,
            &seed.inst,
            &format!("scale_extra_{k}"),
            &path,
            &seed.groups[1],
            &seed.backend.authority(),
        )
        .await?;
        let (sum, count) = apply_seconds(&gw_n).await?;
        let t = Instant::now();
        publish(&api, &seed.inst, &id).await?;
        calls.push(t.elapsed());
        answers.push(
            until_ok(
                &gw_n,
                &seed.hosts[1],
                &format!("/v1/extra{k}/items/1"),
                Duration::from_secs(60),
            )
            .await?,
        );
        applies.push(apply_seconds_at(&gw_n, count + 1.0).await? - sum);
    }

    eprintln!("scale: N = {n}: wrk, {WRK_ROUNDS} alternating rounds of {WRK_SECS}s");
    let headers = [("Host", host.as_str())];
    let (mut ones, mut ns) = (Vec::new(), Vec::new());
    for _ in 0..WRK_ROUNDS {
        let url_one = gw_one.url("/v1/svc0/items/42");
        let url_n = gw_n.url("/v1/svc0/items/42");
        ones.push(tokio::task::block_in_place(|| {
            wrk(&url_one, &headers, WRK_SECS)
        })?);
        ns.push(tokio::task::block_in_place(|| {
            wrk(&url_n, &headers, WRK_SECS)
        })?);
    }
    let ratios: Vec<f64> = ns.iter().zip(&ones).map(|(n, o)| n / o).collect();
    eprintln!("scale: N = {n}: 1 API {ones:?} req/s, N APIs {ns:?} req/s");
    Ok(Row {
        n,
        control_start,
        ready_one,
        ready_n,
        first_apply_n,
        publish_call: median_duration(calls),
        publish_to_answer: median_duration(answers),
        publish_apply: median(applies),
        rss_one_kib,
        rss_n_kib,
        rps_one: median(ones.clone()),
        rps_n: median(ns.clone()),
        ratio: median(ratios),
        rounds: ones.into_iter().zip(ns).collect(),
    })
}

fn report(rows: &[Row], started: &str, machine_before: &str) -> String {
    let mut s = String::new();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    s.push_str(&format!(
        "scale benchmark, {started}\nmachine at start: {machine_before}\nmachine at end:   {}\n\
         release build; loopback; 8 groups; paths /v1/svc{{i}}/items/{{id}}; RELEASE\n\
         apply time: apig_gateway_snapshot_apply_seconds (from the received snapshot to the\n\
         swap done: digest, prepare, swap)\n\n",
        machine::describe()
    ));
    for r in rows {
        let per_api = (r.rss_n_kib.saturating_sub(r.rss_one_kib) * 1024) as f64 / r.n as f64;
        s.push_str(&format!(
            "N = {n} published APIs\n\
             \x20 control plane start (compiles the snapshot)        {cs}\n\
             \x20 gateway start -> serving, 1 API                    {r1}\n\
             \x20 gateway start -> serving, N APIs                   {rn}\n\
             \x20   of which the gateway's apply time (metric)       {fa:.0} ms   (target <= 1000 ms)\n\
             \x20 publish one more API (median of {p}):\n\
             \x20   publish call (control plane compile + commit)   {pc}\n\
             \x20   publish answer -> answering on the gateway      {pa}\n\
             \x20   the gateway's apply time (metric)               {pp:.0} ms   (target <= 1000 ms)\n\
             \x20 gateway RSS: 1 API {ro} KiB, N APIs {rnk} KiB -> {per_api:.0} bytes per API   (target <= 2048)\n\
             \x20 wrk -t1 -c32 {w}s x {rounds} alternating rounds, medians:\n\
             \x20   1 API {o:.0} req/s, N APIs {nn:.0} req/s -> ratio {ratio:.3}   (target >= 0.95)\n\
             \x20   rounds (1 API, N APIs): {per_round}\n\n",
            n = r.n,
            cs = ms(r.control_start),
            r1 = ms(r.ready_one),
            rn = ms(r.ready_n),
            fa = r.first_apply_n * 1000.0,
            p = PUBLISHES,
            pc = ms(r.publish_call),
            pa = ms(r.publish_to_answer),
            pp = r.publish_apply * 1000.0,
            ro = r.rss_one_kib,
            rnk = r.rss_n_kib,
            w = WRK_SECS,
            rounds = WRK_ROUNDS,
            o = r.rps_one,
            nn = r.rps_n,
            ratio = r.ratio,
            per_round = r
                .rounds
                .iter()
                .map(|(o, n)| format!("{o:.0}/{n:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    s
}

/// `scale` arguments: the Ns (default 10000 and 100000).
pub(super) fn sizes(args: &[String]) -> Result<Vec<usize>> {
    if args.is_empty() {
        return Ok(vec![10_000, 100_000]);
    }
    args.iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("not a number of APIs: {a}"))
        })
        .collect()
}
