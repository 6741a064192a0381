//! Management request spans for OpenTelemetry.
//!
//! Each management request gets a `tracing` span with the target [`OTEL_TARGET`], which the
//! binary routes to its OpenTelemetry layer only, and only when OTLP export is on; otherwise the
//! span is disabled at its call site and costs a cached check. A client's W3C `traceparent`
//! (and `tracestate`) makes the span part of the client's trace.

use axum::http::{HeaderMap, Method};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the spans meant for OpenTelemetry (the gateway uses the same).
pub const OTEL_TARGET: &str = "apig_otel";

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one management request: named after the route template (`GET
/// /v2/{project_id}/apigw/instances/{instance_id}/apis`, never the ids), or the path's first
/// segment when no route matched.
pub(crate) fn request_span(
    method: &Method,
    route: Option<&str>,
    request_id: &str,
    headers: &HeaderMap,
) -> Span {
    let route = route.unwrap_or("unmatched");
    let span = tracing::info_span!(
        target: OTEL_TARGET,
        "management request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        apig.request_id = request_id,
        http.response.status_code = Empty,
        apig.latency_ms = Empty,
    );
    if !span.is_disabled() {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the answer on the span (a no-op on a disabled one).
pub(crate) fn record_outcome(span: &Span, status: u16, started: std::time::Instant) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    span.record("apig.latency_ms", started.elapsed().as_secs_f64() * 1000.0);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}
