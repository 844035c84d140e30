//! Snapshot encoding and files.
//!
//! Two layers, both checksummed:
//! - the *data* blob (what openraft moves between nodes): magic, version,
//!   payload length, CRC32 of the payload, then the cache entries as
//!   MessagePack;
//! - the *file* (`snapshots/snap-<index>-<term>.snap`): magic, meta length,
//!   CRC32 of the meta, the meta (last log id, membership, snapshot id), then
//!   the data blob.
//!
//! Invariants:
//! - A snapshot file is written to `*.tmp`, fsynced, renamed into place, and
//!   the directory fsynced; a crash leaves either the old or the new file.
//! - Decoding never trusts a length before checking it against the input,
//!   so garbage cannot trigger a huge allocation.
//! - A damaged snapshot is an error, never silently an empty state.

use std::fs;
use std::io;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use crate::kv::Cache;
use crate::kv::Entry;
use crate::raft::typ;

const DATA_MAGIC: &[u8; 4] = b"DCSD";
const DATA_VERSION: u32 = 1;
const FILE_MAGIC: &[u8; 8] = b"DCSNAP1\n";
/// Snapshots kept on disk; older ones are removed after a new one is durable.
const KEEP_SNAPSHOTS: usize = 1;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Encode the cache as a snapshot data blob.
pub fn encode_data(entries: &[(String, Entry)]) -> io::Result<Vec<u8>> {
    let payload = rmp_serde::to_vec_named(entries).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(DATA_MAGIC);
    out.extend_from_slice(&DATA_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Verify a snapshot data blob's header and checksum without decoding it;
/// returns the payload.
pub fn verify_data(buf: &[u8]) -> io::Result<&[u8]> {
    if buf.len() < 20 || &buf[0..4] != DATA_MAGIC {
        return Err(invalid("snapshot data: bad magic or too short"));
    }
    let version = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if version != DATA_VERSION {
        return Err(invalid(format!(
            "snapshot data: unsupported version {version}"
        )));
    }
    let len = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(buf[16..20].try_into().expect("4 bytes"));
    let payload = &buf[20..];
    if payload.len() as u64 != len {
        return Err(invalid(format!(
            "snapshot data: length {} does not match header {len}",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(invalid("snapshot data: checksum mismatch"));
    }
    Ok(payload)
}

/// Decode and verify a snapshot data blob.
pub fn decode_data(buf: &[u8]) -> io::Result<Cache> {
    let payload = verify_data(buf)?;
    let entries: Vec<(String, Entry)> =
        rmp_serde::from_slice(payload).map_err(|e| invalid(format!("snapshot data: {e}")))?;
    Ok(Cache::from_entries(entries))
}

fn file_name(meta: &typ::SnapshotMeta) -> String {
    let (index, term) = meta
        .last_log_id
        .as_ref()
        .map(|l| (l.index, l.leader_id.term))
        .unwrap_or((0, 0));
    format!("snap-{index:020}-{term:020}.snap")
}

/// Durably write a snapshot file and remove older ones. Returns its path.
pub fn write_file(dir: &Path, meta: &typ::SnapshotMeta, data: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let meta_bytes = rmp_serde::to_vec_named(meta).map_err(io::Error::other)?;
    let path = dir.join(file_name(meta));
    let tmp = path.with_extension("snap.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(FILE_MAGIC)?;
        f.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
        f.write_all(&crc32fast::hash(&meta_bytes).to_le_bytes())?;
        f.write_all(&meta_bytes)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()?;
    remove_old(dir, KEEP_SNAPSHOTS)?;
    Ok(path)
}

fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for ent in fs::read_dir(dir)? {
        let p = ent?.path();
        if p.extension().is_some_and(|e| e == "snap") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn remove_old(dir: &Path, keep: usize) -> io::Result<()> {
    let files = list(dir)?;
    let n = files.len().saturating_sub(keep);
    for p in &files[..n] {
        fs::remove_file(p)?;
    }
    Ok(())
}

/// Read and verify a snapshot file: (meta, data blob). The data blob's
/// header and checksum are verified too (without decoding it: the caller
/// decodes it once), so a flipped byte anywhere is reported here.
pub fn read_file(path: &Path) -> io::Result<(typ::SnapshotMeta, Vec<u8>)> {
    let buf = fs::read(path)?;
    let what = path.display();
    if buf.len() < 16 || &buf[0..8] != FILE_MAGIC {
        return Err(invalid(format!("snapshot {what}: bad magic or too short")));
    }
    let meta_len = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
    let meta_crc = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
    let rest = &buf[16..];
    if meta_len > rest.len() {
        return Err(invalid(format!(
            "snapshot {what}: meta length past end of file"
        )));
    }
    let (meta_bytes, data) = rest.split_at(meta_len);
    if crc32fast::hash(meta_bytes) != meta_crc {
        return Err(invalid(format!("snapshot {what}: meta checksum mismatch")));
    }
    let meta: typ::SnapshotMeta = rmp_serde::from_slice(meta_bytes)
        .map_err(|e| invalid(format!("snapshot {what}: meta: {e}")))?;
    verify_data(data).map_err(|e| invalid(format!("snapshot {what}: {e}")))?;
    Ok((meta, data.to_vec()))
}

/// A verified snapshot file: its meta, data blob and path.
pub type Loaded = (typ::SnapshotMeta, Vec<u8>, PathBuf);

/// The newest snapshot in `dir`, verified, after removing leftover temp files.
pub fn load_latest(dir: &Path) -> io::Result<Option<Loaded>> {
    if !dir.exists() {
        return Ok(None);
    }
    for ent in fs::read_dir(dir)? {
        let p = ent?.path();
        if p.to_string_lossy().ends_with(".snap.tmp") {
            tracing::warn!(path = %p.display(), "removing incomplete snapshot file");
            fs::remove_file(&p)?;
        }
    }
    match list(dir)?.pop() {
        Some(p) => read_file(&p).map(|(m, d)| Some((m, d, p))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::EntryMeta;

    fn sample() -> Vec<(String, Entry)> {
        (0..10)
            .map(|i| {
                (
                    format!("k{i}"),
                    Entry {
                        value: vec![i as u8; i],
                        meta: EntryMeta {
                            create_index: i as u64,
                            modify_index: i as u64 + 1,
                            version: 1,
                        },
                        expires_at_ms: None,
                    },
                )
            })
            .collect()
    }

    fn meta(index: u64) -> typ::SnapshotMeta {
        typ::SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id::<crate::raft::TypeConfig>(
                2,
                1u64.into(),
                index,
            )),
            last_membership: Default::default(),
        }
    }

    #[test]
    fn data_roundtrip_and_every_flipped_byte_is_detected() {
        let entries = sample();
        let data = encode_data(&entries).unwrap();
        let cache = decode_data(&data).unwrap();
        assert_eq!(cache, Cache::from_entries(entries));
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x40;
            assert!(decode_data(&bad).is_err(), "flip at byte {i} not detected");
        }
        assert!(decode_data(&data[..data.len() - 1]).is_err());
    }

    #[test]
    fn huge_length_header_does_not_allocate() {
        let mut data = encode_data(&sample()).unwrap();
        data[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_data(&data).is_err());
    }

    #[test]
    fn file_write_keeps_latest_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let data = encode_data(&sample()).unwrap();
        write_file(dir.path(), &meta(5), &data).unwrap();
        let p = write_file(dir.path(), &meta(9), &data).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![p.clone()]);
        fs::write(dir.path().join("snap-x.snap.tmp"), b"junk").unwrap();
        let (m, d, _) = load_latest(dir.path()).unwrap().unwrap();
        assert_eq!(m, meta(9));
        assert_eq!(d, data);
        assert!(!dir.path().join("snap-x.snap.tmp").exists());

        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let err = load_latest(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
