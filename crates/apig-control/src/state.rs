//! Shared state of the control plane, and the one write path: every management change goes
//! through [`ControlState::commit`], which recompiles the instance's snapshot from the pending
//! change, refuses the change if that snapshot does not compile, and commits the change together
//! with the new snapshot version before any replica hears of it.

use std::sync::Arc;

use apig_model::instance::Instance;
use apig_model::ApiError;
use apig_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::store_error;
use crate::keys;
use crate::publisher::Publisher;
use crate::snapshot;
use crate::tx::{Reader, Tx};

pub struct ControlState {
    pub store: Arc<dyn Store>,
    /// Serialises management writes: each handler reads, validates and commits under it, so
    /// checks such as name uniqueness cannot race.
    write: Mutex<()>,
    pub publisher: Publisher,
    pub epoch: String,
    /// `sl_domain` of a group is `<group id>.<domain_suffix>`.
    pub domain_suffix: String,
    /// Signs IAM tokens; its public key travels in every snapshot.
    pub token_signer: apig_sign::token::TokenSigner,
    pub metrics: crate::metrics::ControlMetrics,
    /// The audit log of management writes (`audit.rs`).
    pub audit: crate::audit::AuditLog,
    /// Traffic statistics reported by the replicas (`usage.rs`), in memory.
    pub usage: crate::usage::UsageStore,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct SnapshotMeta {
    pub version: u64,
    pub digest: String,
}

impl ControlState {
    pub fn new(
        store: Arc<dyn Store>,
        epoch: String,
        domain_suffix: String,
        token_signer: apig_sign::token::TokenSigner,
        metrics: crate::metrics::ControlMetrics,
    ) -> Self {
        Self {
            store,
            write: Mutex::new(()),
            publisher: Publisher::new(),
            epoch,
            domain_suffix,
            token_signer,
            metrics,
            audit: crate::audit::AuditLog::default(),
            usage: crate::usage::UsageStore::default(),
        }
    }

    pub fn reader(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().await
    }

    pub fn tx(&self) -> Tx<'_> {
        Tx::new(self.store.as_ref())
    }

    /// Commits `tx` durably. For each instance in `instances` the snapshot is recompiled from
    /// the pending state; a change of content bumps its version in the same atomic commit, and
    /// the new snapshot is handed to the replicas after the commit.
    pub async fn commit(&self, mut tx: Tx<'_>, instances: &[&str]) -> Result<(), ApiError> {
        let mut to_publish = Vec::new();
        let mut removed = Vec::new();
        for &instance in instances {
            if !tx.exists(&keys::instance(instance))? {
                tx.delete(keys::snapshot_meta(instance));
                removed.push(instance.to_owned());
                continue;
            }
            let token_keys = [self.token_signer.public_key().to_vec()];
            let compiled = snapshot::compile(&tx, instance, &self.epoch, &token_keys)?;
            let meta: SnapshotMeta = tx
                .get_json(&keys::snapshot_meta(instance))?
                .unwrap_or_default();
            let current = self.publisher.current(instance);
            if meta.digest != compiled.digest || current.is_none() {
                let version = if meta.digest != compiled.digest {
                    meta.version + 1
                } else {
                    meta.version
                };
                tx.put(
                    keys::snapshot_meta(instance),
                    &SnapshotMeta {
                        version,
                        digest: compiled.digest.clone(),
                    },
                )?;
                let mut s = compiled.snapshot;
                s.version = version;
                s.created_at_unix_ms = apig_model::time::now_unix_ms();
                to_publish.push(s);
            }
        }
        if !tx.is_empty() {
            let batch = tx.into_batch();
            let store = self.store.clone();
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || store.commit(batch))
                .await
                .map_err(ApiError::internal)?
                .map_err(store_error)?;
            self.metrics
                .store_commit
                .observe(started.elapsed().as_secs_f64());
        }
        for s in to_publish {
            tracing::info!(instance = %s.instance_id, version = s.version, apis = s.apis.len(), "publishing snapshot");
            self.publisher.publish(s);
        }
        for i in removed {
            self.publisher.remove(&i);
            self.usage.forget_instance(&i);
        }
        Ok(())
    }

    /// On start: compile every instance's snapshot from the store (bumping its version if the
    /// stored state changed since it was last published) so replicas get it on connect.
    pub async fn load_snapshots(&self) -> Result<(), ApiError> {
        let _guard = self.write_lock().await;
        let instances: Vec<Instance> = Reader::scan_json(self.reader(), keys::INSTANCES)?;
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        self.commit(self.tx(), &ids).await
    }

    /// Takes the write lock and checks that the instance belongs to the project: every write
    /// handler starts here, so the tenancy check cannot be forgotten or raced.
    pub async fn lock_instance(
        &self,
        project: &str,
        id: &str,
    ) -> Result<(MutexGuard<'_, ()>, Instance), ApiError> {
        let guard = self.write_lock().await;
        let instance = self.instance(self.reader(), project, id)?;
        Ok((guard, instance))
    }

    /// Writes one document of `instance` and commits (with the snapshot recompile).
    pub async fn save<T: Serialize>(
        &self,
        instance: &str,
        key: String,
        value: &T,
    ) -> Result<(), ApiError> {
        let mut tx = self.tx();
        tx.put(key, value)?;
        self.commit(tx, &[instance]).await
    }

    /// The instance `id` if it belongs to `project`; otherwise APIG.3030 (the same answer as for
    /// an unknown id, so other tenants' instances cannot be discovered).
    pub fn instance(
        &self,
        r: &(impl Reader + ?Sized),
        project: &str,
        id: &str,
    ) -> Result<Instance, ApiError> {
        match r.get_json::<Instance>(&keys::instance(id))? {
            Some(i) if i.project_id == project => Ok(i),
            _ => Err(ApiError::instance_not_found(id)),
        }
    }
}
