//! The request path, in order:
//!
//! 1. request id (random, 32 hex digits), on every response as `X-Request-Id`; with
//!    OpenTelemetry export on, the request's span (`otel`: continues the client's
//!    `traceparent`, names itself in the backend's);
//! 2. request target over `max_uri_bytes` → 414; headers over their bounds → 494;
//! 3. path canonicalisation (`apig_router::path::canonicalize`); refused → 400;
//! 4. host (`Host`, or `:authority` on HTTP/2; port stripped, lower case; missing, repeated,
//!    malformed or disagreeing with the request target → 400);
//!    The client address is resolved (`client_ip`: the TCP peer, or from a trusted proxy the
//!    `X-Forwarded-For` client); `X-Apig-Mode: debug` is noted;
//! 5. `x-stage` selects the environment (default RELEASE);
//! 6. route lookup → any miss is 404 `APIG.0101` (no snapshot yet → 503);
//! 7. the API's IP access control policy allows the client IP → else 403 `APIG.0402`;
//! 8. authentication (`auth`): NONE passes; APP checks an `SDK-HMAC-SHA256` signature by an
//!    app (reading the body first when its hash is signed) or an AppCode → 401 `APIG.0303`;
//!    IAM checks an `X-Auth-Token` or a signature by a project AK/SK → 401 `APIG.0301`;
//!    AUTHORIZER runs the frontend custom authorizer (`authorizer`: identity sources → 401
//!    AUTHORIZER_IDENTITIES_FAILURE; deny → 500 AUTHORIZER_FAILURE; a failed call → 500
//!    AUTHORIZER_CONF_FAILURE), which APP and IAM APIs with a frontend authorizer run too after
//!    their own check (two-factor). The caller and the authorizer's context go into the
//!    context;
//! 9. authorization: IAM: the API's DOMAIN_ID and DOMAIN policies allow the caller's project
//!    (by id and by account name) → else 403
//!    `APIG.0302`; APP: the app is authorized for the API → else 403 `APIG.0304`, and the app's
//!    IP ACL allows the client IP → else 403 `APIG.0405`;
//! 10. throttling: every counter of the API's policy (IP, app or excluded app, user or excluded
//!     tenant, API), or the gateway-wide default for an API without policy → else 429
//!     `APIG.0308`. With `X-Apig-Mode: debug` the answer (any answer, a 429 too) carries
//!     `X-Apig-RateLimit-*` headers with what each counter checked said;
//! 11. credential quota: an APP caller whose app has a quota takes one call of the current
//!     window → else 405 `APIG.0501` "The app quota has been used up.". Checked only once
//!     throttling admitted the call (a throttled call does not use quota); a call refused by a
//!     later step (413, 400, backend failure) has used it, as APIG counts calls, not successes.
//!     With `X-Apig-Mode: debug` the answer carries `X-Apig-RateLimit-app-quota:
//!     remain:N,limit:L,time:1 day` (what is left of this replica's share `L` of the limit in
//!     the current window, and the window; absent when the quota was not checked);
//! 12. `Content-Length` over `max_body_bytes` → 413;
//! 13. request parameters: required, defaults, validation → 400;
//! 14. the backend: the first backend policy whose conditions hold (`backend_policy`), else the
//!     default backend; the chosen backend's backend authorizer, if any, runs first (its
//!     context feeds `$context.authorizer.backend.*`). MOCK answers directly; FUNCTION gets an event (`function`); HTTP is mapped (`mapping`, which drops the
//!     credentials the gateway consumed), sent to the fixed address or a member of the API's
//!     channel (`channel`), signed with the API's signature key (`backend_sign`; failure →
//!     500 `APIG.0705`) and called (`proxy`: HTTP/1.1, or HTTP/2 for gRPC backends); a call
//!     that could not connect is retried on another member as `retry_count` allows. A
//!     WebSocket upgrade to an HTTP backend goes on its own connection and becomes a tunnel
//!     (`tunnel`) only if the backend answers 101; it is never retried once sent.
//!
//! Nothing here may panic: every failure is a [`GatewayErrorKind`], turned into a response in
//! `respond`. The runtime (with its throttle counters) is loaded once per request, so a swap
//! mid-request cannot mix configs.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::FutureExt;
use tracing::Instrument;

