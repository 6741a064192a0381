//! Builds the backend request from the client's: method, path from the backend template, query,
//! headers, and APIG's backend parameters (semantics digest §3.5).
//!
//! What is forwarded, by APIG's rules:
//! - The client's query pairs and headers pass through, except hop-by-hop headers (`Connection`
//!   and every header it lists, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
//!   `Proxy-*`), `Expect` (answered by the gateway itself), `X-Stage`, and every header the
//!   gateway sets itself: `Host`, `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`,
//!   `X-Forwarded-Port`, `Forwarded`, `X-Real-IP` and `X-Request-Id`, and header names
//!   containing `_` (as nginx's default `underscores_in_headers off`). `X-Forwarded-For` is
//!   rebuilt: the peer, or from a trusted proxy the resolved chain (client first) plus the peer
//!   (`client_ip`).
//! - Credentials for the gateway never reach the backend: `X-Apig-AppCode` is always dropped;
//!   on APP and IAM APIs also `X-Auth-Token`, `X-Sdk-Date`, `X-Sdk-Content-Sha256` and an
//!   `Authorization` carrying the gateway's `SDK-HMAC-SHA256` signature (another
//!   `Authorization`, e.g. a backend's bearer token next to an AppCode, passes). `NONE` APIs
//!   pass those through unchanged, as APIG does: a backend may verify such credentials itself.
//! - Declared request parameters that are absent but have a default are added at their place.
//! - Backend parameters add or override: `REQUEST` copies a request parameter (path, query or
//!   header) to the backend parameter's location and name and, when that differs from where it
//!   came from, stops forwarding the original; `CONSTANT` puts the literal; `SYSTEM` resolves
//!   `$context.requestId`, `sourceIp` (the client IP: the peer, or what a trusted proxy
//!   reports), `stage`, `apiId`, `apiName`, `handleTime`, `serverAddr` (local address), `appId`
//!   and `appName` (the authenticated app; empty when no app authenticated),
//!   `authorizer.frontend.<key>` and `authorizer.backend.<key>` (the custom authorizers'
//!   context; empty when the key is absent). Other system parameters (`serverName`, ...)
//!   resolve to the empty string until the features behind them exist; so does `appKey` on
//!   purpose (credentials never reach the backend).
//! - The path is the backend template with every `{name}` filled from the backend parameter of
//!   location PATH with that name, else the frontend path parameter of that name; values are
//!   percent-encoded as one segment (a `/` in a value cannot add a segment), except values of a
//!   greedy `{name+}` frontend parameter and constants, which keep their `/`. An SWA API's match
//!   remainder is appended.
//! - gRPC backends (APIG fixes their backend path to `/`): the path is the client's request path
//!   (`/package.Service/Method`) unchanged, whatever prefix the API matched, and the request
//!   carries `TE: trailers` (hop-by-hop in general, but gRPC over HTTP/2 requires it).
//! - A WebSocket upgrade (`tunnel`) keeps `Connection: upgrade` and the client's `Upgrade`.

use std::borrow::Cow;
use std::time::Duration;

use apig_proto::{BackendParam, BackendParamOrigin, BackendProtocol, HttpBackend};
use apig_router::path::encode_segment;
use apig_router::CanonicalPath;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Uri};

use crate::auth::{is_gateway_signature, X_APIG_APPCODE, X_AUTH_TOKEN};
use crate::context::{format_handle_time, RequestContext};
use crate::header_names::{KEEP_ALIVE, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::params::{parse_header_name, Location, ReqParamSpec, RequestView, Resolved};
use crate::proxy::UpstreamProtocol;
use crate::query::Query;
use crate::respond::{GatewayErrorKind, X_REQUEST_ID};

/// Default backend timeout when a snapshot carries none (APIG's gateway default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a backend parameter's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum BackendValue {
    /// A request parameter, read from `location` under `name`.
    Request {
        name: String,
        location: Location,
        header: Option<HeaderName>,
    },
    Constant(String),
    System(SystemParam),
}

/// The system parameters the gateway resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SystemParam {
    RequestId,
    SourceIp,
    Stage,
    ApiId,
    ApiName,
    HandleTime,
    ServerAddr,
    AppId,
    AppName,
    /// `$context.authorizer.frontend.<key>`: a key of the frontend authorizer's context.
    FrontendAuthorizer(Box<str>),
    /// `$context.authorizer.backend.<key>`: a key of the backend authorizer's context.
    BackendAuthorizer(Box<str>),
    /// Any other name (`appKey` included: credentials never reach the backend): resolves to
    /// the empty string.
    Unknown,
}

