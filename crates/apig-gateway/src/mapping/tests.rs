use std::net::SocketAddr;
use std::time::SystemTime;

use apig_proto::{BackendParam, BackendParamOrigin, HttpBackend, ParamLocation, RequestParam};
use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::auth::{AppMethod, Caller, Transport};
use crate::context::{RequestContext, RequestId};
use crate::params::{resolve, ReqParamSpec};

struct Fixture {
    /// The canonical request path (gRPC targets forward it).
    path: CanonicalPath,
    upgrade: Option<HeaderValue>,
    strip_credentials: bool,
    greedy: Vec<String>,
    req_params: Vec<ReqParamSpec>,
    backend_params: Vec<BackendParamSpec>,
    target: HttpTarget,
}

fn target(path: &str) -> HttpTarget {
    HttpTarget::prepare(&HttpBackend {
        scheme: "http".into(),
        host: "backend.internal".into(),
        port: 8080,
        method: "ANY".into(),
        path: path.into(),
        timeout_ms: 1000,
        retry_count: 0,
        ..Default::default()
    })
    .unwrap()
}

fn bp(
    name: &str,
    location: ParamLocation,
    origin: BackendParamOrigin,
    value: &str,
    from: ParamLocation,
) -> BackendParamSpec {
    BackendParamSpec::prepare(&BackendParam {
        name: name.into(),
        location: location as i32,
        origin: origin as i32,
        value: value.into(),
        req_param_location: from as i32,
    })
    .unwrap()
}

