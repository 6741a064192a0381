//! The control plane: the APIG V2 management API over sled, the snapshot compiler and publisher,
//! and the gRPC discovery service gateway replicas subscribe to.
//!
//! Flow of a change: a handler validates the request, opens a [`tx::Tx`], writes, and calls
//! [`ControlState::commit`], which recompiles the instance's snapshot from the pending state
//! (refusing the change if it would not compile), commits durably, and wakes every replica
//! stream of that instance through [`publisher::Publisher`].

pub mod audit;
pub mod auth;
pub mod backend_address;
pub mod backup;
pub mod bootstrap;
mod certs;
mod error;
pub mod grpc;
mod keys;
pub mod metrics;
mod multipart;
pub mod otel;
pub mod publisher;
mod routes;
pub mod snapshot;
mod state;
pub mod tx;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use apig_store::{SledStore, Store};
pub use bootstrap::{Bootstrap, Seed};
pub use state::ControlState;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("store: {0}")]
    Store(#[from] apig_store::StoreError),
    #[error("{0}")]
    Api(#[from] apig_model::ApiError),
    #[error("server: {0}")]
    Server(String),
}

#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub data_dir: PathBuf,
    pub mgmt_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Shared secret of the replicas; generated and stored under the data dir when absent.
    pub cluster_token: Option<String>,
    /// Groups get `<group id>.<domain_suffix>` as their generated sub-domain.
    pub domain_suffix: String,
    /// Admin listener (`/health`, `/ready`, `/metrics`); none when `None`.
    pub admin_listen: Option<SocketAddr>,
    pub seed: Seed,
    /// Mutual TLS on the gRPC listener: this plane's certificate, and the cluster CA replicas'
    /// certificates must chain to (see [`apig_proto::cluster`]).
    pub cluster_tls: Option<apig_proto::cluster::TlsMaterial>,
    /// Serve the gRPC link in plaintext on a non-loopback address (the cluster token alone then
    /// authenticates replicas, and nothing hides the snapshots on the wire).
    pub allow_plaintext_grpc: bool,
}

/// A started control plane.
pub struct RunningControl {
    pub mgmt_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub bootstrap: Bootstrap,
    pub cluster_token: String,
    pub state: Arc<ControlState>,
    task: tokio::task::JoinHandle<Result<(), ControlError>>,
}

impl RunningControl {
    /// Waits until the servers stop (after the shutdown future given to [`start`] resolves).
    pub async fn wait(self) -> Result<(), ControlError> {
        self.task
            .await
            .map_err(|e| ControlError::Server(e.to_string()))?
    }
}