/// One backend parameter, checked and pre-parsed.
#[derive(Debug, Clone)]
pub(crate) struct BackendParamSpec {
    pub name: String,
    pub location: Location,
    header: Option<HeaderName>,
    value: BackendValue,
}

/// The backend's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendScheme {
    Http,
    Https,
}

/// What an HTTP target serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// An HTTP(S) backend: HTTP/1.1, path from the template, WebSocket upgrades tunnelled.
    Http,
    /// A gRPC backend: HTTP/2 (h2c or TLS with ALPN `h2`), the request path forwarded.
    Grpc,
}

/// An HTTP backend, pre-parsed so the request path only fills values in.
#[derive(Debug, Clone)]
pub(crate) struct HttpTarget {
    pub kind: TargetKind,
    pub scheme: BackendScheme,
    /// Where requests go: one address, or a member of a load-balance channel.
    pub destination: Destination,
    /// `None`: forward the client's method (`ANY`).
    pub method: Option<Method>,
    pub path: PathTemplate,
    pub timeout: Duration,
    /// -1: idempotent methods once; 0..10: that many retries (of requests that never reached
    /// a backend).
    pub retry_count: i32,
}

/// Where an HTTP backend's requests go.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// `url_domain`: the authority the connector dials (always with its port) and the `Host`
    /// header (without a default port).
    Fixed {
        authority: Authority,
        host_header: HeaderValue,
    },
    /// A channel of the runtime (by index); each request picks a member. `Host` is
    /// `proxy_host` when set, else the client's own `Host` (as APIG does).
    Channel {
        index: usize,
        proxy_host: Option<HeaderValue>,
    },
}

/// The address one backend request goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dest<'a> {
    pub authority: &'a Authority,
    /// `None`: the client's `Host`, else the authority.
    pub host_header: Option<&'a HeaderValue>,
}

impl HttpTarget {
    /// The HTTP version the backend is spoken to in.
    pub(crate) fn protocol(&self) -> UpstreamProtocol {
        match self.kind {
            TargetKind::Http => UpstreamProtocol::Http1,
            TargetKind::Grpc => UpstreamProtocol::Http2,
        }
    }

    /// The address of a fixed destination; `None` for a channel.
    pub(crate) fn fixed(&self) -> Option<Dest<'_>> {
        match &self.destination {
            Destination::Fixed {
                authority,
                host_header,
            } => Some(Dest {
                authority,
                host_header: Some(host_header),
            }),
            Destination::Channel { .. } => None,
        }
    }
}

/// A backend path template: literals (already valid on the wire) and `{name}` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Var(String),
}

/// What one API contributes to mapping, borrowed from the prepared API.
pub(crate) struct ApiMapping<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub stage: &'a str,
    /// Names of the frontend's greedy `{name+}` parameters.
    pub greedy: &'a [String],
    pub req_params: &'a [ReqParamSpec],
    pub backend_params: &'a [BackendParamSpec],
}

/// The client's request as mapping needs it.
pub(crate) struct ClientRequest<'a> {
    pub method: &'a Method,
    /// The canonical request path (what a gRPC backend gets).
    pub path: &'a CanonicalPath,
    pub path_params: &'a [(&'a str, &'a str)],
    /// The SWA remainder (decoded), empty for NORMAL matches.
    pub remainder: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The client's Host (or `:authority`), sent on as `X-Forwarded-Host`.
    pub forwarded_host: Option<&'a HeaderValue>,
    /// The API authenticates callers (APP, IAM): the gateway's credential headers are dropped.
    pub strip_credentials: bool,
    /// A WebSocket upgrade the gateway will tunnel: the client's `Upgrade` value, forwarded with
    /// `Connection: upgrade`. `None`: both are dropped like every hop-by-hop header.
    pub upgrade: Option<&'a HeaderValue>,
}

/// The backend request line and headers.
#[derive(Debug)]
pub(crate) struct MappedRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// How a value is encoded into the backend path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathEncoding {
    /// One segment: `/` becomes `%2F`.
    Segment,
    /// A sub-path: split on `/`, each piece encoded.
    Path,
}

// === impl SystemParam ===

