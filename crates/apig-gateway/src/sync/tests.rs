use apig_proto::{api, Api, Environment, Group, HttpBackend, MockBackend};

use super::*;

fn api(id: &str, uri: &str) -> Api {
    Api {
        id: id.into(),
        name: format!("api_{id}"),
        group_id: "g1".into(),
        env_id: "env-release".into(),
        req_method: "GET".into(),
        req_uri: uri.into(),
        backend: Some(api::Backend::Mock(MockBackend {
            status_code: 200,
            result_content: "ok".into(),
        })),
        ..Default::default()
    }
}

fn snapshot(epoch: &str, version: u64, apis: Vec<Api>) -> Snapshot {
    Snapshot {
        instance_id: "inst".into(),
        epoch: epoch.into(),
        version,
        created_at_unix_ms: 0,
        groups: vec![Group {
            id: "g1".into(),
            name: "group".into(),
            domains: vec!["api.example.com".into()],
        }],
        environments: vec![Environment {
            id: "env-release".into(),
            name: "RELEASE".into(),
        }],
        apis,
        ..Default::default()
    }
}

fn applied(s: Snapshot) -> Runtime {
    match evaluate(None, "inst", s) {
        Decision::Apply { runtime, .. } => *runtime,
        Decision::AlreadyApplied => panic!("already applied"),
        Decision::Reject(r) => panic!("rejected: {r}"),
    }
}

#[track_caller]
fn assert_rejected(d: Decision, contains: &str) {
    match d {
        Decision::Reject(reason) => assert!(reason.contains(contains), "{reason}"),
        Decision::Apply { .. } => panic!("applied, expected a rejection containing {contains:?}"),
        Decision::AlreadyApplied => panic!("already applied, expected a rejection"),
    }
}

#[track_caller]
fn assert_applied(d: Decision) -> Runtime {
    match d {
        Decision::Apply {
            runtime, encoded, ..
        } => {
            assert_eq!(cache::digest(&encoded), runtime.digest);
            *runtime
        }
        Decision::AlreadyApplied => panic!("already applied, expected apply"),
        Decision::Reject(r) => panic!("rejected: {r}"),
    }
}

#[test]
fn applies_a_valid_snapshot() {
    let rt = assert_applied(evaluate(
        None,
        "inst",
        snapshot("e1", 1, vec![api("a", "/a")]),
    ));
    assert_eq!(rt.version(), 1);
    assert_eq!(rt.apis.len(), 1);
}

#[test]
fn rejects_another_instance() {
    let mut s = snapshot("e1", 1, vec![]);
    s.instance_id = "other".into();
    assert_rejected(evaluate(None, "inst", s), "instance");
}

#[test]
fn version_rules_within_an_epoch() {
    let current = applied(snapshot("e1", 5, vec![api("a", "/a")]));
    assert_rejected(
        evaluate(
            Some(&current),
            "inst",
            snapshot("e1", 4, vec![api("a", "/a")]),
        ),
        "older",
    );
    assert!(matches!(
        evaluate(
            Some(&current),
            "inst",
            snapshot("e1", 5, vec![api("a", "/a")])
        ),
        Decision::AlreadyApplied
    ));
    assert_rejected(
        evaluate(
            Some(&current),
            "inst",
            snapshot("e1", 5, vec![api("b", "/b")]),
        ),
        "different content",
    );
    assert_applied(evaluate(
        Some(&current),
        "inst",
        snapshot("e1", 6, vec![api("b", "/b")]),
    ));
}

#[test]
fn a_new_epoch_may_restart_versions() {
    let current = applied(snapshot("e1", 9, vec![api("a", "/a")]));
    let rt = assert_applied(evaluate(
        Some(&current),
        "inst",
        snapshot("e2", 1, vec![api("a", "/a")]),
    ));
    assert_eq!(rt.epoch(), "e2");
}

#[test]
fn empty_snapshot_guard() {
    let current = applied(snapshot("e1", 3, vec![api("a", "/a")]));
    // A wiped control plane (new epoch) must not blank the replica.
    assert_rejected(
        evaluate(Some(&current), "inst", snapshot("e2", 1, vec![])),
        "empty snapshot",
    );
    // Deleting everything within an epoch is a normal publish.
    assert_applied(evaluate(Some(&current), "inst", snapshot("e1", 4, vec![])));
    // With nothing applied (no cache), an empty snapshot is accepted.
    assert_applied(evaluate(None, "inst", snapshot("e2", 1, vec![])));
}

#[test]
fn uncompilable_snapshot_is_rejected_with_the_reason() {
    assert_rejected(
        evaluate(
            None,
            "inst",
            snapshot("e1", 1, vec![api("bad", "no-slash")]),
        ),
        "route table",
    );
    let mut dup = snapshot("e1", 1, vec![api("a", "/a"), api("b", "/a")]);
    dup.apis[1].name = "other".into();
    assert_rejected(evaluate(None, "inst", dup), "route table");
}

