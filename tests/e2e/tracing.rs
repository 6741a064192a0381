//! OpenTelemetry export through the real binaries: a tiny OTLP/gRPC collector in the test, a
//! gateway and a control plane started with `--otlp-endpoint`, and W3C `traceparent` from the
//! client through the gateway to the backend.

use std::collections::HashMap;
use std::net::SocketAddr;

use apig_testkit::{eventually, ApigProcess, Gateway, MgmtClient, Seed};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::{bin, call, Stack, RELEASE, WAIT};

/// One exported span, flattened: its service, ids and attributes (values as text).
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attrs: HashMap<String, String>,
}

struct Collector {
    tx: mpsc::UnboundedSender<Got>,
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn flatten(service: &str, s: &Span) -> Got {
    Got {
        service: service.to_owned(),
        name: s.name.clone(),
        trace_id: hex::encode(&s.trace_id),
        span_id: hex::encode(&s.span_id),
        parent_span_id: hex::encode(&s.parent_span_id),
        attrs: s
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let _ = self.tx.send(flatten(&service, s));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts the collector on a free loopback port; spans arrive on the receiver.
async fn collector() -> (String, mpsc::UnboundedReceiver<Got>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector { tx }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), rx)
}

/// Waits for the first span that `want` accepts (the batch exporter sends every 5 s by default).
async fn span(rx: &mut mpsc::UnboundedReceiver<Got>, want: impl Fn(&Got) -> bool) -> Got {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) if want(&s) => return s,
            Ok(Some(s)) => seen.push(s),
            _ => panic!("no such span within {WAIT:?}; got {seen:#?}"),
        }
    }
}

/// `traceparent` → (trace id, parent id, flags).
fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    assert_eq!(p[0], "00", "{traceparent}");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_spans_reach_the_collector_and_the_trace_reaches_the_backend() {
    let (endpoint, mut rx) = collector().await;
    let s = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The shared stack's gateway does not export; this one does.
    let gw = Gateway::start_with_args(
        &bin(),
        &s.cp.grpc_url(),
        &s.instance,
        &dir.path().join("cache"),
        &s.cp.cluster_token,
        "127.0.0.1:0".parse().unwrap(),
        &["--otlp-endpoint", &endpoint],
    );
    let (group, host) = s.group("traced").await;
    let api = s
        .create_api(&s.http_api(&group, "traced_api", "GET", "/traced", json!({})))
        .await;
    s.publish(&api, RELEASE).await;
    s.settled().await;
    eventually(WAIT, "the exporting replica to route", || async {
        (call(&gw, "GET", &host, "/traced", &[]).await.status == 200).then_some(())
    })
    .await;

    // A client in a trace: the backend continues it, under the gateway's span.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let r = call(
        &gw,
        "GET",
        &host,
        "/traced",
        &[("traceparent", traceparent.as_str())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = r.body["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let (backend_trace, backend_parent, flags) = parts(&sent);
    assert_eq!(backend_trace, trace_id, "same trace as the client's");
    assert_ne!(
        backend_parent, client_span,
        "the gateway's span is the parent"
    );
    assert_eq!(flags, "01");

    let got = span(&mut rx, |g| g.trace_id == trace_id).await;
    assert_eq!(got.service, "apig-gateway");
    assert_eq!(got.name, "gateway request");
    assert_eq!(got.parent_span_id, client_span);
    assert_eq!(got.span_id, backend_parent);
    assert_eq!(got.attrs["apig.api_id"], api, "{got:?}");
    assert_eq!(got.attrs["apig.env"], "RELEASE", "{got:?}");
    assert_eq!(got.attrs["http.response.status_code"], "200", "{got:?}");
    assert_eq!(got.attrs["http.request.method"], "GET", "{got:?}");
    let request_id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(got.attrs["apig.request_id"], request_id, "{got:?}");
    assert!(
        got.attrs["apig.latency_ms"].parse::<f64>().unwrap() > 0.0,
        "{got:?}"
    );

    // No traceparent: the gateway starts a trace and the backend is in it.
    let r = call(&gw, "GET", &host, "/traced", &[]).await;
    let sent = r.body["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let (fresh_trace, fresh_parent, _) = parts(&sent);
    assert_ne!(fresh_trace, trace_id);
    assert_ne!(fresh_trace, "0".repeat(32));
    let got = span(&mut rx, |g| g.trace_id == fresh_trace).await;
    assert_eq!(got.span_id, fresh_parent);
    assert!(got.parent_span_id.is_empty(), "a root span: {got:?}");

    // An answer of the gateway itself is a span too, without an API.
    let r = call(
        &gw,
        "GET",
        &host,
        "/nothing-here",
        &[(
            "traceparent",
            &format!("00-{}-{client_span}-01", "ab".repeat(16)),
        )],
    )
    .await;
    assert_eq!(r.status, 404);
    let got = span(&mut rx, |g| g.trace_id == "ab".repeat(16)).await;
    assert_eq!(got.attrs["http.response.status_code"], "404", "{got:?}");
    assert_eq!(got.attrs["apig.error_code"], "APIG.0101", "{got:?}");
    assert!(!got.attrs.contains_key("apig.api_id"), "{got:?}");

    // Without --otlp-endpoint nothing is traced: the client's traceparent passes untouched.
    let r = s
        .until_routed(&host, "/traced", &[("traceparent", traceparent.as_str())])
        .await;
    assert_eq!(r.body["headers"]["traceparent"], traceparent.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn management_requests_are_spans_named_by_their_route() {
    let (endpoint, mut rx) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let seed = Seed::default();
    let data = dir.path().join("control");
    let cp = ApigProcess::start(
        &bin(),
        &[
            "control",
            "--data-dir",
            data.to_str().unwrap(),
            "--mgmt-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
        &[
            ("APIG_ADMIN_AK", &seed.ak),
            ("APIG_ADMIN_SK", &seed.sk),
            ("APIG_PROJECT_ID", &seed.project_id),
            ("APIG_INSTANCE_ID", &seed.instance_id),
            ("APIG_CLUSTER_TOKEN", "test-cluster-token-0123456789"),
            ("APIG_OTLP_ENDPOINT", &endpoint),
            // Batches every 200 ms instead of 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
        &["management", "grpc"],
    );
    let mgmt: SocketAddr = cp.addr("management");
    let client = MgmtClient::new(mgmt, &seed.ak, &seed.sk, &seed.project_id);
    let r = client
        .get(&format!("/instances/{}/api-groups", seed.instance_id))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let got = span(&mut rx, |g| g.name.starts_with("GET /v2/")).await;
    assert_eq!(got.service, "apig-control");
    assert_eq!(
        got.name,
        "GET /v2/{project_id}/apigw/instances/{instance_id}/api-groups"
    );
    assert_eq!(got.attrs["http.response.status_code"], "200", "{got:?}");
    assert!(!got.name.contains(&seed.instance_id));
}
