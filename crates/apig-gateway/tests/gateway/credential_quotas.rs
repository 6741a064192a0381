//! Credential quotas (APIG app quotas) end to end against the FAKE control plane: the limit per
//! window across APIs, 405 `APIG.0501`, the debug header, throttled calls not counted, replica
//! shares, counters kept across republishes and reset by new numbers, and counters kept across a
//! gateway restart (the quota file in the cache directory).
//!
//! Every quota here has a one-day window anchored an hour ago, so no window boundary falls
//! inside a test.

use std::path::Path;
use std::time::Duration;

use apig_proto::{Api, App, AppQuota, AuthType, Snapshot, Throttle};

use crate::harness::*;

const DAY: u64 = 86_400_000;
const CODE_METERED: &str = "bWV0ZXJlZC1hcHAtY29kZS1mb3ItcXVvdGEtdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";
const CODE_FREE: &str = "ZnJlZS1hcHAtY29kZS1mb3ItcXVvdGEtdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZmdoaQ==";
const QUOTA_EXHAUSTED: &str = "The app quota has been used up.";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A one-day quota whose current window started an hour ago.
fn quota(id: &str, limit: u64) -> AppQuota {
    AppQuota {
        quota_id: id.into(),
        limit,
        window_ms: DAY,
        anchor_unix_ms: now_ms() - 3_600_000,
    }
}

fn app(id: &str, code: &str, quota: Option<AppQuota>) -> App {
    App {
        id: id.into(),
        name: format!("name-{id}"),
        app_key: format!("key-{id}"),
        app_secret: format!("secret-{id}"),
        app_codes: vec![code.into()],
        acl: None,
        quota,
    }
}

/// A MOCK API with APP authentication (AppCode allowed) authorizing both test apps.
fn app_api(id: &str, path: &str) -> Api {
    let mut a = with_mock(api(id, "GET", path), 200, "ok");
    a.auth_type = AuthType::App as i32;
    a.app_code_auth_type = "HEADER".into();
    a.authorized_app_ids = vec!["metered".into(), "free".into()];
    a
}

fn quota_snapshot(version: u64, quota: Option<AppQuota>, apis: Vec<Api>) -> Snapshot {
    let mut s = snapshot("epoch-1", version, apis);
    s.apps = vec![
        app("metered", CODE_METERED, quota),
        app("free", CODE_FREE, None),
    ];
    s
}

fn two_apis() -> Vec<Api> {
    vec![
        app_api("a", "/a"),
        app_api("b", "/b"),
        with_mock(api("open", "GET", "/open"), 200, "ok"),
    ]
}

async fn as_app(addr: std::net::SocketAddr, path: &str, code: &str) -> Answer {
    get(addr, path, &[("host", HOST), ("x-apig-appcode", code)]).await
}

async fn as_app_debug(addr: std::net::SocketAddr, path: &str, code: &str) -> Answer {
    get(
        addr,
        path,
        &[
            ("host", HOST),
            ("x-apig-appcode", code),
            ("x-apig-mode", "debug"),
        ],
    )
    .await
}

#[track_caller]
fn assert_quota_exhausted(answer: &Answer) {
    let json = answer.assert_apig_error(405, "APIG.0501");
    assert_eq!(json["error_msg"], QUOTA_EXHAUSTED, "{json}");
}

/// Calls `path` as the metered app `n` times; the statuses.
async fn metered_calls(addr: std::net::SocketAddr, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(as_app(addr, path, CODE_METERED).await.status);
    }
    out
}

#[track_caller]
fn assert_then_405(statuses: &[u16], ok: usize) {
    assert!(
        statuses.iter().take(ok).all(|&s| s == 200),
        "first {ok} must pass: {statuses:?}"
    );
    assert!(
        statuses.iter().skip(ok).all(|&s| s == 405),
        "the rest must be 405: {statuses:?}"
    );
}

fn quota_file(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("quotas-{INSTANCE}.bin"))
}

/// The count saved for `app` in the quota file (its JSON payload after the 52-byte frame
/// header), if the file and the entry exist.
fn saved_count(dir: &Path, app: &str) -> Option<u64> {
    let bytes = std::fs::read(quota_file(dir)).ok()?;
    let body: serde_json::Value = serde_json::from_slice(bytes.get(52..)?).ok()?;
    body["counters"]
        .as_array()?
        .iter()
        .find(|c| c["app_id"] == app)
        .and_then(|c| c["count"].as_u64())
}

