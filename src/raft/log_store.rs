//! The durable Raft log: openraft's [`RaftLogStorage`] on top of `raft-log`.
//!
//! `raft-log` is a segmented write-ahead log: every record (entry, vote,
//! commit mark, truncate, purge) carries a CRC32; on reopen a torn last record
//! is truncated and a damaged record before the tail is an error. Its flush
//! worker thread batches pending flush requests into one fsync, so concurrent
//! client writes share fsyncs (group commit); a lone flush request is fsynced
//! at once (dcache's patch of chunked-wal, vendor/README.md). The measurement
//! behind this choice is in docs/ARCHITECTURE.md.
//!
//! Invariants:
//! - `append` reports completion to openraft only after the entries are
//!   fsynced (`flush(true, ..)`); openraft acknowledges a client write only
//!   after a quorum has done so.
//! - `save_vote` returns only after the vote is fsynced: a vote decides an
//!   election and must survive a crash.
//! - An fsync error is reported to openraft, which stops the node (a storage
//!   error is fatal) rather than acknowledging.
//!
//! Not here: deciding when to purge (openraft does, after a snapshot).

use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::LogIdOptionExt;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use raft_log::api::raft_log_writer::RaftLogWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;
use tokio::sync::oneshot;

use super::TypeConfig;
use super::typ;

/// A serde value stored in the WAL: `len: u32 LE`, `crc32(len): u32 LE`,
/// then `len` bytes of MessagePack.
///
/// The checksummed length is what lets a restart tell a torn write from a
/// damaged log. raft-log truncates a last record whose decoding ends in
/// `UnexpectedEof` (a write cut short by a crash) and refuses to open on any
/// other error. Without a trusted length, a flipped byte in the middle of
/// the log could make a decoder run past its record, report EOF, and have
/// every later record truncated away; here a damaged length is
/// `InvalidData`, and EOF is reported only when the file really ends inside
/// the record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec<T>(pub T);

/// Largest record accepted when decoding (entries are capped far below by
/// the value size limit); guards against absurd lengths.
const MAX_RECORD_BYTES: u64 = 1 << 30;

impl<T: Serialize> codeq::Encode for Rec<T> {
    fn encode<W: io::Write>(&self, mut w: W) -> Result<usize, io::Error> {
        let buf = rmp_serde::to_vec_named(&self.0).map_err(io::Error::other)?;
        let len =
            u32::try_from(buf.len()).map_err(|_| io::Error::other("WAL record over 4 GiB"))?;
        let len_bytes = len.to_le_bytes();
        w.write_all(&len_bytes)?;
        w.write_all(&crc32fast::hash(&len_bytes).to_le_bytes())?;
        w.write_all(&buf)?;
        Ok(8 + buf.len())
    }
}

impl<T: DeserializeOwned> codeq::Decode for Rec<T> {
    fn decode<R: io::Read>(mut r: R) -> Result<Self, io::Error> {
        use std::io::Read as _;
        let mut head = [0u8; 8];
        // A short read here is a genuine torn tail: keep UnexpectedEof.
        r.read_exact(&mut head)?;
        let (len_bytes, crc) = head.split_at(4);
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(len_bytes) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "WAL record length is damaged",
            ));
        }
        let len = u64::from(u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")));
        if len > MAX_RECORD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("WAL record length {len} is over the limit"),
            ));
        }
        // Grow while reading rather than trusting `len` for an allocation.
        let mut buf = Vec::new();
        r.by_ref().take(len).read_to_end(&mut buf)?;
        if (buf.len() as u64) < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "WAL record cut short",
            ));
        }
        rmp_serde::from_slice(&buf)
            .map(Rec)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// How a flush completion reaches its waiter.
pub enum FlushCallback {
    /// Completion of an `append`: hand the result to openraft.
    Raft(IOFlushed<TypeConfig>),
    /// Completion awaited by this module (vote, shutdown sync).
    Oneshot(oneshot::Sender<io::Result<()>>),
}

impl raft_log::Callback for FlushCallback {
    fn send(self, res: Result<(), io::Error>) {
        if let Err(e) = &res {
            tracing::error!(error = %e, "raft log fsync failed");
        }
        match self {
            FlushCallback::Raft(cb) => cb.io_completed(res),
            FlushCallback::Oneshot(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}

impl Debug for FlushCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushCallback")
    }
}

/// `raft-log`'s type parameters for dcache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = Rec<typ::LogId>;
    type LogPayload = Rec<typ::Entry>;
    type Vote = Rec<typ::Vote>;
    type Callback = FlushCallback;
    type UserData = Rec<()>;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        super::entry_bytes(&payload.0.payload)
    }
}

/// Entries raft-log keeps in memory (see [`LogStore::open`]).
const LOG_CACHE_ITEMS: usize = 10_000;
/// Bytes raft-log keeps in memory at most.
const LOG_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Records per WAL chunk file (see [`LogStore::open`]).
const WAL_CHUNK_RECORDS: usize = 8192;
/// Bytes per WAL chunk file at most.
const WAL_CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// The log store. Clones share one `RaftLog`; openraft reads through a clone
/// (the log reader) while the core writes through another.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<RwLock<raft_log::RaftLog<WalTypes>>>,
}

