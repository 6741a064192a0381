//! A write transaction: reads see the store plus this transaction's own pending writes, so a
//! handler can validate the state it is about to create (including compiling the snapshot it
//! would publish) before anything is committed.

use std::collections::BTreeMap;

use apig_model::ApiError;
use apig_store::{Batch, Store, StoreExt};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::store_error;

/// Read access shared by the store itself and a transaction.
pub trait Reader {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError>;
    fn scan_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, ApiError>;
    fn exists(&self, key: &str) -> Result<bool, ApiError>;
}

impl Reader for dyn Store {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        StoreExt::get_json(self, key).map_err(store_error)
    }
    fn scan_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, ApiError> {
        StoreExt::scan_json(self, prefix).map_err(store_error)
    }
    fn exists(&self, key: &str) -> Result<bool, ApiError> {
        self.get(key).map(|v| v.is_some()).map_err(store_error)
    }
}

pub struct Tx<'s> {
    store: &'s dyn Store,
    pending: BTreeMap<String, Option<Vec<u8>>>,
}

impl<'s> Tx<'s> {
    pub fn new(store: &'s dyn Store) -> Self {
        Self {
            store,
            pending: BTreeMap::new(),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: impl Into<String>, value: &T) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(value).map_err(ApiError::internal)?;
        self.pending.insert(key.into(), Some(bytes));
        Ok(())
    }

    pub fn delete(&mut self, key: impl Into<String>) {
        self.pending.insert(key.into(), None);
    }

    /// Deletes every key under `prefix`, as seen by this transaction.
    pub fn delete_prefix(&mut self, prefix: &str) -> Result<(), ApiError> {
        for key in self.keys(prefix)? {
            self.delete(key);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn into_batch(self) -> Batch {
        let mut b = Batch::new();
        for (k, v) in self.pending {
            match v {
                Some(bytes) => b.put_raw(k, bytes),
                None => b.delete(k),
            }
        }
        b
    }

    fn merged(&self, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .store
            .scan(prefix)
            .map_err(store_error)?
            .into_iter()
            .collect();
        for (k, v) in self.pending.range(prefix.to_owned()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(bytes) => {
                    out.insert(k.clone(), bytes.clone());
                }
                None => {
                    out.remove(k);
                }
            }
        }
        Ok(out)
    }

    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        Ok(self.merged(prefix)?.into_keys().collect())
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored document {key} is corrupt: {e}")))
}

impl Reader for Tx<'_> {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.pending.get(key) {
            Some(Some(bytes)) => decode(key, bytes).map(Some),
            Some(None) => Ok(None),
            None => Reader::get_json(self.store, key),
        }
    }

    fn scan_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, ApiError> {
        self.merged(prefix)?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    fn exists(&self, key: &str) -> Result<bool, ApiError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.is_some()),
            None => Reader::exists(self.store, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_store::MemoryStore;

    #[test]
    fn reads_see_pending_writes() {
        let store = MemoryStore::new();
        let mut b = Batch::new();
        b.put_json("v1/a/1", &1).unwrap();
        b.put_json("v1/a/2", &2).unwrap();
        store.commit(b).unwrap();
        let s: &dyn Store = &store;
        let mut tx = Tx::new(s);
        tx.put("v1/a/3", &3).unwrap();
        tx.delete("v1/a/1");
        let all: Vec<i32> = tx.scan_json("v1/a/").unwrap();
        assert_eq!(all, vec![2, 3]);
        assert!(!tx.exists("v1/a/1").unwrap());
        assert_eq!(Reader::get_json::<i32>(&tx, "v1/a/2").unwrap(), Some(2));
        // Nothing reached the store yet.
        assert_eq!(Reader::scan_json::<i32>(s, "v1/a/").unwrap(), vec![1, 2]);
        store.commit(tx.into_batch()).unwrap();
        assert_eq!(Reader::scan_json::<i32>(s, "v1/a/").unwrap(), vec![2, 3]);
    }
}