fn rp(name: &str, location: ParamLocation) -> RequestParam {
    RequestParam {
        name: name.into(),
        location: location as i32,
        r#type: "STRING".into(),
        ..Default::default()
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: RequestId::random(),
        peer: "10.1.2.3:5555".parse::<SocketAddr>().unwrap(),
        local: "127.0.0.9:8080".parse::<SocketAddr>().unwrap(),
        received_at: SystemTime::UNIX_EPOCH,
        caller: Caller::Anonymous,
        client_ip: "10.1.2.3".parse().unwrap(),
        transport: Transport::Clear,
        forwarded_chain: None,
        debug: false,
        rate_limits: None,
        app_quota: None,
        started: std::time::Instant::now(),
        tls: false,
        api_metrics: None,
        upstream: None,
        traceparent: None,
        frontend_authorizer: None,
        backend_authorizer: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

impl Fixture {
    fn new(path: &str) -> Self {
        Self {
            path: apig_router::canonicalize("/").unwrap(),
            upgrade: None,
            strip_credentials: false,
            greedy: Vec::new(),
            req_params: Vec::new(),
            backend_params: Vec::new(),
            target: target(path),
        }
    }

    fn run(
        &self,
        method: &Method,
        params: &[(&str, &str)],
        remainder: &str,
        query: Option<&str>,
        client_headers: &HeaderMap,
        ctx: &RequestContext,
    ) -> Result<MappedRequest, GatewayErrorKind> {
        let api = ApiMapping {
            id: "api-1",
            name: "get_user",
            stage: "RELEASE",
            greedy: &self.greedy,
            req_params: &self.req_params,
            backend_params: &self.backend_params,
        };
        let q = Query::parse(query);
        let resolved = resolve(
            &self.req_params,
            &RequestView {
                path_params: params,
                query: &q,
                headers: client_headers,
            },
        )?;
        let forwarded = client_headers.get("host");
        map_request(
            &api,
            &self.target,
            self.target.fixed().unwrap(),
            &ClientRequest {
                method,
                path: &self.path,
                path_params: params,
                remainder,
                query,
                headers: client_headers,
                forwarded_host: forwarded,
                strip_credentials: self.strip_credentials,
                upgrade: self.upgrade.as_ref(),
            },
            &resolved,
            ctx,
        )
    }

    fn simple(
        &self,
        params: &[(&str, &str)],
        query: Option<&str>,
        h: &[(&str, &str)],
    ) -> MappedRequest {
        self.run(&Method::GET, params, "", query, &headers(h), &ctx())
            .unwrap()
    }
}

fn path_and_query(m: &MappedRequest) -> &str {
    m.uri.path_and_query().unwrap().as_str()
}

#[test]
fn path_params_fill_the_backend_template_encoded() {
    let mut f = Fixture::new("/v1/users/{uid}/profile");
    f.backend_params.push(bp(
        "uid",
        ParamLocation::Path,
        BackendParamOrigin::Request,
        "id",
        ParamLocation::Path,
    ));
    let m = f.simple(&[("id", "a b/c?d")], None, &[("host", "api.example.com")]);
    assert_eq!(path_and_query(&m), "/v1/users/a%20b%2Fc%3Fd/profile");
    assert_eq!(m.uri.scheme_str(), Some("http"));
    assert_eq!(m.uri.authority().unwrap().as_str(), "backend.internal:8080");
    // Request data never reaches the scheme or the authority, whatever it looks like.
    for hostile in [
        "http://evil.example/x",
        "//evil.example",
        "@evil.example",
        "..%2F..",
    ] {
        let m = f.simple(&[("id", hostile)], None, &[("host", "evil.example")]);
        assert_eq!(m.uri.authority().unwrap().as_str(), "backend.internal:8080");
        assert_eq!(m.uri.scheme_str(), Some("http"));
        assert!(path_and_query(&m).starts_with("/v1/users/"), "{hostile}");
        assert!(!path_and_query(&m)["/v1/users/".len()..]
            .trim_end_matches("/profile")
            .contains('/'));
    }
}

#[test]
fn frontend_path_param_of_the_same_name_fills_the_template() {
    let f = Fixture::new("/users/{id}.json");
    let m = f.simple(&[("ID", "42")], None, &[]);
    assert_eq!(path_and_query(&m), "/users/42.json");
}

#[test]
fn greedy_values_keep_their_slashes() {
    let mut f = Fixture::new("/store/{p}");
    f.greedy.push("p".into());
    let m = f.simple(&[("p", "a/b c/")], None, &[]);
    assert_eq!(path_and_query(&m), "/store/a/b%20c/");
}

#[test]
fn swa_remainder_is_appended() {
    let f = Fixture::new("/base");
    let m = f
        .run(
            &Method::GET,
            &[],
            "/x/y z",
            Some("k=v"),
            &HeaderMap::new(),
            &ctx(),
        )
        .unwrap();
    assert_eq!(path_and_query(&m), "/base/x/y%20z?k=v");

    let f = Fixture::new("/base/");
    let m = f
        .run(&Method::GET, &[], "/x/", None, &HeaderMap::new(), &ctx())
        .unwrap();
    assert_eq!(path_and_query(&m), "/base/x/");

    let m = f
        .run(&Method::GET, &[], "/", None, &HeaderMap::new(), &ctx())
        .unwrap();
    assert_eq!(path_and_query(&m), "/base/");
}

#[test]
fn query_param_moved_to_another_name_is_not_forwarded_twice() {
    let mut f = Fixture::new("/q");
    f.backend_params.push(bp(
        "x",
        ParamLocation::Query,
        BackendParamOrigin::Request,
        "a",
        ParamLocation::Query,
    ));
    let m = f.simple(&[], Some("a=1&b=2"), &[]);
    assert_eq!(path_and_query(&m), "/q?b=2&x=1");
}

#[test]
fn params_move_between_locations() {
    let mut f = Fixture::new("/p/{fromquery}");
    f.backend_params.extend([
        // header → query
        bp(
            "token",
            ParamLocation::Query,
            BackendParamOrigin::Request,
            "X-Token",
            ParamLocation::Header,
        ),
        // query → header
        bp(
            "X-User",
            ParamLocation::Header,
            BackendParamOrigin::Request,
            "user",
            ParamLocation::Query,
        ),
        // path → header
        bp(
            "X-Item",
            ParamLocation::Header,
            BackendParamOrigin::Request,
            "item",
            ParamLocation::Path,
        ),
        // query → path (a slash in the value cannot add a segment)
        bp(
            "fromquery",
            ParamLocation::Path,
            BackendParamOrigin::Request,
            "dir",
            ParamLocation::Query,
        ),
    ]);
    let m = f.simple(
        &[("item", "i-7")],
        Some("user=bob&dir=..%2Fadmin&keep=1"),
        &[("x-token", "secret"), ("x-other", "o")],
    );
    assert_eq!(path_and_query(&m), "/p/..%2Fadmin?keep=1&token=secret");
    assert_eq!(m.headers["x-user"], "bob");
    assert_eq!(m.headers["x-item"], "i-7");
    assert_eq!(m.headers["x-other"], "o");
    assert!(m.headers.get("x-token").is_none());
}

#[test]
fn constants_and_system_parameters() {
    let mut f = Fixture::new("/s/{c}");
    f.backend_params.extend([
        bp(
            "c",
            ParamLocation::Path,
            BackendParamOrigin::Constant,
            "v1/x y",
            ParamLocation::Path,
        ),
        bp(
            "X-Const",
            ParamLocation::Header,
            BackendParamOrigin::Constant,
            "hello",
            ParamLocation::Path,
        ),
        bp(
            "mode",
            ParamLocation::Query,
            BackendParamOrigin::Constant,
            "a&b",
            ParamLocation::Path,
        ),
        bp(
            "X-Rid",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.requestId",
            ParamLocation::Path,
        ),
        bp(
            "X-Src",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.sourceIp",
            ParamLocation::Path,
        ),
        bp(
            "X-Stage-Name",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.stage",
            ParamLocation::Path,
        ),
        bp(
            "X-Api-Id",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.apiId",
            ParamLocation::Path,
        ),
        bp(
            "X-Api-Name",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.apiName",
            ParamLocation::Path,
        ),
        bp(
            "X-Server",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.serverAddr",
            ParamLocation::Path,
        ),
        bp(
            "X-Time",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.handleTime",
            ParamLocation::Path,
        ),
        bp(
            "X-App",
            ParamLocation::Header,
            BackendParamOrigin::System,
            "$context.appId",
            ParamLocation::Path,
        ),
    ]);
    let c = ctx();
    let m = f
        .run(&Method::GET, &[], "", None, &HeaderMap::new(), &c)
        .unwrap();
    assert_eq!(path_and_query(&m), "/s/v1/x%20y?mode=a%26b");
    assert_eq!(m.headers["x-const"], "hello");
    assert_eq!(m.headers["x-rid"], c.request_id.as_str());
    assert_eq!(m.headers["x-src"], "10.1.2.3");
    assert_eq!(m.headers["x-stage-name"], "RELEASE");
    assert_eq!(m.headers["x-api-id"], "api-1");
    assert_eq!(m.headers["x-api-name"], "get_user");
    assert_eq!(m.headers["x-server"], "127.0.0.9");
    assert_eq!(m.headers["x-time"], "01/Jan/1970:00:00:00 +0000");
    assert_eq!(m.headers["x-app"], "");
}

fn app_params(f: &mut Fixture) {
    for (name, value) in [
        ("X-App-Id", "$context.appId"),
        ("X-App-Name", "$context.appName"),
        ("X-App-Key", "$context.appKey"),
    ] {
        f.backend_params.push(bp(
            name,
            ParamLocation::Header,
            BackendParamOrigin::System,
            value,
            ParamLocation::Path,
        ));
    }
}

#[test]
fn app_system_parameters_name_the_authenticated_app() {
    let mut f = Fixture::new("/a");
    app_params(&mut f);
    let mut c = ctx();
    c.caller = Caller::App {
        id: "app-1".into(),
        name: "billing".into(),
        method: AppMethod::Signature,
    };
    let m = f
        .run(&Method::GET, &[], "", None, &HeaderMap::new(), &c)
        .unwrap();
    assert_eq!(m.headers["x-app-id"], "app-1");
    assert_eq!(m.headers["x-app-name"], "billing");
    // The app key is a credential: never exposed.
    assert_eq!(m.headers["x-app-key"], "");

    let m = f
        .run(&Method::GET, &[], "", None, &HeaderMap::new(), &ctx())
        .unwrap();
    assert_eq!(m.headers["x-app-id"], "");
    assert_eq!(m.headers["x-app-name"], "");
}

const CREDENTIAL_HEADERS: &[(&str, &str)] = &[
    (
        "authorization",
        "SDK-HMAC-SHA256 Access=k, SignedHeaders=host;x-sdk-date, Signature=00",
    ),
    ("x-auth-token", "APIGT1.a.b"),
    ("x-apig-appcode", "code-secret"),
    ("x-sdk-date", "20240101T000000Z"),
    ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),
    ("accept", "*/*"),
];

#[test]
fn gateway_credentials_are_stripped_on_authenticated_apis() {
    let mut f = Fixture::new("/a");
    f.strip_credentials = true;
    let m = f.simple(&[], None, CREDENTIAL_HEADERS);
    for gone in [
        "authorization",
        "x-auth-token",
        "x-apig-appcode",
        "x-sdk-date",
        "x-sdk-content-sha256",
    ] {
        assert!(m.headers.get(gone).is_none(), "{gone} reached the backend");
    }
    assert_eq!(m.headers["accept"], "*/*");

    // Another Authorization scheme is the backend's business.
    let m = f.simple(&[], None, &[("authorization", "Bearer for-the-backend")]);
    assert_eq!(m.headers["authorization"], "Bearer for-the-backend");

    // NONE APIs pass everything but the AppCode.
    f.strip_credentials = false;
    let m = f.simple(&[], None, CREDENTIAL_HEADERS);
    assert!(m.headers.get("x-apig-appcode").is_none());
    for kept in [
        "authorization",
        "x-auth-token",
        "x-sdk-date",
        "x-sdk-content-sha256",
    ] {
        assert!(m.headers.get(kept).is_some(), "{kept} should pass on NONE");
    }
}

#[test]
fn backend_parameters_cannot_copy_credentials() {
    let mut f = Fixture::new("/a");
    f.strip_credentials = true;
    for source in [
        "Authorization",
        "X-Auth-Token",
        "X-Apig-AppCode",
        "X-Sdk-Date",
    ] {
        f.backend_params.push(bp(
            &format!("X-Copy-{source}"),
            ParamLocation::Header,
            BackendParamOrigin::Request,
            source,
            ParamLocation::Header,
        ));
    }
    f.backend_params.push(bp(
        "leak",
        ParamLocation::Query,
        BackendParamOrigin::Request,
        "X-Auth-Token",
        ParamLocation::Header,
    ));
    let m = f.simple(&[], None, CREDENTIAL_HEADERS);
    for (name, _) in m.headers.iter() {
        assert!(!name.as_str().starts_with("x-copy-"), "{name} was copied");
    }
    assert_eq!(path_and_query(&m), "/a");
    assert_eq!(m.headers["accept"], "*/*");
}

#[test]
fn constant_overrides_client_value() {
    let mut f = Fixture::new("/o");
    f.backend_params.extend([
        bp(
            "v",
            ParamLocation::Query,
            BackendParamOrigin::Constant,
            "server",
            ParamLocation::Path,
        ),
        bp(
            "X-Mode",
            ParamLocation::Header,
            BackendParamOrigin::Constant,
            "server",
            ParamLocation::Path,
        ),
    ]);
    let m = f.simple(&[], Some("v=client&v=again"), &[("x-mode", "client")]);
    assert_eq!(path_and_query(&m), "/o?v=server");
    assert_eq!(m.headers.get_all("x-mode").iter().count(), 1);
    assert_eq!(m.headers["x-mode"], "server");
}

#[test]
fn hop_by_hop_and_gateway_headers_are_replaced() {
    let f = Fixture::new("/h");
    let m = f.simple(
        &[],
        None,
        &[
            ("host", "API.example.com:8080"),
            ("connection", "close, x-secret, X-Forwarded-For"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-stage", "TEST"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-request-id", "spoofed"),
            ("expect", "100-continue"),
            ("authorization", "Bearer keep-me"),
            ("accept", "application/json"),
            ("x_auth_user", "admin"),
        ],
    );
    let h = &m.headers;
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "x-stage",
        "forwarded",
        "x-real-ip",
        "expect",
        "x_auth_user",
    ] {
        assert!(h.get(gone).is_none(), "{gone} should be stripped");
    }
    assert_eq!(h["host"], "backend.internal:8080");
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    assert_eq!(h["x-forwarded-host"], "API.example.com:8080");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_ne!(h["x-request-id"], "spoofed");
    assert_eq!(h["x-request-id"].len(), 32);
    assert_eq!(h["authorization"], "Bearer keep-me");
    assert_eq!(h["accept"], "application/json");
}