impl SystemParam {
    fn parse(name: &str) -> Self {
        if let Some(key) = name.strip_prefix("$context.authorizer.frontend.") {
            return Self::FrontendAuthorizer(key.into());
        }
        if let Some(key) = name.strip_prefix("$context.authorizer.backend.") {
            return Self::BackendAuthorizer(key.into());
        }
        let key = name.strip_prefix("$context.").unwrap_or(name);
        match key {
            "requestId" => Self::RequestId,
            "sourceIp" => Self::SourceIp,
            "stage" => Self::Stage,
            "apiId" => Self::ApiId,
            "apiName" => Self::ApiName,
            "handleTime" => Self::HandleTime,
            "serverAddr" => Self::ServerAddr,
            "appId" => Self::AppId,
            "appName" => Self::AppName,
            _ => Self::Unknown,
        }
    }

    fn resolve(&self, api: &ApiMapping<'_>, ctx: &RequestContext) -> String {
        match self {
            Self::RequestId => ctx.request_id.as_str().to_owned(),
            Self::SourceIp => ctx.client_ip.to_string(),
            Self::Stage => api.stage.to_owned(),
            Self::ApiId => api.id.to_owned(),
            Self::ApiName => api.name.to_owned(),
            Self::HandleTime => format_handle_time(ctx.received_at),
            Self::ServerAddr => ctx.local.ip().to_string(),
            Self::AppId => ctx.caller.app_id().unwrap_or_default().to_owned(),
            Self::AppName => ctx.caller.app_name().unwrap_or_default().to_owned(),
            // Absent keys (or no authorizer) resolve to the empty string like other unknowns.
            Self::FrontendAuthorizer(key) => ctx
                .frontend_authorizer
                .as_ref()
                .and_then(|c| c.get(key))
                .unwrap_or_default()
                .to_owned(),
            Self::BackendAuthorizer(key) => ctx
                .backend_authorizer
                .as_ref()
                .and_then(|c| c.get(key))
                .unwrap_or_default()
                .to_owned(),
            Self::Unknown => String::new(),
        }
    }
}

// === impl BackendParamSpec ===

impl BackendParamSpec {
    pub(crate) fn prepare(param: &BackendParam) -> Result<Self, String> {
        let what = || format!("backend parameter {:?}", param.name);
        if param.name.is_empty() {
            return Err("backend parameter with an empty name".into());
        }
        let location =
            Location::from_proto(param.location).map_err(|e| format!("{}: {e}", what()))?;
        let header = match location {
            Location::Header => Some(
                parse_header_name(&param.name)
                    .map_err(|e| format!("{}: invalid header name: {e}", what()))?,
            ),
            _ => None,
        };
        let value = match BackendParamOrigin::try_from(param.origin) {
            Ok(BackendParamOrigin::Request) => {
                if param.value.is_empty() {
                    return Err(format!("{}: names no request parameter", what()));
                }
                let from = Location::from_proto(param.req_param_location)
                    .map_err(|e| format!("{}: {e}", what()))?;
                let header = match from {
                    Location::Header => Some(
                        parse_header_name(&param.value)
                            .map_err(|e| format!("{}: invalid request header name: {e}", what()))?,
                    ),
                    _ => None,
                };
                BackendValue::Request {
                    name: param.value.clone(),
                    location: from,
                    header,
                }
            }
            Ok(BackendParamOrigin::Constant) => {
                if location == Location::Header && HeaderValue::from_str(&param.value).is_err() {
                    return Err(format!(
                        "{}: the constant is not a valid header value",
                        what()
                    ));
                }
                BackendValue::Constant(param.value.clone())
            }
            Ok(BackendParamOrigin::System) => {
                BackendValue::System(SystemParam::parse(&param.value))
            }
            Err(_) => return Err(format!("{}: unknown origin {}", what(), param.origin)),
        };
        Ok(Self {
            name: param.name.clone(),
            location,
            header,
            value,
        })
    }

    /// Whether this parameter moves a request parameter away from where the client sent it.
    fn moves_original(&self) -> Option<(Location, &str, Option<&HeaderName>)> {
        match &self.value {
            BackendValue::Request {
                name,
                location,
                header,
            } => {
                let same_place = *location == self.location
                    && match location {
                        Location::Header => header == &self.header,
                        _ => *name == self.name,
                    };
                (!same_place).then_some((*location, name.as_str(), header.as_ref()))
            }
            _ => None,
        }
    }
}