use apig_policy::throttle::debug_header_value;
use apig_policy::CallerKeys;
use apig_router::{canonicalize, Miss};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::auth::{read_bounded, unix_secs, BodyBounds, ClientBody, Transport};
use crate::authorizer::{self, FrontendRequest};
use crate::backend_policy::{self, PolicyInput};
use crate::backend_sign::SignedBody;
use crate::body::ResponseBody;
use crate::channel::balance::{HashKey, Strategy};
use crate::client_ip;
use crate::context::{unix_millis, RequestContext};
use crate::function::{self, EventSource, FunctionTarget};
use crate::header_names::{X_APIG_MODE, X_STAGE};
use crate::mapping::{
    map_request, strip_hop_by_hop, ApiMapping, ClientRequest, Dest, Destination, TargetKind,
};
use crate::metrics::Origin;
use crate::otel;
use crate::params::{resolve, RequestView, Resolved};
use crate::proxy::{UpstreamBody, UpstreamProtocol};
use crate::query::Query;
use crate::respond::{self, GatewayErrorKind, X_REQUEST_ID};
use crate::runtime::{Auth, Backend};
use crate::server::ConnPermit;
use crate::state::Shared;
use crate::tunnel::{self, TunnelGuard};

/// The two ends of a client connection, and its place under `max_connections`.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub permit: ConnPermit,
    /// The connection came through the HTTPS listener.
    pub tls: bool,
    /// The domain (its mark in `tls::TlsCertificates`) whose client CA verified this
    /// connection's client certificate during the handshake.
    pub client_verified: Option<Arc<str>>,
}

/// Serves one request. Never fails: errors become APIG error responses.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let mut ctx = RequestContext::new(conn.peer, conn.local);
    ctx.tls = conn.tls;
    let grpc = respond::is_grpc(request.headers());
    let method = request.method().clone();
    let bytes_in = known_length(request.headers());
    // Only the access log needs the raw path after the request is consumed.
    let raw_path = if shared.access_log.enabled() {
        request.uri().path().to_owned()
    } else {
        String::new()
    };
    // Disabled, and free, unless OpenTelemetry export is on.
    let (span, traceparent) =
        otel::request_span(&ctx, &method, request.uri().path(), request.headers());
    ctx.traceparent = traceparent;
    // Nothing here should panic (the crate denies unwrap, expect, indexing); if a dependency
    // does anyway, the client gets a 500 APIG body instead of a dropped connection.
    // Boxed: the pipeline's state machine is several KB, and each wrapper below would copy it
    // (measured with `cargo xtask bench instructions`); one allocation is cheaper.
    let outcome = AssertUnwindSafe(Box::pin(serve(
        &shared,
        &mut ctx,
        &conn.permit,
        conn.client_verified.as_deref(),
        request,
    )))
    .catch_unwind()
    .instrument(span.clone())
    .await
    .unwrap_or_else(|_| {
        tracing::error!(request_id = %ctx.request_id, "request handling panicked");
        Err(GatewayErrorKind::Internal)
    });
    let error = outcome
        .as_ref()
        .err()
        .map(|k| (k.code(), k.response_type(), auth_reason(k)));
    let mut response = match outcome {
        Ok(response) => response,
        Err(kind) => {
            tracing::debug!(
                request_id = %ctx.request_id,
                peer = %ctx.peer,
                client = %ctx.client_ip,
                caller = %ctx.caller,
                response_type = kind.response_type(),
                code = kind.code(),
                status = kind.status().as_u16(),
                error = %kind.message(),
                "request refused"
            );
            let grpc_status = grpc.then(|| (kind.grpc_code(), kind.message()));
            let mut response = kind.into_response(&ctx.request_id);
            if let Some((code, message)) = grpc_status {
                respond::add_grpc_status(response.headers_mut(), code, &message);
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID, ctx.request_id.header_value());
    if let Some(verdict) = &ctx.rate_limits {
        let headers = response.headers_mut();
        for (kind, decision) in verdict.decisions() {
            if let Ok(value) = HeaderValue::from_str(&debug_header_value(&decision)) {
                headers.insert(kind.header_name(), value);
            }
        }
    }
    if let Some(decision) = &ctx.app_quota {
        if let Ok(value) = HeaderValue::from_str(&debug_header_value(decision)) {
            response
                .headers_mut()
                .insert(X_APIG_RATELIMIT_APP_QUOTA, value);
        }
    }
    // A refused body was never read.
    let bytes_in = if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        0
    } else {
        bytes_in
    };
    let bytes_out = {
        use http_body::Body;
        response
            .body()
            .size_hint()
            .exact()
            .unwrap_or_else(|| known_length(response.headers()))
    };
    let status = response.status().as_u16();
    otel::record_outcome(
        &span,
        &ctx,
        ctx.api_metrics.as_ref().map(|a| (a.api_id(), a.env())),
        status,
        error.map(|e| e.0),
    );
    observe(
        &shared,
        &ctx,
        &method,
        &raw_path,
        status,
        error,
        (bytes_in, bytes_out),
    );
    Ok(response)
}

/// The declared body length for the usage statistics: 0 when absent or invalid (a streamed body
/// of unknown length is not counted).
fn known_length(headers: &HeaderMap) -> u64 {
    content_length(headers).ok().flatten().unwrap_or(0)
}

