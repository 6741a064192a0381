//! The applied snapshot on disk, so a replica restarts and serves while the control plane is
//! unreachable.
//!
//! File `<cache_dir>/snapshot-<instance>.bin`, mode 0600:
//!
//! ```text
//! magic    8 bytes  "APIGSNAP"
//! format   4 bytes  little-endian u32, currently 1
//! length   8 bytes  little-endian u64, length of the payload
//! sha256  32 bytes  SHA-256 of the payload
//! payload           the prost-encoded `apig.v1.Snapshot`
//! ```
//!
//! Writes go to a temporary file in the same directory, which is fsynced, renamed over the old
//! file, and the directory fsynced: a crash leaves the old or the new file, never a torn one. A
//! file that fails any check is reported and ignored, and the replica stays not ready until the
//! control plane sends a snapshot.
//!
//! Deleting the file is also how an operator lets a replica accept an empty snapshot from a new
//! control-plane epoch (see `sync`): with no cache there is nothing to protect.
//!
//! The framing ([`encode_frame`], [`decode_frame`]) and the atomic private write
//! ([`write_private_file`]) are shared with the credential quota file next to it (`quota_file`).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use apig_proto::Snapshot;
use prost::Message;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"APIGSNAP";
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;
/// Refuse to read a cache file larger than this (a snapshot is far smaller; a huge file is
/// damage or a wrong path, and reading it would only waste memory).
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Why a cache file was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a snapshot cache: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// A snapshot read back from the cache, with the digest of its encoding.
#[derive(Debug)]
pub(crate) struct Cached {
    pub snapshot: Snapshot,
    pub digest: [u8; 32],
}

/// The cache file of one instance.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotCache {
    dir: PathBuf,
    path: PathBuf,
}

// === impl SnapshotCache ===

impl SnapshotCache {
    pub(crate) fn new(dir: &Path, instance_id: &str) -> Self {
        let name = format!("snapshot-{}.bin", file_stem(instance_id));
        Self {
            dir: dir.to_path_buf(),
            path: dir.join(name),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the cache. `Ok(None)` when there is no file.
    pub(crate) fn load(&self) -> Result<Option<Cached>, CacheError> {
        let corrupt = |reason: &str| CacheError::Corrupt {
            path: self.path.clone(),
            reason: reason.to_owned(),
        };
        let Some(bytes) = read_bounded(&self.path, MAX_FILE_BYTES)? else {
            return Ok(None);
        };
        let (payload, digest) = decode_file(&bytes).map_err(corrupt)?;
        let snapshot =
            Snapshot::decode(payload).map_err(|e| corrupt(&format!("bad payload: {e}")))?;
        Ok(Some(Cached { snapshot, digest }))
    }

    /// Writes `encoded` (a prost-encoded snapshot) durably. Blocking: call off the runtime.
    pub(crate) fn store(&self, encoded: &[u8]) -> Result<(), CacheError> {
        write_private_file(&self.dir, &self.path, &encode_file(encoded))
    }
}

/// Reads a whole file of at most `max` bytes; `Ok(None)` when it does not exist, `Corrupt` when
/// it is larger (damage or a wrong path: reading it would only waste memory).
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, CacheError> {
    let read_err = |source| CacheError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    if meta.len() > max {
        return Err(CacheError::Corrupt {
            path: path.to_path_buf(),
            reason: "file too large".into(),
        });
    }
    fs::read(path).map(Some).map_err(read_err)
}

/// Writes `bytes` to `path` (in `dir`, created 0700 when missing) so that a crash leaves the old
/// or the new file, never a torn one: a temporary file in the same directory (0600), fsynced,
/// renamed over `path`, then the directory fsynced. Blocking: call off the runtime.
pub(crate) fn write_private_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Write { path, source }
    };
    create_private_dir(dir).map_err(write_err(dir))?;
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cache"),
        rand::random::<u64>()
    ));
    let result = (|| -> io::Result<()> {
        let mut file = open_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err(path))
}

/// A file name part from an instance id: kept as is when it is short and plain, else a hash.
pub(crate) fn file_stem(instance_id: &str) -> String {
    let plain = !instance_id.is_empty()
        && instance_id.len() <= 64
        && instance_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        instance_id.to_owned()
    } else {
        let digest = Sha256::digest(instance_id.as_bytes());
        hex::encode(digest.get(..16).unwrap_or_default())
    }
}