impl LogStore {
    /// Open (or create) the log in `dir`. A torn tail is truncated (with a
    /// warning from `raft-log`); any other damage is an error. `flush_wait`:
    /// the group-commit window, waited only when more than one flush request
    /// is queued (None: raft-log's default, 1 ms).
    pub fn open(dir: &Path, flush_wait: Option<std::time::Duration>) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut config = raft_log::Config::new(dir.display().to_string());
        // raft-log keeps recent entries in memory for replication; its
        // defaults (100,000 entries, 1 GiB) would hold a cache's worth of
        // values a second time. Followers that fall further behind read the
        // log from disk (the page cache, usually) or get a snapshot.
        config.log_cache_max_items = Some(LOG_CACHE_ITEMS);
        config.log_cache_capacity = Some(LOG_CACHE_BYTES);
        // Small chunks: purging after a snapshot deletes whole chunks only,
        // and opening reads every record of the chunks left. With
        // raft-log's defaults (1M records / 1 GiB per chunk) the WAL kept
        // every entry ever written until a chunk filled, and a restart read
        // them all into memory (300,000 writes: a 100 MB chunk, 200 MB of
        // heap at open; docs/BENCHMARKS.md "Memory").
        config.wal.chunk_max_records = Some(WAL_CHUNK_RECORDS);
        config.wal.chunk_max_size = Some(WAL_CHUNK_BYTES);
        config.wal.flush_batch_wait = flush_wait;
        let log = raft_log::RaftLog::open(Arc::new(config)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open raft log in {}: {e}", dir.display()),
            )
        })?;
        Ok(Self {
            inner: Arc::new(RwLock::new(log)),
        })
    }

    /// Flush and fsync everything written so far; used on shutdown.
    pub async fn sync(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut log = self.inner.write().await;
            log.flush(true, Some(FlushCallback::Oneshot(tx)))?;
        }
        rx.await.map_err(io::Error::other)?
    }

    /// (number of entries on disk, first index, last index) for metrics.
    pub async fn stats(&self) -> (u64, Option<u64>, Option<u64>) {
        let log = self.inner.read().await;
        let st = log.log_state();
        let first = st.purged().map(|l| l.0.index + 1).unwrap_or(0);
        let last = st.last().map(|l| l.0.index);
        let n = last.map(|l| (l + 1).saturating_sub(first)).unwrap_or(0);
        (n, last.map(|_| first), last)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<typ::Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => u64::MAX,
        };
        let log = self.inner.read().await;
        log.read(start, end)
            .map(|r| r.map(|(_, payload)| payload.0))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<typ::Vote>, io::Error> {
        let log = self.inner.read().await;
        Ok(log.log_state().vote().map(|v| v.0.clone()))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let log = self.inner.read().await;
        let st = log.log_state();
        Ok(LogState {
            last_purged_log_id: st.purged().map(|l| l.0.clone()),
            last_log_id: st.last().map(|l| l.0.clone()),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &typ::Vote) -> Result<(), io::Error> {
        let (tx, rx) = oneshot::channel();
        {
            let mut log = self.inner.write().await;
            log.save_vote(Rec(vote.clone()))?;
            log.flush(true, Some(FlushCallback::Oneshot(tx)))?;
        }
        // Wait outside the lock: readers may proceed while the fsync runs.
        rx.await.map_err(io::Error::other)?
    }

    async fn save_committed(&mut self, committed: Option<typ::LogId>) -> Result<(), io::Error> {
        // Not flushed on its own: the commit mark is an optimisation (it lets
        // a restart re-apply without waiting for a leader); it reaches disk
        // with the next append's fsync.
        if let Some(c) = committed {
            let mut log = self.inner.write().await;
            log.commit(Rec(c))?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<typ::LogId>, io::Error> {
        let log = self.inner.read().await;
        Ok(log.log_state().committed().map(|l| l.0.clone()))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut log = self.inner.write().await;
        log.append(entries.into_iter().map(|e| (Rec(e.log_id()), Rec(e))))?;
        // The flush worker calls back once the data is fsynced; requests
        // queued meanwhile share the same fsync.
        log.flush(true, Some(FlushCallback::Raft(callback)))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<typ::LogId>) -> Result<(), io::Error> {
        let at = last_log_id.next_index();
        let mut log = self.inner.write().await;
        let next = log.log_state().last().map(|l| l.0.index + 1).unwrap_or(0);
        if at >= next {
            return Ok(());
        }
        // Not flushed: a crash before this record is durable leaves the
        // conflicting suffix, which openraft truncates again after restart.
        log.truncate(at)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: typ::LogId) -> Result<(), io::Error> {
        let mut log = self.inner.write().await;
        let purged_next = log.log_state().purged().map(|l| l.0.index + 1).unwrap_or(0);
        if log_id.index < purged_next {
            return Ok(());
        }
        log.purge(Rec(log_id))?;
        // raft-log unlinks purged chunk files only after a synced flush.
        log.flush(true, None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::StorageError;
    use openraft::testing::log::StoreBuilder;
    use openraft::testing::log::Suite;

    use super::*;
    use crate::raft::state_machine::StateMachine;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = LogStore::open(&dir.path().join("log"), None).expect("open log");
            let sm = StateMachine::open(&dir.path().join("snapshots")).expect("open sm");
            Ok((dir, log, sm))
        }
    }

    /// openraft's storage conformance suite against our log store and state
    /// machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() {
        Suite::test_all(Builder).await.expect("storage suite");
    }
}