/// Metrics and the access log for one answered request.
fn observe(
    shared: &Shared,
    ctx: &RequestContext,
    method: &http::Method,
    path: &str,
    status: u16,
    error: Option<(&'static str, &'static str, Option<&'static str>)>,
    bytes: (u64, u64),
) {
    let metrics = &shared.metrics;
    let elapsed = ctx.started.elapsed();
    let origin = if ctx.upstream.is_some() {
        Origin::Backend
    } else {
        Origin::Gateway
    };
    let unmatched;
    let api = match &ctx.api_metrics {
        Some(api) => Some(api),
        None => {
            unmatched = shared.serving().map(|s| Arc::clone(&s.unmatched_metrics));
            unmatched.as_ref()
        }
    };
    if let Some(api) = api {
        metrics.record(
            api,
            status,
            origin,
            elapsed,
            ctx.upstream.as_ref().map(|u| u.1),
            bytes,
        );
    }
    if let Some((code, response_type, reason)) = error {
        metrics.error(code, response_type, reason);
    }
    if shared.access_log.enabled() {
        let line = serde_json::json!({
            "time": rfc3339_millis(unix_millis(SystemTime::now())),
            "request_id": ctx.request_id.to_string(),
            "api_id": api.map(|a| a.api_id()),
            "env": api.map(|a| a.env()),
            "app_id": ctx.caller.app_id(),
            "client_ip": ctx.client_ip.to_canonical().to_string(),
            "method": method.as_str(),
            "path": path.get(..path.len().min(2048)).unwrap_or(path),
            "status": status,
            "latency_ms": elapsed.as_secs_f64() * 1000.0,
            "upstream_addr": ctx.upstream.as_ref().map(|u| u.0.as_str()),
            "upstream_status": ctx.upstream.as_ref().map(|_| status),
            "upstream_latency_ms": ctx.upstream.as_ref().map(|u| u.1.as_secs_f64() * 1000.0),
            "error_code": error.map(|e| e.0),
        });
        shared.access_log.log(line.to_string());
    }
}

/// RFC 3339 UTC with milliseconds of a unix time in ms, without a date library.
fn rfc3339_millis(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The `apig_gateway_auth_failures_total` reason of an error, if it is an authentication
/// failure.
fn auth_reason(kind: &GatewayErrorKind) -> Option<&'static str> {
    match kind {
        GatewayErrorKind::AppAuthMissing => Some("app_missing"),
        GatewayErrorKind::AppAuthFailed(_) => Some("app_signature"),
        GatewayErrorKind::IamAuthMissing => Some("iam_missing"),
        GatewayErrorKind::IamAuthFailed(_) => Some("iam"),
        GatewayErrorKind::AuthorizerIdentitiesFailure => Some("authorizer_identities"),
        GatewayErrorKind::AuthorizerDenied => Some("authorizer_deny"),
        GatewayErrorKind::AuthorizerFailed => Some("authorizer_error"),
        _ => None,
    }
}

/// The debug header of the credential quota.
const X_APIG_RATELIMIT_APP_QUOTA: &str = "x-apig-ratelimit-app-quota";

/// `X-Apig-Mode: debug` asks for the throttle counters' state on the answer.
fn wants_debug(headers: &HeaderMap) -> bool {
    headers
        .get_all(X_APIG_MODE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"debug"))
}