fn encode_file(payload: &[u8]) -> Vec<u8> {
    encode_frame(MAGIC, payload)
}

fn decode_file(bytes: &[u8]) -> Result<(&[u8], [u8; 32]), &'static str> {
    decode_frame(MAGIC, bytes)
}

/// The framing of the gateway's cache files: `magic` (8 bytes), format (u32 LE, 1), payload
/// length (u64 LE), SHA-256 of the payload, the payload.
pub(crate) fn encode_frame(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// Checks the header and checksum of a frame made by [`encode_frame`] with `magic`; returns the
/// payload and its digest.
pub(crate) fn decode_frame<'a>(
    magic: &[u8; 8],
    bytes: &'a [u8],
) -> Result<(&'a [u8], [u8; 32]), &'static str> {
    let header = bytes.get(..HEADER_LEN).ok_or("truncated header")?;
    let (found, rest) = header.split_at(8);
    if found != magic {
        return Err("bad magic");
    }
    let (format, rest) = rest.split_at(4);
    let format = u32::from_le_bytes(format.try_into().map_err(|_| "truncated header")?);
    if format != FORMAT {
        return Err("unknown format version");
    }
    let (len, sum) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| "truncated header")?);
    let payload = bytes.get(HEADER_LEN..).unwrap_or_default();
    if payload.len() as u64 != len {
        return Err("length mismatch");
    }
    let digest: [u8; 32] = Sha256::digest(payload).into();
    if digest.as_slice() != sum {
        return Err("checksum mismatch");
    }
    Ok((payload, digest))
}

/// SHA-256 of a snapshot's encoding, as stored in the cache and compared on re-sends.
pub(crate) fn digest(encoded: &[u8]) -> [u8; 32] {
    Sha256::digest(encoded).into()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            instance_id: "inst-1".into(),
            epoch: "e1".into(),
            version,
            apis: vec![apig_proto::Api {
                id: "api-1".into(),
                name: "hello".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path(), "inst-1");
        assert!(cache.load().unwrap().is_none());
        let s = snapshot(3);
        let encoded = s.encode_to_vec();
        cache.store(&encoded).unwrap();
        let back = cache.load().unwrap().unwrap();
        assert_eq!(back.snapshot, s);
        assert_eq!(back.digest, digest(&encoded));
        // Overwrite with a newer one.
        let s4 = snapshot(4);
        cache.store(&s4.encode_to_vec()).unwrap();
        assert_eq!(cache.load().unwrap().unwrap().snapshot.version, 4);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["snapshot-inst-1.bin".to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cache");
        let cache = SnapshotCache::new(&sub, "inst-1");
        cache.store(&snapshot(1).encode_to_vec()).unwrap();
        let mode = fs::metadata(cache.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&sub).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path(), "inst-1");
        let good = encode_file(&snapshot(1).encode_to_vec());

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_format = good.clone();
        bad_format[8] = 9;
        let truncated = good[..good.len() - 3].to_vec();
        let mut extended = good.clone();
        extended.push(0);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("checksum mismatch", flipped),
            ("bad magic", bad_magic),
            ("unknown format version", bad_format),
            ("length mismatch", truncated),
            ("length mismatch", extended),
            ("truncated header", b"APIGSNAP".to_vec()),
            ("truncated header", Vec::new()),
        ];
        for (want, bytes) in cases {
            fs::write(cache.path(), &bytes).unwrap();
            match cache.load() {
                Err(CacheError::Corrupt { reason, .. }) => assert_eq!(reason, want),
                other => panic!("{want}: {other:?}"),
            }
        }

        // A valid frame around bytes that are not a snapshot.
        fs::write(cache.path(), encode_file(&[0xff, 0xff, 0xff])).unwrap();
        assert!(matches!(cache.load(), Err(CacheError::Corrupt { .. })));
    }

    #[test]
    fn odd_instance_ids_get_a_hashed_file_name() {
        assert_eq!(file_stem("inst_1-a"), "inst_1-a");
        let hashed = file_stem("../../etc/passwd");
        assert_eq!(hashed.len(), 32);
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(file_stem(""), "");
    }
}
