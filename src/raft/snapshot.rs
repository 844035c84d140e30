//! Snapshot files: one file per snapshot, written and read as a stream, so
//! neither building, sending, receiving nor loading a snapshot ever holds
//! the whole state a second time in memory.
//!
//! Layout of `snapshots/snap-<index>-<term>.snap` (integers little-endian):
//!
//! ```text
//! "DCSNAP2\n"                       file magic
//! meta_len u32, meta_crc u32, meta  openraft's SnapshotMeta, MessagePack
//! head (48 bytes)                   version u32 = 2, reserved u32, count u64,
//!                                   clock_ms u64, expired u64, evicted u64, oom u64
//! count × record                    key_len u32, raw_len u32, raw (an Item's
//!                                   packed meta | key | value)
//! crc u32                           CRC32 of head and records
//! ```
//!
//! Invariants:
//! - A file is written to `*.tmp`, fsynced, renamed into place, and the
//!   directory fsynced; a crash leaves either the old or the new file.
//! - Reading never trusts a length before checking it against the bytes
//!   left in the file, so garbage cannot trigger a huge allocation.
//! - A damaged file (bad magic, a checksum, a length) is an error, never
//!   silently an empty or partial state.
//! - The same bytes are the file on disk and the body sent to a follower: a
//!   received snapshot is verified, then renamed into place.

use std::fs;
use std::io;
use std::io::BufReader;
use std::io::BufWriter;
use std::io::Read;
use std::io::Seek;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use crate::kv::Cache;
use crate::kv::CacheBuilder;
use crate::kv::CacheStats;
use crate::kv::Item;
use crate::raft::typ;

const FILE_MAGIC: &[u8; 8] = b"DCSNAP2\n";
const DATA_VERSION: u32 = 2;
const HEAD_BYTES: usize = 48;
/// Largest snapshot meta accepted (a membership of many nodes is a few KiB).
const MAX_META_BYTES: u32 = 1 << 20;
/// Temp-file suffix of snapshots being built or received.
pub const TMP_SUFFIX: &str = ".snap.tmp";

/// A snapshot file handed to openraft (as its `SnapshotData`) and back:
/// the open file and where it lives.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub file: fs::File,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn file_name(meta: &typ::SnapshotMeta) -> String {
    let (index, term) = meta
        .last_log_id
        .as_ref()
        .map(|l| (l.index, l.leader_id.term))
        .unwrap_or((0, 0));
    format!("snap-{index:020}-{term:020}.snap")
}

/// A writer that keeps a CRC32 of what passes through.
struct Crc<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one snapshot file: [`Writer::create`], [`Writer::items`] as many
/// times as needed, then [`Writer::finish`].
pub struct Writer {
    dir: PathBuf,
    tmp: PathBuf,
    out: Crc<BufWriter<fs::File>>,
    meta: typ::SnapshotMeta,
    written: u64,
    count: u64,
}