async fn serve(
    shared: &Shared,
    ctx: &mut RequestContext,
    permit: &ConnPermit,
    client_verified: Option<&str>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, GatewayErrorKind> {
    let limits = &shared.limits;
    let uri = request.uri();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(GatewayErrorKind::UriTooLarge);
    }
    check_header_sizes(request.headers(), limits)?;

    let client = client_ip::resolve(
        ctx.peer.ip(),
        request.headers(),
        shared.trusted_proxies.as_ref(),
    );
    ctx.client_ip = client.ip;
    ctx.forwarded_chain = client.chain;
    ctx.transport = if ctx.tls
        || shared.limits.allow_app_code_over_http
        || client_ip::forwarded_https(
            ctx.peer.ip(),
            request.headers(),
            shared.trusted_proxies.as_ref(),
        ) {
        Transport::Secure
    } else {
        Transport::Clear
    };
    ctx.debug = wants_debug(request.headers());

    let path = canonicalize(uri.path())
        .map_err(|e| GatewayErrorKind::BadRequest(format!("invalid request path: {e}").into()))?;
    let (host, forwarded_host) = request_host(&request)?;
    let stage = match request.headers().get(X_STAGE) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| GatewayErrorKind::BadRequest("invalid X-Stage header".into()))?,
        ),
        None => None,
    };

    let serving = shared.serving().ok_or(GatewayErrorKind::NotReady)?;
    let runtime = &serving.runtime;
    // Bound domains that ask for it send plain-HTTP GET and HEAD to HTTPS (APIG does the same;
    // other methods are served, since a redirect would lose their bodies).
    if !ctx.tls
        && matches!(*request.method(), Method::GET | Method::HEAD)
        && runtime.tls.redirects(&host)
    {
        return Ok(https_redirect(&host, request.uri()));
    }
    // A domain that verifies client certificates serves only connections verified for it:
    // not plain HTTP, and not a TLS connection made for another name (SNI) or coalesced.
    if let Some(required) = runtime.tls.required_client_auth(&host) {
        if client_verified != Some(required) {
            return Err(GatewayErrorKind::ClientCertificateRequired);
        }
    }
    let route = runtime
        .table
        .lookup(&host, stage, request.method().as_str(), &path)
        .map_err(|miss| match miss {
            Miss::MethodNotAllowed => GatewayErrorKind::MethodNotFound,
            Miss::UnknownHost | Miss::UnknownStage | Miss::NoRoute => GatewayErrorKind::ApiNotFound,
        })?;
    let api = runtime.apis.get(route.api_index).ok_or_else(|| {
        tracing::error!(index = route.api_index, "route points past the API list");
        GatewayErrorKind::Internal
    })?;
    ctx.api_metrics = serving.api_metrics.get(route.api_index).cloned();

    if !api.acl.allows_ip(ctx.client_ip) {
        return Err(GatewayErrorKind::ApiIpDenied);
    }

    let declared_len = content_length(request.headers())?;
    let (mut parts, body) = request.into_parts();

    let credentials = &runtime.credentials;
    let bounds = BodyBounds {
        max_bytes: limits.max_signed_body_bytes.min(limits.max_body_bytes),
        timeout: limits.body_read_timeout,
    };
    // The authenticated app's index in the snapshot (its credential quota).
    let mut app_index = None;
    let body = match api.auth {
        Auth::None => ClientBody::Streaming(body),
        Auth::App => {
            let now = unix_secs(ctx.received_at);
            let (app, caller, body) = credentials
                .authenticate_app(&api.auth_rules, &parts, body, bounds, now, ctx.transport)
                .await?;
            ctx.caller = caller;
            credentials.authorize_app(&api.auth_rules, app, ctx.client_ip)?;
            app_index = Some(app);
            body
        }
        Auth::Iam => {
            let now = unix_secs(ctx.received_at);
            let (caller, body) = credentials
                .authenticate_iam(&parts, body, bounds, now)
                .await?;
            ctx.caller = caller;
            if !api
                .acl
                .allows_project(credentials.project_id(), credentials.project_name())
            {
                return Err(GatewayErrorKind::IamProjectDenied);
            }
            body
        }
        // The frontend authorizer below is the whole authentication.
        Auth::Authorizer => ClientBody::Streaming(body),
    };
    let body = match api.frontend_authorizer {
        Some(i) => {
            let frontend = runtime
                .authorizers
                .get(i)
                .ok_or(GatewayErrorKind::Internal)?;
            let body = if frontend.need_body {
                ClientBody::Buffered(match body {
                    ClientBody::Buffered(bytes) => bytes,
                    ClientBody::Streaming(b) => {
                        read_bounded(
                            b,
                            BodyBounds {
                                max_bytes: limits.max_body_bytes,
                                timeout: limits.body_read_timeout,
                            },
                        )
                        .await?
                    }
                })
            } else {
                body
            };
            let request = FrontendRequest {
                method: &parts.method,
                path: parts.uri.path(),
                headers: &parts.headers,
                query: parts.uri.query(),
                path_params: &route.params,
                api_id: &api.id,
                api_name: &api.name,
                stage: &api.stage,
                body: match &body {
                    ClientBody::Buffered(bytes) => Some(bytes.as_ref()),
                    ClientBody::Streaming(_) => None,
                },
            };
            let caller = authorizer::Caller {
                upstream: &shared.upstream,
                cache: &shared.authorizer_cache,
                outcomes: &shared.metrics.authorizer_frontend,
            };
            let context = frontend.authorize_frontend(&caller, &request, ctx).await?;
            ctx.frontend_authorizer = Some(context);
            body
        }
        None => body,
    };

    let throttle = serving.throttle.api(route.api_index).ok_or_else(|| {
        tracing::error!(index = route.api_index, "no throttle counters for the API");
        GatewayErrorKind::Internal
    })?;
    let verdict = throttle.check(&CallerKeys {
        ip: ctx.client_ip,
        app: ctx.caller.app_key(),
        user: ctx
            .caller
            .is_authenticated()
            .then(|| credentials.project_id()),
    });
    if ctx.debug {
        ctx.rate_limits = Some(verdict);
    }
    if !verdict.allowed {
        return Err(GatewayErrorKind::Throttled);
    }

    if let Some(quota) = app_index.and_then(|i| serving.quotas.app(i)) {
        let decision = quota.check(unix_millis(ctx.received_at));
        if ctx.debug {
            ctx.app_quota = Some(decision);
        }
        if !decision.allowed {
            return Err(GatewayErrorKind::AppQuotaExhausted);
        }
    }

    if declared_len.is_some_and(|len| len > limits.max_body_bytes) {
        return Err(GatewayErrorKind::BodyTooLarge);
    }

    let query = Query::parse(parts.uri.query());
    let resolved = resolve(
        &api.req_params,
        &RequestView {
            path_params: &route.params,
            query: &query,
            headers: &parts.headers,
        },
    )?;

    let policy = backend_policy::select(
        &api.policies,
        &PolicyInput {
            resolved: &resolved,
            client_ip: ctx.client_ip,
            path: path.as_str(),
            method: parts.method.as_str(),
            headers: &parts.headers,
            authorizer: ctx.frontend_authorizer.as_deref(),
        },
    );
    let (backend, backend_params) = match policy {
        Some(p) => {
            tracing::debug!(request_id = %ctx.request_id, policy = %p.name, "backend policy matched");
            (&p.backend, p.backend_params.as_slice())
        }
        None => (&api.backend, api.backend_params.as_slice()),
    };
    let backend_authorizer = match policy {
        Some(p) => p.authorizer,
        None => api.backend_authorizer,
    };
    if let Some(i) = backend_authorizer {
        let backend_authorizer = runtime
            .authorizers
            .get(i)
            .ok_or(GatewayErrorKind::Internal)?;
        let caller = authorizer::Caller {
            upstream: &shared.upstream,
            cache: &shared.authorizer_cache,
            outcomes: &shared.metrics.authorizer_backend,
        };
        let context = backend_authorizer
            .authorize_backend(&caller, ctx, &api.id)
            .await?;
        ctx.backend_authorizer = Some(context);
    }
    let mapping = api.mapping_with(backend_params);
    let target = match backend {
        Backend::Mock(mock) => return Ok(mock.respond()),
        Backend::Http(target) => target,
        Backend::Function(function) => {
            let client = ClientRequest {
                method: &parts.method,
                path: &path,
                upgrade: None,
                path_params: &route.params,
                remainder: route.remainder,
                query: parts.uri.query(),
                headers: &parts.headers,
                forwarded_host: forwarded_host.as_ref(),
                strip_credentials: api.auth != Auth::None,
            };
            let source = EventSource {
                method: &parts.method,
                path: parts.uri.path(),
                path_params: &route.params,
                api_id: &api.id,
                api_name: &api.name,
                stage: &api.stage,
            };
            return call_function(
                shared, ctx, function, &mapping, &client, &source, &resolved, body,
            )
            .await;
        }
    };
    // A WebSocket upgrade to an HTTP backend: the client side's pending upgrade, resolved by
    // hyper once a 101 is written. Without one the upgrade headers are dropped like any
    // hop-by-hop header and the backend sees a plain request.
    let mut client_upgrade =
        if target.kind == TargetKind::Http && tunnel::is_websocket_upgrade(&parts) {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
    let client_request = ClientRequest {
        method: &parts.method,
        path: &path,
        path_params: &route.params,
        remainder: route.remainder,
        query: parts.uri.query(),
        headers: &parts.headers,
        forwarded_host: forwarded_host.as_ref(),
        strip_credentials: api.auth != Auth::None,
        upgrade: client_upgrade
            .as_ref()
            .and_then(|_| parts.headers.get(UPGRADE)),
    };
    let mut body = AttemptBody::new(body, limits.max_body_bytes);
    let mut retries_left = retries_allowed(target.retry_count, &parts.method);
    // Members of the channel already tried by this request (not picked again).
    let mut tried: Vec<usize> = Vec::new();
    let mut last_failure = None;
    loop {
        let (dest, member) = match &target.destination {
            Destination::Fixed { .. } => (target.fixed().ok_or(GatewayErrorKind::Internal)?, None),
            Destination::Channel { index, proxy_host } => {
                let (Some(channel), Some(live)) =
                    (runtime.channels.get(*index), serving.channels.get(*index))
                else {
                    tracing::error!(index, "API points past the channel list");
                    return Err(GatewayErrorKind::Internal);
                };
                let ip;
                let key = match channel.strategy {
                    Strategy::SourceIpHash => {
                        ip = ip_key(ctx.client_ip);
                        HashKey::Bytes(ip.0.get(..ip.1).unwrap_or_default())
                    }
                    Strategy::UriHash => HashKey::Bytes(path.as_str().as_bytes()),
                    _ => HashKey::Bytes(&[]),
                };
                let now = unix_millis(SystemTime::now());
                let Some(i) = channel.pick(live, key, &tried, now) else {
                    // No usable member left: after failed attempts their failure stands;
                    // none usable at all is APIG.0610.
                    return Err(last_failure.unwrap_or(GatewayErrorKind::NoBackendAvailable));
                };
                let (Some(m), Some(health)) = (channel.members.get(i), live.health.get(i)) else {
                    return Err(GatewayErrorKind::Internal);
                };
                tried.push(i);
                let dest = Dest {
                    authority: &m.authority,
                    host_header: proxy_host.as_ref(),
                };
                (dest, Some((health, live.thresholds)))
            }
        };
        let mut mapped = map_request(&mapping, target, dest, &client_request, &resolved, ctx)?;
        if let Some(signer) = &api.backend_sign {
            signer.sign(
                &mapped.method,
                &mapped.uri,
                &mut mapped.headers,
                body.for_signature(),
                unix_secs(SystemTime::now()),
            )?;
        }
        let Some(upstream_body) = body.next() else {
            return Err(GatewayErrorKind::Internal);
        };
        let mut upstream_request = Request::new(upstream_body);
        *upstream_request.method_mut() = mapped.method;
        *upstream_request.uri_mut() = mapped.uri;
        *upstream_request.headers_mut() = mapped.headers;
        let protocol = target.protocol();
        *upstream_request.version_mut() = match protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::Http2 => Version::HTTP_2,
        };

        let in_flight = member.map(|(health, _)| health.start_request());
        let authority = dest.authority.as_str().to_owned();
        let call_started = std::time::Instant::now();
        let sent = if client_upgrade.is_some() {
            shared
                .upstream
                .send_upgrade(upstream_request, target.timeout, &api.id)
                .await
        } else {
            shared
                .upstream
                .send(upstream_request, protocol, target.timeout, &api.id)
                .await
        };
        match sent {
            Ok(response) => {
                if let Some((health, _)) = member {
                    health.record_success();
                }
                ctx.upstream = Some((authority, call_started.elapsed()));
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    // Only an upgrade the gateway forwarded may switch protocols; passing any
                    // other 101 on would leave the client's connection in limbo.
                    let Some(client_side) = client_upgrade.take() else {
                        tracing::debug!(request_id = %ctx.request_id, "backend switched protocols unasked");
                        return Err(GatewayErrorKind::BackendUnavailable);
                    };
                    let guard = TunnelGuard::new(permit.clone(), in_flight);
                    // APIG closes a WebSocket idle for longer than the API's backend timeout.
                    return Ok(tunnel::switch(response, client_side, target.timeout, guard));
                }
                let (mut head, body) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                // The client's connection speaks our protocol, not the backend's: an HTTP/1.0
                // backend must not turn the answer into HTTP/1.0 (and close the client's
                // keep-alive connection).
                head.version = Version::HTTP_11;
                return Ok(Response::from_parts(
                    head,
                    ResponseBody::Upstream {
                        body,
                        _in_flight: in_flight,
                    },
                ));
            }
            Err(failure) => {
                if failure.not_sent {
                    if let Some((health, thresholds)) = member {
                        health.record_connect_failure(thresholds, unix_millis(SystemTime::now()));
                    }
                }
                // A refused address is never retried: the policy refuses it again, and
                // another member is not worth a second refusal in the log.
                let retry =
                    failure.not_sent && !failure.refused && retries_left > 0 && body.replayable();
                let more_members = match &target.destination {
                    Destination::Channel { index, .. } => runtime
                        .channels
                        .get(*index)
                        .is_some_and(|c| c.members.len() > tried.len()),
                    Destination::Fixed { .. } => true,
                };
                if !(retry && more_members) {
                    return Err(failure.kind);
                }
                retries_left -= 1;
                last_failure = Some(failure.kind);
                tracing::debug!(request_id = %ctx.request_id, "backend connection failed; retrying");
            }
        }
    }
}

