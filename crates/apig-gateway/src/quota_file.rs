//! Credential quota counters on disk, so a restart does not hand every app a fresh quota (quota
//! windows are hours or days long).
//!
//! File `<cache_dir>/quotas-<instance>.bin`, next to the snapshot cache, mode 0600, in the same
//! frame as the snapshot cache (`cache`: magic `APIGQUOT`, format 1, payload length, SHA-256 of
//! the payload) around a JSON payload:
//!
//! ```text
//! {"instance_id":"inst-1","saved_at_unix_ms":1718000000000,
//!  "counters":[{"quota_id":"q1","app_id":"app-1","limit":1000,"window_ms":86400000,
//!               "anchor_unix_ms":1717995900000,"window":0,"count":3}]}
//! ```
//!
//! One entry per counter whose current window has calls: the quota's id and numbers (the
//! counter's `QuotaKey`), the window index (relative to the anchor) and the calls this replica
//! admitted in it. The parse is strict (unknown fields, an empty id, a zero limit or window, a
//! count of 0 or above the limit, a repeated key, another instance's file): any problem and the
//! whole file is ignored with a warning, and counters start from 0.
//!
//! On start the file is read before the snapshot cache is applied; the first counters built
//! (from the cache or the control plane's first snapshot) take a saved count when the key and
//! the window are still the same ([`apig_policy::QuotaSet::build`]); everything else is dropped.
//! While serving, a background task saves the counters every `Limits::quota_save_interval` when
//! they changed, and once more at graceful shutdown after the in-flight requests drained.
//! Writes use the snapshot cache's temp + fsync + rename discipline, off the request path. A
//! crash loses at most the calls of the last interval (those are admitted again after the
//! restart).
//!
//! The file belongs to one replica: replicas must not share a cache directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use apig_policy::{QuotaKey, Usage};
use serde::{Deserialize, Serialize};

use crate::cache::{self, CacheError};

const MAGIC: &[u8; 8] = b"APIGQUOT";
/// A file holds at most one entry per app of the snapshot; anything this large is damage.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Saved counters: the counter's key and what it counted.
pub(crate) type Saved = Vec<(QuotaKey, Usage)>;

/// The quota file of one instance.
#[derive(Debug, Clone)]
pub(crate) struct QuotaFile {
    dir: PathBuf,
    path: PathBuf,
    instance_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    instance_id: String,
    saved_at_unix_ms: i64,
    counters: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    quota_id: String,
    app_id: String,
    limit: u64,
    window_ms: u64,
    anchor_unix_ms: i64,
    window: i64,
    count: u64,
}

// === impl QuotaFile ===

