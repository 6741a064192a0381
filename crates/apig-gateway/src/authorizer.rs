//! Custom authorizers: a function (an HTTP(S) endpoint, as for FUNCTION backends) decides
//! whether a request passes.
//!
//! Frontend (AUTHORIZER authentication, or the second factor after APP or IAM):
//!
//! 1. Every identity source (header or query parameter) must be present once and match its
//!    validation expression; else `401` AUTHORIZER_IDENTITIES_FAILURE, without calling the
//!    function and without caching anything.
//! 2. With a ttl, a cached decision for the same authorizer definition and identity values
//!    answers (`cache`).
//! 3. The gateway POSTs the event
//!    `{"httpMethod", "path", "headers", "queryStringParameters", "pathParameters",
//!    "requestContext": {"apiId", "apiName", "requestId", "stage", "sourceIp"}, "user_data",
//!    ["body" (base64), "isBase64Encoded": true when need_body]}`
//!    and reads, within the timeout and at most 1 MB, a 2xx answer
//!    `{"statusCode": 200, "body": "{\"status\": \"allow\"|\"deny\", \"context\": {...}}"}`.
//! 4. `allow` passes with the context; `deny` is AUTHORIZER_FAILURE; anything else (timeout,
//!    connection failure, non-2xx, `statusCode` other than 200, malformed JSON, an unknown
//!    `status`, a bad context) is AUTHORIZER_CONF_FAILURE: the request fails closed.
//!
//! Both `allow` (with its context) and `deny` are cached for the ttl, as APIG caches the
//! function's result; failures are never cached.
//!
//! Backend authorizers run after the backend is chosen, with an event of only `user_data`;
//! their context is `$context.authorizer.backend.<key>`.
//!
//! Context: an object of at most 64 string values, keys a letter then letters, digits, `_`
//! and `-` (up to 64), values at most 4096 bytes without control characters. Numbers,
//! booleans, nested values, other keys, or a CR/LF in a value make the answer invalid (APIG
//! accepts numbers and booleans only behind an instance feature): a value can never inject a
//! header into the backend request.

pub(crate) mod cache;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use apig_proto::{Authorizer, ParamLocation};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Limited};
use prometheus::IntCounter;
use regex::{Regex, RegexBuilder};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::context::RequestContext;
use crate::function::{header_map, query_map};
use crate::proxy::{Upstream, UpstreamBody, UpstreamProtocol};
use crate::query::Query;
use crate::respond::{GatewayErrorKind, X_REQUEST_ID};

pub(crate) use cache::DecisionCache;

/// Largest function answer read.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long the gateway waits for an authorizer function (connect to the end of its answer).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONTEXT_ENTRIES: usize = 64;
const MAX_CONTEXT_KEY_BYTES: usize = 64;
const MAX_CONTEXT_VALUE_BYTES: usize = 4096;
/// Compiled size limit of an identity validation expression.
const VALIDATION_SIZE_LIMIT: usize = 1 << 20;

/// What an authorizer answered: the context of an `allow`, or a `deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow(Arc<AuthContext>),
    Deny,
}

/// The context an authorizer answered with, checked (see the module docs).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthContext {
    entries: Vec<(String, String)>,
}

impl AuthContext {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where an identity source is read.
#[derive(Debug, Clone)]
enum Source {
    Header(HeaderName),
    Query(String),
}

#[derive(Debug, Clone)]
struct PreparedIdentity {
    source: Source,
    validation: Option<Regex>,
}

/// An authorizer of the snapshot, ready to call.
#[derive(Debug, Clone)]
pub(crate) struct PreparedAuthorizer {
    pub id: String,
    pub backend: bool,
    pub need_body: bool,
    url: Uri,
    host: HeaderValue,
    identities: Vec<PreparedIdentity>,
    ttl: Duration,
    user_data: String,
    pub timeout: Duration,
    /// Digest of the definition: a decision cached under another definition never matches.
    fingerprint: [u8; 32],
}

/// Counters of one authorizer kind (`metrics`).
#[derive(Debug, Clone)]
pub(crate) struct Outcomes {
    pub allow: IntCounter,
    pub deny: IntCounter,
    pub error: IntCounter,
    pub cache_hit: IntCounter,
    pub identities_failure: IntCounter,
}

/// What a call needs besides the authorizer: the client to call with, the cache, the counters.
pub(crate) struct Caller<'a> {
    pub upstream: &'a Upstream,
    pub cache: &'a DecisionCache,
    pub outcomes: &'a Outcomes,
}

/// The request as a frontend authorizer's event describes it.
pub(crate) struct FrontendRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub path_params: &'a [(&'a str, &'a str)],
    pub api_id: &'a str,
    pub api_name: &'a str,
    pub stage: &'a str,
    /// The request body, read, when the authorizer wants it.
    pub body: Option<&'a [u8]>,
}