/// A FUNCTION backend: the whole body is read (the event carries it), the request mapped as for
/// an HTTP backend (headers, query, backend parameters), then the function called.
#[allow(clippy::too_many_arguments)]
async fn call_function(
    shared: &Shared,
    ctx: &RequestContext,
    function: &FunctionTarget,
    mapping: &ApiMapping<'_>,
    client: &ClientRequest<'_>,
    source: &EventSource<'_>,
    resolved: &Resolved<'_>,
    body: ClientBody<Incoming>,
) -> Result<Response<ResponseBody>, GatewayErrorKind> {
    let bytes = match body {
        ClientBody::Buffered(bytes) => bytes,
        ClientBody::Streaming(body) => {
            read_bounded(
                body,
                BodyBounds {
                    max_bytes: shared.limits.max_body_bytes,
                    timeout: shared.limits.body_read_timeout,
                },
            )
            .await?
        }
    };
    let dest = function.mapping.fixed().ok_or(GatewayErrorKind::Internal)?;
    let mapped = map_request(mapping, &function.mapping, dest, client, resolved, ctx)?;
    let event = function::event(source, &mapped.headers, mapped.uri.query(), &bytes, ctx);
    function::invoke(
        &shared.upstream,
        function,
        event,
        ctx,
        source.api_id,
        &shared.function_calls,
    )
    .await
}

