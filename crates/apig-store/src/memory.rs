//! An in-memory [`Store`] for unit tests of code above the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Batch, Op, Store, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<(BTreeMap<String, Vec<u8>>, u64)>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<String, Vec<u8>>, u64)> {
        // A panic while holding the lock cannot leave the map half-written (ops are applied to a
        // clone first), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().0.get(key).cloned())
    }

    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .0
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<u64, StoreError> {
        let mut guard = self.lock();
        let mut next = guard.0.clone();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    next.insert(k, v);
                }
                Op::Delete(k) => {
                    next.remove(&k);
                }
            }
        }
        guard.0 = next;
        guard.1 += 1;
        Ok(guard.1)
    }

    fn revision(&self) -> u64 {
        self.lock().1
    }
}
