//! The discovery service: replicas subscribe to their instance's snapshots over one
//! bidirectional stream (see `proto/apig/v1/discovery.proto`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apig_proto::cluster::ReplicaIdentity;
use apig_proto::discovery_server::{Discovery, DiscoveryServer};
use apig_proto::{
    control_message, replica_message, ControlMessage, ReplicaMessage, ReplicaShare, UsageAck,
    UsageReport,
};
use futures_util::Stream;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::publisher::ReplicaStatus;
use crate::tx::Reader;
use crate::{keys, ControlState};

/// A replica must say who it is this soon after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on what a replica may send us.
const MAX_ID_LEN: usize = 128;

pub struct DiscoveryService {
    state: Arc<ControlState>,
    /// The link runs mutual TLS: every replica presents a certificate whose identity names the
    /// instance it may join.
    require_identity: bool,
}

/// Wraps the service with the cluster-token check. With `require_identity` (mutual TLS on the
/// listener), a replica's certificate must also name the instance it says hello for.
pub fn server(
    state: Arc<ControlState>,
    cluster_token: String,
    require_identity: bool,
) -> tonic::service::interceptor::InterceptedService<
    DiscoveryServer<DiscoveryService>,
    impl tonic::service::Interceptor + Clone,
> {
    let expected = format!("Bearer {cluster_token}").into_bytes();
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Constant-time: the token must not leak through response timing.
        if bool::from(presented.ct_eq(&expected)) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("invalid cluster token"))
        }
    };
    tonic::service::interceptor::InterceptedService::new(
        DiscoveryServer::new(DiscoveryService {
            state,
            require_identity,
        })
        .max_decoding_message_size(64 * 1024),
        check,
    )
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

fn bounded(s: &str) -> Result<&str, Status> {
    if s.is_empty() || s.len() > MAX_ID_LEN || s.chars().any(|c| c.is_control()) {
        return Err(Status::invalid_argument(
            "instance_id and node_id must be 1 to 128 printable characters",
        ));
    }
    Ok(s)
}

/// The identity in the verified client certificate (the TLS layer already checked it chains to
/// the cluster CA).
fn replica_identity<T>(req: &Request<T>) -> Result<ReplicaIdentity, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a replica certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a replica certificate is required"))?;
    ReplicaIdentity::from_certificate(leaf).map_err(|e| Status::permission_denied(e.to_string()))
}

/// Whether a replica with this certificate identity may join `instance` as `node`.
fn admit(identity: &ReplicaIdentity, instance: &str, node: &str) -> Result<(), Status> {
    if identity.instance_id != instance {
        return Err(Status::permission_denied(format!(
            "this replica's certificate is for instance {}, not {instance}",
            identity.instance_id
        )));
    }
    match &identity.node_id {
        Some(named) if named != node => Err(Status::permission_denied(format!(
            "this replica's certificate is for node {named}, not {node}"
        ))),
        _ => Ok(()),
    }
}

