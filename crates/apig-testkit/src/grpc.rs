//! A real gRPC backend on loopback (tonic), serving the test service `apig.test.v1.Echo`
//! (`proto/apig/test/v1/echo.proto`): in clear (h2c, tonic's own server) or over TLS with ALPN
//! `h2` (the same service served by hyper behind rustls). Dropping it stops it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

/// The generated messages, client and server of `apig.test.v1`.
pub mod proto {
    tonic::include_proto!("apig.test.v1");
}

use proto::echo_server::{Echo, EchoServer};
use proto::{CountRequest, SayReply, SayRequest};

/// The gRPC method paths, for routes and assertions.
pub const SAY_PATH: &str = "/apig.test.v1.Echo/Say";
pub const SERVICE_PATH: &str = "/apig.test.v1.Echo";

struct EchoService;

fn request_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        let request_id = request_id(&request);
        let body = request.into_inner();
        if body.fail_code != 0 {
            return Err(Status::new(
                Code::from(body.fail_code),
                format!("refused: {}", body.message),
            ));
        }
        Ok(Response::new(SayReply {
            message: body.message,
            index: 0,
            request_id,
        }))
    }

    type CountStream = Pin<Box<dyn Stream<Item = Result<SayReply, Status>> + Send>>;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let request_id = request_id(&request);
        let body = request.into_inner();
        let mut items: Vec<Result<SayReply, Status>> = (0..body.count)
            .map(|index| {
                Ok(SayReply {
                    message: format!("reply {index}"),
                    index,
                    request_id: request_id.clone(),
                })
            })
            .collect();
        if body.fail_code != 0 {
            items.push(Err(Status::new(
                Code::from(body.fail_code),
                body.fail_message,
            )));
        }
        let interval = std::time::Duration::from_millis(u64::from(body.interval_ms));
        let paced = futures_util::StreamExt::then(
            futures_util::stream::iter(items),
            move |item| async move {
                tokio::time::sleep(interval).await;
                item
            },
        );
        Ok(Response::new(Box::pin(paced)))
    }
}

pub struct GrpcBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcBackend {
    /// A cleartext (h2c) backend: tonic's server.
    pub async fn start() -> GrpcBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC backend");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(EchoServer::new(EchoService))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        GrpcBackend { addr, task }
    }

    /// A TLS backend offering only ALPN `h2`, with a certificate for `127.0.0.1` from a fresh
    /// test CA; returns it and the CA certificate (PEM) the gateway must trust.
    pub async fn start_tls() -> (GrpcBackend, String) {
        let (config, ca) = crate::backend::tls_server_config(&[b"h2"]);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC backend");
        let addr = listener.local_addr().expect("addr");
        let routes = tonic::service::Routes::new(EchoServer::new(EchoService));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let acceptor = acceptor.clone();
                        let service = TowerToHyperService::new(routes.clone());
                        connections.spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .http2_only()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        (GrpcBackend { addr, task }, ca)
    }

    /// `host:port` for an API's `url_domain`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC client of the test service that connects to `gateway` (h2c, prior knowledge) and
/// sends `:authority` `host`, so the gateway routes it to that host's group.
pub async fn client(
    gateway: SocketAddr,
    host: &str,
) -> proto::echo_client::EchoClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))
        .expect("endpoint")
        .origin(format!("http://{host}").parse().expect("origin"))
        .connect()
        .await
        .expect("connect to the gateway");
    proto::echo_client::EchoClient::new(channel)
}
