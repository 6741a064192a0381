//! The admin listener: `GET /health` (the process is alive), `GET /ready` (200 once a snapshot
//! is applied, from the control plane or the cache; 503 before), both JSON with the applied epoch
//! and version, and `GET /metrics` (Prometheus text, `metrics`).

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};

use crate::body::ResponseBody;
use crate::state::Shared;

/// Serves one admin request.
pub(crate) async fn handle<B>(
    shared: Arc<Shared>,
    request: Request<B>,
) -> Result<Response<ResponseBody>, Infallible> {
    let path = request.uri().path();
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if path == "/metrics" && is_read {
        let mut response = Response::new(ResponseBody::full(shared.metrics.render()));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(response);
    }
    let (status, body) = match path {
        "/health" | "/ready" if !is_read => (
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "method not allowed"}),
        ),
        "/health" => (StatusCode::OK, status_body(&shared, "ok")),
        "/ready" => {
            if shared.is_ready() {
                (StatusCode::OK, status_body(&shared, "ready"))
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    status_body(&shared, "not_ready"),
                )
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        ),
    };
    let bytes = if *request.method() == Method::HEAD {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap_or_default()
    };
    let mut response = Response::new(ResponseBody::full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn status_body(shared: &Shared, status: &str) -> serde_json::Value {
    let runtime = shared.runtime();
    let share = shared.share();
    serde_json::json!({
        "status": status,
        "ready": runtime.is_some(),
        "instance_id": shared.instance_id,
        "node_id": shared.node_id,
        "applied_epoch": runtime.as_ref().map(|r| r.epoch().to_owned()),
        "applied_version": runtime.as_ref().map(|r| r.version()),
        "apis": runtime.as_ref().map(|r| r.apis.len()),
        "control_plane_connected": shared.is_connected(),
        "replica_share": { "index": share.index(), "count": share.count() },
        "limiter_keys": shared.limiter_keys(),
        "quota_counters": shared.quota_counters(),
    })
}
