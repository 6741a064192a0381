//! FUNCTION backends: a function is an HTTP(S) endpoint; the gateway POSTs it a
//! FunctionGraph-style event and turns the function's answer into the client's response.
//!
//! The event (JSON):
//!
//! ```text
//! {"httpMethod", "path", "headers": {name: value}, "queryStringParameters": {name: value},
//!  "pathParameters": {name: value}, "body": base64, "isBase64Encoded": true,
//!  "requestContext": {"apiId", "apiName", "requestId", "stage", "sourceIp", "appId"}}
//! ```
//!
//! Headers and query are those an HTTP backend would get (credentials removed, backend
//! parameters applied, `X-Forwarded-*` and `X-Request-Id` added); repeated names are joined
//! with `,`. The body is always base64, as FunctionGraph's APIG events carry it.
//!
//! The answer must be a JSON object `{"statusCode": 100..599, "headers"?: {name: string or
//! [string]}, "body"?: string, "isBase64Encoded"?: bool}` from a 2xx response of the function
//! endpoint; anything else is `502 APIG.0202`. Hop-by-hop and length headers of the answer are
//! dropped (the gateway frames the body). An `async` function is called in the background: the
//! client gets `202 {"request_id"}` at once and the result is not waited for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apig_proto::{FunctionBackend, HttpBackend};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use crate::body::ResponseBody;
use crate::context::RequestContext;
use crate::mapping::{strip_hop_by_hop, HttpTarget};
use crate::proxy::{Upstream, UpstreamBody, UpstreamProtocol};
use crate::respond::{GatewayErrorKind, X_REQUEST_ID};

/// Largest function answer read (FunctionGraph's synchronous limit is 6 MB).
pub(crate) const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024;

/// A function backend, prepared.
#[derive(Debug, Clone)]
pub(crate) struct FunctionTarget {
    /// The event's headers and query come from mapping the request as for an HTTP backend at
    /// the function's address (its path is not used).
    pub mapping: HttpTarget,
    url: Uri,
    host: HeaderValue,
    pub asynchronous: bool,
    pub timeout: Duration,
}

impl FunctionTarget {
    pub(crate) fn prepare(f: &FunctionBackend) -> Result<Self, String> {
        let url: Uri = f
            .url
            .parse()
            .map_err(|e| format!("function URL {:?}: {e}", f.url))?;
        let scheme = match url.scheme_str() {
            Some(s @ ("http" | "https")) => s,
            _ => return Err(format!("function URL {:?} is not http(s)", f.url)),
        };
        let authority = url
            .authority()
            .filter(|a| !a.as_str().contains('@'))
            .ok_or_else(|| format!("function URL {:?} has no valid host", f.url))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("function URL {:?} has no valid host", f.url))?;
        let mapping = HttpTarget::prepare_with(
            &HttpBackend {
                scheme: scheme.into(),
                host: authority.host().trim_matches(['[', ']']).to_owned(),
                port: authority.port_u16().map_or(0, u32::from),
                method: "ANY".into(),
                path: "/".into(),
                timeout_ms: f.timeout_ms,
                ..Default::default()
            },
            |_| None,
        )?;
        Ok(Self {
            mapping,
            url,
            host,
            asynchronous: f.r#async,
            timeout: Duration::from_millis(u64::from(f.timeout_ms.max(1))),
        })
    }
}

/// What the event says about the request besides its mapped headers and query.
pub(crate) struct EventSource<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub path_params: &'a [(&'a str, &'a str)],
    pub api_id: &'a str,
    pub api_name: &'a str,
    pub stage: &'a str,
}

/// The event JSON.
pub(crate) fn event(
    source: &EventSource<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    ctx: &RequestContext,
) -> Vec<u8> {
    let path_params: Map<String, Value> = source
        .path_params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    let app_id = ctx.caller.app_id().unwrap_or_default();
    let event = json!({
        "httpMethod": source.method.as_str(),
        "path": source.path,
        "headers": header_map(headers),
        "queryStringParameters": query_map(query),
        "pathParameters": path_params,
        "body": STANDARD.encode(body),
        "isBase64Encoded": true,
        "requestContext": {
            "apiId": source.api_id,
            "apiName": source.api_name,
            "requestId": ctx.request_id.to_string(),
            "stage": source.stage,
            "sourceIp": ctx.client_ip.to_canonical().to_string(),
            "appId": app_id,
        },
    });
    event.to_string().into_bytes()
}

/// An event's `headers`: repeated names joined with `,`.
pub(crate) fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    header_map
}

/// An event's `queryStringParameters`: decoded, repeated names joined with `,`.
pub(crate) fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    let mut query_map: BTreeMap<String, String> = BTreeMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let (k, v) = (decode(k), decode(v));
        query_map
            .entry(k)
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    query_map
}