#[tokio::test]
async fn a_quota_admits_its_limit_across_apis_then_405_and_other_apps_are_unaffected() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |_| quota_snapshot(1, Some(quota("q1", 3)), two_apis()),
            |_| {},
        )
        .await;
        let addr = stack.gw.addr;

        // Calls on every API count against the one quota; debug mode shows what is left.
        let first = as_app_debug(addr, "/a", CODE_METERED).await;
        assert_eq!(first.status, 200);
        assert_eq!(
            first.headers["x-apig-ratelimit-app-quota"],
            "remain:2,limit:3,time:1 day"
        );
        assert_eq!(as_app(addr, "/b", CODE_METERED).await.status, 200);
        let third = as_app_debug(addr, "/a", CODE_METERED).await;
        assert_eq!(third.status, 200);
        assert_eq!(
            third.headers["x-apig-ratelimit-app-quota"],
            "remain:0,limit:3,time:1 day"
        );
        assert!(
            as_app(addr, "/a", CODE_METERED)
                .await
                .headers
                .get("x-apig-ratelimit-app-quota")
                .is_none(),
            "no debug header without debug mode"
        );

        // The fourth call, on any API: 405 APIG.0501.
        let refused = as_app_debug(addr, "/b", CODE_METERED).await;
        assert_quota_exhausted(&refused);
        assert_eq!(
            refused.headers["x-apig-ratelimit-app-quota"],
            "remain:0,limit:3,time:1 day"
        );
        assert_quota_exhausted(&as_app(addr, "/a", CODE_METERED).await);

        // An app without quota, and an API without app authentication, are not affected.
        for _ in 0..10 {
            let free = as_app_debug(addr, "/a", CODE_FREE).await;
            assert_eq!(free.status, 200);
            assert!(free.headers.get("x-apig-ratelimit-app-quota").is_none());
        }
        assert_eq!(call(addr, "/open").await.status, 200);
        let health = stack.gw.health().await;
        assert_eq!(health["quota_counters"], 1);
    })
    .await;
}

#[tokio::test]
async fn a_throttled_call_does_not_use_quota() {
    bounded(async {
        let throttled = Api {
            throttle: Some(Throttle {
                policy_id: "p".into(),
                r#type: 1,
                window_ms: 60_000,
                api_limit: 100,
                app_limit: 1,
                ..Default::default()
            }),
            ..app_api("t", "/t")
        };
        let stack = Stack::start_snapshot(
            |_| quota_snapshot(1, Some(quota("q1", 2)), vec![throttled, app_api("u", "/u")]),
            |_| {},
        )
        .await;
        let addr = stack.gw.addr;
        assert_eq!(as_app(addr, "/t", CODE_METERED).await.status, 200);
        // Throttled (429, the app counter of /t): no quota header, no quota used.
        let throttled = as_app_debug(addr, "/t", CODE_METERED).await;
        throttled.assert_apig_error(429, "APIG.0308");
        assert!(throttled
            .headers
            .get("x-apig-ratelimit-app-quota")
            .is_none());
        for _ in 0..3 {
            as_app(addr, "/t", CODE_METERED)
                .await
                .assert_apig_error(429, "APIG.0308");
        }
        // One call of the quota is left.
        assert_then_405(&metered_calls(addr, "/u", 2).await, 1);
    })
    .await;
}

#[tokio::test]
async fn counters_survive_republishes_and_new_numbers_reset_them() {
    bounded(async {
        let q = quota("q1", 3);
        let stack =
            Stack::start_snapshot(|_| quota_snapshot(1, Some(q.clone()), two_apis()), |_| {}).await;
        let (addr, cp) = (stack.gw.addr, &stack.cp);
        assert_then_405(&metered_calls(addr, "/a", 4).await, 3);

        // A new version with the same quota (and a new API): still used up.
        let mut more = two_apis();
        more.push(app_api("c", "/c"));
        cp.push(quota_snapshot(2, Some(q.clone()), more.clone()));
        assert_eq!(cp.answer(2).await, Ok(()));
        assert_eq!(as_app(addr, "/c", CODE_FREE).await.status, 200);
        assert_quota_exhausted(&as_app(addr, "/c", CODE_METERED).await);

        // A new limit: a fresh count.
        let bigger = AppQuota {
            limit: 4,
            ..q.clone()
        };
        cp.push(quota_snapshot(3, Some(bigger.clone()), more.clone()));
        assert_eq!(cp.answer(3).await, Ok(()));
        assert_then_405(&metered_calls(addr, "/a", 5).await, 4);

        // A new anchor (the same window length): a fresh count too.
        let moved = AppQuota {
            anchor_unix_ms: bigger.anchor_unix_ms - 60_000,
            ..bigger.clone()
        };
        cp.push(quota_snapshot(4, Some(moved), more.clone()));
        assert_eq!(cp.answer(4).await, Ok(()));
        assert_then_405(&metered_calls(addr, "/a", 5).await, 4);

        // Unbound: unlimited.
        cp.push(quota_snapshot(5, None, more.clone()));
        assert_eq!(cp.answer(5).await, Ok(()));
        assert_eq!(passed(&metered_calls(addr, "/a", 6).await), 6);
        assert_eq!(stack.gw.health().await["quota_counters"], 0);

        // An unusable quota is refused; the last good snapshot keeps serving.
        cp.push(quota_snapshot(
            6,
            Some(AppQuota {
                window_ms: 0,
                ..q.clone()
            }),
            more,
        ));
        let reason = cp.answer(6).await.unwrap_err();
        assert!(reason.contains("credential quota"), "{reason}");
        assert_eq!(as_app(addr, "/a", CODE_METERED).await.status, 200);
    })
    .await;
}