// === impl HttpTarget ===

impl HttpTarget {
    /// A backend with a fixed address.
    #[cfg(test)]
    pub(crate) fn prepare(backend: &HttpBackend) -> Result<Self, String> {
        Self::prepare_with(backend, |_| None)
    }

    /// `channel_index` finds a channel of the snapshot by id.
    pub(crate) fn prepare_with(
        backend: &HttpBackend,
        channel_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, String> {
        let kind = match BackendProtocol::try_from(backend.protocol) {
            Ok(BackendProtocol::Http1) => TargetKind::Http,
            Ok(BackendProtocol::Grpc) => TargetKind::Grpc,
            Err(_) => return Err(format!("unknown backend protocol {}", backend.protocol)),
        };
        let scheme = match backend.scheme.to_ascii_lowercase().as_str() {
            "" | "http" => BackendScheme::Http,
            "https" => BackendScheme::Https,
            other => return Err(format!("unsupported backend scheme {other:?}")),
        };
        let destination = if backend.channel_id.is_empty() {
            Self::fixed_destination(backend, scheme)?
        } else {
            let index = channel_index(&backend.channel_id)
                .ok_or_else(|| format!("unknown channel {:?}", backend.channel_id))?;
            let proxy_host = match backend.proxy_host.as_str() {
                "" => None,
                h => Some(
                    HeaderValue::from_str(h)
                        .ok()
                        .filter(|_| Authority::try_from(h).is_ok_and(|a| !a.as_str().contains('@')))
                        .ok_or_else(|| format!("invalid channel proxy host {h:?}"))?,
                ),
            };
            Destination::Channel { index, proxy_host }
        };
        let method = match backend.method.to_ascii_uppercase().as_str() {
            "" | "ANY" => None,
            m => Some(
                Method::from_bytes(m.as_bytes())
                    .map_err(|e| format!("invalid backend method {m:?}: {e}"))?,
            ),
        };
        let path = PathTemplate::parse(if backend.path.is_empty() {
            "/"
        } else {
            &backend.path
        })?;
        let timeout = match backend.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        Ok(Self {
            kind,
            scheme,
            destination,
            method,
            path,
            timeout,
            retry_count: backend.retry_count,
        })
    }

    fn fixed_destination(
        backend: &HttpBackend,
        scheme: BackendScheme,
    ) -> Result<Destination, String> {
        if backend.host.is_empty() {
            return Err("backend host is empty".into());
        }
        let default_port = match scheme {
            BackendScheme::Http => 80,
            BackendScheme::Https => 443,
        };
        let port = match u16::try_from(backend.port) {
            Ok(0) => default_port,
            Ok(p) => p,
            Err(_) => return Err(format!("backend port {} is out of range", backend.port)),
        };
        // An IPv6 literal needs brackets in an authority.
        let host = if backend.host.contains(':') && !backend.host.starts_with('[') {
            format!("[{}]", backend.host)
        } else {
            backend.host.clone()
        };
        let authority_text = if port == default_port {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        // The connector always needs the port; the Host header omits a default one.
        let authority = Authority::try_from(format!("{host}:{port}").as_str())
            .map_err(|e| format!("invalid backend address {authority_text:?}: {e}"))?;
        if authority.as_str().contains('@') {
            return Err(format!("invalid backend address {authority_text:?}"));
        }
        let host_header = HeaderValue::from_str(&authority_text)
            .map_err(|e| format!("invalid backend address {authority_text:?}: {e}"))?;
        Ok(Destination::Fixed {
            authority,
            host_header,
        })
    }
}

// === impl PathTemplate ===

impl PathTemplate {
    /// Parses a backend path: literal text with `{name}` variables anywhere (APIG allows
    /// `prefix-{x}` and `{x}-suffix` in backend paths). Literals must already be valid on the wire.
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        if !template.starts_with('/') {
            return Err(format!("backend path {template:?} must start with '/'"));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    pieces.push(Piece::Literal(rest.to_owned()));
                    rest = "";
                }
                Some(i) => {
                    let (lit, tail) = rest.split_at(i);
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(lit.to_owned()));
                    }
                    let Some(inner) = tail.strip_prefix('{') else {
                        return Err(format!("backend path {template:?} has unbalanced braces"));
                    };
                    let Some(end) = inner.find('}') else {
                        return Err(format!("backend path {template:?} has unbalanced braces"));
                    };
                    let name = inner.get(..end).unwrap_or_default();
                    let name = name.strip_suffix('+').unwrap_or(name);
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                    {
                        return Err(format!(
                            "backend path {template:?} has an invalid parameter {name:?}"
                        ));
                    }
                    pieces.push(Piece::Var(name.to_owned()));
                    rest = inner.get(end + 1..).unwrap_or_default();
                }
            }
        }
        for piece in &pieces {
            if let Piece::Literal(lit) = piece {
                let probe = if lit.starts_with('/') {
                    Cow::Borrowed(lit.as_str())
                } else {
                    Cow::Owned(format!("/{lit}"))
                };
                if lit.contains(['?', '#']) || PathAndQuery::try_from(probe.as_ref()).is_err() {
                    return Err(format!("backend path {template:?} has invalid characters"));
                }
            }
        }
        Ok(Self { pieces })
    }

    /// Names of the `{name}` variables.
    pub(crate) fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }
}

