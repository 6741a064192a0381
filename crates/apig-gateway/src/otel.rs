//! Request spans for OpenTelemetry, and W3C trace context (`traceparent`) to the backend.
//!
//! Every request gets a `tracing` span with the target [`OTEL_TARGET`]. The binary routes that
//! target to its OpenTelemetry layer only, and installs that layer only when OTLP export is on.
//! Otherwise no subscriber is interested in the target: the span is disabled at its call site
//! (a cached check), nothing below runs, and the client's `traceparent` reaches the backend
//! untouched like any other header.
//!
//! With export on, the span continues the client's trace (its `traceparent`, and `tracestate`,
//! are the parent) or starts a new one, and the backend gets a `traceparent` naming the
//! gateway's span, so the backend's spans hang under it in the same trace.

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::context::RequestContext;

/// The `tracing` target of the spans meant for OpenTelemetry (the control plane uses the same).
pub const OTEL_TARGET: &str = "apig_otel";

/// The W3C trace context header the backend gets.
pub(crate) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Collects what the propagator writes; only `traceparent` is kept (the client's `tracestate`
/// is forwarded as it came, which is what the propagator would write).
#[derive(Default)]
struct Traceparent(Option<HeaderValue>);

impl Injector for Traceparent {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = HeaderValue::from_str(&value).ok();
        }
    }
}

/// The span of one gateway request; disabled (and free) unless OTLP export is on. With export
/// on, also the `traceparent` the backend should get.
pub(crate) fn request_span(
    ctx: &RequestContext,
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
) -> (Span, Option<HeaderValue>) {
    let span = tracing::info_span!(
        target: OTEL_TARGET,
        "gateway request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        url.path = path.get(..path.len().min(2048)).unwrap_or(path),
        client.address = %ctx.client_ip,
        apig.request_id = %ctx.request_id,
        apig.api_id = Empty,
        apig.env = Empty,
        apig.error_code = Empty,
        apig.upstream.address = Empty,
        http.response.status_code = Empty,
        apig.latency_ms = Empty,
    );
    if span.is_disabled() {
        return (span, None);
    }
    let propagator = TraceContextPropagator::new();
    // A missing or malformed `traceparent` gives an empty context: the span starts a trace.
    let _ = span.set_parent(propagator.extract(&Headers(headers)));
    let mut out = Traceparent::default();
    propagator.inject_context(&span.context(), &mut out);
    (span, out.0)
}

/// Records the outcome on the span (a no-op on a disabled one).
pub(crate) fn record_outcome(
    span: &Span,
    ctx: &RequestContext,
    api: Option<(&str, &str)>,
    status: u16,
    error_code: Option<&str>,
) {
    if span.is_disabled() {
        return;
    }
    if let Some((api_id, env)) = api {
        span.record("apig.api_id", api_id);
        span.record("apig.env", env);
    }
    if let Some(code) = error_code {
        span.record("apig.error_code", code);
    }
    if let Some((addr, _)) = &ctx.upstream {
        span.record("apig.upstream.address", addr.as_str());
    }
    span.record("http.response.status_code", status);
    span.record(
        "apig.latency_ms",
        ctx.started.elapsed().as_secs_f64() * 1000.0,
    );
    // OpenTelemetry's HTTP server convention: only 5xx marks the span as failed.
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_subscriber_nothing_is_traced_or_propagated() {
        let ctx = RequestContext::new(
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let (span, traceparent) = request_span(&ctx, &http::Method::GET, "/x", &headers);
        assert!(span.is_disabled());
        assert!(traceparent.is_none());
        record_outcome(&span, &ctx, Some(("api", "RELEASE")), 200, None);
    }
}
