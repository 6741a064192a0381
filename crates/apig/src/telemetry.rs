//! Logs on stderr, and (with `--otlp-endpoint`) spans exported over OTLP/gRPC.
//!
//! Two layers share one registry, each with its own filter: the log layer (`RUST_LOG`, default
//! `info`) never sees the OpenTelemetry spans' target, and the OpenTelemetry layer sees nothing
//! else. Without an endpoint there is no OpenTelemetry layer at all, so no subscriber wants that
//! target and the planes' request spans are disabled at their call sites.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// The targets of the planes' request spans meant for OpenTelemetry (one and the same today).
const OTEL_TARGETS: [&str; 2] = [
    apig_gateway::otel::OTEL_TARGET,
    apig_control::otel::OTEL_TARGET,
];

/// Keeps the span exporter alive; [`Telemetry::shutdown`] sends what is still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the log layer and, with `otlp`, the OpenTelemetry layer exporting to it as
/// `service`. With `otlp` it must run inside a Tokio runtime (the gRPC channel's task lives
/// there; the batch processor exports from a thread of its own and never blocks requests:
/// when its bounded queue is full, spans are dropped).
pub fn init(
    log_format: &str,
    otlp: Option<&str>,
    service: &'static str,
) -> anyhow::Result<Telemetry> {
    let fmt = log_layer(log_format)?;
    let Some(endpoint) = otlp else {
        tracing_subscriber::registry().with(fmt).try_init()?;
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()
        .with_context(|| format!("the OTLP exporter to {endpoint}"))?;
    // Batch export: queue 2048 spans, batches of 512 every 5 s unless OTEL_BSP_* say otherwise.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("apig"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_filter(Targets::new().with_targets(OTEL_TARGETS.map(|t| (t, LevelFilter::TRACE))));
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    tracing::info!(endpoint, service, "exporting spans over OTLP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The log layer: `RUST_LOG` (default `info`) less the OpenTelemetry spans' targets.
fn log_layer(log_format: &str) -> anyhow::Result<Box<dyn Layer<Registry> + Send + Sync>> {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // However RUST_LOG reads, the OpenTelemetry spans are not log lines (and so, without an
    // OpenTelemetry layer, nothing wants them).
    for target in OTEL_TARGETS {
        filter = filter.add_directive(
            format!("{target}=off")
                .parse()
                .context("the log filter directive")?,
        );
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    Ok(if log_format == "json" {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    })
}

impl Telemetry {
    /// Exports the spans still queued (waiting at most a few seconds). Call it while the Tokio
    /// runtime still runs, outside of it (it blocks).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "spans not exported at shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_endpoint_request_spans_are_disabled_even_at_trace_level() {
        let subscriber = tracing_subscriber::registry().with(log_layer("text").unwrap());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: "apig_otel", "gateway request");
            assert!(span.is_disabled());
            assert!(!tracing::span_enabled!(target: "apig_otel", tracing::Level::TRACE));
            // The log layer itself is there.
            assert!(tracing::enabled!(tracing::Level::INFO));
        });
    }
}