#[test]
fn unpreparable_api_is_rejected_with_the_reason() {
    let mut a = api("h", "/h");
    a.backend = Some(api::Backend::Http(HttpBackend {
        scheme: "gopher".into(),
        host: "x".into(),
        path: "/".into(),
        ..Default::default()
    }));
    assert_rejected(evaluate(None, "inst", snapshot("e1", 1, vec![a])), "scheme");

    let mut no_backend = api("n", "/n");
    no_backend.backend = None;
    assert_rejected(
        evaluate(None, "inst", snapshot("e1", 1, vec![no_backend])),
        "no backend",
    );

    let mut unmapped = api("u", "/u");
    unmapped.backend = Some(api::Backend::Http(HttpBackend {
        host: "x".into(),
        path: "/x/{nowhere}".into(),
        ..Default::default()
    }));
    assert_rejected(
        evaluate(None, "inst", snapshot("e1", 1, vec![unmapped])),
        "nowhere",
    );

    let mut auth = api("z", "/z");
    auth.auth_type = 77;
    assert_rejected(
        evaluate(None, "inst", snapshot("e1", 1, vec![auth])),
        "auth",
    );
}

#[test]
fn unusable_credentials_are_rejected_with_the_reason() {
    let mut s = snapshot("e1", 1, vec![api("a", "/a")]);
    s.apps = vec![apig_proto::App {
        id: "app-1".into(),
        name: "billing".into(),
        app_key: "k".into(),
        app_secret: "s".into(),
        acl: Some(apig_proto::AppAcl {
            permit: true,
            values: vec!["10.0.0.0/33".into()],
        }),
        ..Default::default()
    }];
    assert_rejected(
        evaluate(None, "inst", s.clone()),
        "app app-1 (billing): app ACL",
    );
    s.apps[0].acl = None;
    s.token_keys = vec![vec![0u8; 16]];
    assert_rejected(evaluate(None, "inst", s.clone()), "token key 0");
    s.token_keys.clear();
    let rt = assert_applied(evaluate(None, "inst", s));
    assert_eq!(format!("{:?}", rt.credentials), "Credentials { project_id: \"\", apps: 1, app_codes: 0, iam_credentials: 0, token_keys: 0 }");
}

#[test]
fn unusable_quotas_are_rejected_with_the_reason() {
    let mut s = snapshot("e1", 1, vec![api("a", "/a")]);
    let quota = |id: &str, limit, window_ms| apig_proto::AppQuota {
        quota_id: id.into(),
        limit,
        window_ms,
        anchor_unix_ms: 0,
    };
    s.apps = vec![apig_proto::App {
        id: "app-1".into(),
        name: "billing".into(),
        app_key: "k".into(),
        app_secret: "s".into(),
        quota: Some(quota("q1", 0, 1000)),
        ..Default::default()
    }];
    assert_rejected(
        evaluate(None, "inst", s.clone()),
        "app app-1 (billing): credential quota \"q1\": the limit is 0",
    );
    s.apps[0].quota = Some(quota("q1", 5, 0));
    assert_rejected(evaluate(None, "inst", s.clone()), "the window is 0");
    s.apps[0].quota = Some(quota("", 5, 1000));
    assert_rejected(evaluate(None, "inst", s.clone()), "empty quota id");
    s.apps[0].quota = Some(quota("q1", 5, 1000));
    let rt = assert_applied(evaluate(None, "inst", s));
    let quotas: Vec<_> = rt.app_quotas().collect();
    assert_eq!(quotas.len(), 1);
    assert_eq!(quotas[0].0, "app-1");
    assert_eq!(quotas[0].1.map(|q| q.limit), Some(5));
}

#[test]
fn backoff_doubles_to_the_cap_with_bounded_jitter() {
    let mut b = Backoff::new();
    let mut base = BACKOFF_START;
    for _ in 0..12 {
        let d = b.next_delay();
        assert!(d >= base && d <= base + base / 4, "{d:?} vs {base:?}");
        base = (base * 2).min(BACKOFF_MAX);
    }
    assert_eq!(b.next, BACKOFF_MAX);
    b.reset();
    assert!(b.next_delay() < Duration::from_millis(200));
}

#[test]
fn settings_validate_url_and_token() {
    let dir = std::env::temp_dir();
    let cache = SnapshotCache::new(&dir, "inst");
    let plain = |url: &str, token: &str| SyncSettings::new(url, token, None, false, cache.clone());
    assert!(plain("http://127.0.0.1:9090", "tok").is_ok());
    assert!(plain("http://[::1]:9090", "tok").is_ok());
    assert!(plain("http://localhost:9090", "tok").is_ok());
    assert!(plain("http://127.0.0.1:9090", "").is_err());
    assert!(plain("http://127.0.0.1:9090", "bad\ntoken").is_err());
    assert!(plain("not a url", "tok").is_err());
}

#[test]
fn plaintext_leaves_loopback_only_when_allowed_and_https_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cache = SnapshotCache::new(dir.path(), "inst");
    let remote = "http://10.0.0.7:9090";
    let err = SyncSettings::new(remote, "tok", None, false, cache.clone()).unwrap_err();
    assert!(err.contains("--allow-plaintext-cluster"), "{err}");
    assert!(SyncSettings::new(remote, "tok", None, true, cache.clone()).is_ok());
    let err = SyncSettings::new("https://cp:9090", "tok", None, false, cache.clone()).unwrap_err();
    assert!(err.contains("--cluster-ca"), "{err}");
    assert!(SyncSettings::new("ftp://cp:9090", "tok", None, true, cache).is_err());
}