#[test]
fn the_traceparent_is_the_gateway_span_s_when_tracing_and_the_client_s_otherwise() {
    let f = Fixture::new("/t");
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(client));
    headers.insert("tracestate", HeaderValue::from_static("vendor=1"));
    let m = f
        .run(&Method::GET, &[], "", None, &headers, &ctx())
        .unwrap();
    assert_eq!(m.headers["traceparent"], client);

    let mut traced = ctx();
    let ours = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    traced.traceparent = Some(HeaderValue::from_static(ours));
    let m = f
        .run(&Method::GET, &[], "", None, &headers, &traced)
        .unwrap();
    assert_eq!(m.headers.get_all("traceparent").iter().count(), 1);
    assert_eq!(m.headers["traceparent"], ours);
    assert_eq!(m.headers["tracestate"], "vendor=1");
}

#[test]
fn split_cookies_are_joined() {
    let f = Fixture::new("/c");
    let m = f.simple(&[], None, &[("cookie", "a=1"), ("cookie", "b=2")]);
    assert_eq!(m.headers.get_all("cookie").iter().count(), 1);
    assert_eq!(m.headers["cookie"], "a=1; b=2");
}

#[test]
fn method_any_forwards_the_clients() {
    let f = Fixture::new("/m");
    let m = f
        .run(&Method::PATCH, &[], "", None, &HeaderMap::new(), &ctx())
        .unwrap();
    assert_eq!(m.method, Method::PATCH);

    let mut fixed = Fixture::new("/m");
    fixed.target.method = Some(Method::POST);
    let m = fixed
        .run(&Method::GET, &[], "", None, &HeaderMap::new(), &ctx())
        .unwrap();
    assert_eq!(m.method, Method::POST);
}