/// Calls the function with `event`; the client's response. `api`: the API id (logs).
pub(crate) async fn invoke(
    upstream: &Upstream,
    target: &FunctionTarget,
    event: Vec<u8>,
    ctx: &RequestContext,
    api: &str,
    background: &Arc<Semaphore>,
) -> Result<Response<ResponseBody>, GatewayErrorKind> {
    let request = function_request(target, event, ctx)?;
    if target.asynchronous {
        // Bounded: past the limit, asynchronous calls are refused rather than queued without end.
        let permit = Arc::clone(background)
            .try_acquire_owned()
            .map_err(|_| GatewayErrorKind::BackendUnavailable)?;
        let (upstream, timeout) = (upstream.clone(), target.timeout);
        let request_id = ctx.request_id.to_string();
        let api = api.to_owned();
        tokio::spawn(async move {
            let _permit = permit;
            match upstream
                .send(request, UpstreamProtocol::Http1, timeout, &api)
                .await
            {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(%request_id, status = r.status().as_u16(), "asynchronous function call failed")
                }
                Err(e) => {
                    tracing::warn!(%request_id, error = %e.kind.message(), "asynchronous function call failed")
                }
            }
        });
        let body = json!({"request_id": ctx.request_id.to_string()}).to_string();
        let mut response = Response::new(ResponseBody::full(body));
        *response.status_mut() = StatusCode::ACCEPTED;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(response);
    }
    let response = upstream
        .send(request, UpstreamProtocol::Http1, target.timeout, api)
        .await
        .map_err(|e| e.kind)?;
    if !response.status().is_success() {
        tracing::debug!(
            status = response.status().as_u16(),
            "function endpoint failed"
        );
        return Err(GatewayErrorKind::FunctionAnswerInvalid);
    }
    let read = tokio::time::timeout(
        target.timeout,
        Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
    )
    .await;
    let bytes = match read {
        Err(_) => return Err(GatewayErrorKind::BackendTimeout),
        Ok(Err(_)) => return Err(GatewayErrorKind::FunctionAnswerInvalid),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    answer(&bytes)
}

fn function_request(
    target: &FunctionTarget,
    event: Vec<u8>,
    ctx: &RequestContext,
) -> Result<Request<UpstreamBody>, GatewayErrorKind> {
    let mut request = Request::new(UpstreamBody::buffered(Bytes::from(event)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.url.clone();
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    headers.insert(HOST, target.host.clone());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_REQUEST_ID, ctx.request_id.header_value());
    Ok(request)
}

/// The function's answer as FunctionGraph defines it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status_code: u16,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
}

/// Maps the function's answer to the client's response.
pub(crate) fn answer(bytes: &[u8]) -> Result<Response<ResponseBody>, GatewayErrorKind> {
    let invalid = |why: &str| {
        tracing::debug!(why, "invalid function answer");
        GatewayErrorKind::FunctionAnswerInvalid
    };
    let answer: Answer =
        serde_json::from_slice(bytes).map_err(|_| invalid("not the answer JSON"))?;
    let status = StatusCode::from_u16(answer.status_code)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()) && !s.is_informational())
        .ok_or_else(|| invalid("statusCode"))?;
    let body = match (answer.body, answer.is_base64_encoded.unwrap_or(false)) {
        (None, _) => Bytes::new(),
        (Some(b), false) => Bytes::from(b),
        (Some(b), true) => Bytes::from(STANDARD.decode(b).map_err(|_| invalid("base64 body"))?),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers.unwrap_or_default() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("header name"))?;
        let values = match value {
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(invalid("header value")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(invalid("header value")),
        };
        for v in values {
            headers.append(
                name.clone(),
                HeaderValue::from_str(&v).map_err(|_| invalid("header value"))?,
            );
        }
    }
    strip_hop_by_hop(&mut headers);
    headers.remove(http::header::CONTENT_LENGTH);
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response<ResponseBody>) -> Bytes {
        r.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn answers_map_to_responses() {
        let r = answer(br#"{"statusCode": 201, "headers": {"x-a": "1", "set-cookie": ["a=1", "b=2"], "connection": "close"}, "body": "made"}"#).unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        assert!(r.headers().get("connection").is_none());
        assert_eq!(body_of(r).await, "made");

        let r = answer(br#"{"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}"#).unwrap();
        assert_eq!(body_of(r).await, "hi");
        let r = answer(br#"{"statusCode": 204}"#).unwrap();
        assert_eq!(r.status(), 204);
    }

    #[test]
    fn malformed_answers_are_502() {
        for bad in [
            &br#""just a string""#[..],
            br#"{"body": "no status"}"#,
            br#"{"statusCode": 700}"#,
            br#"{"statusCode": 101}"#,
            br#"{"statusCode": "200"}"#,
            br#"{"statusCode": 200, "body": "!!", "isBase64Encoded": true}"#,
            br#"{"statusCode": 200, "headers": {"bad name": "x"}}"#,
            br#"{"statusCode": 200, "headers": {"x": {"nested": 1}}}"#,
            b"not json",
        ] {
            assert_eq!(
                answer(bad).unwrap_err(),
                GatewayErrorKind::FunctionAnswerInvalid,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn targets() {
        let t = FunctionTarget::prepare(&FunctionBackend {
            url: "https://fn.internal:8443/function/orders?x=1".into(),
            r#async: false,
            timeout_ms: 100,
        })
        .unwrap();
        assert_eq!(t.url.path(), "/function/orders");
        assert_eq!(t.host, "fn.internal:8443");
        for bad in ["ftp://x/", "http://u@x/", "/relative", ""] {
            assert!(FunctionTarget::prepare(&FunctionBackend {
                url: bad.into(),
                ..Default::default()
            })
            .is_err());
        }
    }
}
