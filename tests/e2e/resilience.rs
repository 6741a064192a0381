//! Resilience with real processes: outages, republishes and restarts under load, routes removed
//! under in-flight requests, corrupted caches, `kill -9` during writes, and a soak. Each scenario
//! runs at a short scale here (so CI stays fast) and at the scale from
//! `cargo xtask resilience` (the same tests with `APIG_RESILIENCE_SCALE=full`), which prints
//! its figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apig_testkit::eventually;
use serde_json::json;

use crate::support::{Stack, RELEASE, WAIT};

/// How hard a scenario pushes.
#[derive(Clone, Copy, Debug)]
struct Scale {
    outage: Duration,
    republishes: usize,
    restarts: usize,
    kill_cycles: usize,
    soak: Duration,
}

const SHORT: Scale = Scale {
    outage: Duration::from_secs(5),
    republishes: 10,
    restarts: 3,
    kill_cycles: 5,
    soak: Duration::from_secs(10),
};

/// The hardening issue's figures: `APIG_RESILIENCE_SCALE=full`, which `cargo xtask resilience`
/// sets (release build, one test at a time, figures printed).
const FULL: Scale = Scale {
    outage: Duration::from_secs(600),
    republishes: 100,
    restarts: 20,
    kill_cycles: 200,
    soak: Duration::from_secs(600),
};

/// SHORT unless `APIG_RESILIENCE_SCALE=full`.
fn scale() -> Scale {
    match std::env::var("APIG_RESILIENCE_SCALE").as_deref() {
        Ok("full") => FULL,
        _ => SHORT,
    }
}

/// Clients calling one URL in a loop until stopped; counts answers by status (0: no answer).
struct Load {
    stop: Arc<AtomicBool>,
    statuses: Arc<Mutex<BTreeMap<u16, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, host: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, statuses) = (stop.clone(), statuses.clone());
                let (url, host) = (url.clone(), host.clone());
                tokio::spawn(async move {
                    let http = apig_testkit::http_client();
                    while !stop.load(Ordering::Relaxed) {
                        let status = match http.get(&url).header("host", &host).send().await {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            statuses,
            tasks,
        }
    }

    /// Stops the clients; returns the answers by status.
    async fn finish(self) -> BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let statuses = self.statuses.lock().unwrap().clone();
        statuses
    }
}

fn assert_all_ok(what: &str, statuses: &BTreeMap<u16, u64>) {
    let total: u64 = statuses.values().sum();
    let ok = statuses.get(&200).copied().unwrap_or(0);
    println!("{what}: {total} requests, by status {statuses:?}");
    assert!(total > 0, "{what}: no request was made");
    assert_eq!(
        ok, total,
        "{what}: every request must succeed: {statuses:?}"
    );
}

/// A stack with one API (`GET /steady`, prefix match) published and routed; returns the stack,
/// the group's host, the group id and the API id.
async fn steady() -> (Stack, String, String, String) {
    // Unthrottled: the load measures failures, not the default per-API limit.
    let s = Stack::start_with_args(&[], &["--default-api-rate-limit", "0"]).await;
    let (group, host) = s.group("steady").await;
    let api = s
        .create_api(&s.http_api(
            &group,
            "steady",
            "GET",
            "/steady",
            json!({"match_mode": "SWA"}),
        ))
        .await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/steady", &[]).await;
    (s, host, group, api)
}