impl Writer {
    /// Start a file for `meta` whose state has the counters `stats` and
    /// `stats.keys` items.
    pub fn create(dir: &Path, meta: &typ::SnapshotMeta, stats: &CacheStats) -> io::Result<Writer> {
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            "{}{TMP_SUFFIX}",
            file_name(meta).trim_end_matches(".snap")
        ));
        let mut file = BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        let meta_bytes = rmp_serde::to_vec_named(meta).map_err(io::Error::other)?;
        file.write_all(FILE_MAGIC)?;
        file.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
        file.write_all(&crc32fast::hash(&meta_bytes).to_le_bytes())?;
        file.write_all(&meta_bytes)?;
        let mut out = Crc {
            inner: file,
            hasher: crc32fast::Hasher::new(),
        };
        let mut head = Vec::with_capacity(HEAD_BYTES);
        head.extend_from_slice(&DATA_VERSION.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        for v in [
            stats.keys,
            stats.clock_ms,
            stats.expired_total,
            stats.evicted_total,
            stats.oom_total,
        ] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        out.write_all(&head)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            tmp,
            out,
            meta: meta.clone(),
            written: 0,
            count: stats.keys,
        })
    }

    pub fn items<'a>(&mut self, items: impl IntoIterator<Item = &'a Item>) -> io::Result<()> {
        for it in items {
            let (raw, key_len) = it.raw();
            self.out.write_all(&key_len.to_le_bytes())?;
            self.out.write_all(&(raw.len() as u32).to_le_bytes())?;
            self.out.write_all(raw)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Seal, fsync and rename the file into place. Older snapshots stay
    /// until the caller calls [`remove_all_but`]: a reader may be about to
    /// open the one that is current until then.
    pub fn finish(self) -> io::Result<PathBuf> {
        if self.written != self.count {
            return Err(io::Error::other(format!(
                "snapshot writer: {} items written, {} announced",
                self.written, self.count
            )));
        }
        let crc = self.out.hasher.finalize();
        let mut file = self.out.inner;
        file.write_all(&crc.to_le_bytes())?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let path = self.dir.join(file_name(&self.meta));
        fs::rename(&self.tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(path)
    }
}

/// Read a file's meta and leave `r` at the start of the data.
fn read_meta(r: &mut impl Read, size: u64) -> io::Result<typ::SnapshotMeta> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| invalid("too short"))?;
    if &magic != FILE_MAGIC {
        return Err(invalid("bad magic (not a dcache v2 snapshot)"));
    }
    let mut b4 = [0u8; 4];
    r.read_exact(&mut b4)?;
    let meta_len = u32::from_le_bytes(b4);
    r.read_exact(&mut b4)?;
    let meta_crc = u32::from_le_bytes(b4);
    if meta_len > MAX_META_BYTES || u64::from(meta_len) + 16 > size {
        return Err(invalid("meta length past the end of the file"));
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    r.read_exact(&mut meta_bytes)?;
    if crc32fast::hash(&meta_bytes) != meta_crc {
        return Err(invalid("meta checksum mismatch"));
    }
    rmp_serde::from_slice(&meta_bytes).map_err(|e| invalid(format!("meta: {e}")))
}

/// Stream the data part of a snapshot: call `each` with every item, return
/// the counters. `left` is the number of bytes from the reader's position
/// to the end of the file.
fn read_data(
    r: &mut impl Read,
    mut left: u64,
    mut each: impl FnMut(Item),
) -> io::Result<CacheStats> {
    let mut hasher = crc32fast::Hasher::new();
    let mut take = |r: &mut dyn Read, buf: &mut [u8], left: &mut u64| -> io::Result<()> {
        if (buf.len() as u64) > *left {
            return Err(invalid("truncated"));
        }
        r.read_exact(buf)?;
        *left -= buf.len() as u64;
        hasher.update(buf);
        Ok(())
    };
    let mut head = [0u8; HEAD_BYTES];
    take(r, &mut head, &mut left)?;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let version = u32_at(&head, 0);
    if version != DATA_VERSION {
        return Err(invalid(format!("unsupported data version {version}")));
    }
    let stats = CacheStats {
        keys: u64_at(&head, 8),
        clock_ms: u64_at(&head, 16),
        expired_total: u64_at(&head, 24),
        evicted_total: u64_at(&head, 32),
        oom_total: u64_at(&head, 40),
        ..CacheStats::default()
    };
    for _ in 0..stats.keys {
        let mut lens = [0u8; 8];
        take(r, &mut lens, &mut left)?;
        let key_len = u32_at(&lens, 0);
        let raw_len = u32_at(&lens, 4);
        if u64::from(raw_len) > left {
            return Err(invalid("record length past the end of the file"));
        }
        let mut raw = vec![0u8; raw_len as usize].into_boxed_slice();
        take(r, &mut raw, &mut left)?;
        each(
            Item::from_raw(raw, key_len, 0)
                .ok_or_else(|| invalid("record shorter than its key"))?,
        );
    }
    let crc = hasher.finalize();
    let mut b4 = [0u8; 4];
    if left != 4 {
        return Err(invalid("length does not match the item count"));
    }
    r.read_exact(&mut b4)?;
    if u32::from_le_bytes(b4) != crc {
        return Err(invalid("data checksum mismatch"));
    }
    Ok(stats)
}

fn open(path: &Path) -> io::Result<(BufReader<fs::File>, u64)> {
    let f = fs::File::open(path)?;
    let size = f.metadata()?.len();
    Ok((BufReader::with_capacity(1 << 20, f), size))
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("snapshot {}: {e}", path.display()))
}

/// Load a snapshot file into a cache. Any damage is an error naming the
/// file.
pub fn load(path: &Path) -> io::Result<(typ::SnapshotMeta, Cache)> {
    let go = || {
        let (mut r, size) = open(path)?;
        let meta = read_meta(&mut r, size)?;
        let left = size - r.stream_position()?;
        let mut builder = CacheBuilder::new();
        let mut prev: Option<Box<[u8]>> = None;
        let mut sorted = true;
        let stats = read_data(&mut r, left, |it| {
            sorted &= prev.as_deref().is_none_or(|p| p < it.key());
            prev = Some(it.key().into());
            builder.push(it);
        })?;
        if !sorted {
            return Err(invalid("records out of key order"));
        }
        let mut cache = builder.finish(stats.clock_ms);
        cache.set_totals(stats.expired_total, stats.evicted_total, stats.oom_total);
        Ok((meta, cache))
    };
    go().map_err(|e| named(path, e))
}