/// `301` to the same host and target over HTTPS (its default port: the public HTTPS listener).
/// `host` is the normalised request host (no port).
fn https_redirect(host: &str, uri: &http::Uri) -> Response<ResponseBody> {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    *response.status_mut() = http::StatusCode::MOVED_PERMANENTLY;
    if let Ok(location) = HeaderValue::from_str(&format!("https://{host}{target}")) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
}

/// Retries a backend call may make after connection failures: `retry_count` -1 (APIG's
/// default) retries idempotent methods once and others never; 0..10 that many, any method
/// (only calls that never reached a backend are retried, so nothing runs twice).
fn retries_allowed(retry_count: i32, method: &Method) -> u32 {
    match retry_count {
        -1 => u32::from(matches!(
            *method,
            Method::GET | Method::HEAD | Method::PUT | Method::OPTIONS | Method::DELETE
        )),
        n => u32::try_from(n).unwrap_or(0),
    }
}

/// The client IP as hash bytes (IPv4-mapped IPv6 hashes as IPv4).
fn ip_key(ip: IpAddr) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            if let Some(head) = out.get_mut(..4) {
                head.copy_from_slice(&v4.octets());
            }
            (out, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

/// The request body across attempts: bytes the gateway holds can be sent again; a streamed body
/// only once (a retry never resends a body that may have been partly sent).
enum AttemptBody {
    Replayable(Bytes),
    Stream(Option<Incoming>, usize),
}

impl AttemptBody {
    fn new(body: ClientBody<Incoming>, max_body_bytes: u64) -> Self {
        let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
        match body {
            ClientBody::Buffered(bytes) => Self::Replayable(bytes),
            // Nothing to stream (no Content-Length, not chunked): as good as empty bytes.
            ClientBody::Streaming(b) if http_body::Body::is_end_stream(&b) => {
                Self::Replayable(Bytes::new())
            }
            ClientBody::Streaming(b) => Self::Stream(Some(b), limit),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Replayable(_))
    }

    /// What a backend signature covers of the body.
    fn for_signature(&self) -> SignedBody<'_> {
        match self {
            Self::Replayable(bytes) => SignedBody::Bytes(bytes),
            Self::Stream(..) => SignedBody::Streamed,
        }
    }

    /// The body of the next attempt; `None` once a stream was used.
    fn next(&mut self) -> Option<UpstreamBody> {
        match self {
            Self::Replayable(bytes) => Some(UpstreamBody::buffered(bytes.clone())),
            Self::Stream(body, limit) => body
                .take()
                .map(|b| UpstreamBody::Streaming(Limited::new(b, *limit))),
        }
    }
}

