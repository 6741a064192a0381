//! Durable state behind a small store trait.
//!
//! The control plane keeps every resource as a JSON document under a string key
//! (`v1/<kind>/<scope>/<id>`) in one ordered keyspace. Writes go through [`Store::commit`]: a batch
//! is applied atomically and flushed to disk before the call returns, so a management write is
//! acknowledged only once it is durable. Every commit bumps a revision number.
//!
//! sled is pre-1.0 and says so; [`Store::export`] and [`import`] give a verified logical backup
//! that does not depend on its on-disk format.

mod memory;
mod sled_store;

use serde::{de::DeserializeOwned, Serialize};

pub use memory::MemoryStore;
pub use sled_store::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("stored document {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("backup is invalid: {0}")]
    InvalidBackup(String),
}

/// One change in a [`Batch`].
#[derive(Debug, Clone)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// Changes applied together or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serialises `value` as JSON under `key`.
    pub fn put_json<T: Serialize>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Engine(e.to_string()))?;
        self.ops.push(Op::Put(key.into(), bytes));
        Ok(())
    }

    pub fn put_raw(&mut self, key: impl Into<String>, value: Vec<u8>) {
        self.ops.push(Op::Put(key.into(), value));
    }

    pub fn delete(&mut self, key: impl Into<String>) {
        self.ops.push(Op::Delete(key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// The key/value store the control plane runs on.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Applies `batch` atomically and durably (flushed) and returns the new revision.
    fn commit(&self, batch: Batch) -> Result<u64, StoreError>;
    /// The revision of the last commit (0 for an empty store).
    fn revision(&self) -> u64;
}

/// Typed reads on top of any [`Store`].
pub trait StoreExt: Store {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: key.to_owned(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    fn scan_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.scan(prefix)?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    key: k,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// A logical backup of every entry: one JSON document with a SHA-free but verifiable shape
    /// (`count` must match), independent of the engine's on-disk format.
    fn export(&self) -> Result<serde_json::Value, StoreError> {
        let entries = self.scan("")?;
        let mut docs = serde_json::Map::new();
        for (k, v) in &entries {
            let doc: serde_json::Value =
                serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                    key: k.clone(),
                    reason: e.to_string(),
                })?;
            docs.insert(k.clone(), doc);
        }
        Ok(serde_json::json!({
            "format": "apig-store-backup/1",
            "revision": self.revision(),
            "count": entries.len(),
            "entries": docs,
        }))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Loads a backup made by [`StoreExt::export`] into an empty store, after checking it whole.
pub fn import(store: &dyn Store, backup: &serde_json::Value) -> Result<u64, StoreError> {
    if backup.get("format").and_then(|f| f.as_str()) != Some("apig-store-backup/1") {
        return Err(StoreError::InvalidBackup("unknown format".into()));
    }
    let entries = backup
        .get("entries")
        .and_then(|e| e.as_object())
        .ok_or_else(|| StoreError::InvalidBackup("no entries".into()))?;
    let count = backup.get("count").and_then(|c| c.as_u64());
    if count != Some(entries.len() as u64) {
        return Err(StoreError::InvalidBackup(
            "entry count does not match".into(),
        ));
    }
    if !store.scan("")?.is_empty() {
        return Err(StoreError::InvalidBackup(
            "the target store is not empty".into(),
        ));
    }
    let mut batch = Batch::new();
    for (k, v) in entries {
        batch.put_json(k.clone(), v)?;
    }
    store.commit(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn exercise(store: &dyn Store) {
        assert_eq!(store.revision(), 0);
        let mut b = Batch::new();
        b.put_json("v1/a/1", &serde_json::json!({"n": 1})).unwrap();
        b.put_json("v1/a/2", &serde_json::json!({"n": 2})).unwrap();
        b.put_json("v1/b/1", &serde_json::json!({"n": 3})).unwrap();
        assert_eq!(store.commit(b).unwrap(), 1);
        let a: Vec<serde_json::Value> = store.scan_json("v1/a/").unwrap();
        assert_eq!(a.len(), 2);
        let mut b = Batch::new();
        b.delete("v1/a/1");
        b.put_json("v1/a/3", &3).unwrap();
        assert_eq!(store.commit(b).unwrap(), 2);
        let keys: Vec<String> = store
            .scan("v1/a/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["v1/a/2", "v1/a/3"]);
        assert_eq!(store.get_json::<i32>("v1/a/3").unwrap(), Some(3));
        assert!(store.get("v1/a/1").unwrap().is_none());
        assert_eq!(store.revision(), 2);
    }

    #[test]
    fn memory_store_contract() {
        exercise(&MemoryStore::new());
    }

    #[test]
    fn sled_store_contract_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            exercise(&s);
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.revision(), 2, "revision survives a restart");
        assert_eq!(s.get_json::<i32>("v1/a/3").unwrap(), Some(3));
    }

    #[test]
    fn export_import_round_trip_and_verification() {
        let src = MemoryStore::new();
        let mut b = Batch::new();
        b.put_json("v1/x/1", &serde_json::json!({"a": [1, 2]}))
            .unwrap();
        src.commit(b).unwrap();
        let backup = src.export().unwrap();
        let dst = MemoryStore::new();
        import(&dst, &backup).unwrap();
        assert_eq!(dst.export().unwrap()["entries"], backup["entries"]);
        // Not empty any more: a second import is refused.
        assert!(import(&dst, &backup).is_err());
        let mut tampered = backup.clone();
        tampered["count"] = 5.into();
        assert!(import(&MemoryStore::new(), &tampered).is_err());
    }
}