impl PreparedAuthorizer {
    pub(crate) fn prepare(a: &Authorizer) -> Result<Self, String> {
        let fail = |why: String| format!("authorizer {:?}: {why}", a.name);
        let url: Uri = a
            .url
            .parse()
            .map_err(|e| fail(format!("URL {:?}: {e}", a.url)))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            return Err(fail(format!("URL {:?} is not http(s)", a.url)));
        }
        let authority = url
            .authority()
            .filter(|au| !au.as_str().contains('@'))
            .ok_or_else(|| fail(format!("URL {:?} has no valid host", a.url)))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| fail(format!("URL {:?} has no valid host", a.url)))?;
        let identities = a
            .identities
            .iter()
            .map(|i| {
                let source = match ParamLocation::try_from(i.location) {
                    Ok(ParamLocation::Header) => Source::Header(
                        HeaderName::from_bytes(i.name.as_bytes())
                            .map_err(|e| fail(format!("identity header {:?}: {e}", i.name)))?,
                    ),
                    Ok(ParamLocation::Query) if !i.name.is_empty() => Source::Query(i.name.clone()),
                    _ => return Err(fail(format!("identity {:?}: bad location", i.name))),
                };
                let validation = if i.validation.is_empty() {
                    None
                } else {
                    Some(
                        RegexBuilder::new(&i.validation)
                            .size_limit(VALIDATION_SIZE_LIMIT)
                            .build()
                            .map_err(|e| fail(format!("identity {:?}: {e}", i.name)))?,
                    )
                };
                Ok(PreparedIdentity { source, validation })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if !a.backend && a.ttl_seconds > 0 && identities.is_empty() {
            // The control plane refuses this; a cached decision would serve every caller.
            return Err(fail(
                "a cached frontend authorizer needs identity sources".into(),
            ));
        }
        let mut h = Sha256::new();
        for part in [a.id.as_bytes(), a.url.as_bytes(), a.user_data.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update([u8::from(a.backend), u8::from(a.need_body)]);
        h.update(a.ttl_seconds.to_be_bytes());
        for i in &a.identities {
            for part in [i.name.as_bytes(), i.validation.as_bytes()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            h.update(i.location.to_be_bytes());
        }
        Ok(Self {
            id: a.id.clone(),
            backend: a.backend,
            need_body: a.need_body && !a.backend,
            url,
            host,
            identities,
            ttl: Duration::from_secs(u64::from(a.ttl_seconds)),
            user_data: a.user_data.clone(),
            timeout: DEFAULT_TIMEOUT,
            fingerprint: h.finalize().into(),
        })
    }

    /// The identity values, in order: each present exactly once and valid.
    fn identity_values<'r>(
        &self,
        headers: &'r HeaderMap,
        query: &'r Query<'r>,
    ) -> Result<Vec<&'r [u8]>, GatewayErrorKind> {
        let missing = || GatewayErrorKind::AuthorizerIdentitiesFailure;
        let mut out = Vec::with_capacity(self.identities.len());
        for identity in &self.identities {
            // A repeated source is refused: which value would the function have judged?
            let value: &[u8] = match &identity.source {
                Source::Header(name) => {
                    let mut all = headers.get_all(name).iter();
                    let v = all.next().ok_or_else(missing)?;
                    if all.next().is_some() {
                        return Err(missing());
                    }
                    v.as_bytes()
                }
                Source::Query(name) => match query.count_and_first(name) {
                    (1, Some(v)) => v.as_bytes(),
                    _ => return Err(missing()),
                },
            };
            if value.is_empty() {
                return Err(missing());
            }
            if let Some(re) = &identity.validation {
                let text = std::str::from_utf8(value).map_err(|_| missing())?;
                if !re.is_match(text) {
                    return Err(missing());
                }
            }
            out.push(value);
        }
        Ok(out)
    }

    /// Runs a frontend authorizer for the request: its context, or why the request fails.
    pub(crate) async fn authorize_frontend(
        &self,
        caller: &Caller<'_>,
        request: &FrontendRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<Arc<AuthContext>, GatewayErrorKind> {
        let query = Query::parse(request.query);
        let values = match self.identity_values(request.headers, &query) {
            Ok(v) => v,
            Err(e) => {
                caller.outcomes.identities_failure.inc();
                return Err(e);
            }
        };
        let key = cache::key(&self.fingerprint, values.iter().copied());
        let event = || {
            let path_params: Map<String, Value> = request
                .path_params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            let mut event = json!({
                "httpMethod": request.method.as_str(),
                "path": request.path,
                "headers": header_map(request.headers),
                "queryStringParameters": query_map(request.query),
                "pathParameters": path_params,
                "requestContext": {
                    "apiId": request.api_id,
                    "apiName": request.api_name,
                    "requestId": ctx.request_id.to_string(),
                    "stage": request.stage,
                    "sourceIp": ctx.client_ip.to_canonical().to_string(),
                },
                "user_data": self.user_data,
            });
            if let (Some(body), Value::Object(fields)) =
                (request.body.filter(|_| self.need_body), &mut event)
            {
                fields.insert("body".into(), STANDARD.encode(body).into());
                fields.insert("isBase64Encoded".into(), true.into());
            }
            event.to_string().into_bytes()
        };
        self.decide(caller, key, event, ctx, request.api_id).await
    }

    /// Runs a backend authorizer (its event carries only `user_data`).
    pub(crate) async fn authorize_backend(
        &self,
        caller: &Caller<'_>,
        ctx: &RequestContext,
        api: &str,
    ) -> Result<Arc<AuthContext>, GatewayErrorKind> {
        let key = cache::key(&self.fingerprint, std::iter::empty());
        let event = || {
            json!({"user_data": self.user_data})
                .to_string()
                .into_bytes()
        };
        self.decide(caller, key, event, ctx, api).await
    }

    /// The cached decision, else the function's; `Ok` only for `allow`.
    async fn decide(
        &self,
        caller: &Caller<'_>,
        key: [u8; 32],
        event: impl FnOnce() -> Vec<u8>,
        ctx: &RequestContext,
        api: &str,
    ) -> Result<Arc<AuthContext>, GatewayErrorKind> {
        let cached = !self.ttl.is_zero();
        let decision = match cached
            .then(|| caller.cache.get(&key, Instant::now()))
            .flatten()
        {
            Some(d) => {
                caller.outcomes.cache_hit.inc();
                d
            }
            None => {
                let d = match self.call(caller.upstream, event(), ctx, api).await {
                    Ok(d) => d,
                    Err(why) => {
                        caller.outcomes.error.inc();
                        tracing::debug!(request_id = %ctx.request_id, authorizer = %self.id, why, "custom authorizer failed");
                        return Err(GatewayErrorKind::AuthorizerFailed);
                    }
                };
                match &d {
                    Decision::Allow(_) => caller.outcomes.allow.inc(),
                    Decision::Deny => caller.outcomes.deny.inc(),
                }
                if cached {
                    caller
                        .cache
                        .insert(key, d.clone(), self.ttl, Instant::now());
                }
                d
            }
        };
        match decision {
            Decision::Allow(context) => Ok(context),
            Decision::Deny => Err(GatewayErrorKind::AuthorizerDenied),
        }
    }

    /// One call of the function; `Err` says why the answer is not a decision.
    async fn call(
        &self,
        upstream: &Upstream,
        event: Vec<u8>,
        ctx: &RequestContext,
        api: &str,
    ) -> Result<Decision, &'static str> {
        let mut request = Request::new(UpstreamBody::buffered(Bytes::from(event)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.url.clone();
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(X_REQUEST_ID, ctx.request_id.header_value());
        let exchange = async {
            let response = upstream
                .send(request, UpstreamProtocol::Http1, self.timeout, api)
                .await
                .map_err(|_| "the function could not be reached")?;
            if !response.status().is_success() {
                return Err("the function endpoint did not answer 2xx");
            }
            Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|_| "the answer is unreadable or over 1 MB")
        };
        let bytes = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| "timed out")??;
        parse_answer(&bytes)
    }
}

