//! The backend address policy at connect time (SSRF rows B1/B2): a backend whose resolved
//! address is refused answers 502 and is never connected to, whatever connects (requests,
//! health checks).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apig_proto::{api, Channel, HealthCheck, HealthProtocol, HttpBackend, Member};
use tokio::net::TcpListener;

use crate::harness::*;

/// Loopback as the tests may use it, denied like a private network an operator protects.
fn deny_loopback(cfg: &mut apig_gateway::GatewayConfig) {
    cfg.limits.deny_backend_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
}

fn to_host(id: &str, uri: &str, host: &str, port: u16, timeout_ms: u32) -> apig_proto::Api {
    let mut a = api(id, "GET", uri);
    a.backend = Some(api::Backend::Http(HttpBackend {
        scheme: "http".into(),
        host: host.into(),
        port: u32::from(port),
        method: "ANY".into(),
        path: "/".into(),
        timeout_ms,
        // Retries allowed: a refusal must still be answered after one attempt.
        retry_count: 3,
        ..Default::default()
    }));
    a
}

/// Whether anything connects to `listener` within `within`.
async fn accepts_within(listener: &TcpListener, within: Duration) -> bool {
    tokio::time::timeout(within, listener.accept())
        .await
        .is_ok()
}

async fn refused_total(admin: SocketAddr) -> u64 {
    let metrics = get(admin, "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("apig_gateway_backend_address_refused_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no refusal counter in {text}"))
}

#[tokio::test]
async fn a_name_resolving_to_a_denied_address_is_refused_without_connecting() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stack = Stack::start_with(
            |echo| {
                vec![
                    to_host("by-name", "/name", "localhost", port, 5000),
                    to_host("by-ip", "/ip", "127.0.0.1", port, 5000),
                    to_host("mapped", "/mapped", "::ffff:127.0.0.1", port, 5000),
                    // A backend outside the denied networks is unaffected... but every test
                    // backend is on loopback, so this one shows the echo is denied too.
                    with_http(api("echo", "GET", "/echo"), echo, "/", 5000),
                ]
            },
            deny_loopback,
        )
        .await;
        for path in ["/name", "/ip", "/mapped", "/echo"] {
            call(stack.gw.addr, path)
                .await
                .assert_apig_error(502, "APIG.0201");
        }
        assert!(
            !accepts_within(&listener, Duration::from_millis(200)).await,
            "a denied backend address was connected to"
        );
        assert!(
            stack.backend.seen().is_empty(),
            "the echo backend saw a request"
        );
        // One refusal per request: never retried.
        assert_eq!(refused_total(stack.gw.admin).await, 4);
    })
    .await;
}

#[tokio::test]
async fn the_metadata_address_is_refused_before_any_connect() {
    bounded(async {
        // No deny list: the built-in set alone. A long timeout, so an attempted connect to an
        // unreachable address would show as a slow 504, not a quick 502.
        let stack = Stack::start(|_| {
            vec![
                to_host("md", "/md", "169.254.169.254", 80, 20_000),
                to_host("md6", "/md6", "fd00:ec2::254", 80, 20_000),
                to_host("mapped", "/mapped", "::ffff:169.254.169.254", 80, 20_000),
                to_host("any", "/any", "0.0.0.0", 80, 20_000),
            ]
        })
        .await;
        for path in ["/md", "/md6", "/mapped", "/any"] {
            let started = Instant::now();
            call(stack.gw.addr, path)
                .await
                .assert_apig_error(502, "APIG.0201");
            assert!(started.elapsed() < Duration::from_secs(2), "{path}");
        }
        assert_eq!(refused_total(stack.gw.admin).await, 4);
        // Loopback stays allowed by default.
        let ok = Stack::start(|echo| vec![with_http(api("e", "GET", "/e"), echo, "/", 5000)]).await;
        assert_eq!(call(ok.gw.addr, "/e").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn health_checks_never_connect_to_a_denied_member() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stack = Stack::start_snapshot(
            |_| {
                let mut a = to_host("ch", "/ch", "", 0, 5000);
                if let Some(api::Backend::Http(h)) = &mut a.backend {
                    h.channel_id = "chan-1".into();
                }
                let mut s = snapshot("epoch-1", 1, vec![a]);
                s.channels = vec![Channel {
                    id: "chan-1".into(),
                    name: "chan".into(),
                    members: vec![Member {
                        id: "m1".into(),
                        host: "localhost".into(),
                        port: u32::from(port),
                        weight: 1,
                        ..Default::default()
                    }],
                    health: Some(HealthCheck {
                        protocol: HealthProtocol::Tcp as i32,
                        healthy_threshold: 1,
                        unhealthy_threshold: 100,
                        interval_ms: 50,
                        timeout_ms: 50,
                        ..Default::default()
                    }),
                    ..Default::default()
                }];
                s
            },
            deny_loopback,
        )
        .await;
        // A request to the member is refused like any backend.
        call(stack.gw.addr, "/ch")
            .await
            .assert_apig_error(502, "APIG.0201");
        assert!(
            !accepts_within(&listener, Duration::from_millis(400)).await,
            "a health check connected to a denied member"
        );
        // Several checks ran, each refused.
        assert!(refused_total(stack.gw.admin).await >= 3);
    })
    .await;
}
