//! Test harness: a FAKE control plane (an in-test tonic `Discovery` server that pushes snapshots
//! we give it and records what the replica answers; the real control plane is tested end to end
//! elsewhere), an echo backend on loopback, and a gateway started in-process on port 0.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apig_gateway::{Gateway, GatewayConfig, GatewayError, Limits};
use apig_proto::discovery_server::{Discovery, DiscoveryServer};
use apig_proto::{
    api, control_message, replica_message, Api, AuthType, BackendParam, BackendParamOrigin,
    ControlMessage, Environment, Group, Hello, HttpBackend, MatchMode, MockBackend, ParamLocation,
    ReplicaMessage, ReplicaShare, RequestParam, Snapshot, UsageAck, UsageReport,
};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Status, Streaming};

pub const INSTANCE: &str = "inst-1";
pub const TOKEN: &str = "cluster-secret";
pub const HOST: &str = "api.example.com";
/// The project every test snapshot belongs to.
pub const PROJECT: &str = "proj-test";
/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a test body with the global time bound.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out");
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Fake control plane

/// What the fake control plane saw from replicas.
#[derive(Default)]
struct CpState {
    token: String,
    attempts: AtomicUsize,
    unauthenticated: AtomicUsize,
    hellos: Mutex<Vec<Hello>>,
    replies: Mutex<Vec<replica_message::Msg>>,
    latest: Mutex<Option<Snapshot>>,
    streams: Mutex<BTreeMap<u64, mpsc::Sender<Result<ControlMessage, Status>>>>,
    next_stream: AtomicU64,
    /// Whether usage reports are acknowledged (they are unless a test says otherwise).
    withhold_usage_acks: AtomicBool,
}

#[derive(Clone)]
struct CpService(Arc<CpState>);