async fn control_plane_down_under_load(scale: Scale) {
    let (mut s, host, _, _) = steady().await;
    let load = Load::start(s.gw.url("/steady"), host.clone(), 2);
    s.cp.kill();
    let until = Instant::now() + scale.outage;
    let mut ready_checks = 0;
    while Instant::now() < until {
        assert!(s.gw.is_ready().await, "the replica stays ready");
        ready_checks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    s.cp.restart();
    s.settled().await;
    let statuses = load.finish().await;
    println!(
        "outage of {:?}: {ready_checks} readiness checks",
        scale.outage
    );
    assert_all_ok("control plane down", &statuses);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_down_the_gateway_serves_and_stays_ready() {
    control_plane_down_under_load(scale()).await;
}

/// Republishes (new routes beside the steady one, and the steady API itself again) and
/// control-plane restarts under load: a request valid under every configuration never fails,
/// so no replica ever applies an empty or partial snapshot.
async fn republish_and_restart_under_load(scale: Scale) {
    let (mut s, host, group, steady_id) = steady().await;
    let load = Load::start(s.gw.url("/steady/x"), host.clone(), 2);
    let restart_every = (scale.republishes / scale.restarts.max(1)).max(1);
    let mut restarts = 0;
    let mut churn = Vec::new();
    for i in 0..scale.republishes {
        let other = s.http_api(
            &group,
            &format!("churn_{i}"),
            "GET",
            &format!("/churn/{i}"),
            json!({}),
        );
        let other = s.create_api(&other).await;
        s.publish(&other, RELEASE).await;
        s.publish(&steady_id, RELEASE).await;
        churn.push(other);
        if i >= 2 {
            s.offline(&churn[i - 2], RELEASE).await;
        }
        if (i + 1) % restart_every == 0 && restarts < scale.restarts {
            s.cp.restart();
            restarts += 1;
        }
    }
    s.settled().await;
    let statuses = load.finish().await;
    println!(
        "{} republishes, {restarts} control-plane restarts",
        scale.republishes
    );
    assert_all_ok("republish and restart", &statuses);
    // The last changes are served: the newest route answers, one taken offline does not.
    let last = scale.republishes - 1;
    assert_eq!(
        s.call("GET", &host, &format!("/churn/{last}"), &[])
            .await
            .status,
        200
    );
    if last >= 2 {
        assert_eq!(
            s.call("GET", &host, &format!("/churn/{}", last - 2), &[])
                .await
                .status,
            404
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn republishes_and_restarts_never_fail_a_valid_request() {
    republish_and_restart_under_load(scale()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_request_survives_the_removal_of_its_route() {
    let s = Stack::start().await;
    let (group, host) = s.group("slow").await;
    let body = s.http_api(
        &group,
        "slow",
        "GET",
        "/slow",
        json!({"match_mode": "SWA", "backend_api": {"req_uri": "/sleep"}}),
    );
    let api = s.create_api(&body).await;
    s.publish(&api, RELEASE).await;
    s.until_routed(&host, "/slow/1", &[]).await;
    let url = s.gw.url("/slow/2500");
    let in_flight = tokio::spawn({
        let host = host.clone();
        async move {
            let r = apig_testkit::http_client()
                .get(url)
                .header("host", host)
                .send()
                .await
                .expect("an answer");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.offline(&api, RELEASE).await;
    s.until_gone(&host, "/slow/1").await;
    let (status, text) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("/sleep/2500"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_cache_keeps_a_cold_replica_not_ready_until_the_control_plane_answers() {
    let (mut s, host, _, _) = steady().await;
    s.settled().await;
    s.cp.kill();
    // Cold start from an intact cache: serves at once.
    s.gw.restart();
    assert!(s.gw.is_ready().await);
    assert_eq!(s.call("GET", &host, "/steady", &[]).await.status, 200);
    // Cold start from a corrupted cache: not ready, and says so instead of serving garbage.
    let cache = std::fs::read_dir(s.gw_cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snapshot-")
        })
        .expect("the snapshot cache file");
    let mut bytes = std::fs::read(&cache).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&cache, &bytes).unwrap();
    s.gw.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!s.gw.is_ready().await, "a corrupted cache is not served");
    let r = s.call("GET", &host, "/steady", &[]).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    // The control plane returns: the replica gets a good snapshot and is ready.
    s.cp.restart();
    eventually(WAIT, "the replica ready again", || async {
        s.gw.is_ready().await.then_some(())
    })
    .await;
    assert_eq!(s.call("GET", &host, "/steady", &[]).await.status, 200);
}

/// `kill -9` of the control plane while writers create resources: every write it acknowledged
/// (201) is there after the restart.
async fn kill_during_writes(scale: Scale) {
    let (mut s, _, _, _) = steady().await;
    let mut acknowledged: Vec<String> = Vec::new();
    for cycle in 0..scale.kill_cycles {
        let client = s.cp.client();
        let inst = s.inst("/apps");
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (client, inst) = (client.clone(), inst.clone());
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for n in 0.. {
                        let r = client
                            .post_checked(&inst, &json!({"name": format!("app_{cycle}_{w}_{n}")}))
                            .await;
                        match r {
                            Some(r) if r.status == 201 => {
                                ids.push(r.body["id"].as_str().unwrap_or_default().to_owned())
                            }
                            Some(_) => {}
                            None => break,
                        }
                    }
                    ids
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + (cycle as u64 * 37) % 300)).await;
        s.cp.kill();
        for w in writers {
            acknowledged.extend(w.await.unwrap());
        }
        s.cp.restart();
    }
    let mut lost = Vec::new();
    for id in &acknowledged {
        let r = s.api.get(&s.inst(&format!("/apps/{id}"))).await;
        if r.status != 200 {
            lost.push(id.clone());
        }
    }
    println!(
        "{} kill -9 cycles: {} acknowledged writes, {} lost",
        scale.kill_cycles,
        acknowledged.len(),
        lost.len()
    );
    assert!(!acknowledged.is_empty(), "no write was acknowledged");
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    kill_during_writes(scale()).await;
}

/// What `/proc` says about a process: resident memory (KiB), open files, threads.
fn process_figures(pid: u32) -> (u64, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (field("VmRSS:"), fds, field("Threads:"))
}

/// Load for `scale.soak` with periodic republishes: the gateway's memory, open files and threads
/// after a warm-up stay flat (within bounds that a leak per request or per swap would break).
async fn soak(scale: Scale) {
    let (s, host, group, _) = steady().await;
    let pid = s.gw.pid();
    let load = Load::start(s.gw.url("/steady"), host.clone(), 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = process_figures(pid);
    let until = Instant::now() + scale.soak;
    let mut i = 0;
    let mut samples = vec![start];
    while Instant::now() < until {
        let other = s.http_api(
            &group,
            &format!("soak_{i}"),
            "GET",
            &format!("/soak/{i}"),
            json!({}),
        );
        let other = s.create_api(&other).await;
        s.publish(&other, RELEASE).await;
        s.offline(&other, RELEASE).await;
        i += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(process_figures(pid));
    }
    let end = process_figures(pid);
    let statuses = load.finish().await;
    println!(
        "soak {:?}: {i} publish/offline pairs; gateway (RSS KiB, fds, threads) start {start:?} end {end:?}; max RSS {} KiB",
        scale.soak,
        samples.iter().map(|s| s.0).max().unwrap_or(0)
    );
    assert_all_ok("soak", &statuses);
    assert!(
        end.0 <= start.0 * 3 / 2 + 8 * 1024,
        "RSS grew: {start:?} → {end:?}"
    );
    assert!(
        end.1 <= start.1 + 16,
        "open files grew: {start:?} → {end:?}"
    );
    assert!(end.2 <= start.2 + 4, "threads grew: {start:?} → {end:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_keeps_resources_flat() {
    soak(scale()).await;
}