/// Counts a replica's usage report for the instance of its stream (and only that instance),
/// against the APIs of the instance's current snapshot.
fn ingest_usage(state: &ControlState, instance: &str, node: &str, report: &UsageReport) {
    let snapshot = state.publisher.current(instance);
    let groups: std::collections::HashMap<&str, &str> = snapshot
        .iter()
        .flat_map(|s| s.apis.iter())
        .map(|a| (a.id.as_str(), a.group_id.as_str()))
        .collect();
    let now = apig_model::time::now_unix_ms();
    match state.usage.ingest(instance, report, &groups, now) {
        Ok(crate::usage::Ingested::Applied { entries, ignored }) => {
            if ignored > 0 {
                tracing::warn!(%instance, %node, seq = report.seq, entries, ignored, "usage report entries ignored (unknown API, out of the retention, or over a bound)");
            } else {
                tracing::debug!(%instance, %node, seq = report.seq, entries, "usage report applied");
            }
        }
        Ok(crate::usage::Ingested::Duplicate) => {
            tracing::debug!(%instance, %node, seq = report.seq, "usage report already applied");
        }
        Err(error) => {
            tracing::warn!(%instance, %node, seq = report.seq, %error, "usage report refused");
        }
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type StreamStream = OutStream;

    async fn stream(
        &self,
        req: Request<Streaming<ReplicaMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let identity = if self.require_identity {
            Some(replica_identity(&req)?)
        } else {
            None
        };
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(ReplicaMessage {
                msg: Some(replica_message::Msg::Hello(h)),
            }))) => h,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no hello")),
            _ => return Err(Status::invalid_argument("the first message must be hello")),
        };
        let instance = bounded(&hello.instance_id)?.to_owned();
        let node = bounded(&hello.node_id)?.to_owned();
        if let Some(identity) = &identity {
            admit(identity, &instance, &node).inspect_err(|e| {
                tracing::warn!(%peer, %instance, %node, reason = e.message(), "replica refused");
            })?;
        }
        let exists = Reader::exists(self.state.reader(), &keys::instance(&instance))
            .map_err(|e| Status::unavailable(e.message))?;
        if !exists {
            return Err(Status::not_found(format!(
                "instance {instance} does not exist"
            )));
        }
        let now = apig_model::time::now_rfc3339();
        let connection = self.state.publisher.next_connection();
        self.state.publisher.replica_connected(ReplicaStatus {
            node_id: node.clone(),
            instance_id: instance.clone(),
            address: peer,
            gateway_version: hello.gateway_version.chars().take(64).collect(),
            status: "connected",
            applied_version: if hello.applied_epoch == self.state.epoch {
                hello.applied_version
            } else {
                0
            },
            desired_version: 0,
            last_error: None,
            connected_at: now.clone(),
            last_seen: now,
            apply_lag_ms: None,
            connection,
        });
        tracing::info!(%instance, %node, applied = hello.applied_version, "replica connected");

        let (tx, rx) = mpsc::channel::<Result<ControlMessage, Status>>(2);
        let state = self.state.clone();
        let mut snapshots = state.publisher.subscribe(&instance);
        let mut membership = state.publisher.membership(&instance);
        let mut sent_share: Option<(u32, u32)> = None;
        let (mut sent_epoch, mut sent_version) = (hello.applied_epoch, hello.applied_version);
        tokio::spawn(async move {
            loop {
                // Send the current snapshot unless the replica already has it.
                let current = snapshots.borrow_and_update().clone();
                if let Some(snap) = current {
                    if snap.epoch != sent_epoch || snap.version != sent_version {
                        sent_epoch = snap.epoch.clone();
                        sent_version = snap.version;
                        let msg = ControlMessage {
                            msg: Some(control_message::Msg::Snapshot((*snap).clone())),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                }
                // Send this replica's share of cluster-wide limits when it changes.
                membership.borrow_and_update();
                let share = state.publisher.share(&instance, &node);
                if sent_share != Some(share) {
                    sent_share = Some(share);
                    let msg = ControlMessage {
                        msg: Some(control_message::Msg::Share(ReplicaShare {
                            index: share.0,
                            count: share.1,
                        })),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                }
                tokio::select! {
                    changed = membership.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            // The instance was deleted.
                            let _ = tx.send(Err(Status::not_found("instance deleted"))).await;
                            break;
                        }
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(ReplicaMessage { msg: Some(replica_message::Msg::Ack(ack)) })) => {
                            tracing::info!(%instance, %node, version = ack.version, "replica applied snapshot");
                            let lag = state
                                .publisher
                                .current(&instance)
                                .filter(|s| s.version == ack.version)
                                .map(|s| {
                                    let now = apig_model::time::now_unix_ms();
                                    u64::try_from(now.saturating_sub(s.created_at_unix_ms)).unwrap_or(0)
                                });
                            state.publisher.update_replica(&instance, &node, |r| {
                                r.applied_version = ack.version;
                                if lag.is_some() {
                                    r.apply_lag_ms = lag;
                                }
                                r.last_error = None;
                                r.last_seen = apig_model::time::now_rfc3339();
                            });
                        }
                        Ok(Some(ReplicaMessage { msg: Some(replica_message::Msg::Nack(nack)) })) => {
                            let reason: String = nack.reason.chars().take(1024).collect();
                            tracing::warn!(%instance, %node, version = nack.version, %reason, "replica rejected snapshot");
                            state.publisher.update_replica(&instance, &node, |r| {
                                r.last_error = Some(format!("version {}: {reason}", nack.version));
                                r.last_seen = apig_model::time::now_rfc3339();
                            });
                        }
                        Ok(Some(ReplicaMessage { msg: Some(replica_message::Msg::Usage(report)) })) => {
                            let seq = report.seq;
                            ingest_usage(&state, &instance, &node, &report);
                            // Acknowledged even when refused: a report that cannot be counted
                            // must not hold back the replica's next ones.
                            let ack = ControlMessage {
                                msg: Some(control_message::Msg::UsageAck(UsageAck { seq })),
                            };
                            if tx.send(Ok(ack)).await.is_err() {
                                break;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            tracing::info!(%instance, %node, "replica disconnected");
            state
                .publisher
                .replica_disconnected(&instance, &node, connection);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_admits_its_instance_and_named_node_only() {
        let any_node = ReplicaIdentity::new("inst-a", None).unwrap();
        assert!(admit(&any_node, "inst-a", "n1").is_ok());
        let refused = admit(&any_node, "inst-b", "n1").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("inst-a"),
            "{}",
            refused.message()
        );

        let one_node = ReplicaIdentity::new("inst-a", Some("n1")).unwrap();
        assert!(admit(&one_node, "inst-a", "n1").is_ok());
        assert_eq!(
            admit(&one_node, "inst-a", "n2").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