fn passed(statuses: &[u16]) -> usize {
    statuses.iter().filter(|&&s| s == 200).count()
}

#[tokio::test]
async fn a_replica_enforces_its_share_of_the_quota() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |_| quota_snapshot(1, Some(quota("q1", 10)), two_apis()),
            |_| {},
        )
        .await;
        // Replica 1 of 3: 3 of 10.
        stack.cp.push_share(1, 3);
        let mut applied = false;
        for _ in 0..250 {
            if stack.gw.health().await["replica_share"]["count"] == 3 {
                applied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(applied, "share never applied");
        let first = as_app_debug(stack.gw.addr, "/a", CODE_METERED).await;
        assert_eq!(
            first.headers["x-apig-ratelimit-app-quota"],
            "remain:2,limit:3,time:1 day"
        );
        assert_then_405(&metered_calls(stack.gw.addr, "/a", 3).await, 2);
    })
    .await;
}

#[tokio::test]
async fn the_used_quota_survives_a_gateway_restart() {
    bounded(async {
        let q = quota("q1", 3);
        let stack = Stack::start_snapshot(
            |_| quota_snapshot(1, Some(q.clone()), two_apis()),
            // No periodic save during the test: what survives is the shutdown save.
            |c| c.limits.quota_save_interval = Duration::from_secs(3600),
        )
        .await;
        assert_then_405(&metered_calls(stack.gw.addr, "/a", 4).await, 3);
        assert!(!quota_file(stack.cache.path()).exists());

        let Stack { cp, gw, cache, .. } = stack;
        gw.stop().await.unwrap();
        let path = quota_file(cache.path());
        assert_eq!(saved_count(cache.path(), "metered"), Some(3));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Same cache directory, the control plane still serving the same snapshot.
        let gw = RunningGateway::start(config(&cp.url(), cache.path(), TOKEN)).await;
        gw.wait_ready().await;
        assert_quota_exhausted(&as_app(gw.addr, "/a", CODE_METERED).await);
        assert_eq!(as_app(gw.addr, "/a", CODE_FREE).await.status, 200);
        gw.stop().await.unwrap();

        // A corrupt file is ignored with a warning: the counters start from 0.
        std::fs::write(&path, b"APIGQUOT but not really").unwrap();
        let gw = RunningGateway::start(config(&cp.url(), cache.path(), TOKEN)).await;
        gw.wait_ready().await;
        assert_then_405(&metered_calls(gw.addr, "/a", 4).await, 3);
        gw.stop().await.unwrap();
        assert_eq!(saved_count(cache.path(), "metered"), Some(3));

        // Restarted with new numbers from the control plane: the saved count does not apply.
        cp.push(quota_snapshot(
            2,
            Some(AppQuota { limit: 5, ..q }),
            two_apis(),
        ));
        let gw = RunningGateway::start(config(&cp.url(), cache.path(), TOKEN)).await;
        assert_eq!(cp.answer(2).await, Ok(()));
        assert_then_405(&metered_calls(gw.addr, "/a", 6).await, 5);
        gw.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn counters_are_saved_periodically_while_serving() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |_| quota_snapshot(1, Some(quota("q1", 5)), two_apis()),
            |c| c.limits.quota_save_interval = Duration::from_millis(100),
        )
        .await;
        let dir = stack.cache.path().to_path_buf();
        assert_eq!(passed(&metered_calls(stack.gw.addr, "/a", 2).await), 2);
        assert!(
            eventually(Duration::from_secs(5), || saved_count(&dir, "metered")
                == Some(2))
            .await,
            "the count was not saved: {:?}",
            saved_count(&dir, "metered")
        );
        assert_eq!(passed(&metered_calls(stack.gw.addr, "/b", 1).await), 1);
        assert!(
            eventually(Duration::from_secs(5), || saved_count(&dir, "metered")
                == Some(3))
            .await
        );
        assert_eq!(saved_count(&dir, "free"), None, "only apps with a quota");
    })
    .await;
}