#[test]
fn defaults_are_forwarded_at_their_place() {
    let mut f = Fixture::new("/d");
    let mut page = rp("page", ParamLocation::Query);
    page.default_value = "1".into();
    let mut lang = rp("X-Lang", ParamLocation::Header);
    lang.default_value = "en".into();
    f.req_params = vec![
        ReqParamSpec::prepare(&page).unwrap(),
        ReqParamSpec::prepare(&lang).unwrap(),
    ];
    let m = f.simple(&[], Some("q=x"), &[]);
    assert_eq!(path_and_query(&m), "/d?q=x&page=1");
    assert_eq!(m.headers["x-lang"], "en");

    let m = f.simple(&[], Some("page=5"), &[("x-lang", "fr")]);
    assert_eq!(path_and_query(&m), "/d?page=5");
    assert_eq!(m.headers["x-lang"], "fr");
}

#[test]
fn default_feeds_a_mapped_parameter() {
    let mut f = Fixture::new("/d");
    let mut page = rp("page", ParamLocation::Query);
    page.default_value = "1".into();
    f.req_params = vec![ReqParamSpec::prepare(&page).unwrap()];
    f.backend_params.push(bp(
        "X-Page",
        ParamLocation::Header,
        BackendParamOrigin::Request,
        "page",
        ParamLocation::Query,
    ));
    let m = f.simple(&[], None, &[]);
    assert_eq!(path_and_query(&m), "/d");
    assert_eq!(m.headers["x-page"], "1");
}