impl QuotaFile {
    pub(crate) fn new(dir: &Path, instance_id: &str) -> Self {
        let name = format!("quotas-{}.bin", cache::file_stem(instance_id));
        Self {
            dir: dir.to_path_buf(),
            path: dir.join(name),
            instance_id: instance_id.to_owned(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file. `Ok(None)` when there is none.
    pub(crate) fn load(&self) -> Result<Option<Saved>, CacheError> {
        let corrupt = |reason: String| CacheError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let Some(bytes) = cache::read_bounded(&self.path, MAX_FILE_BYTES)? else {
            return Ok(None);
        };
        let (payload, _) = cache::decode_frame(MAGIC, &bytes).map_err(|r| corrupt(r.into()))?;
        let body: FileBody =
            serde_json::from_slice(payload).map_err(|e| corrupt(format!("bad payload: {e}")))?;
        if body.instance_id != self.instance_id {
            return Err(corrupt(format!(
                "saved by instance {:?}, this replica serves {:?}",
                body.instance_id, self.instance_id
            )));
        }
        let mut seen = HashSet::with_capacity(body.counters.len());
        let mut out = Vec::with_capacity(body.counters.len());
        for e in body.counters {
            let problem = if e.quota_id.is_empty() || e.app_id.is_empty() {
                Some("an entry has an empty quota or app id")
            } else if e.limit == 0 || e.window_ms == 0 {
                Some("an entry has a limit or window of 0")
            } else if e.count == 0 || e.count > e.limit {
                Some("an entry's count is 0 or above its limit")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(corrupt(problem.into()));
            }
            let key = QuotaKey {
                quota_id: Arc::from(e.quota_id),
                app_id: Arc::from(e.app_id),
                limit: e.limit,
                window_ms: e.window_ms,
                anchor_unix_ms: e.anchor_unix_ms,
            };
            if !seen.insert(key.clone()) {
                return Err(corrupt("an entry appears twice".into()));
            }
            out.push((
                key,
                Usage {
                    window: e.window,
                    count: e.count,
                },
            ));
        }
        Ok(Some(out))
    }

    /// Writes `saved` durably. Blocking: call off the runtime.
    pub(crate) fn store(
        &self,
        saved: &[(QuotaKey, Usage)],
        now_unix_ms: i64,
    ) -> Result<(), CacheError> {
        let body = FileBody {
            instance_id: self.instance_id.clone(),
            saved_at_unix_ms: now_unix_ms,
            counters: saved
                .iter()
                .map(|(k, u)| Entry {
                    quota_id: k.quota_id.to_string(),
                    app_id: k.app_id.to_string(),
                    limit: k.limit,
                    window_ms: k.window_ms,
                    anchor_unix_ms: k.anchor_unix_ms,
                    window: u.window,
                    count: u.count,
                })
                .collect(),
        };
        let payload = serde_json::to_vec(&body).map_err(|e| CacheError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        cache::write_private_file(&self.dir, &self.path, &cache::encode_frame(MAGIC, &payload))
    }
}

/// Saves counters when they changed since the last write. Writes are serialised (the periodic
/// task and the shutdown save may overlap), so an older state never lands after a newer one.
#[derive(Debug)]
pub(crate) struct QuotaSaver {
    file: QuotaFile,
    /// What the file holds; `None` when unknown (unreadable or corrupt): the next save writes.
    last: Mutex<Option<Saved>>,
}

// === impl QuotaSaver ===

impl QuotaSaver {
    /// `on_disk`: what the file held at start (`Some(empty)` when there was none).
    pub(crate) fn new(file: QuotaFile, on_disk: Option<Saved>) -> Self {
        Self {
            file,
            last: Mutex::new(on_disk),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Writes `current` unless the file already holds exactly that; `Ok(true)` when it wrote.
    /// Blocking: call off the runtime.
    pub(crate) fn save(&self, current: Saved, now_unix_ms: i64) -> Result<bool, CacheError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&current) {
            return Ok(false);
        }
        self.file.store(&current, now_unix_ms)?;
        *last = Some(current);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn key(app: &str, limit: u64) -> QuotaKey {
        QuotaKey {
            quota_id: Arc::from("q1"),
            app_id: Arc::from(app),
            limit,
            window_ms: 86_400_000,
            anchor_unix_ms: -5,
        }
    }

    fn saved() -> Saved {
        vec![
            (
                key("app-1", 10),
                Usage {
                    window: 19_000,
                    count: 3,
                },
            ),
            (
                key("app-2", 10),
                Usage {
                    window: -2,
                    count: 10,
                },
            ),
        ]
    }

    #[test]
    fn round_trip_private_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cache");
        let file = QuotaFile::new(&sub, "inst-1");
        assert!(file.load().unwrap().is_none());
        file.store(&saved(), 1).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), saved());
        assert_eq!(file.path(), sub.join("quotas-inst-1.bin"));
        // Overwrite; nothing else is left in the directory.
        file.store(&saved()[..1], 2).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), saved()[..1].to_vec());
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["quotas-inst-1.bin".to_owned()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // An empty set is a valid file too.
        file.store(&[], 3).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), Vec::new());
    }

    fn frame(json: &str) -> Vec<u8> {
        cache::encode_frame(MAGIC, json.as_bytes())
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = QuotaFile::new(dir.path(), "inst-1");
        file.store(&saved(), 1).unwrap();
        let good = fs::read(file.path()).unwrap();

        let mut flipped = good.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        let mut snapshot_magic = good.clone();
        snapshot_magic[..8].copy_from_slice(b"APIGSNAP");
        let entry = |fields: &str| {
            format!(r#"{{"instance_id":"inst-1","saved_at_unix_ms":1,"counters":[{{{fields}}}]}}"#)
        };
        let ok_fields = r#""quota_id":"q","app_id":"a","limit":5,"window_ms":1000,"anchor_unix_ms":0,"window":1,"count":2"#;
        // The well-formed reference entry loads.
        fs::write(file.path(), frame(&entry(ok_fields))).unwrap();
        assert_eq!(file.load().unwrap().unwrap().len(), 1);

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("checksum", flipped),
            ("magic", snapshot_magic),
            ("truncated", good[..20].to_vec()),
            ("length", good[..good.len() - 1].to_vec()),
            ("payload", frame("not json")),
            (
                "payload",
                frame(r#"{"instance_id":"inst-1","counters":[]}"#),
            ),
            (
                "payload",
                frame(r#"{"instance_id":"inst-1","saved_at_unix_ms":1,"counters":[],"extra":1}"#),
            ),
            (
                "payload",
                frame(&entry(&ok_fields.replace(r#""count":2"#, r#""count":-2"#))),
            ),
            (
                "payload",
                frame(&entry(&format!(r#"{ok_fields},"more":1"#))),
            ),
            (
                "instance",
                frame(r#"{"instance_id":"other","saved_at_unix_ms":1,"counters":[]}"#),
            ),
            (
                "empty",
                frame(&entry(
                    &ok_fields.replace(r#""app_id":"a""#, r#""app_id":"""#),
                )),
            ),
            (
                "of 0",
                frame(&entry(&ok_fields.replace(r#""limit":5"#, r#""limit":0"#))),
            ),
            (
                "of 0",
                frame(&entry(
                    &ok_fields.replace(r#""window_ms":1000"#, r#""window_ms":0"#),
                )),
            ),
            (
                "count",
                frame(&entry(&ok_fields.replace(r#""count":2"#, r#""count":0"#))),
            ),
            (
                "count",
                frame(&entry(&ok_fields.replace(r#""count":2"#, r#""count":6"#))),
            ),
            (
                "twice",
                frame(&format!(
                    r#"{{"instance_id":"inst-1","saved_at_unix_ms":1,"counters":[{{{ok_fields}}},{{{ok_fields}}}]}}"#
                )),
            ),
        ];
        for (want, bytes) in cases {
            fs::write(file.path(), &bytes).unwrap();
            match file.load() {
                Err(CacheError::Corrupt { reason, .. }) => {
                    assert!(reason.contains(want), "{want}: {reason}")
                }
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_saver_writes_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = QuotaFile::new(dir.path(), "inst-1");
        let saver = QuotaSaver::new(file.clone(), Some(Vec::new()));
        assert!(!saver.save(Vec::new(), 1).unwrap(), "nothing to write");
        assert!(!file.path().exists());
        assert!(saver.save(saved(), 2).unwrap());
        assert!(!saver.save(saved(), 3).unwrap());
        assert!(saver.save(saved()[..1].to_vec(), 4).unwrap());
        assert_eq!(file.load().unwrap().unwrap(), saved()[..1].to_vec());
        // After a corrupt file the first save always writes.
        fs::write(file.path(), b"garbage").unwrap();
        let saver = QuotaSaver::new(file.clone(), None);
        assert!(saver.save(Vec::new(), 5).unwrap());
        assert_eq!(file.load().unwrap().unwrap(), Vec::new());
        assert_eq!(saver.path(), file.path());
    }
}