/// Encodes `value` into `out` as one segment or as a sub-path.
fn push_encoded(value: &str, encoding: PathEncoding, out: &mut String) {
    match encoding {
        PathEncoding::Segment => encode_segment(value, out),
        PathEncoding::Path => {
            let mut first = true;
            for seg in value.split('/') {
                if !first {
                    out.push('/');
                }
                first = false;
                encode_segment(seg, out);
            }
        }
    }
}

/// Whether a client request header must not reach the backend: hop-by-hop headers (RFC 9110
/// §7.6.1) and `Proxy-*`, `Expect` (the gateway answers it), `X-Stage`, headers only the gateway
/// sets, and names with `_` (dropped as nginx, and so APIG, does by default: CGI-style backends
/// read `X_User` and `X-User` as the same variable, which would let a client shadow a header the
/// gateway or an authorizer sets).
fn is_stripped_request_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            | "host"
            | "x-stage"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "forwarded"
            | "x-real-ip"
            | "x-request-id"
            | X_APIG_APPCODE
    ) || name.starts_with("proxy-")
        || name.contains('_')
}

/// Names listed in `Connection` headers (usually none, so usually no allocation).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    if !headers.contains_key(header::CONNECTION) {
        return Vec::new();
    }
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Removes the headers listed in `Connection`, then the hop-by-hop headers and `Proxy-*`, in
/// place. Used on backend responses.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Whether a header is a credential the gateway itself verifies on APP and IAM APIs.
fn is_gateway_credential(name: &HeaderName, value: &HeaderValue) -> bool {
    match name.as_str() {
        X_AUTH_TOKEN | apig_sign::HEADER_DATE | apig_sign::HEADER_CONTENT_SHA256 => true,
        "authorization" => is_gateway_signature(value.as_bytes()),
        _ => false,
    }
}

/// Whether a header a backend parameter would copy holds a credential that must not reach the
/// backend (so the parameter gets no value, as if the header were absent).
fn is_credential_source(client: &ClientRequest<'_>, name: &HeaderName) -> bool {
    name.as_str() == X_APIG_APPCODE
        || (client.strip_credentials
            && client
                .headers
                .get_all(name)
                .iter()
                .any(|v| is_gateway_credential(name, v)))
}