#[test]
fn request_values_cannot_inject_headers() {
    let mut f = Fixture::new("/i");
    f.backend_params.push(bp(
        "X-Name",
        ParamLocation::Header,
        BackendParamOrigin::Request,
        "name",
        ParamLocation::Query,
    ));
    let err = f
        .run(
            &Method::GET,
            &[],
            "",
            Some("name=a%0d%0aX-Evil:%201"),
            &HeaderMap::new(),
            &ctx(),
        )
        .unwrap_err();
    assert!(matches!(err, GatewayErrorKind::InvalidParameter { .. }));
}

#[test]
fn absent_optional_source_of_a_path_variable_is_a_missing_parameter() {
    let mut f = Fixture::new("/x/{v}");
    f.backend_params.push(bp(
        "v",
        ParamLocation::Path,
        BackendParamOrigin::Request,
        "q",
        ParamLocation::Query,
    ));
    let err = f
        .run(&Method::GET, &[], "", None, &HeaderMap::new(), &ctx())
        .unwrap_err();
    assert_eq!(
        err,
        GatewayErrorKind::MissingParameter {
            name: "q".into(),
            location: "QUERY"
        }
    );
}

#[test]
fn http_target_preparation() {
    let t = target("/a");
    assert_eq!(
        t.fixed().unwrap().host_header.unwrap(),
        "backend.internal:8080"
    );
    assert_eq!(t.method, None);
    assert_eq!(t.timeout, Duration::from_millis(1000));

    let default_port = HttpTarget::prepare(&HttpBackend {
        host: "b.internal".into(),
        port: 80,
        scheme: "HTTP".into(),
        method: "get".into(),
        path: "/".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        default_port.fixed().unwrap().host_header.unwrap(),
        "b.internal"
    );
    assert_eq!(
        default_port.fixed().unwrap().authority.as_str(),
        "b.internal:80"
    );
    assert_eq!(default_port.method, Some(Method::GET));
    assert_eq!(default_port.timeout, DEFAULT_TIMEOUT);

    let v6 = HttpTarget::prepare(&HttpBackend {
        host: "::1".into(),
        port: 9000,
        path: "/".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(v6.fixed().unwrap().authority.as_str(), "[::1]:9000");

    let https = HttpTarget::prepare(&HttpBackend {
        host: "s.internal".into(),
        scheme: "https".into(),
        path: "/".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(https.scheme, BackendScheme::Https);
    assert_eq!(https.fixed().unwrap().host_header.unwrap(), "s.internal");

    for bad in [
        HttpBackend {
            host: String::new(),
            path: "/".into(),
            ..Default::default()
        },
        HttpBackend {
            host: "h".into(),
            scheme: "ftp".into(),
            path: "/".into(),
            ..Default::default()
        },
        HttpBackend {
            host: "user@h".into(),
            path: "/".into(),
            ..Default::default()
        },
        HttpBackend {
            host: "h".into(),
            port: 70_000,
            path: "/".into(),
            ..Default::default()
        },
        HttpBackend {
            host: "h".into(),
            path: "no-slash".into(),
            ..Default::default()
        },
        HttpBackend {
            host: "h".into(),
            method: "G T".into(),
            path: "/".into(),
            ..Default::default()
        },
    ] {
        assert!(HttpTarget::prepare(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn path_template_parsing() {
    let t = PathTemplate::parse("/a/{x}-suffix/pre-{y}/{z+}").unwrap();
    assert_eq!(t.vars().collect::<Vec<_>>(), vec!["x", "y", "z"]);
    for bad in [
        "/a/{x", "/a/x}", "/a/{}", "/a/{a b}", "/a b", "/a?b", "/a#b", "a",
    ] {
        assert!(PathTemplate::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn backend_param_preparation_refuses_bad_input() {
    let header_constant = BackendParam {
        name: "X-A".into(),
        location: ParamLocation::Header as i32,
        origin: BackendParamOrigin::Constant as i32,
        value: "bad\nvalue".into(),
        req_param_location: 0,
    };
    assert!(BackendParamSpec::prepare(&header_constant).is_err());
    let bad_origin = BackendParam {
        name: "a".into(),
        origin: 9,
        ..Default::default()
    };
    assert!(BackendParamSpec::prepare(&bad_origin).is_err());
    let bad_header = BackendParam {
        name: "a b".into(),
        location: ParamLocation::Header as i32,
        ..Default::default()
    };
    assert!(BackendParamSpec::prepare(&bad_header).is_err());
    assert_eq!(
        SystemParam::parse("$context.sourceIp"),
        SystemParam::SourceIp
    );
    assert_eq!(SystemParam::parse("$context.nope"), SystemParam::Unknown);
    assert_eq!(
        SystemParam::parse("$context.authorizer.frontend.user"),
        SystemParam::FrontendAuthorizer("user".into())
    );
    assert_eq!(
        SystemParam::parse("$context.authorizer.backend.sig"),
        SystemParam::BackendAuthorizer("sig".into())
    );
}

#[test]
fn response_hop_by_hop_stripping() {
    let mut h = headers(&[
        ("connection", "x-internal"),
        ("x-internal", "1"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("content-type", "text/plain"),
        ("proxy-authenticate", "Basic"),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert_eq!(h["content-type"], "text/plain");
}

#[test]
fn authorizer_context_parameters_resolve_from_the_request_context() {
    let api = ApiMapping {
        id: "a",
        name: "n",
        stage: "RELEASE",
        greedy: &[],
        req_params: &[],
        backend_params: &[],
    };
    let user = SystemParam::parse("$context.authorizer.frontend.user");
    let sig = SystemParam::parse("$context.authorizer.backend.sig");
    let mut c = ctx();
    assert_eq!(user.resolve(&api, &c), "");
    c.frontend_authorizer = Some(std::sync::Arc::new(crate::authorizer::tests::context(&[(
        "user", "alice",
    )])));
    c.backend_authorizer = Some(std::sync::Arc::new(crate::authorizer::tests::context(&[(
        "sig", "s-1",
    )])));
    assert_eq!(user.resolve(&api, &c), "alice");
    assert_eq!(sig.resolve(&api, &c), "s-1");
    // Keys are exact: another case is another key.
    assert_eq!(
        SystemParam::parse("$context.authorizer.frontend.User").resolve(&api, &c),
        ""
    );
}

#[test]
fn forwarded_for_and_source_ip_follow_the_resolved_client() {
    let api = ApiMapping {
        id: "a",
        name: "n",
        stage: "RELEASE",
        greedy: &[],
        req_params: &[],
        backend_params: &[],
    };
    // Direct client: the peer, alone.
    let c = ctx();
    assert_eq!(forwarded_for(&c).unwrap(), "10.1.2.3");
    assert_eq!(SystemParam::SourceIp.resolve(&api, &c), "10.1.2.3");
    // Through a trusted proxy: the resolved chain, then the peer; sourceIp is the client.
    let mut c = ctx();
    c.client_ip = "203.0.113.5".parse().unwrap();
    c.forwarded_chain = Some("203.0.113.5, 10.0.0.7".into());
    assert_eq!(
        forwarded_for(&c).unwrap(),
        "203.0.113.5, 10.0.0.7, 10.1.2.3"
    );
    assert_eq!(SystemParam::SourceIp.resolve(&api, &c), "203.0.113.5");
    // An IPv4-mapped peer is written as IPv4.
    let mut c = ctx();
    c.peer = "[::ffff:10.9.9.9]:1".parse().unwrap();
    assert_eq!(forwarded_for(&c).unwrap(), "10.9.9.9");
}

#[test]
fn a_tunnelled_upgrade_keeps_its_upgrade_headers_only() {
    let mut f = Fixture::new("/ws");
    f.upgrade = Some(HeaderValue::from_static("websocket"));
    let m = f.simple(
        &[],
        None,
        &[
            ("connection", "Upgrade, x-secret"),
            ("upgrade", "websocket"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
    );
    let h = &m.headers;
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(h["sec-websocket-version"], "13");
    assert!(h.get("x-secret").is_none());
    assert!(h.get("keep-alive").is_none());
}

#[test]
fn grpc_targets_get_the_request_path_and_te_trailers() {
    let mut f = Fixture::new("/");
    f.target = HttpTarget::prepare(&HttpBackend {
        scheme: "http".into(),
        host: "grpc.internal".into(),
        port: 50051,
        method: "POST".into(),
        path: "/".into(),
        timeout_ms: 1000,
        protocol: apig_proto::BackendProtocol::Grpc as i32,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(f.target.protocol(), UpstreamProtocol::Http2);
    f.path = apig_router::canonicalize("/helloworld.Greeter/SayHello").unwrap();
    // Whatever prefix the API matched (here an SWA `/helloworld.Greeter` leaving `/SayHello`),
    // the backend gets the whole request path.
    let m = f
        .run(
            &Method::POST,
            &[],
            "/SayHello",
            None,
            &headers(&[("te", "trailers"), ("content-type", "application/grpc")]),
            &ctx(),
        )
        .unwrap();
    assert_eq!(path_and_query(&m), "/helloworld.Greeter/SayHello");
    assert_eq!(m.method, Method::POST);
    assert_eq!(m.headers["te"], "trailers");
    assert_eq!(m.headers["content-type"], "application/grpc");
    assert!(m.headers.get("connection").is_none());
    // A client that sent no TE still gets it to the backend (gRPC requires it).
    let m = f
        .run(&Method::POST, &[], "", None, &headers(&[]), &ctx())
        .unwrap();
    assert_eq!(m.headers["te"], "trailers");
    // An unknown protocol in a snapshot is refused, not guessed.
    assert!(HttpTarget::prepare(&HttpBackend {
        host: "h".into(),
        port: 1,
        protocol: 7,
        ..Default::default()
    })
    .is_err());
}
