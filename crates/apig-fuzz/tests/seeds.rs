//! The binary seeds of `fuzz/corpus/snapshot/`: encoded snapshots a replica accepts. The test
//! checks the committed files are exactly these (and accepted); after the snapshot schema grows,
//! rewrite them with `APIG_WRITE_SEEDS=1 cargo test -p apig-fuzz --test seeds`.

use apig_proto::{
    api, AclRule, Api, App, AuthType, Channel, HttpBackend, MatchMode, Member, MockBackend,
    Snapshot, Throttle,
};
use prost::Message;

fn api(id: &str, method: &str, uri: &str, backend: api::Backend) -> Api {
    Api {
        id: id.into(),
        name: id.into(),
        group_id: "g1".into(),
        env_id: "env-release".into(),
        publish_id: format!("p-{id}"),
        req_method: method.into(),
        req_uri: uri.into(),
        match_mode: MatchMode::Normal as i32,
        req_protocol: "HTTP".into(),
        backend: Some(backend),
        ..Default::default()
    }
}

fn http(path: &str) -> api::Backend {
    api::Backend::Http(HttpBackend {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port: 9000,
        method: "ANY".into(),
        path: path.into(),
        timeout_ms: 5000,
        retry_count: -1,
        ..Default::default()
    })
}

fn base(apis: Vec<Api>) -> Snapshot {
    apig_fuzz::one_group_snapshot(7, apis)
}

#[test]
fn snapshot_seeds_are_current_and_accepted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/snapshot");

    let plain = base(vec![
        api("a1", "GET", "/a/{id}", http("/b/{id}")),
        api(
            "a2",
            "POST",
            "/mock",
            api::Backend::Mock(MockBackend {
                status_code: 200,
                result_content: "ok".into(),
            }),
        ),
    ]);

    let mut guarded = api("a3", "ANY", "/guarded", http("/g"));
    guarded.match_mode = MatchMode::Swa as i32;
    guarded.auth_type = AuthType::App as i32;
    guarded.authorized_app_ids = vec!["app1".into()];
    guarded.throttle = Some(Throttle {
        policy_id: "t1".into(),
        r#type: 1,
        window_ms: 1000,
        api_limit: 10,
        app_limit: 5,
        ip_limit: 3,
        ..Default::default()
    });
    guarded.acls = vec![AclRule {
        policy_id: "acl1".into(),
        permit: false,
        entity_type: "IP".into(),
        values: vec!["10.0.0.0/8".into(), "127.0.0.1-127.0.0.5".into()],
    }];
    let mut channelled = api("a4", "GET", "/lb", http("/lb"));
    if let Some(api::Backend::Http(h)) = &mut channelled.backend {
        h.channel_id = "c1".into();
    }
    let mut full = base(vec![guarded, channelled]);
    full.apps = vec![App {
        id: "app1".into(),
        name: "app1".into(),
        app_key: "fuzz-app-key".into(),
        app_secret: "fuzz-app-secret-0123456789".into(),
        app_codes: vec!["code-0123456789abcdef".into()],
        ..Default::default()
    }];
    full.channels = vec![Channel {
        id: "c1".into(),
        name: "c1".into(),
        members: vec![
            Member {
                id: "m1".into(),
                host: "127.0.0.1".into(),
                port: 9001,
                weight: 3,
                ..Default::default()
            },
            Member {
                id: "m2".into(),
                host: "127.0.0.1".into(),
                port: 9002,
                weight: 1,
                backup: true,
                ..Default::default()
            },
        ],
        ..Default::default()
    }];

    for (name, snapshot) in [("plain", plain), ("full", full)] {
        let bytes = snapshot.encode_to_vec();
        assert_eq!(apig_gateway::check_snapshot(&bytes), Ok(()), "{name}");
        if std::env::var_os("APIG_WRITE_SEEDS").is_some() {
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
        let committed = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(
            committed, bytes,
            "fuzz/corpus/snapshot/{name} is stale: rewrite with APIG_WRITE_SEEDS=1"
        );
    }
}