#[tonic::async_trait]
impl Discovery for CpService {
    type StreamStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn stream(
        &self,
        request: tonic::Request<Streaming<ReplicaMessage>>,
    ) -> Result<tonic::Response<Self::StreamStream>, Status> {
        let state = &self.0;
        state.attempts.fetch_add(1, Ordering::SeqCst);
        let expected = format!("Bearer {}", state.token);
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if presented != Some(expected.as_str()) {
            state.unauthenticated.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unauthenticated("invalid cluster token"));
        }
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        if let Some(s) = state.latest.lock().unwrap().clone() {
            let _ = tx.try_send(Ok(snapshot_message(s)));
        }
        let id = state.next_stream.fetch_add(1, Ordering::SeqCst);
        state.streams.lock().unwrap().insert(id, tx);
        let recorder = Arc::clone(state);
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                match message.msg {
                    Some(replica_message::Msg::Hello(h)) => recorder.hellos.lock().unwrap().push(h),
                    Some(replica_message::Msg::Usage(report)) => {
                        let seq = report.seq;
                        recorder
                            .replies
                            .lock()
                            .unwrap()
                            .push(replica_message::Msg::Usage(report));
                        if !recorder.withhold_usage_acks.load(Ordering::SeqCst) {
                            let ack = ControlMessage {
                                msg: Some(control_message::Msg::UsageAck(UsageAck { seq })),
                            };
                            if let Some(tx) = recorder.streams.lock().unwrap().get(&id) {
                                let _ = tx.try_send(Ok(ack));
                            }
                        }
                    }
                    Some(other) => recorder.replies.lock().unwrap().push(other),
                    None => {}
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

fn snapshot_message(s: Snapshot) -> ControlMessage {
    ControlMessage {
        msg: Some(control_message::Msg::Snapshot(s)),
    }
}

/// A fake control plane listening on loopback.
pub struct FakeControlPlane {
    state: Arc<CpState>,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeControlPlane {
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(CpState {
            token: token.to_owned(),
            ..Default::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = DiscoveryServer::new(CpService(Arc::clone(&state)));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self { state, addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `snapshot` to every connected replica (and to replicas that connect later).
    pub fn push(&self, snapshot: Snapshot) {
        *self.state.latest.lock().unwrap() = Some(snapshot.clone());
        let mut streams = self.state.streams.lock().unwrap();
        streams.retain(|_, tx| tx.try_send(Ok(snapshot_message(snapshot.clone()))).is_ok());
    }

    /// Sends a `ReplicaShare` to every connected replica.
    pub fn push_share(&self, index: u32, count: u32) {
        let message = ControlMessage {
            msg: Some(control_message::Msg::Share(ReplicaShare { index, count })),
        };
        let mut streams = self.state.streams.lock().unwrap();
        streams.retain(|_, tx| tx.try_send(Ok(message.clone())).is_ok());
    }

    /// Closes every open stream (the replicas reconnect).
    pub fn drop_streams(&self) {
        self.state.streams.lock().unwrap().clear();
    }

    /// Stops (or resumes) acknowledging usage reports.
    pub fn withhold_usage_acks(&self, withhold: bool) {
        self.state
            .withhold_usage_acks
            .store(withhold, Ordering::SeqCst);
    }

    /// Every usage report received, in order (re-sent ones again).
    pub fn usage_reports(&self) -> Vec<UsageReport> {
        self.state
            .replies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                replica_message::Msg::Usage(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    pub fn unauthenticated(&self) -> usize {
        self.state.unauthenticated.load(Ordering::SeqCst)
    }

    pub fn hellos(&self) -> Vec<Hello> {
        self.state.hellos.lock().unwrap().clone()
    }

    fn find_reply(&self, version: u64) -> Option<replica_message::Msg> {
        self.state
            .replies
            .lock()
            .unwrap()
            .iter()
            .find(|m| match m {
                replica_message::Msg::Ack(a) => a.version == version,
                replica_message::Msg::Nack(n) => n.version == version,
                replica_message::Msg::Hello(_) | replica_message::Msg::Usage(_) => false,
            })
            .cloned()
    }

    /// Reasons of every NACK of `version` so far.
    pub fn nack_reasons(&self, version: u64) -> Vec<String> {
        self.state
            .replies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                replica_message::Msg::Nack(n) if n.version == version => Some(n.reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits for the replica's answer to `version`: `Ok(())` for ACK, `Err(reason)` for NACK.
    pub async fn answer(&self, version: u64) -> Result<(), String> {
        let mut found = None;
        let ok = eventually(Duration::from_secs(10), || {
            found = self.find_reply(version);
            found.is_some()
        })
        .await;
        assert!(ok, "no answer to version {version}");
        match found {
            Some(replica_message::Msg::Ack(_)) => Ok(()),
            Some(replica_message::Msg::Nack(n)) => Err(n.reason),
            _ => unreachable!(),
        }
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Echo backend

/// What the echo backend received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
}

/// A loopback HTTP/1.1 backend answering with what it saw as JSON:
/// `{"method","path","query","headers":{name:[values]},"body_len"}`. Paths starting with
/// `/slow` wait 3 s first; paths starting with `/redirect` answer 302 to `/elsewhere`.
pub struct EchoBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| echo(Arc::clone(&log), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            accepted,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(
    log: Arc<Mutex<Vec<Seen>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_default(),
    });
    let body_len = match body.collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => return Ok(Response::new(Full::new(Bytes::from_static(b"body error")))),
    };
    if parts.uri.path().starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if parts.uri.path().starts_with("/redirect") {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::FOUND;
        response.headers_mut().insert(
            http::header::LOCATION,
            http::HeaderValue::from_static("/elsewhere"),
        );
        return Ok(response);
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": body_len,
    });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("x-backend", http::HeaderValue::from_static("echo"));
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Gateway

pub fn config(control_plane: &str, cache_dir: &Path, token: &str) -> GatewayConfig {
    GatewayConfig {
        backend_ca_file: None,
        access_log: None,
        tls_listen: None,
        control_plane: control_plane.to_owned(),
        instance_id: INSTANCE.to_owned(),
        node_id: Some("test-node".to_owned()),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        cache_dir: cache_dir.to_path_buf(),
        cluster_token: token.to_owned(),
        cluster_tls: None,
        allow_plaintext_cluster: false,
        limits: Limits {
            shutdown_grace: Duration::from_secs(5),
            // These tests call over plain HTTP; `app_codes_travel_encrypted_only` checks the
            // default, which refuses AppCodes there.
            allow_app_code_over_http: true,
            ..Limits::default()
        },
    }
}

/// A gateway running in this process.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), GatewayError>>>,
}

impl RunningGateway {
    pub async fn start(config: GatewayConfig) -> Self {
        let gateway = Gateway::bind(config).await.expect("gateway binds");
        let addr = gateway.local_addr();
        let admin = gateway.admin_addr().expect("admin listener");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), GatewayError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("gateway stops in time")
            .expect("gateway task")
    }

    pub fn stop_signal(&mut self) -> oneshot::Sender<()> {
        self.stop.take().expect("running")
    }

    pub fn take_task(&mut self) -> JoinHandle<Result<(), GatewayError>> {
        self.task.take().expect("running")
    }

    pub async fn ready_status(&self) -> u16 {
        get(self.admin, "/ready", &[]).await.status
    }

    /// The admin `/health` body.
    pub async fn health(&self) -> serde_json::Value {
        get(self.admin, "/health", &[]).await.json()
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..250 {
            if self.ready_status().await == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gateway did not become ready");
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// A response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an APIG error body with this status and code, and a request id that matches the
    /// `X-Request-Id` header.
    #[track_caller]
    pub fn assert_apig_error(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers["content-type"], "application/json");
        let json = self.json();
        assert_eq!(json["error_code"], code, "{json}");
        let id = json["request_id"].as_str().expect("request_id");
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(self.headers["x-request-id"], id);
        json
    }
}

/// Sends one HTTP/1.1 request.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(body)).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, "GET", path, headers, Bytes::new()).await
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs a request as the APIG SDKs do (every given header plus `X-Sdk-Date`) at `signed_at`
/// and returns all headers to send: the given ones, `X-Sdk-Date` and `Authorization`.
/// `target` is the raw path and query, sent exactly so.
pub fn sign(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    key: &str,
    secret: &str,
    signed_at: i64,
) -> Vec<(String, String)> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let view = apig_sign::RequestView {
        method,
        path,
        query,
        headers,
    };
    let signer = apig_sign::Signer {
        key,
        secret: secret.as_bytes(),
    };
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    out.extend(signer.sign(&view, body, signed_at).expect("signable"));
    out
}

/// Sends a request with owned headers.
pub async fn send_owned(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Answer {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    send(addr, method, target, &pairs, Bytes::copy_from_slice(body)).await
}

/// GET with `Host: api.example.com`.
pub async fn call(addr: SocketAddr, path: &str) -> Answer {
    get(addr, path, &[("host", HOST)]).await
}

// ---------------------------------------------------------------------------------------------
// Snapshot builders

pub fn snapshot(epoch: &str, version: u64, apis: Vec<Api>) -> Snapshot {
    Snapshot {
        instance_id: INSTANCE.into(),
        epoch: epoch.into(),
        version,
        created_at_unix_ms: 0,
        groups: vec![Group {
            id: "g1".into(),
            name: "group_one".into(),
            domains: vec![HOST.into()],
        }],
        environments: vec![
            Environment {
                id: "env-release".into(),
                name: "RELEASE".into(),
            },
            Environment {
                id: "env-test".into(),
                name: "TEST".into(),
            },
        ],
        apis,
        project_id: PROJECT.into(),
        ..Default::default()
    }
}

/// An API in RELEASE with no backend yet.
pub fn api(id: &str, method: &str, uri: &str) -> Api {
    Api {
        id: id.into(),
        name: format!("api_{id}"),
        group_id: "g1".into(),
        env_id: "env-release".into(),
        req_method: method.into(),
        req_uri: uri.into(),
        match_mode: MatchMode::Normal as i32,
        auth_type: AuthType::None as i32,
        req_protocol: "HTTP".into(),
        ..Default::default()
    }
}

pub fn with_http(mut a: Api, backend: SocketAddr, path: &str, timeout_ms: u32) -> Api {
    a.backend = Some(api::Backend::Http(HttpBackend {
        scheme: "http".into(),
        host: backend.ip().to_string(),
        port: u32::from(backend.port()),
        method: "ANY".into(),
        path: path.into(),
        timeout_ms,
        retry_count: 0,
        ..Default::default()
    }));
    a
}

/// A gRPC backend at `backend`: `tls` for GRPCS (h2 over TLS), else h2c. APIG fixes the method
/// to POST and the path to `/` (the request path is forwarded).
pub fn with_grpc(mut a: Api, backend: SocketAddr, tls: bool, timeout_ms: u32) -> Api {
    a.backend = Some(api::Backend::Http(HttpBackend {
        scheme: if tls { "https" } else { "http" }.into(),
        host: backend.ip().to_string(),
        port: u32::from(backend.port()),
        method: "POST".into(),
        path: "/".into(),
        timeout_ms,
        retry_count: 0,
        protocol: apig_proto::BackendProtocol::Grpc as i32,
        ..Default::default()
    }));
    a.req_protocol = "GRPCS".into();
    a
}

pub fn with_mock(mut a: Api, status: u32, content: &str) -> Api {
    a.backend = Some(api::Backend::Mock(MockBackend {
        status_code: status,
        result_content: content.into(),
    }));
    a
}

pub fn req_param(name: &str, location: ParamLocation, required: bool) -> RequestParam {
    RequestParam {
        name: name.into(),
        location: location as i32,
        r#type: "STRING".into(),
        required,
        ..Default::default()
    }
}

pub fn backend_param(
    name: &str,
    location: ParamLocation,
    origin: BackendParamOrigin,
    value: &str,
    from: ParamLocation,
) -> BackendParam {
    BackendParam {
        name: name.into(),
        location: location as i32,
        origin: origin as i32,
        value: value.into(),
        req_param_location: from as i32,
    }
}

/// Starts a fake control plane, an echo backend and a gateway, pushes `apis` as version 1 and
/// waits for the ACK and readiness.
pub struct Stack {
    pub cp: FakeControlPlane,
    pub backend: EchoBackend,
    pub gw: RunningGateway,
    pub cache: tempfile::TempDir,
}

impl Stack {
    pub async fn start(apis: impl FnOnce(SocketAddr) -> Vec<Api>) -> Self {
        Self::start_with(apis, |_| {}).await
    }

    pub async fn start_with(
        apis: impl FnOnce(SocketAddr) -> Vec<Api>,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        Self::start_snapshot(|backend| snapshot("epoch-1", 1, apis(backend)), tweak).await
    }

    /// Like [`Stack::start_with`] with a whole snapshot (which must be version 1).
    pub async fn start_snapshot(
        make: impl FnOnce(SocketAddr) -> Snapshot,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let cp = FakeControlPlane::start(TOKEN).await;
        let backend = EchoBackend::start().await;
        let cache = tempfile::tempdir().unwrap();
        cp.push(make(backend.addr));
        let mut cfg = config(&cp.url(), cache.path(), TOKEN);
        tweak(&mut cfg);
        let gw = RunningGateway::start(cfg).await;
        assert_eq!(cp.answer(1).await, Ok(()));
        gw.wait_ready().await;
        Self {
            cp,
            backend,
            gw,
            cache,
        }
    }
}
