//! Backup files of the whole store, and restoring one into an empty data dir.
//!
//! A backup file is one header line followed by the store's logical export
//! ([`apig_store::StoreExt::export`], JSON):
//!
//! ```text
//! apig-backup/1 sha256=<64 hex digits of the JSON that follows> length=<its bytes>
//! {"format":"apig-store-backup/1","revision":…,"count":…,"entries":{…}}
//! ```
//!
//! Restoring reads and verifies the whole file (header, length, checksum, then the export's own
//! checks) before it touches the data dir, and refuses a store that is not empty. Files are
//! written owner-only (they hold every secret of the control plane) and atomically (a temporary
//! file in the same directory, flushed, then renamed).
//!
//! sled allows one process per store: `apig backup` works on a stopped control plane; a running
//! one answers the same file at `GET /v2/{project_id}/apigw/backup` (administrator only).

use std::io::Write;
use std::path::{Path, PathBuf};

use apig_store::{SledStore, Store, StoreError, StoreExt};
use sha2::{Digest, Sha256};

/// The first word of every backup file.
pub const MAGIC: &str = "apig-backup/1";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("the backup file is invalid: {0}")]
    Invalid(String),
    #[error("the backup file is corrupt: its SHA-256 is {actual}, the header says {expected}")]
    Checksum { expected: String, actual: String },
    #[error("the store at {0} is not empty: restore only into a new or wiped data dir")]
    NotEmpty(PathBuf),
    #[error("there is no store at {0}")]
    NoStore(PathBuf),
    #[error("cannot open the store at {path}: {reason} (a running control plane holds it: take a live backup with GET /v2/{{project_id}}/apigw/backup)")]
    Open { path: PathBuf, reason: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub revision: u64,
    pub sha256: String,
}

fn io(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The store as backup file bytes.
pub fn encode(store: &dyn Store) -> Result<(Vec<u8>, Summary), BackupError> {
    let export = store.export()?;
    let json = serde_json::to_vec(&export).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let sha256 = hex::encode(Sha256::digest(&json));
    let mut out = format!("{MAGIC} sha256={sha256} length={}\n", json.len()).into_bytes();
    out.extend_from_slice(&json);
    let summary = Summary {
        entries: export["count"].as_u64().unwrap_or(0),
        revision: export["revision"].as_u64().unwrap_or(0),
        sha256,
    };
    Ok((out, summary))
}

/// Checks a backup file's header, length and checksum; answers the export it carries.
pub fn decode(bytes: &[u8]) -> Result<(serde_json::Value, Summary), BackupError> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .filter(|&n| n <= 256)
        .ok_or_else(|| BackupError::Invalid(format!("no `{MAGIC}` header line")))?;
    let header = std::str::from_utf8(&bytes[..nl])
        .map_err(|_| BackupError::Invalid("the header is not text".into()))?;
    let mut words = header.split(' ');
    if words.next() != Some(MAGIC) {
        return Err(BackupError::Invalid(format!(
            "not an apig backup (expected `{MAGIC}`)"
        )));
    }
    let (mut expected, mut length) = (None, None);
    for w in words {
        match w.split_once('=') {
            Some(("sha256", v)) if v.len() == 64 => expected = Some(v.to_ascii_lowercase()),
            Some(("length", v)) => length = v.parse::<usize>().ok(),
            _ => return Err(BackupError::Invalid(format!("unknown header field `{w}`"))),
        }
    }
    let (Some(expected), Some(length)) = (expected, length) else {
        return Err(BackupError::Invalid(
            "the header lacks sha256= or length=".into(),
        ));
    };
    let body = &bytes[nl + 1..];
    if body.len() != length {
        return Err(BackupError::Invalid(format!(
            "truncated or extended: {} bytes, the header says {length}",
            body.len()
        )));
    }
    let actual = hex::encode(Sha256::digest(body));
    if actual != expected {
        return Err(BackupError::Checksum { expected, actual });
    }
    let export: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let summary = Summary {
        entries: export["count"].as_u64().unwrap_or(0),
        revision: export["revision"].as_u64().unwrap_or(0),
        sha256: actual,
    };
    Ok((export, summary))
}

