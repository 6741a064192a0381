//! Traffic control end to end: throttling counters (API, user, app, IP, excluded apps and
//! tenants, the gateway-wide default), replica shares, API ACLs (IP and DOMAIN_ID) and the client
//! address through trusted proxies, against the FAKE control plane.
//!
//! Windows are chosen so that a burst of requests cannot see a refill mid-way: either a long
//! window (60 s: nothing refills during the test) or a refill period of 500 ms or more when the
//! test waits for the window to pass.

use std::net::SocketAddr;
use std::time::Duration;

use apig_proto::{AclRule, Api, App, AuthType, BackendParamOrigin as Origin, IamCredential};
use apig_proto::{ParamLocation as Loc, Snapshot, Throttle};
use apig_sign::TokenSigner;

use crate::harness::*;

const TOKEN_SEED: [u8; 32] = [9u8; 32];
const CODE_1: &str = "Y29kZS1vbmUtdHJhZmZpYy1jb250cm9sLXRlc3RzLTAxMjM0NTY3ODlhYmNkZWZnaA==";
const CODE_2: &str = "Y29kZS10d28tdHJhZmZpYy1jb250cm9sLXRlc3RzLTAxMjM0NTY3ODlhYmNkZWZnaA==";
const CODE_VIP: &str = "Y29kZS12aXAtdHJhZmZpYy1jb250cm9sLXRlc3RzLTAxMjM0NTY3ODlhYmNkZWZnaA==";
const MINUTE: u64 = 60_000;

fn throttle(policy: &str, ty: i32, window_ms: u64, api_limit: u64) -> Throttle {
    Throttle {
        policy_id: policy.into(),
        r#type: ty,
        window_ms,
        api_limit,
        ..Default::default()
    }
}

fn limited(a: Api, t: Throttle) -> Api {
    Api {
        throttle: Some(t),
        ..a
    }
}

fn acl(policy: &str, permit: bool, entity: &str, values: &[&str]) -> AclRule {
    AclRule {
        policy_id: policy.into(),
        permit,
        entity_type: entity.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn guarded(a: Api, rules: Vec<AclRule>) -> Api {
    Api { acls: rules, ..a }
}

fn mock(id: &str, path: &str) -> Api {
    with_mock(api(id, "GET", path), 200, "ok")
}

/// Sends `n` GETs one after the other; their statuses.
async fn burst(addr: SocketAddr, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut all: Vec<(&str, &str)> = vec![("host", HOST)];
    all.extend_from_slice(headers);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(addr, path, &all).await.status);
    }
    out
}

fn passed(statuses: &[u16]) -> usize {
    statuses.iter().filter(|&&s| s == 200).count()
}

#[track_caller]
fn assert_throttled(answer: &Answer) {
    let json = answer.assert_apig_error(429, "APIG.0308");
    assert_eq!(
        json["error_msg"], "The throttling threshold has been reached.",
        "{json}"
    );
}

