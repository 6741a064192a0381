//! A real HTTP backend on loopback that answers with what it received, as JSON:
//! `{"method","path","query","headers":{name: value},"body","server"}` (`server`: its own
//! `host:port`, to tell members of a channel apart). `/sleep/<ms>` waits before answering;
//! `/status/<code>` answers with that status (the same JSON body).
//! Dropping it closes the listener and every open connection, like a crashed server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub struct EchoBackend {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A request as the backend received it (the first [`MAX_RECORDED`] are kept).
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query exactly as they arrived.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

const MAX_RECORDED: usize = 10_000;

async fn echo(
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    server: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut seen) = seen.lock() {
        if seen.len() < MAX_RECORDED {
            seen.push(SeenRequest {
                method: req.method().to_string(),
                target: req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            });
        }
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(ms) = parts
        .uri
        .path()
        .strip_prefix("/sleep/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        headers.insert(
            k.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
        );
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "server": server.to_string(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    if let Some(status) = parts
        .uri
        .path()
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| hyper::StatusCode::from_u16(c).ok())
    {
        *resp.status_mut() = status;
    }
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("x-backend", hyper::header::HeaderValue::from_static("echo"));
    Ok(resp)
}

impl EchoBackend {
    pub async fn start() -> EchoBackend {
        Self::start_at("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Listens on `addr` (a port a stopped backend used: a restart).
    pub async fn start_at(addr: SocketAddr) -> EchoBackend {
        Self::serve(addr, None).await
    }

    /// An HTTPS echo backend on 127.0.0.1 whose certificate (for `localhost` and `127.0.0.1`)
    /// is issued by a fresh test CA; returns the backend and the CA certificate (PEM) a
    /// gateway must trust to reach it.
    pub async fn start_tls() -> (EchoBackend, String) {
        let (config, ca) = tls_server_config(&[]);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let backend = Self::serve("127.0.0.1:0".parse().expect("addr"), Some(acceptor)).await;
        (backend, ca)
    }

    async fn serve(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> EchoBackend {
        let listener = TcpListener::bind(addr).await.expect("bind echo backend");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = hits.clone();
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set: aborting the accept task drops them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let counter = counter.clone();
                        let recorder = recorder.clone();
                        let tls = tls.clone();
                        connections.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                echo(req, counter.clone(), recorder.clone(), addr)
                            });
                            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                            match tls {
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                                    }
                                }
                                None => {
                                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                                }
                            }
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        EchoBackend {
            addr,
            hits,
            seen,
            task,
        }
    }

    /// The requests that reached the backend, oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests reached the backend.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// `host:port` for an API's `url_domain`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A function endpoint on loopback (what an OpenFaaS or Knative function is to the gateway): it
/// answers every POST with `handler(event)` as JSON, where `event` is the JSON body received.
/// The events received are kept for assertions.
pub struct FunctionServer {
    pub addr: SocketAddr,
    events: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

type Handler = Arc<dyn Fn(&serde_json::Value) -> FunctionReply + Send + Sync>;

/// What a [`FunctionServer`] answers: a status, a body, after a delay.
pub struct FunctionReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: std::time::Duration,
}

impl FunctionReply {
    /// `200` with `body` at once.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            body: body.into(),
            delay: std::time::Duration::ZERO,
        }
    }
}

impl FunctionServer {
    pub async fn start(
        handler: impl Fn(&serde_json::Value) -> String + Send + Sync + 'static,
    ) -> FunctionServer {
        Self::start_replying(move |event| FunctionReply::ok(handler(event))).await
    }

    /// Like [`FunctionServer::start`], with full control of the answer (status, delay).
    pub async fn start_replying(
        handler: impl Fn(&serde_json::Value) -> FunctionReply + Send + Sync + 'static,
    ) -> FunctionServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind function");
        let addr = listener.local_addr().expect("addr");
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let seen = events.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let (handler, seen) = (handler.clone(), seen.clone());
                        connections.spawn(async move {
                            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                                let (handler, seen) = (handler.clone(), seen.clone());
                                async move {
                                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                                    let reply = handler(&event);
                                    seen.lock().expect("events").push(event);
                                    tokio::time::sleep(reply.delay).await;
                                    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
                                    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                                    Ok::<_, Infallible>(response)
                                }
                            });
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        FunctionServer { addr, events, task }
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().expect("events").clone()
    }
}

impl Drop for FunctionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server configuration whose certificate (for `localhost` and `127.0.0.1`) is issued by a
/// fresh test CA, offering `alpn` protocols; returns it and the CA certificate (PEM) a client
/// must trust.
pub(crate) fn tls_server_config(alpn: &[&[u8]]) -> (rustls::ServerConfig, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "apig test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (config, ca.pem())
}