/// 494 when one header or all of them together are over their bounds.
fn check_header_sizes(
    headers: &HeaderMap,
    limits: &crate::config::Limits,
) -> Result<(), GatewayErrorKind> {
    let mut total = 0usize;
    for (name, value) in headers {
        let line = name.as_str().len() + value.len();
        if line > limits.max_header_line_bytes {
            return Err(GatewayErrorKind::HeadersTooLarge);
        }
        total += line;
    }
    if total > limits.max_header_bytes {
        return Err(GatewayErrorKind::HeadersTooLarge);
    }
    Ok(())
}

/// The declared body length; hyper has already refused malformed or conflicting values on
/// HTTP/1, this also covers HTTP/2.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, GatewayErrorKind> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let invalid = || GatewayErrorKind::BadRequest("invalid Content-Length".into());
    let parse = |v: &HeaderValue| -> Result<u64, GatewayErrorKind> {
        let s = v.to_str().map_err(|_| invalid())?;
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        s.parse().map_err(|_| invalid())
    };
    let len = parse(first)?;
    for other in values {
        if parse(other)? != len {
            return Err(invalid());
        }
    }
    Ok(Some(len))
}

/// The host the request names, normalised for routing (no port, lower case), and the raw value
/// for `X-Forwarded-Host`.
fn request_host<B>(
    request: &Request<B>,
) -> Result<(Cow<'_, str>, Option<HeaderValue>), GatewayErrorKind> {
    let bad = |what: &'static str| GatewayErrorKind::BadRequest(what.into());
    let mut hosts = request.headers().get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    let authority = request.uri().authority();
    let (raw, forwarded) = match (header, authority) {
        (Some(h), authority) => {
            // `normalize_host` admits a narrower set of bytes than `to_str` would check.
            let text = std::str::from_utf8(h.as_bytes()).map_err(|_| bad("invalid Host header"))?;
            if let Some(a) = authority {
                if !a.as_str().eq_ignore_ascii_case(text) {
                    return Err(bad("the Host header does not match the request target"));
                }
            }
            (text, h.clone())
        }
        (None, Some(a)) => (
            a.as_str(),
            HeaderValue::from_str(a.as_str()).map_err(|_| bad("invalid host"))?,
        ),
        (None, None) => return Err(bad("missing Host header")),
    };
    let host = normalize_host(raw).ok_or_else(|| bad("invalid Host header"))?;
    Ok((host, Some(forwarded)))
}