/// The function's answer: `{"statusCode": 200, "body": "<JSON string>"}` whose body is
/// `{"status": "allow"|"deny", "context"?: {...}}`.
pub(crate) fn parse_answer(bytes: &[u8]) -> Result<Decision, &'static str> {
    let outer: Value = serde_json::from_slice(bytes).map_err(|_| "the answer is not JSON")?;
    if outer.get("statusCode").and_then(Value::as_u64) != Some(200) {
        return Err("statusCode is not 200");
    }
    let body = outer
        .get("body")
        .and_then(Value::as_str)
        .ok_or("body is not a string")?;
    let inner: Value = serde_json::from_str(body).map_err(|_| "body is not JSON")?;
    match inner.get("status").and_then(Value::as_str) {
        Some("allow") => {}
        Some("deny") => return Ok(Decision::Deny),
        _ => return Err("status is not allow or deny"),
    }
    let entries = match inner.get("context") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => check_context(m)?,
        Some(_) => return Err("context is not an object"),
    };
    Ok(Decision::Allow(Arc::new(AuthContext { entries })))
}

fn check_context(m: &Map<String, Value>) -> Result<Vec<(String, String)>, &'static str> {
    if m.len() > MAX_CONTEXT_ENTRIES {
        return Err("too many context entries");
    }
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        let key_ok = k.len() <= MAX_CONTEXT_KEY_BYTES
            && k.starts_with(|c: char| c.is_ascii_alphabetic())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            return Err("a context key is not a letter followed by letters, digits, _ or -");
        }
        let Value::String(s) = v else {
            return Err("a context value is not a string");
        };
        if s.len() > MAX_CONTEXT_VALUE_BYTES {
            return Err("a context value is too long");
        }
        // CR, LF, NUL and the other controls could split or smuggle a backend header.
        if s.chars().any(char::is_control) {
            return Err("a context value holds control characters");
        }
        out.push((k.clone(), s.clone()));
    }
    Ok(out)
}