/// Check a whole file (both checksums, every length) without keeping its
/// items; returns its meta.
pub fn verify(path: &Path) -> io::Result<typ::SnapshotMeta> {
    let go = || {
        let (mut r, size) = open(path)?;
        let meta = read_meta(&mut r, size)?;
        let left = size - r.stream_position()?;
        read_data(&mut r, left, drop)?;
        Ok(meta)
    };
    go().map_err(|e| named(path, e))
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

/// Remove every snapshot file in `dir` except `keep`. Called once `keep`
/// is the snapshot readers are given, so none of them can be about to open
/// a removed file (a file already open stays readable after removal).
pub fn remove_all_but(dir: &Path, keep: &Path) -> io::Result<()> {
    for p in list(dir)? {
        if p != keep {
            fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Put a verified received file in place as the newest snapshot (older
/// ones stay until [`remove_all_but`]).
pub fn adopt(dir: &Path, tmp: &Path, meta: &typ::SnapshotMeta) -> io::Result<PathBuf> {
    let path = dir.join(file_name(meta));
    fs::rename(tmp, &path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// The newest snapshot file in `dir`, after removing leftover temp files.
pub fn latest(dir: &Path) -> io::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    for ent in fs::read_dir(dir)? {
        let p = ent?.path();
        if p.to_string_lossy().ends_with(TMP_SUFFIX) {
            tracing::warn!(path = %p.display(), "removing incomplete snapshot file");
            fs::remove_file(&p)?;
        }
    }
    Ok(list(dir)?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Command;
    use crate::kv::Request;
    use crate::kv::Ttl;

    fn sample() -> Cache {
        let mut c = Cache::new();
        for i in 0..50u64 {
            let ttl = if i % 3 == 0 {
                Ttl::In(1000 + i)
            } else {
                Ttl::Clear
            };
            let cmd = Command::Set {
                key: format!("k{i:03}"),
                value: vec![i as u8; i as usize],
                cas: None,
                ttl,
            };
            c.apply(i + 1, &Request::new(1_000 + i, cmd));
        }
        c
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

    fn write(dir: &Path, c: &Cache, index: u64) -> PathBuf {
        let mut w = Writer::create(dir, &meta(index), &c.stats()).unwrap();
        w.items(c.items()).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn roundtrip_keeps_items_clock_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let c = sample();
        let p = write(dir.path(), &c, 7);
        let (m, back) = load(&p).unwrap();
        assert_eq!(m, meta(7));
        assert_eq!(back, c);
        assert_eq!(back.digest(), c.digest());
        assert_eq!(back.stats(), c.stats());
        assert_eq!(verify(&p).unwrap(), meta(7));
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::new();
        c.apply(
            1,
            &Request::new(
                5,
                Command::Set {
                    key: "a".into(),
                    value: b"xy".to_vec(),
                    cas: None,
                    ttl: Ttl::In(9),
                },
            ),
        );
        let p = write(dir.path(), &c, 3);
        let good = fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&p, &bad).unwrap();
            assert!(load(&p).is_err(), "flip at byte {i} not detected");
        }
        for cut in 0..good.len() {
            fs::write(&p, &good[..cut]).unwrap();
            assert!(verify(&p).is_err(), "cut at {cut} not detected");
        }
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &sample(), 3);
        let mut bytes = fs::read(&p).unwrap();
        // The first record's raw_len sits after magic, meta and head.
        let meta_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let rec = 16 + meta_len + HEAD_BYTES;
        bytes[rec + 4..rec + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&p, &bytes).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
    }

    #[test]
    fn latest_keeps_the_newest_and_removes_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let old = write(dir.path(), &sample(), 5);
        let p = write(dir.path(), &sample(), 9);
        // Writing a new file leaves the old one until it is let go.
        assert_eq!(list(dir.path()).unwrap(), vec![old, p.clone()]);
        remove_all_but(dir.path(), &p).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![p.clone()]);
        fs::write(dir.path().join(format!("x{TMP_SUFFIX}")), b"junk").unwrap();
        assert_eq!(latest(dir.path()).unwrap(), Some(p));
        assert!(!dir.path().join(format!("x{TMP_SUFFIX}")).exists());
    }
}