/// `Host` without its port, lower case, without one trailing dot. `None` when malformed
/// (userinfo, spaces, empty name, bad port, stray brackets). A name is checked in one pass: this
/// runs on every request.
fn normalize_host(raw: &str) -> Option<Cow<'_, str>> {
    if raw.starts_with('[') {
        return normalize_ip_literal(raw);
    }
    let mut colon = None;
    let mut upper = false;
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {}
            b'A'..=b'Z' => upper = true,
            b':' if colon.is_none() => colon = Some(i),
            _ => return None,
        }
    }
    let name = match colon {
        Some(i) => {
            let port = raw.get(i + 1..)?;
            if !valid_port(port) {
                return None;
            }
            raw.get(..i)?
        }
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    // `upper` may have come from the port, which holds digits only once checked.
    if upper {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}

/// `[v6 address]` with an optional port.
fn normalize_ip_literal(raw: &str) -> Option<Cow<'_, str>> {
    let rest = raw.strip_prefix('[')?;
    let end = rest.find(']')?;
    let name = raw.get(..end + 2)?;
    match rest.get(end + 1..)? {
        "" => {}
        after => {
            if !valid_port(after.strip_prefix(':')?) {
                return None;
            }
        }
    }
    if !name
        .get(1..name.len() - 1)?
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return None;
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}

fn valid_port(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_times() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn host_normalisation() {
        let cases: &[(&str, Option<&str>)] = &[
            ("api.example.com", Some("api.example.com")),
            ("API.Example.COM:8080", Some("api.example.com")),
            ("api.example.com.", Some("api.example.com")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("[::1]:8080", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("a@b", None),
            ("a b", None),
            ("", None),
            (":80", None),
            ("a:", None),
            ("a:x", None),
            ("a:123456", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[zz]", None),
            ("a/b", None),
            ("a:1:2", None),
            ("A.B:1", Some("a.b")),
            ("x.:443", Some("x")),
            (".", None),
            ("[::A]:1", Some("[::a]")),
            ("[::1]:", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_deref(), *want, "{raw:?}");
        }
    }

    fn request(host: Option<&str>, uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_sources() {
        let r = request(Some("Api.Example.com:81"), "/x");
        let (host, fwd) = request_host(&r).unwrap();
        assert_eq!(host, "api.example.com");
        assert_eq!(fwd.unwrap(), "Api.Example.com:81");

        // HTTP/2 style: only the authority.
        let r = request(None, "http://h2.example.com/x");
        assert_eq!(request_host(&r).unwrap().0, "h2.example.com");

        // Absolute-form that disagrees with Host.
        let r = request(Some("public.example.com"), "http://internal/admin");
        assert!(request_host(&r).is_err());

        assert!(request_host(&request(None, "/x")).is_err());

        let mut r = request(Some("a.example.com"), "/x");
        r.headers_mut()
            .append(HOST, HeaderValue::from_static("b.example.com"));
        assert!(request_host(&r).is_err());
    }

    #[test]
    fn content_length_rules() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h).unwrap(), None);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&h).unwrap(), Some(12));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&h).unwrap(), Some(12));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("13"));
        assert!(content_length(&h).is_err());
        for bad in ["+5", "-1", "0x5", " 5", "", "99999999999999999999"] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_LENGTH, HeaderValue::from_str(bad).unwrap());
            assert!(content_length(&h).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_bounds() {
        let limits = crate::config::Limits {
            max_header_bytes: 100,
            max_header_line_bytes: 40,
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("short"));
        assert!(check_header_sizes(&h, &limits).is_ok());
        h.insert("b", HeaderValue::from_str(&"x".repeat(40)).unwrap());
        assert_eq!(
            check_header_sizes(&h, &limits),
            Err(GatewayErrorKind::HeadersTooLarge)
        );
        let mut h = HeaderMap::new();
        for name in ["c", "d", "e", "f"] {
            h.insert(name, HeaderValue::from_str(&"y".repeat(30)).unwrap());
        }
        assert_eq!(
            check_header_sizes(&h, &limits),
            Err(GatewayErrorKind::HeadersTooLarge)
        );
    }
}