#[track_caller]
fn assert_exactly(statuses: &[u16], ok: usize) {
    assert!(
        statuses.iter().take(ok).all(|&s| s == 200),
        "first {ok} must pass: {statuses:?}"
    );
    assert!(
        statuses.iter().skip(ok).all(|&s| s == 429),
        "the rest must be 429: {statuses:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Throttling

#[tokio::test]
async fn the_api_counter_admits_exactly_its_limit_per_window_and_debug_shows_it() {
    bounded(async {
        // 4 calls per 2 s: one call refills every 500 ms.
        let stack =
            Stack::start(|_| vec![limited(mock("a", "/a"), throttle("p", 1, 2000, 4))]).await;
        let addr = stack.gw.addr;

        let debug = [("host", HOST), ("x-apig-mode", "debug")];
        let mut remains = Vec::new();
        for _ in 0..4 {
            let answer = get(addr, "/a", &debug).await;
            assert_eq!(answer.status, 200);
            remains.push(
                answer.headers["x-apig-ratelimit-api"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
            assert!(answer.headers.get("x-apig-ratelimit-api-allenv").is_none());
        }
        assert_eq!(
            remains,
            [3, 2, 1, 0].map(|r| format!("remain:{r},limit:4,time:2 second"))
        );
        // The 5th: 429, and in debug mode the counter that said no.
        let refused = get(addr, "/a", &debug).await;
        assert_throttled(&refused);
        assert_eq!(
            refused.headers["x-apig-ratelimit-api"],
            "remain:0,limit:4,time:2 second"
        );
        // Without debug mode: no rate-limit headers.
        let plain = call(addr, "/a").await;
        assert_throttled(&plain);
        assert!(plain
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-apig-ratelimit")));

        // A window later the whole limit is back.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_exactly(&burst(addr, "/a", &[], 5).await, 4);
        let plain_ok = {
            tokio::time::sleep(Duration::from_millis(2100)).await;
            call(addr, "/a").await
        };
        assert_eq!(plain_ok.status, 200);
        assert!(plain_ok.headers.get("x-apig-ratelimit-api").is_none());
    })
    .await;
}

#[tokio::test]
async fn type_1_counts_each_api_and_type_2_shares_one_counter() {
    bounded(async {
        let stack = Stack::start(|_| {
            vec![
                limited(mock("a", "/a"), throttle("specific", 1, MINUTE, 2)),
                limited(mock("b", "/b"), throttle("specific", 1, MINUTE, 2)),
                limited(mock("c", "/c"), throttle("shared", 2, MINUTE, 3)),
                limited(mock("d", "/d"), throttle("shared", 2, MINUTE, 3)),
            ]
        })
        .await;
        let addr = stack.gw.addr;
        assert_exactly(&burst(addr, "/a", &[], 3).await, 2);
        assert_exactly(&burst(addr, "/b", &[], 3).await, 2);
        assert_exactly(&burst(addr, "/c", &[], 2).await, 2);
        assert_exactly(&burst(addr, "/d", &[], 2).await, 1);
    })
    .await;
}

fn app(id: &str, code: &str) -> App {
    App {
        id: id.into(),
        name: format!("name-{id}"),
        app_key: format!("key-{id}"),
        app_secret: format!("secret-{id}"),
        app_codes: vec![code.into()],
        acl: None,
        quota: None,
    }
}

fn with_auth(mut a: Api, auth: AuthType) -> Api {
    a.auth_type = auth as i32;
    if auth == AuthType::App {
        a.app_code_auth_type = "HEADER".into();
        a.authorized_app_ids = vec!["app-1".into(), "app-2".into(), "app-vip".into()];
    }
    a
}

fn auth_snapshot(version: u64, apis: Vec<Api>) -> Snapshot {
    let mut s = snapshot("epoch-1", version, apis);
    s.apps = vec![
        app("app-1", CODE_1),
        app("app-2", CODE_2),
        app("app-vip", CODE_VIP),
    ];
    s.iam_credentials = vec![IamCredential {
        access_key: "AK1".into(),
        secret_key: "SK1".into(),
    }];
    s.token_keys = vec![TokenSigner::from_seed(&TOKEN_SEED).public_key().to_vec()];
    s.project_name = PROJECT_NAME.into();
    s
}

const PROJECT_NAME: &str = "acme";

fn token() -> String {
    TokenSigner::from_seed(&TOKEN_SEED).issue(PROJECT, "AK1", now_unix(), 3600, "t")
}

#[tokio::test]
async fn user_app_and_ip_counters_with_excluded_apps_and_tenants() {
    bounded(async {
        let apps_policy = Throttle {
            app_limit: 2,
            app_specials: [("app-vip".to_owned(), 4)].into(),
            ..throttle("apps", 1, MINUTE, 100)
        };
        let users_policy = Throttle {
            user_limit: 3,
            ..throttle("users", 1, MINUTE, 100)
        };
        let tenant_policy = Throttle {
            user_limit: 1,
            user_specials: [(PROJECT.to_owned(), 4)].into(),
            ..throttle("tenant", 1, MINUTE, 100)
        };
        let ip_policy = Throttle {
            ip_limit: 2,
            ..throttle("ips", 1, MINUTE, 100)
        };
        let stack = Stack::start_snapshot(
            |_| {
                auth_snapshot(
                    1,
                    vec![
                        limited(with_auth(mock("apps", "/apps"), AuthType::App), apps_policy),
                        limited(
                            with_auth(mock("app-users", "/app-users"), AuthType::App),
                            users_policy.clone(),
                        ),
                        limited(
                            with_auth(mock("iam-users", "/iam-users"), AuthType::Iam),
                            users_policy,
                        ),
                        limited(
                            with_auth(mock("tenant", "/tenant"), AuthType::Iam),
                            tenant_policy,
                        ),
                        limited(mock("ips", "/ips"), ip_policy),
                    ],
                )
            },
            |_| {},
        )
        .await;
        let addr = stack.gw.addr;
        let code = |c| [("x-apig-appcode", c)];

        // App counter: 2 per app; the excluded app gets 4.
        assert_exactly(&burst(addr, "/apps", &code(CODE_1), 3).await, 2);
        assert_exactly(&burst(addr, "/apps", &code(CODE_2), 3).await, 2);
        assert_exactly(&burst(addr, "/apps", &code(CODE_VIP), 5).await, 4);
        let refused = get(
            addr,
            "/apps",
            &[
                ("host", HOST),
                ("x-apig-appcode", CODE_1),
                ("x-apig-mode", "debug"),
            ],
        )
        .await;
        assert_throttled(&refused);
        assert_eq!(
            refused.headers["x-apig-ratelimit-app"],
            "remain:0,limit:2,time:1 minute"
        );

        // User counter, APP callers: keyed by the caller's project, so the apps share it.
        assert_exactly(&burst(addr, "/app-users", &code(CODE_1), 2).await, 2);
        assert_exactly(&burst(addr, "/app-users", &code(CODE_2), 2).await, 1);

        // User counter, IAM callers (type 1: not shared with /app-users).
        let t = token();
        let iam = [("x-auth-token", t.as_str())];
        assert_exactly(&burst(addr, "/iam-users", &iam, 4).await, 3);
        let debug = get(
            addr,
            "/iam-users",
            &[
                ("host", HOST),
                ("x-auth-token", &t),
                ("x-apig-mode", "debug"),
            ],
        )
        .await;
        assert_throttled(&debug);
        assert_eq!(
            debug.headers["x-apig-ratelimit-user"],
            "remain:0,limit:3,time:1 minute"
        );
        // The excluded tenant gets 4 instead of 1.
        assert_exactly(&burst(addr, "/tenant", &iam, 5).await, 4);

        // IP counter: 2 per client IP.
        assert_exactly(&burst(addr, "/ips", &[], 3).await, 2);
    })
    .await;
}

#[tokio::test]
async fn counters_survive_a_republish_and_restart_when_the_numbers_change() {
    bounded(async {
        let policy = throttle("p", 2, MINUTE, 2);
        let stack = Stack::start(|_| vec![limited(mock("a", "/a"), policy.clone())]).await;
        let (addr, cp) = (stack.gw.addr, &stack.cp);
        assert_exactly(&burst(addr, "/a", &[], 3).await, 2);

        // A new version with the same policy numbers (and an unrelated new API): still used up.
        cp.push(snapshot(
            "epoch-1",
            2,
            vec![limited(mock("a", "/a"), policy.clone()), mock("b", "/b")],
        ));
        assert_eq!(cp.answer(2).await, Ok(()));
        assert_eq!(call(addr, "/b").await.status, 200, "version 2 is served");
        assert_exactly(&burst(addr, "/a", &[], 1).await, 0);

        // New numbers: a fresh counter.
        cp.push(snapshot(
            "epoch-1",
            3,
            vec![limited(mock("a", "/a"), throttle("p", 2, MINUTE, 3))],
        ));
        assert_eq!(cp.answer(3).await, Ok(()));
        assert_exactly(&burst(addr, "/a", &[], 4).await, 3);

        // An unusable policy is refused; the last good one keeps serving (and counting).
        cp.push(snapshot(
            "epoch-1",
            4,
            vec![limited(mock("a", "/a"), throttle("p", 2, 0, 3))],
        ));
        let reason = cp.answer(4).await.unwrap_err();
        assert!(reason.contains("window"), "{reason}");
        assert_exactly(&burst(addr, "/a", &[], 1).await, 0);
    })
    .await;
}

#[tokio::test]
async fn apis_without_policy_fall_under_the_default_limit() {
    bounded(async {
        let stack = Stack::start_with(
            |_| {
                vec![
                    mock("plain", "/plain"),
                    mock("other", "/other"),
                    limited(mock("own", "/own"), throttle("p", 1, MINUTE, 5)),
                ]
            },
            // 2 per second: one call refills every 500 ms.
            |c| c.limits.default_api_limit_per_sec = 2,
        )
        .await;
        let addr = stack.gw.addr;
        let answer = get(addr, "/plain", &[("host", HOST), ("x-apig-mode", "debug")]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.headers["x-apig-ratelimit-api-allenv"],
            "remain:1,limit:2,time:1 second"
        );
        assert_exactly(&burst(addr, "/plain", &[], 2).await, 1);
        // Per API.
        assert_exactly(&burst(addr, "/other", &[], 3).await, 2);
        // An API with its own policy is not under the default.
        assert_exactly(&burst(addr, "/own", &[], 6).await, 5);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_exactly(&burst(addr, "/plain", &[], 3).await, 2);
    })
    .await;
}

#[tokio::test]
async fn a_default_limit_of_zero_is_unlimited() {
    bounded(async {
        let stack = Stack::start_with(
            |_| vec![mock("plain", "/plain")],
            |c| c.limits.default_api_limit_per_sec = 0,
        )
        .await;
        let statuses = burst(stack.gw.addr, "/plain", &[("x-apig-mode", "debug")], 30).await;
        assert_eq!(passed(&statuses), 30);
        let answer = get(
            stack.gw.addr,
            "/plain",
            &[("host", HOST), ("x-apig-mode", "debug")],
        )
        .await;
        assert!(answer.headers.get("x-apig-ratelimit-api-allenv").is_none());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Replica shares

async fn wait_share(gw: &RunningGateway, index: u32, count: u32) {
    for _ in 0..250 {
        let h = gw.health().await;
        if h["replica_share"]["index"] == index && h["replica_share"]["count"] == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replica share {index}/{count} never applied");
}

#[tokio::test]
async fn three_replicas_split_a_limit_of_ten_four_three_three() {
    bounded(async {
        let apis = |_| vec![limited(mock("a", "/a"), throttle("p", 2, MINUTE, 10))];
        let mut stacks = Vec::new();
        for _ in 0..3 {
            stacks.push(Stack::start(apis).await);
        }
        for (index, stack) in stacks.iter().enumerate() {
            stack.cp.push_share(index as u32, 3);
        }
        let mut admitted = Vec::new();
        for (index, stack) in stacks.iter().enumerate() {
            wait_share(&stack.gw, index as u32, 3).await;
            admitted.push(passed(&burst(stack.gw.addr, "/a", &[], 12).await));
        }
        assert_eq!(admitted, vec![4, 3, 3]);
        let answer = get(
            stacks[0].gw.addr,
            "/a",
            &[("host", HOST), ("x-apig-mode", "debug")],
        )
        .await;
        assert_throttled(&answer);
        assert_eq!(
            answer.headers["x-apig-ratelimit-api"],
            "remain:0,limit:4,time:1 minute"
        );

        // The cluster shrinks to one replica: its limit is whole again (a fresh counter).
        stacks[0].cp.push_share(0, 1);
        wait_share(&stacks[0].gw, 0, 1).await;
        assert_eq!(passed(&burst(stacks[0].gw.addr, "/a", &[], 12).await), 10);

        // An impossible share is ignored.
        stacks[1].cp.push_share(5, 3);
        stacks[1].cp.push_share(0, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let h = stacks[1].gw.health().await;
        assert_eq!(h["replica_share"]["index"], 1);
        assert_eq!(h["replica_share"]["count"], 3);
    })
    .await;
}

#[tokio::test]
async fn a_replica_whose_share_is_zero_refuses_and_the_others_carry_the_quota() {
    bounded(async {
        let stack =
            Stack::start(|_| vec![limited(mock("a", "/a"), throttle("p", 2, MINUTE, 2))]).await;
        // Limit 2 over 3 replicas: 1, 1, 0.
        stack.cp.push_share(2, 3);
        wait_share(&stack.gw, 2, 3).await;
        assert_exactly(&burst(stack.gw.addr, "/a", &[], 2).await, 0);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Access control

#[tokio::test]
async fn ip_acls_permit_and_deny_with_cidr_and_ranges() {
    bounded(async {
        let stack = Stack::start(|_| {
            vec![
                guarded(
                    mock("permit-cidr", "/permit-cidr"),
                    vec![acl("a1", true, "IP", &["127.0.0.0/8"])],
                ),
                guarded(
                    mock("permit-other", "/permit-other"),
                    vec![acl(
                        "a2",
                        true,
                        "IP",
                        &["10.0.0.0/8", "192.168.0.1-192.168.0.9"],
                    )],
                ),
                guarded(
                    mock("deny-range", "/deny-range"),
                    vec![acl("a3", false, "IP", &["127.0.0.1-127.0.0.5"])],
                ),
                guarded(
                    mock("deny-other", "/deny-other"),
                    vec![acl("a4", false, "IP", &["10.0.0.0/8", "::1"])],
                ),
                // Checked before authentication: no credentials, still 403 APIG.0402.
                guarded(
                    with_auth(mock("app", "/app"), AuthType::App),
                    vec![acl("a5", true, "ip", &["203.0.113.0/24"])],
                ),
            ]
        })
        .await;
        let addr = stack.gw.addr;
        assert_eq!(call(addr, "/permit-cidr").await.status, 200);
        assert_eq!(call(addr, "/deny-other").await.status, 200);
        for path in ["/permit-other", "/deny-range", "/app"] {
            let json = call(addr, path).await.assert_apig_error(403, "APIG.0402");
            assert_eq!(
                json["error_msg"],
                "The IP address is not authorized to access the API."
            );
        }
    })
    .await;
}

#[tokio::test]
async fn ip_acls_over_ipv6() {
    bounded(async {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here; IPv6 ACLs are covered by unit tests");
            return;
        }
        let stack = Stack::start_with(
            |_| {
                vec![
                    guarded(
                        mock("v6-permit", "/v6-permit"),
                        vec![acl("a1", true, "IP", &["::1/128"])],
                    ),
                    guarded(
                        mock("v6-deny", "/v6-deny"),
                        vec![acl("a2", false, "IP", &["::/0"])],
                    ),
                    guarded(
                        mock("v4-only", "/v4-only"),
                        vec![acl("a3", true, "IP", &["0.0.0.0/0"])],
                    ),
                ]
            },
            |c| c.listen = "[::1]:0".parse().unwrap(),
        )
        .await;
        let addr = stack.gw.addr;
        assert!(addr.is_ipv6());
        assert_eq!(call(addr, "/v6-permit").await.status, 200);
        call(addr, "/v6-deny")
            .await
            .assert_apig_error(403, "APIG.0402");
        // "All of IPv4" does not include IPv6 clients.
        call(addr, "/v4-only")
            .await
            .assert_apig_error(403, "APIG.0402");
    })
    .await;
}

#[tokio::test]
async fn domain_id_and_domain_acls_apply_to_iam_callers() {
    bounded(async {
        let stack = Stack::start_snapshot(
            |_| {
                auth_snapshot(
                    1,
                    vec![
                        guarded(
                            with_auth(mock("iam-permit", "/iam-permit"), AuthType::Iam),
                            vec![acl("d1", true, "DOMAIN_ID", &[PROJECT])],
                        ),
                        guarded(
                            with_auth(mock("iam-other", "/iam-other"), AuthType::Iam),
                            vec![acl("d2", true, "DOMAIN_ID", &["another-project"])],
                        ),
                        guarded(
                            with_auth(mock("iam-deny", "/iam-deny"), AuthType::Iam),
                            vec![
                                acl("d3", false, "DOMAIN_ID", &[PROJECT]),
                                acl("i3", true, "IP", &["127.0.0.1"]),
                            ],
                        ),
                        guarded(
                            with_auth(mock("app-deny", "/app-deny"), AuthType::App),
                            vec![acl("d4", false, "DOMAIN_ID", &[PROJECT])],
                        ),
                        guarded(
                            mock("open-deny", "/open-deny"),
                            vec![acl("d5", false, "DOMAIN_ID", &[PROJECT])],
                        ),
                        guarded(
                            with_auth(mock("name-permit", "/name-permit"), AuthType::Iam),
                            vec![acl("n1", true, "DOMAIN", &["partner", PROJECT_NAME])],
                        ),
                        guarded(
                            with_auth(mock("name-other", "/name-other"), AuthType::Iam),
                            vec![
                                acl("n2", true, "DOMAIN", &["partner"]),
                                acl("d6", true, "DOMAIN_ID", &[PROJECT]),
                            ],
                        ),
                        guarded(
                            with_auth(mock("name-deny", "/name-deny"), AuthType::Iam),
                            vec![acl("n3", false, "DOMAIN", &[PROJECT_NAME])],
                        ),
                    ],
                )
            },
            |_| {},
        )
        .await;
        let addr = stack.gw.addr;
        let t = token();
        let iam = [("host", HOST), ("x-auth-token", t.as_str())];
        assert_eq!(get(addr, "/iam-permit", &iam).await.status, 200);
        assert_eq!(get(addr, "/name-permit", &iam).await.status, 200);
        // DOMAIN and DOMAIN_ID rules on one API are ANDed.
        for path in ["/iam-other", "/iam-deny", "/name-other", "/name-deny"] {
            let json = get(addr, path, &iam)
                .await
                .assert_apig_error(403, "APIG.0302");
            assert_eq!(
                json["error_msg"],
                "The IAM user is not authorized to access the API."
            );
        }
        // Not an IAM caller: DOMAIN_ID does not apply.
        let app = [("host", HOST), ("x-apig-appcode", CODE_1)];
        assert_eq!(get(addr, "/app-deny", &app).await.status, 200);
        assert_eq!(call(addr, "/open-deny").await.status, 200);
        // Authentication still comes first for IAM APIs.
        call(addr, "/iam-permit")
            .await
            .assert_apig_error(401, "APIG.0301");
    })
    .await;
}

#[tokio::test]
async fn an_unusable_acl_is_refused_and_the_last_good_snapshot_kept() {
    bounded(async {
        let stack = Stack::start(|_| {
            vec![guarded(
                mock("a", "/a"),
                vec![acl("a1", false, "IP", &["10.0.0.0/8"])],
            )]
        })
        .await;
        let (addr, cp) = (stack.gw.addr, &stack.cp);
        for (version, rules) in [
            (2, vec![acl("bad", true, "IP", &["10.0.0.0/33"])]),
            (
                3,
                vec![
                    acl("x", true, "IP", &["127.0.0.1"]),
                    acl("y", false, "IP", &["10.0.0.1"]),
                ],
            ),
            (4, vec![acl("z", true, "USER", &["name"])]),
            (
                5,
                vec![
                    acl("n1", true, "DOMAIN", &["a"]),
                    acl("n2", false, "DOMAIN", &["b"]),
                ],
            ),
        ] {
            cp.push(snapshot(
                "epoch-1",
                version,
                vec![guarded(mock("a", "/a"), rules)],
            ));
            let reason = cp.answer(version).await.unwrap_err();
            assert!(reason.contains("access control policy"), "{reason}");
        }
        assert_eq!(call(addr, "/a").await.status, 200);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The client address

fn echo_source(a: Api) -> Api {
    Api {
        backend_params: vec![backend_param(
            "X-Source-Ip",
            Loc::Header,
            Origin::System,
            "$context.sourceIp",
            Loc::Path,
        )],
        ..a
    }
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![
                guarded(
                    mock("acl", "/acl"),
                    vec![acl("a1", true, "IP", &["203.0.113.0/24"])],
                ),
                echo_source(with_http(
                    api("echo", "GET", "/echo"),
                    backend,
                    "/echo",
                    5000,
                )),
                limited(
                    mock("ip", "/ip"),
                    Throttle {
                        ip_limit: 2,
                        ..throttle("p", 1, MINUTE, 0)
                    },
                ),
            ]
        })
        .await;
        let addr = stack.gw.addr;
        let spoof = [
            ("host", HOST),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.7"),
        ];
        get(addr, "/acl", &spoof)
            .await
            .assert_apig_error(403, "APIG.0402");
        let echo = get(addr, "/echo", &spoof).await.json();
        assert_eq!(echo["headers"]["x-forwarded-for"][0], "127.0.0.1");
        assert_eq!(echo["headers"]["x-source-ip"][0], "127.0.0.1");
        assert!(echo["headers"].get("x-real-ip").is_none());
        // Rotating X-Forwarded-For does not escape the IP counter.
        let mut statuses = Vec::new();
        for n in 1..=4 {
            let xff = format!("198.51.100.{n}");
            statuses.push(
                get(addr, "/ip", &[("host", HOST), ("x-forwarded-for", &xff)])
                    .await
                    .status,
            );
        }
        assert_exactly(&statuses, 2);
    })
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_reports_the_client() {
    bounded(async {
        let stack = Stack::start_with(
            |backend| {
                vec![
                    guarded(
                        mock("acl", "/acl"),
                        vec![acl("a1", true, "IP", &["203.0.113.0/24"])],
                    ),
                    echo_source(with_http(
                        api("echo", "GET", "/echo"),
                        backend,
                        "/echo",
                        5000,
                    )),
                    limited(
                        mock("ip", "/ip"),
                        Throttle {
                            ip_limit: 2,
                            ..throttle("p", 1, MINUTE, 0)
                        },
                    ),
                ]
            },
            |c| c.limits.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()],
        )
        .await;
        let addr = stack.gw.addr;
        let from = |xff: &'static str| [("host", HOST), ("x-forwarded-for", xff)];

        // ACL on the reported client.
        assert_eq!(get(addr, "/acl", &from("203.0.113.7")).await.status, 200);
        assert_eq!(
            get(addr, "/acl", &from("203.0.113.7, 10.0.0.2"))
                .await
                .status,
            200,
            "trusted hops are skipped"
        );
        get(addr, "/acl", &from("198.51.100.1"))
            .await
            .assert_apig_error(403, "APIG.0402");
        // Spoofed entries left of the client do not matter; garbage means the peer.
        get(addr, "/acl", &from("203.0.113.7, 198.51.100.1"))
            .await
            .assert_apig_error(403, "APIG.0402");
        get(addr, "/acl", &from("203.0.113.7, unknown"))
            .await
            .assert_apig_error(403, "APIG.0402");
        call(addr, "/acl").await.assert_apig_error(403, "APIG.0402");
        let real = [("host", HOST), ("x-real-ip", "203.0.113.9")];
        assert_eq!(get(addr, "/acl", &real).await.status, 200);

        // The backend sees the client and the chain, the peer appended.
        let echo = get(addr, "/echo", &from("1.1.1.1, 203.0.113.7, 10.0.0.2"))
            .await
            .json();
        assert_eq!(
            echo["headers"]["x-forwarded-for"][0],
            "203.0.113.7, 10.0.0.2, 127.0.0.1"
        );
        assert_eq!(echo["headers"]["x-source-ip"][0], "203.0.113.7");

        // The IP counter keys the reported client.
        assert_exactly(
            &burst(addr, "/ip", &[("x-forwarded-for", "203.0.113.1")], 3).await,
            2,
        );
        assert_exactly(
            &burst(addr, "/ip", &[("x-forwarded-for", "203.0.113.2")], 3).await,
            2,
        );
    })
    .await;
}

async fn from_ip(addr: SocketAddr, path: &str, n: u32) -> u16 {
    let ip = std::net::Ipv4Addr::from(0xC633_6400 + n).to_string();
    get(addr, path, &[("host", HOST), ("x-forwarded-for", &ip)])
        .await
        .status
}

async fn limiter_keys(gw: &RunningGateway) -> u64 {
    gw.health().await["limiter_keys"].as_u64().unwrap()
}

#[tokio::test]
async fn a_flood_of_distinct_keys_hits_the_cap_and_is_refused() {
    bounded(async {
        let stack = Stack::start_with(
            |_| {
                vec![limited(
                    mock("ip", "/ip"),
                    Throttle {
                        ip_limit: 2,
                        // One call refills every 2 s: a key used once is idle after 4 s.
                        ..throttle("p", 1, 4000, 0)
                    },
                )]
            },
            |c| {
                c.limits.trusted_proxies = vec!["127.0.0.1".into()];
                c.limits.max_limiter_keys = 3;
                c.limits.limiter_cleanup_interval = Duration::from_millis(100);
            },
        )
        .await;
        let (addr, gw) = (stack.gw.addr, &stack.gw);
        // Three keys fit; every further distinct key is refused, and not stored.
        for n in 1..=3 {
            assert_eq!(from_ip(addr, "/ip", n).await, 200);
        }
        for n in 4..=40 {
            let status = from_ip(addr, "/ip", n).await;
            let answer_is_429 = status == 429;
            assert!(answer_is_429, "key {n}: {status}");
            if n % 10 == 0 {
                assert_eq!(limiter_keys(gw).await, 3);
            }
        }
        assert_eq!(limiter_keys(gw).await, 3);
        // A known key is still served while the map is full.
        assert_eq!(from_ip(addr, "/ip", 3).await, 200);
        // Once the keys go idle, cleanup makes room again.
        let mut emptied = false;
        for _ in 0..100 {
            if limiter_keys(gw).await == 0 {
                emptied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(emptied, "idle keys were not cleaned up");
        assert_eq!(from_ip(addr, "/ip", 1000).await, 200);
        assert_eq!(limiter_keys(gw).await, 1);
    })
    .await;
}