/// Copies the client's headers that may reach the backend. HTTP/2 clients may split `Cookie`
/// into several fields; HTTP/1.1 backends get them joined into one.
fn forwardable_headers(client: &HeaderMap, strip_credentials: bool) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out: HeaderMap = HeaderMap::with_capacity(client.len() + 6);
    for (name, value) in client {
        if is_stripped_request_header(name)
            || listed.contains(name)
            || (strip_credentials && is_gateway_credential(name, value))
        {
            continue;
        }
        if name == header::COOKIE {
            if let Some(existing) = out.get(header::COOKIE) {
                let mut joined = Vec::with_capacity(existing.len() + 2 + value.len());
                joined.extend_from_slice(existing.as_bytes());
                joined.extend_from_slice(b"; ");
                joined.extend_from_slice(value.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&joined) {
                    out.insert(header::COOKIE, v);
                }
                continue;
            }
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Builds the backend request.
pub(crate) fn map_request<'a>(
    api: &ApiMapping<'a>,
    target: &HttpTarget,
    dest: Dest<'_>,
    client: &ClientRequest<'a>,
    resolved: &Resolved<'a>,
    ctx: &RequestContext,
) -> Result<MappedRequest, GatewayErrorKind> {
    let mut query = Query::parse(client.query);

    // Values of the backend parameters, read before anything is edited.
    let mut values: Vec<Option<(Cow<'a, str>, PathEncoding)>> =
        Vec::with_capacity(api.backend_params.len());
    {
        let view = RequestView {
            path_params: client.path_params,
            query: &query,
            headers: client.headers,
        };
        for bp in api.backend_params {
            let value = match &bp.value {
                BackendValue::Request {
                    header: Some(h), ..
                } if is_credential_source(client, h) => None,
                BackendValue::Request {
                    name,
                    location,
                    header,
                } => {
                    request_value(api, resolved, &view, *location, name, header.as_ref()).map(|v| {
                        let encoding = if *location == Location::Path
                            && api.greedy.iter().any(|g| g.eq_ignore_ascii_case(name))
                        {
                            PathEncoding::Path
                        } else {
                            PathEncoding::Segment
                        };
                        (v, encoding)
                    })
                }
                BackendValue::Constant(c) => Some((Cow::Owned(c.clone()), PathEncoding::Path)),
                BackendValue::System(s) => {
                    Some((Cow::Owned(s.resolve(api, ctx)), PathEncoding::Segment))
                }
            };
            values.push(value);
        }
    }

    let mut headers = forwardable_headers(client.headers, client.strip_credentials);

    // Defaults of absent declared parameters are forwarded at their place.
    for ((spec, value), defaulted) in api
        .req_params
        .iter()
        .zip(&resolved.values)
        .zip(&resolved.defaulted)
    {
        let (true, Some(value)) = (*defaulted, value) else {
            continue;
        };
        match spec.location {
            Location::Query if !query.contains(&spec.name) => query.set(&spec.name, value),
            Location::Header => {
                if let Some(name) = &spec.header {
                    if !headers.contains_key(name) {
                        headers.insert(name.clone(), header_value(&spec.name, value)?);
                    }
                }
            }
            _ => {}
        }
    }

    // Request parameters mapped elsewhere are not forwarded at their original place.
    for bp in api.backend_params {
        match bp.moves_original() {
            Some((Location::Query, name, _)) => query.remove(name),
            Some((Location::Header, name, header)) => match header {
                Some(h) => {
                    headers.remove(h);
                }
                None => {
                    headers.remove(name);
                }
            },
            _ => {}
        }
    }

    // Backend parameters add or override. A request parameter mapped to its own place already
    // passes through unchanged.
    for (bp, value) in api.backend_params.iter().zip(&values) {
        let Some((value, _)) = value else { continue };
        if matches!(bp.value, BackendValue::Request { .. }) && bp.moves_original().is_none() {
            continue;
        }
        match bp.location {
            Location::Query => query.set(&bp.name, value),
            Location::Header => {
                if let Some(name) = &bp.header {
                    headers.insert(name.clone(), header_value(&bp.name, value)?);
                }
            }
            Location::Path => {}
        }
    }

    // The orchestrated parameter (passed to the backend, as APIG does).
    if let Some(o) = &resolved.orchestrated {
        match o.location {
            Location::Query => query.set(&o.name, &o.value),
            Location::Header => {
                if let Some(name) = &o.header {
                    headers.insert(name.clone(), header_value(&o.name, &o.value)?);
                }
            }
            Location::Path => {}
        }
    }

    // Path.
    let mut path = match target.kind {
        TargetKind::Grpc => client.path.to_encoded(),
        TargetKind::Http => template_path(api, target, client, &values)?,
    };
    query.write_to(&mut path);

    let path_and_query = PathAndQuery::try_from(path).map_err(|e| {
        tracing::error!(api_id = api.id, error = %e, "built an invalid backend path");
        GatewayErrorKind::Internal
    })?;
    let uri = Uri::builder()
        .scheme(match target.scheme {
            BackendScheme::Http => Scheme::HTTP,
            BackendScheme::Https => Scheme::HTTPS,
        })
        .authority(dest.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| {
            tracing::error!(api_id = api.id, error = %e, "built an invalid backend URI");
            GatewayErrorKind::Internal
        })?;

    // Headers the gateway sets.
    let host = match (dest.host_header, client.forwarded_host) {
        (Some(h), _) | (None, Some(h)) => h.clone(),
        (None, None) => HeaderValue::from_str(dest.authority.as_str()).map_err(|_| {
            tracing::error!(api_id = api.id, "backend authority is not a header value");
            GatewayErrorKind::Internal
        })?,
    };
    headers.insert(header::HOST, host);
    if let Some(v) = forwarded_for(ctx) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
    );
    if let Some(host) = client.forwarded_host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers.insert(X_REQUEST_ID, ctx.request_id.header_value());
    if let Some(traceparent) = &ctx.traceparent {
        headers.insert(crate::otel::TRACEPARENT, traceparent.clone());
    }
    if target.kind == TargetKind::Grpc {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(upgrade) = client.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }

    Ok(MappedRequest {
        method: target
            .method
            .clone()
            .unwrap_or_else(|| client.method.clone()),
        uri,
        headers,
    })
}

/// The backend path of an HTTP target: the template with its variables filled, then an SWA
/// API's remainder.
fn template_path<'a>(
    api: &ApiMapping<'a>,
    target: &HttpTarget,
    client: &ClientRequest<'a>,
    values: &[Option<(Cow<'a, str>, PathEncoding)>],
) -> Result<String, GatewayErrorKind> {
    let mut path = String::with_capacity(64);
    for piece in &target.path.pieces {
        match piece {
            Piece::Literal(lit) => path.push_str(lit),
            Piece::Var(name) => {
                let from_param = api.backend_params.iter().zip(values).find(|(bp, _)| {
                    bp.location == Location::Path && bp.name.eq_ignore_ascii_case(name)
                });
                match from_param {
                    Some((_, Some((value, encoding)))) => push_encoded(value, *encoding, &mut path),
                    Some((bp, None)) => {
                        let (name, location) = match &bp.value {
                            BackendValue::Request { name, location, .. } => {
                                (name.clone(), location.as_str())
                            }
                            _ => (bp.name.clone(), "PATH"),
                        };
                        return Err(GatewayErrorKind::MissingParameter { name, location });
                    }
                    None => {
                        let value = client
                            .path_params
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(_, v)| *v)
                            .ok_or_else(|| GatewayErrorKind::MissingParameter {
                                name: name.clone(),
                                location: "PATH",
                            })?;
                        let encoding = if api.greedy.iter().any(|g| g.eq_ignore_ascii_case(name)) {
                            PathEncoding::Path
                        } else {
                            PathEncoding::Segment
                        };
                        push_encoded(value, encoding, &mut path);
                    }
                }
            }
        }
    }
    let remainder = client.remainder.trim_start_matches('/');
    if !remainder.is_empty() {
        if !path.ends_with('/') {
            path.push('/');
        }
        push_encoded(remainder, PathEncoding::Path, &mut path);
    }
    Ok(path)
}

/// The backend's `X-Forwarded-For`: the peer, after the chain a trusted proxy reported
/// (`client_ip`).
fn forwarded_for(ctx: &RequestContext) -> Option<HeaderValue> {
    let peer = ctx.peer.ip().to_canonical();
    let value = match &ctx.forwarded_chain {
        Some(chain) => format!("{chain}, {peer}"),
        None => peer.to_string(),
    };
    HeaderValue::from_str(&value).ok()
}

/// A request parameter's value: the resolved declared parameter (which includes defaults), else
/// whatever the request carries at that place.
fn request_value<'a>(
    api: &ApiMapping<'a>,
    resolved: &Resolved<'a>,
    view: &RequestView<'a, '_>,
    location: Location,
    name: &str,
    header: Option<&HeaderName>,
) -> Option<Cow<'a, str>> {
    let declared = api.req_params.iter().position(|spec| {
        spec.location == location
            && match location {
                Location::Query => spec.name == name,
                _ => spec.name.eq_ignore_ascii_case(name),
            }
    });
    match declared {
        Some(i) => resolved.values.get(i).cloned().flatten(),
        None => view.get(location, name, header),
    }
}

/// A header value from parameter text; control characters (CR, LF, NUL) are refused, so a
/// request value can never inject a header.
fn header_value(param: &str, value: &str) -> Result<HeaderValue, GatewayErrorKind> {
    HeaderValue::from_bytes(value.as_bytes()).map_err(|_| GatewayErrorKind::InvalidParameter {
        name: param.to_owned(),
        reason: "the value cannot be sent in a header".into(),
    })
}

#[cfg(test)]
mod tests;
