//! Holds the current snapshot of every instance and the replicas that run them.
//!
//! Each instance has a `watch` channel with its latest snapshot: a replica's stream waits on it,
//! so a publish reaches every connected replica as soon as it is committed, without polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use apig_proto as pb;
use serde::Serialize;
use tokio::sync::watch;

pub type SnapshotRx = watch::Receiver<Option<Arc<pb::Snapshot>>>;

/// What the control plane knows about one connected (or recently connected) replica.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaStatus {
    pub node_id: String,
    pub instance_id: String,
    pub address: String,
    pub gateway_version: String,
    /// `connected` or `disconnected`.
    pub status: &'static str,
    pub applied_version: u64,
    pub desired_version: u64,
    /// The reason of the last NACK, if the replica rejected the desired version.
    pub last_error: Option<String>,
    pub connected_at: String,
    pub last_seen: String,
    /// Milliseconds from publishing the snapshot the replica last ACKed to that ACK.
    pub apply_lag_ms: Option<u64>,
    /// Which connection of this node the entry describes: a reconnecting replica takes over its
    /// entry, and the old stream's late goodbye must not mark the new one disconnected.
    #[serde(skip)]
    pub connection: u64,
}

/// At most this many disconnected replicas are remembered, so churn cannot grow memory.
const MAX_DISCONNECTED: usize = 256;

#[derive(Default)]
pub struct Publisher {
    channels: Mutex<HashMap<String, watch::Sender<Option<Arc<pb::Snapshot>>>>>,
    replicas: Mutex<HashMap<(String, String), ReplicaStatus>>,
    /// Per instance: bumped whenever its set of connected replicas changes, so every stream can
    /// recompute its replica's share of cluster-wide limits.
    membership: Mutex<HashMap<String, watch::Sender<u64>>>,
    connections: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent under every operation below (single inserts/removes), so a
    // poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `snapshot` the instance's current one and wakes its replicas' streams.
    pub fn publish(&self, snapshot: pb::Snapshot) {
        let instance = snapshot.instance_id.clone();
        let snapshot = Some(Arc::new(snapshot));
        let mut channels = lock(&self.channels);
        match channels.get(&instance) {
            Some(tx) => {
                tx.send_replace(snapshot);
            }
            None => {
                channels.insert(instance, watch::channel(snapshot).0);
            }
        }
    }

    /// The current snapshot version of every instance.
    pub fn versions(&self) -> Vec<(String, u64)> {
        lock(&self.channels)
            .iter()
            .filter_map(|(i, tx)| tx.borrow().as_ref().map(|s| (i.clone(), s.version)))
            .collect()
    }

    /// Every known replica of every instance.
    pub fn all_replicas(&self) -> Vec<ReplicaStatus> {
        lock(&self.replicas).values().cloned().collect()
    }

    pub fn current(&self, instance: &str) -> Option<Arc<pb::Snapshot>> {
        lock(&self.channels)
            .get(instance)
            .and_then(|tx| tx.borrow().clone())
    }

    pub fn subscribe(&self, instance: &str) -> SnapshotRx {
        let mut channels = lock(&self.channels);
        channels
            .entry(instance.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Forgets a deleted instance; its streams see the channel close.
    pub fn remove(&self, instance: &str) {
        lock(&self.channels).remove(instance);
    }

    /// A fresh connection number for [`ReplicaStatus::connection`].
    pub fn next_connection(&self) -> u64 {
        self.connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    pub fn membership(&self, instance: &str) -> watch::Receiver<u64> {
        lock(&self.membership)
            .entry(instance.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn membership_changed(&self, instance: &str) {
        if let Some(tx) = lock(&self.membership).get(instance) {
            tx.send_modify(|g| *g += 1);
        }
    }

    /// This node's share of cluster-wide limits: its index among the instance's connected
    /// replicas (ordered by node id) and their count.
    pub fn share(&self, instance: &str, node: &str) -> (u32, u32) {
        let mut nodes: Vec<String> = lock(&self.replicas)
            .values()
            .filter(|r| r.instance_id == instance && r.status == "connected")
            .map(|r| r.node_id.clone())
            .collect();
        nodes.sort();
        let index = nodes.iter().position(|n| n == node).unwrap_or(0);
        (index as u32, nodes.len().max(1) as u32)
    }

    /// Marks the connection `connection` of a node gone, unless a newer one took over.
    pub fn replica_disconnected(&self, instance: &str, node: &str, connection: u64) {
        let changed = match lock(&self.replicas).get_mut(&(instance.to_owned(), node.to_owned())) {
            Some(r) if r.connection == connection => {
                r.status = "disconnected";
                r.last_seen = apig_model::time::now_rfc3339();
                true
            }
            _ => false,
        };
        if changed {
            self.membership_changed(instance);
        }
    }

    pub fn replica_connected(&self, status: ReplicaStatus) {
        let instance = status.instance_id.clone();
        self.insert_replica(status);
        self.membership_changed(&instance);
    }

    fn insert_replica(&self, status: ReplicaStatus) {
        let mut replicas = lock(&self.replicas);
        replicas.insert((status.instance_id.clone(), status.node_id.clone()), status);
        let disconnected: Vec<_> = replicas
            .iter()
            .filter(|(_, r)| r.status == "disconnected")
            .map(|(k, r)| (k.clone(), r.last_seen.clone()))
            .collect();
        if disconnected.len() > MAX_DISCONNECTED {
            let mut oldest = disconnected;
            oldest.sort_by(|a, b| a.1.cmp(&b.1));
            for (k, _) in oldest.iter().take(oldest.len() - MAX_DISCONNECTED) {
                replicas.remove(k);
            }
        }
    }

    pub fn update_replica(&self, instance: &str, node: &str, f: impl FnOnce(&mut ReplicaStatus)) {
        if let Some(r) = lock(&self.replicas).get_mut(&(instance.to_owned(), node.to_owned())) {
            f(r);
        }
    }

    pub fn replicas(&self, instance: &str) -> Vec<ReplicaStatus> {
        let mut out: Vec<_> = lock(&self.replicas)
            .values()
            .filter(|r| r.instance_id == instance)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_each_publish() {
        let p = Publisher::new();
        let mut rx = p.subscribe("i");
        assert!(rx.borrow().is_none());
        p.publish(pb::Snapshot {
            instance_id: "i".into(),
            version: 1,
            ..Default::default()
        });
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().version, 1);
        assert_eq!(p.current("i").unwrap().version, 1);
        assert!(p.current("other").is_none());
    }
}
