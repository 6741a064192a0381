//! The sled-backed [`Store`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Batch, Op, Store, StoreError};

/// The revision lives in the same keyspace as the data and is written in the same atomic batch,
/// so it can never disagree with the data after a crash.
const REVISION_KEY: &[u8] = b"\xffmeta/revision";

pub struct SledStore {
    db: sled::Db,
    revision: AtomicU64,
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(engine)?;
        let revision = match db.get(REVISION_KEY).map_err(engine)? {
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: "revision".into(),
                    reason: "not 8 bytes".into(),
                })?;
                u64::from_be_bytes(bytes)
            }
            None => 0,
        };
        Ok(Self {
            db,
            revision: AtomicU64::new(revision),
        })
    }
}

impl Store for SledStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(key.as_bytes())
            .map_err(engine)?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(engine)?;
            if k.as_ref() == REVISION_KEY {
                continue;
            }
            let key = String::from_utf8(k.to_vec()).map_err(|_| StoreError::Corrupt {
                key: format!("{k:?}"),
                reason: "key is not UTF-8".into(),
            })?;
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<u64, StoreError> {
        // Callers serialise writes (the control plane holds one write lock), so load+store of the
        // revision is not racy; fetch_add keeps it monotonic regardless.
        let next = self.revision.load(Ordering::SeqCst) + 1;
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => b.insert(k.as_bytes(), v),
                Op::Delete(k) => b.remove(k.as_bytes()),
            }
        }
        b.insert(REVISION_KEY, &next.to_be_bytes());
        self.db.apply_batch(b).map_err(engine)?;
        self.db.flush().map_err(engine)?;
        self.revision.store(next, Ordering::SeqCst);
        Ok(next)
    }

    fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }
}