fn private_dir(dir: &std::path::Path) -> Result<(), ControlError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ControlError::Io(format!("{}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ControlError::Io(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The Ed25519 seed that signs IAM tokens: made once, kept in the store (whose directory is
/// owner-only, like every other secret of the control plane).
fn token_signer(store: &dyn Store) -> Result<apig_sign::token::TokenSigner, ControlError> {
    use apig_store::StoreExt;
    let seed_hex = match store.get_json::<String>(keys::TOKEN_SEED)? {
        Some(s) => s,
        None => {
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let s = hex::encode(seed);
            let mut b = apig_store::Batch::new();
            b.put_json(keys::TOKEN_SEED, &s)?;
            store.commit(b)?;
            s
        }
    };
    let bytes =
        hex::decode(&seed_hex).map_err(|e| ControlError::Config(format!("token seed: {e}")))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ControlError::Config("token seed: not 32 bytes".into()))?;
    Ok(apig_sign::token::TokenSigner::from_seed(&seed))
}

fn epoch(store: &dyn Store) -> Result<String, ControlError> {
    use apig_store::StoreExt;
    if let Some(e) = store.get_json::<String>(keys::EPOCH)? {
        return Ok(e);
    }
    let e = apig_model::ids::new_id();
    let mut b = apig_store::Batch::new();
    b.put_json(keys::EPOCH, &e)?;
    store.commit(b)?;
    Ok(e)
}

/// Opens the store, bootstraps on first start, binds both listeners and serves until
/// `shutdown` resolves.
pub async fn start(
    config: ControlConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningControl, ControlError> {
    // Refuse an exposed plaintext link before anything is created or bound.
    let grpc_scheme = match (&config.cluster_tls, config.grpc_listen.ip().is_loopback()) {
        (Some(_), _) => "https",
        (None, true) => "http",
        (None, false) if config.allow_plaintext_grpc => {
            tracing::warn!(grpc_addr = %config.grpc_listen, "plaintext gRPC on a non-loopback address, as allowed: only the cluster token protects it");
            "http"
        }
        (None, false) => {
            return Err(ControlError::Config(format!(
                "the gRPC listener {} is not on loopback: give it mutual TLS \
                 (--cluster-ca, --cluster-cert, --cluster-key; `apig certs` makes them) or allow \
                 plaintext explicitly (--allow-plaintext-cluster)",
                config.grpc_listen
            )))
        }
    };
    private_dir(&config.data_dir)?;
    let store_dir = config.data_dir.join("store");
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || SledStore::open(&store_dir))
            .await
            .map_err(|e| ControlError::Server(e.to_string()))??,
    );
    let epoch = epoch(store.as_ref())?;
    let signer = token_signer(store.as_ref())?;
    let metrics = metrics::ControlMetrics::new()
        .map_err(|e| ControlError::Config(format!("metrics: {e}")))?;
    let state = Arc::new(ControlState::new(
        store,
        epoch,
        config.domain_suffix.to_ascii_lowercase(),
        signer,
        metrics,
    ));
    let bootstrap = bootstrap::run(&state, &config.data_dir, config.seed.clone()).await?;
    routes::migrate_embedded(&state).await?;
    state.load_snapshots().await?;
    let cluster_token = bootstrap::cluster_token(&config.data_dir, config.cluster_token.clone())?;

    let mgmt = TcpListener::bind(config.mgmt_listen).await.map_err(|e| {
        ControlError::Io(format!("management listener {}: {e}", config.mgmt_listen))
    })?;
    let grpc = TcpListener::bind(config.grpc_listen)
        .await
        .map_err(|e| ControlError::Io(format!("gRPC listener {}: {e}", config.grpc_listen)))?;
    let mgmt_addr = mgmt
        .local_addr()
        .map_err(|e| ControlError::Io(e.to_string()))?;
    let grpc_addr = grpc
        .local_addr()
        .map_err(|e| ControlError::Io(e.to_string()))?;
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| ControlError::Io(format!("admin listener {addr}: {e}")))?,
        ),
        None => None,
    };
    println!("apig: listening management http://{mgmt_addr}");
    println!("apig: listening grpc {grpc_scheme}://{grpc_addr}");

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    if let Some(admin) = admin {
        let admin_addr = admin
            .local_addr()
            .map_err(|e| ControlError::Io(e.to_string()))?;
        println!("apig: listening control-admin http://{admin_addr}");
        let app = routes::admin_router(state.clone());
        let mut stop_admin = stop_tx.subscribe();
        tokio::spawn(async move {
            let served = axum::serve(admin, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_admin.recv().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    let app = routes::router(state.clone());
    let mut stop_mgmt = stop_tx.subscribe();
    let mgmt_task = tokio::spawn(async move {
        axum::serve(
            mgmt,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_mgmt.recv().await;
        })
        .await
        .map_err(|e| ControlError::Server(format!("management server: {e}")))
    });
    let mut stop_grpc = stop_tx.subscribe();
    let svc = grpc::server(
        state.clone(),
        cluster_token.clone(),
        config.cluster_tls.is_some(),
    );
    let mut grpc_server = tonic::transport::Server::builder();
    if let Some(tls) = &config.cluster_tls {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &tls.cert_pem,
                &tls.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        grpc_server = grpc_server
            .tls_config(tls)
            .map_err(|e| ControlError::Config(format!("cluster TLS: {e}")))?;
    }
    let grpc_task = tokio::spawn(async move {
        grpc_server
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
            .add_service(svc)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                async move {
                    let _ = stop_grpc.recv().await;
                },
            )
            .await
            .map_err(|e| ControlError::Server(format!("gRPC server: {e}")))
    });
    let task = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
        mgmt_task
            .await
            .map_err(|e| ControlError::Server(e.to_string()))??;
        grpc_task
            .await
            .map_err(|e| ControlError::Server(e.to_string()))??;
        Ok(())
    });
    Ok(RunningControl {
        mgmt_addr,
        grpc_addr,
        bootstrap,
        cluster_token,
        state,
        task,
    })
}
