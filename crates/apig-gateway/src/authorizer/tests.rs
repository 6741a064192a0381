//! The authorizer client against a real function server on loopback (rows A11–A13 of the
//! hostile-input table at crate level; the end-to-end rows are in `tests/e2e/authorizers.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apig_proto::{Authorizer, AuthorizerIdentity, ParamLocation};
use apig_testkit::{FunctionReply, FunctionServer};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};

use super::*;
use crate::egress::AddressGuard;

/// A context for other modules' tests.
pub(crate) fn context(entries: &[(&str, &str)]) -> AuthContext {
    AuthContext {
        entries: entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

struct Fixture {
    upstream: Upstream,
    cache: DecisionCache,
    outcomes: Outcomes,
}

fn counter(name: &str) -> IntCounter {
    IntCounter::new(name, name).unwrap()
}

impl Fixture {
    fn new() -> Self {
        let guard = Arc::new(AddressGuard::new(Default::default(), counter("refused")));
        let tls = crate::backend_tls::client_config(None).unwrap();
        Self {
            upstream: Upstream::new(tls, guard),
            cache: DecisionCache::new(1000),
            outcomes: Outcomes {
                allow: counter("allow"),
                deny: counter("deny"),
                error: counter("error"),
                cache_hit: counter("cache_hit"),
                identities_failure: counter("identities_failure"),
            },
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            upstream: &self.upstream,
            cache: &self.cache,
            outcomes: &self.outcomes,
        }
    }
}

fn identity(name: &str, location: ParamLocation, validation: &str) -> AuthorizerIdentity {
    AuthorizerIdentity {
        name: name.into(),
        location: location as i32,
        validation: validation.into(),
    }
}

fn authorizer(server: &FunctionServer, ttl: u32) -> PreparedAuthorizer {
    PreparedAuthorizer::prepare(&Authorizer {
        id: "a1".into(),
        name: "auth".into(),
        backend: false,
        url: format!("http://{}/authorize", server.addr),
        identities: vec![
            identity("x-token", ParamLocation::Header, "^[a-z0-9]{4,}$"),
            identity("tenant", ParamLocation::Query, ""),
        ],
        ttl_seconds: ttl,
        user_data: "ud-1".into(),
        need_body: true,
    })
    .unwrap()
}

fn ctx() -> RequestContext {
    RequestContext::new(
        "127.0.0.1:5000".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
    )
}

/// Runs the frontend authorizer for a request with these identity values.
async fn run(
    f: &Fixture,
    a: &PreparedAuthorizer,
    token: Option<&str>,
    query: Option<&str>,
) -> Result<Arc<AuthContext>, GatewayErrorKind> {
    let mut headers = HeaderMap::new();
    if let Some(t) = token {
        headers.insert("x-token", HeaderValue::from_str(t).unwrap());
    }
    let request = FrontendRequest {
        method: &Method::POST,
        path: "/orders/7",
        headers: &headers,
        query,
        path_params: &[("id", "7")],
        api_id: "api-1",
        api_name: "orders",
        stage: "RELEASE",
        body: Some(b"hello"),
    };
    a.authorize_frontend(&f.caller(), &request, &ctx()).await
}

fn answer(status: &str, context: Value) -> String {
    json!({"statusCode": 200,
           "body": json!({"status": status, "context": context}).to_string()})
    .to_string()
}

/// A function that allows token `good…` (context: the user) and denies others.
async fn by_token() -> FunctionServer {
    FunctionServer::start(|event| {
        let token = event["headers"]["x-token"].as_str().unwrap_or_default();
        if token.starts_with("good") {
            answer("allow", json!({"user": token, "tier": "gold"}))
        } else {
            answer("deny", json!({}))
        }
    })
    .await
}

#[tokio::test]
async fn allow_passes_the_context_and_the_event_has_apig_fields() {
    let server = by_token().await;
    let f = Fixture::new();
    let a = authorizer(&server, 0);
    let c = run(&f, &a, Some("good1"), Some("tenant=t1")).await.unwrap();
    assert_eq!(c.get("user"), Some("good1"));
    assert_eq!(c.get("tier"), Some("gold"));
    assert_eq!(c.get("absent"), None);
    let events = server.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["httpMethod"], "POST");
    assert_eq!(e["path"], "/orders/7");
    assert_eq!(e["queryStringParameters"]["tenant"], "t1");
    assert_eq!(e["pathParameters"]["id"], "7");
    assert_eq!(e["user_data"], "ud-1");
    assert_eq!(e["requestContext"]["apiId"], "api-1");
    assert_eq!(e["body"], "aGVsbG8=");
    assert_eq!(e["isBase64Encoded"], true);
    assert_eq!(f.outcomes.allow.get(), 1);
}

#[tokio::test]
async fn deny_is_authorizer_failure() {
    let server = by_token().await;
    let f = Fixture::new();
    let a = authorizer(&server, 0);
    let e = run(&f, &a, Some("evil1"), Some("tenant=t1"))
        .await
        .unwrap_err();
    assert_eq!(e, GatewayErrorKind::AuthorizerDenied);
    assert_eq!(e.status(), 500);
    assert_eq!(e.response_type(), "AUTHORIZER_FAILURE");
    assert_eq!(f.outcomes.deny.get(), 1);
}

/// A11: a missing or invalid identity source is 401 without calling the function, and
/// nothing is cached.
#[tokio::test]
async fn identity_missing_or_invalid_never_calls_the_function() {
    let server = by_token().await;
    let f = Fixture::new();
    let a = authorizer(&server, 60);
    for (token, query) in [
        (None, Some("tenant=t1")),
        (Some("good1"), None),
        (Some("good1"), Some("tenant=")),
        (Some("GOOD!"), Some("tenant=t1")),
        (Some("good1"), Some("tenant=t1&tenant=t2")),
    ] {
        let e = run(&f, &a, token, query).await.unwrap_err();
        assert_eq!(
            e,
            GatewayErrorKind::AuthorizerIdentitiesFailure,
            "{token:?} {query:?}"
        );
        assert_eq!(e.status(), 401);
        assert_eq!(e.response_type(), "AUTHORIZER_IDENTITIES_FAILURE");
    }
    assert!(server.events().is_empty(), "the function was called");
    assert_eq!(f.cache.len(), 0);
    assert_eq!(f.outcomes.identities_failure.get(), 5);
}

/// A12: every kind of broken answer fails closed (500 AUTHORIZER_CONF_FAILURE), and none is
/// cached.
#[tokio::test]
async fn broken_answers_fail_closed() {
    let big = "x".repeat(MAX_ANSWER_BYTES + 10);
    let cases: Vec<(&str, FunctionReply)> = vec![
        (
            "5xx",
            FunctionReply {
                status: 503,
                body: answer("allow", json!({})).into(),
                delay: Duration::ZERO,
            },
        ),
        (
            "statusCode 500",
            FunctionReply::ok(
                json!({"statusCode": 500, "body": "{\"status\":\"allow\"}"}).to_string(),
            ),
        ),
        ("not json", FunctionReply::ok("allow")),
        (
            "body not a string",
            FunctionReply::ok(json!({"statusCode": 200, "body": {"status": "allow"}}).to_string()),
        ),
        (
            "unknown status",
            FunctionReply::ok(answer("maybe", json!({}))),
        ),
        (
            "CRLF in context",
            FunctionReply::ok(answer("allow", json!({"user": "a\r\nX-Admin: 1"}))),
        ),
        (
            "LF in context",
            FunctionReply::ok(answer("allow", json!({"user": "a\nb"}))),
        ),
        (
            "number in context",
            FunctionReply::ok(answer("allow", json!({"uid": 7}))),
        ),
        (
            "nested context",
            FunctionReply::ok(answer("allow", json!({"u": {"a": "b"}}))),
        ),
        (
            "bad key",
            FunctionReply::ok(answer("allow", json!({"a b": "c"}))),
        ),
        (
            "oversized",
            FunctionReply::ok(
                json!({"statusCode": 200, "body": answer("allow", json!({})), "pad": big})
                    .to_string(),
            ),
        ),
    ];
    for (what, reply) in cases {
        let reply = Arc::new(Mutex::new(Some(reply)));
        let server = FunctionServer::start_replying(move |_| {
            reply
                .lock()
                .unwrap()
                .take()
                .unwrap_or_else(|| FunctionReply::ok("gone"))
        })
        .await;
        let f = Fixture::new();
        let a = authorizer(&server, 60);
        let e = run(&f, &a, Some("good1"), Some("tenant=t1"))
            .await
            .unwrap_err();
        assert_eq!(e, GatewayErrorKind::AuthorizerFailed, "{what}");
        assert_eq!(e.status(), 500, "{what}");
        assert_eq!(e.response_type(), "AUTHORIZER_CONF_FAILURE", "{what}");
        assert_eq!(f.cache.len(), 0, "{what}: a failure was cached");
        assert_eq!(f.outcomes.error.get(), 1, "{what}");
    }
}

/// A12: a function slower than the timeout fails closed.
#[tokio::test]
async fn timeouts_fail_closed() {
    let server = FunctionServer::start_replying(|_| FunctionReply {
        status: 200,
        body: answer("allow", json!({})).into(),
        delay: Duration::from_secs(2),
    })
    .await;
    let f = Fixture::new();
    let mut a = authorizer(&server, 0);
    a.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let e = run(&f, &a, Some("good1"), Some("tenant=t1"))
        .await
        .unwrap_err();
    assert_eq!(e, GatewayErrorKind::AuthorizerFailed);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A13 and the ttl: decisions are cached per identity values, and expire.
#[tokio::test]
async fn cache_hits_expire_and_separate_callers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = FunctionServer::start(move |event| {
        seen.fetch_add(1, Ordering::SeqCst);
        let token = event["headers"]["x-token"].as_str().unwrap_or_default();
        let tenant = event["queryStringParameters"]["tenant"]
            .as_str()
            .unwrap_or_default();
        if token.starts_with("good") {
            answer("allow", json!({"user": format!("{token}@{tenant}")}))
        } else {
            answer("deny", json!({}))
        }
    })
    .await;
    let f = Fixture::new();
    let a = authorizer(&server, 1);
    let user = |r: Result<Arc<AuthContext>, GatewayErrorKind>| {
        r.unwrap().get("user").unwrap_or_default().to_owned()
    };
    assert_eq!(
        user(run(&f, &a, Some("good1"), Some("tenant=t1")).await),
        "good1@t1"
    );
    assert_eq!(
        user(run(&f, &a, Some("good1"), Some("tenant=t1")).await),
        "good1@t1"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second call was not a cache hit"
    );
    assert_eq!(f.outcomes.cache_hit.get(), 1);
    // One identity value differs: its own entry, its own answer.
    assert_eq!(
        user(run(&f, &a, Some("good1"), Some("tenant=t2")).await),
        "good1@t2"
    );
    assert_eq!(
        user(run(&f, &a, Some("good2"), Some("tenant=t1")).await),
        "good2@t1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Deny is cached too (the function's result), and stays a deny.
    for _ in 0..2 {
        assert_eq!(
            run(&f, &a, Some("evil1"), Some("tenant=t1"))
                .await
                .unwrap_err(),
            GatewayErrorKind::AuthorizerDenied
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // After the ttl the function is asked again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        user(run(&f, &a, Some("good1"), Some("tenant=t1")).await),
        "good1@t1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // Without a ttl nothing is cached.
    let uncached = authorizer(&server, 0);
    run(&f, &uncached, Some("good1"), Some("tenant=t1"))
        .await
        .unwrap();
    run(&f, &uncached, Some("good1"), Some("tenant=t1"))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 7);
}

#[test]
fn cache_keys_are_unambiguous_and_bounded() {
    let fp = [7u8; 32];
    let k = |vals: &[&str]| cache::key(&fp, vals.iter().map(|v| v.as_bytes()));
    // Concatenations that agree must not collide.
    assert_ne!(k(&["ab", "c"]), k(&["a", "bc"]));
    assert_ne!(k(&["abc"]), k(&["abc", ""]));
    assert_ne!(
        cache::key(&[1; 32], std::iter::once(&b"x"[..])),
        cache::key(&[2; 32], std::iter::once(&b"x"[..]))
    );
    let c = DecisionCache::new(2);
    let now = Instant::now();
    for i in 0..5u8 {
        c.insert([i; 32], Decision::Deny, Duration::from_secs(60), now);
    }
    assert_eq!(c.len(), 2, "the cache grew past its bound");
    // Expired entries make room.
    let later = now + Duration::from_secs(61);
    assert!(c.get(&[0; 32], later).is_none());
    c.insert([9; 32], Decision::Deny, Duration::from_secs(60), later);
    assert_eq!(c.get(&[9; 32], later), Some(Decision::Deny));
}

#[tokio::test]
async fn backend_authorizers_get_only_user_data() {
    let server = FunctionServer::start(|event| {
        if event["user_data"] == "secret-ud" {
            answer("allow", json!({"sig": "s-1"}))
        } else {
            answer("deny", json!({}))
        }
    })
    .await;
    let f = Fixture::new();
    let a = PreparedAuthorizer::prepare(&Authorizer {
        id: "b1".into(),
        name: "backend_auth".into(),
        backend: true,
        url: format!("http://{}/", server.addr),
        user_data: "secret-ud".into(),
        ..Default::default()
    })
    .unwrap();
    let c = a
        .authorize_backend(&f.caller(), &ctx(), "api-1")
        .await
        .unwrap();
    assert_eq!(c.get("sig"), Some("s-1"));
    assert_eq!(server.events(), vec![json!({"user_data": "secret-ud"})]);
}

#[test]
fn definitions_the_gateway_refuses() {
    let base = Authorizer {
        id: "a".into(),
        name: "a".into(),
        url: "http://127.0.0.1:9/".into(),
        ..Default::default()
    };
    PreparedAuthorizer::prepare(&base).unwrap();
    for bad in [
        Authorizer {
            url: "ftp://x/".into(),
            ..base.clone()
        },
        Authorizer {
            url: "http://u@x/".into(),
            ..base.clone()
        },
        // Cached without identities: one caller's decision for everyone.
        Authorizer {
            ttl_seconds: 5,
            ..base.clone()
        },
        Authorizer {
            identities: vec![identity("q", ParamLocation::Query, "(")],
            ..base.clone()
        },
        Authorizer {
            identities: vec![identity("bad header", ParamLocation::Header, "")],
            ..base.clone()
        },
    ] {
        assert!(PreparedAuthorizer::prepare(&bad).is_err(), "{bad:?}");
    }
}