/// Writes `bytes` to `path` owner-only and atomically: a temporary file beside it, flushed,
/// renamed over `path`, and the directory flushed.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(path, "not a file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Flushing the directory makes the rename durable; not every platform allows it.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

fn open(dir: &Path) -> Result<SledStore, BackupError> {
    SledStore::open(dir).map_err(|e| BackupError::Open {
        path: dir.to_owned(),
        reason: e.to_string(),
    })
}

/// `apig backup`: the store of a stopped control plane into `out`.
pub fn backup_data_dir(data_dir: &Path, out: &Path) -> Result<Summary, BackupError> {
    let dir = store_dir(data_dir);
    if !dir.is_dir() {
        return Err(BackupError::NoStore(dir));
    }
    let store = open(&dir)?;
    let (bytes, summary) = encode(&store)?;
    // Check what will be written before writing it.
    decode(&bytes)?;
    write_file(out, &bytes)?;
    Ok(summary)
}

/// `apig restore`: verifies `input` whole, then loads it into the (new or empty) store of
/// `data_dir`.
pub fn restore_data_dir(data_dir: &Path, input: &Path) -> Result<Summary, BackupError> {
    let bytes = std::fs::read(input).map_err(|e| io(input, e))?;
    let (export, summary) = decode(&bytes)?;
    let dir = store_dir(data_dir);
    if dir.exists() {
        let store = open(&dir)?;
        if !store.scan("")?.is_empty() {
            return Err(BackupError::NotEmpty(dir));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(data_dir, e))?;
    }
    let store = open(&dir)?;
    if !store.scan("")?.is_empty() {
        return Err(BackupError::NotEmpty(dir));
    }
    apig_store::import(&store, &export)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_store::{Batch, MemoryStore};

    fn sample() -> MemoryStore {
        let s = MemoryStore::new();
        let mut b = Batch::new();
        b.put_json("v1/a/1", &serde_json::json!({"x": 1})).unwrap();
        b.put_json("v1/b/2", &"two").unwrap();
        s.commit(b).unwrap();
        s
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let (bytes, summary) = encode(&sample()).unwrap();
        assert_eq!(summary.entries, 2);
        let (export, again) = decode(&bytes).unwrap();
        assert_eq!(again, summary);
        let dst = MemoryStore::new();
        apig_store::import(&dst, &export).unwrap();
        assert_eq!(dst.export().unwrap()["entries"], export["entries"]);

        // One flipped byte in the content.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x01;
        assert!(matches!(
            decode(&flipped),
            Err(BackupError::Checksum { .. })
        ));
        // Truncated.
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(BackupError::Invalid(_))
        ));
        // Not a backup at all.
        assert!(matches!(decode(b"{}"), Err(BackupError::Invalid(_))));
        assert!(matches!(
            decode(b"other/1 sha256=x length=2\n{}"),
            Err(BackupError::Invalid(_))
        ));
    }

    #[test]
    fn files_are_owner_only_and_restore_refuses_a_non_empty_store() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        {
            let store = SledStore::open(&data.join("store")).unwrap();
            let mut b = Batch::new();
            b.put_json("v1/a/1", &1).unwrap();
            store.commit(b).unwrap();
        }
        let file = tmp.path().join("apig.backup");
        let summary = backup_data_dir(&data, &file).unwrap();
        assert_eq!(summary.entries, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Into the same (non-empty) store: refused.
        assert!(matches!(
            restore_data_dir(&data, &file),
            Err(BackupError::NotEmpty(_))
        ));
        // Into a new data dir: restored.
        let fresh = tmp.path().join("fresh");
        restore_data_dir(&fresh, &file).unwrap();
        let store = SledStore::open(&fresh.join("store")).unwrap();
        assert_eq!(store.get_json::<i32>("v1/a/1").unwrap(), Some(1));
        // No store to back up.
        assert!(matches!(
            backup_data_dir(&tmp.path().join("none"), &file),
            Err(BackupError::NoStore(_))
        ));
    }
}
