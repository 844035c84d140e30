//! openraft's [`RaftStateMachine`]: applies committed entries to the
//! [`Cache`], builds and installs snapshots.
//!
//! Invariants:
//! - `apply` is deterministic: it hands each request and its log index to
//!   [`Cache::apply`] and nothing else. It never fails for bad input (that is
//!   an applied `Response`); an I/O failure is returned to openraft, which
//!   stops the node.
//! - `last_applied` and the cache change together under one write lock, so a
//!   reader never sees a value without the index that produced it.
//! - A snapshot never copies the map and never holds the lock for long: it
//!   begins a capture in the cache under the write lock (recording the
//!   applied index and membership at that instant), then streams the
//!   captured state to a file in chunks, each under a short read lock, while
//!   apply goes on. Only the keys changed meanwhile are copied (their
//!   content at capture time).
//! - A snapshot is durable (fsynced file) before openraft learns of it, so
//!   openraft may purge the log it covers.
//! - One snapshot build or install runs at a time (`build` lock).
//! - Older snapshot files are removed only after `current` names the new
//!   one, and readers open the file under the `current` lock: a leader
//!   sending a snapshot never finds its file gone (an open file stays
//!   readable after removal).
//! - On open, the newest snapshot on disk is loaded and verified; openraft
//!   then re-applies the committed log after it.
//!
//! Not here: reading for clients with a consistency level (see `cluster`);
//! this module only offers the local [`StateReader`].

use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use futures_util::Stream;
use futures_util::TryStreamExt;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;

use super::SnapshotData;
use super::TypeConfig;
use super::applied::AppliedIndex;
use super::snapshot;
use super::snapshot::SnapshotFile;
use super::typ;
use crate::kv::Cache;
use crate::kv::CacheStats;
use crate::kv::Entry;
use crate::kv::Response;

/// Items streamed per read-lock hold while a snapshot is written.
const SNAPSHOT_CHUNK: usize = 4096;

struct SmState {
    last_applied: Option<typ::LogId>,
    membership: typ::StoredMembership,
    cache: Cache,
}

/// Where the state machine reports what each applied entry changed (the
/// watch history, owned by `cluster`). Called in log order, under the state
/// lock, before the entry's index becomes visible to readers.
pub trait ChangeSink: Send + Sync + 'static {
    /// Entry `index` was applied and changed `changes` (often none).
    fn applied(&self, index: u64, changes: Vec<crate::kv::Change>);
    /// The state was replaced by a snapshot at `index` (or loaded from one
    /// at start): what changed up to it is not known.
    fn reset(&self, index: u64);
}

/// A sink that drops everything (tests of the state machine alone).
pub struct NoSink;

impl ChangeSink for NoSink {
    fn applied(&self, _: u64, _: Vec<crate::kv::Change>) {}
    fn reset(&self, _: u64) {}
}

struct Shared {
    state: RwLock<SmState>,
    sink: Arc<dyn ChangeSink>,
    /// Path and meta of the newest durable snapshot. Readers open the file
    /// under this lock (`get_current_snapshot`), and older files are removed
    /// only after it names the new one ([`Shared::make_current`]), so a
    /// reader never opens a removed file.
    current: Mutex<Option<(typ::SnapshotMeta, PathBuf)>>,
    dir: PathBuf,
    /// Held by a snapshot build or install for its whole duration.
    build: tokio::sync::Mutex<()>,
    /// The cache's replicated clock, mirrored after each change so the
    /// proposer can stamp without taking the state lock.
    clock_ms: AtomicU64,
    /// Log bytes ([`super::entry_bytes`]) applied since this process
    /// opened the state machine; and its value when the state of the newest
    /// snapshot was captured (or installed). Their difference is what the
    /// snapshot policy weighs (`compaction`); neither is part of the state.
    applied_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// The applied index, for reads waiting on it (outside the lock).
    applied: AppliedIndex,
}

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Read-only access to the applied state, for the read path, eviction
/// choices and metrics.
#[derive(Clone)]
pub struct StateReader {
    shared: Arc<Shared>,
}

fn lock_poisoned() -> io::Error {
    io::Error::other("state machine lock poisoned")
}

impl StateMachine {
    /// Open the state machine, restoring the newest snapshot in `dir`, with
    /// no change sink.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with_sink(dir, Arc::new(NoSink))
    }

    /// Open the state machine, restoring the newest snapshot in `dir`;
    /// report changes to `sink`.
    pub fn open_with_sink(dir: &Path, sink: Arc<dyn ChangeSink>) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (state, current) = match snapshot::latest(dir)? {
            Some(path) => {
                let (meta, cache) = snapshot::load(&path)?;
                // A crash between a new file's rename and the removal of
                // the old one leaves both.
                snapshot::remove_all_but(dir, &path)?;
                tracing::info!(
                    last_log_id = ?meta.last_log_id,
                    keys = cache.len(),
                    "restored state machine from snapshot"
                );
                let st = SmState {
                    last_applied: meta.last_log_id.clone(),
                    membership: meta.last_membership.clone(),
                    cache,
                };
                (st, Some((meta, path)))
            }
            None => (
                SmState {
                    last_applied: None,
                    membership: Default::default(),
                    cache: Cache::new(),
                },
                None,
            ),
        };
        let mut state = state;
        state.cache.record_changes();
        sink.reset(state.last_applied.as_ref().map_or(0, |l| l.index));
        let clock_ms = state.cache.clock_ms();
        let applied = AppliedIndex::new(state.last_applied.as_ref().map_or(0, |l| l.index));
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                sink,
                current: Mutex::new(current),
                dir: dir.to_path_buf(),
                build: tokio::sync::Mutex::new(()),
                clock_ms: AtomicU64::new(clock_ms),
                applied_bytes: AtomicU64::new(0),
                snapshot_bytes: AtomicU64::new(0),
                applied,
            }),
        })
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }

    /// Where received snapshots are written before they are installed.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// What one read of the local state returns.
#[derive(Debug, Clone)]
pub struct LocalRead {
    pub entry: Option<Entry>,
    /// Index of the last applied log entry when the read was made.
    pub applied_index: u64,
    /// The replicated clock when the read was made.
    pub clock_ms: u64,
}

impl StateReader {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, SmState> {
        self.shared
            .state
            .read()
            .expect("state machine lock poisoned")
    }

    pub fn get(&self, key: &str) -> LocalRead {
        let st = self.read();
        LocalRead {
            entry: st.cache.get(key),
            applied_index: st.last_applied.as_ref().map_or(0, |l| l.index),
            clock_ms: st.cache.clock_ms(),
        }
    }

    /// [`StateReader::get`], and record the access in the item's node-local
    /// access word (for LRU/LFU eviction): `now_ms` is this node's time,
    /// `coin` a uniform random number for the LFU counter.
    pub fn get_and_touch(&self, key: &str, now_ms: u64, coin: f64) -> LocalRead {
        let st = self.read();
        let item = st.cache.get_item(key);
        if let Some(it) = item {
            it.set_access(crate::kv::Access(it.access()).touched(now_ms, coin).0);
        }
        LocalRead {
            entry: item.map(|it| it.view().into()),
            applied_index: st.last_applied.as_ref().map_or(0, |l| l.index),
            clock_ms: st.cache.clock_ms(),
        }
    }

    /// Run `f` on the cache under the read lock, with the applied index of
    /// the state it saw (keep it short: apply waits).
    pub fn inspect_at<T>(&self, f: impl FnOnce(&Cache) -> T) -> (T, u64) {
        let st = self.read();
        let index = st.last_applied.as_ref().map_or(0, |l| l.index);
        (f(&st.cache), index)
    }

    /// Run `f` on the cache under the read lock (keep it short: apply waits).
    pub fn inspect<T>(&self, f: impl FnOnce(&Cache) -> T) -> T {
        f(&self.read().cache)
    }

    /// The replicated clock (ms since the epoch), without the state lock.
    pub fn clock_ms(&self) -> u64 {
        self.shared.clock_ms.load(Ordering::Relaxed)
    }

    pub fn applied_index(&self) -> u64 {
        self.read().last_applied.as_ref().map_or(0, |l| l.index)
    }

    /// Resolves once this node has applied `index` (woken by the apply
    /// that reaches it; see [`AppliedIndex`]). Bound it with a deadline.
    pub async fn wait_applied(&self, index: u64) {
        self.shared.applied.wait(index).await
    }

    /// Log bytes applied since the state of the newest snapshot was
    /// captured (since start, for the log replayed after it).
    pub fn log_bytes_since_snapshot(&self) -> u64 {
        let applied = self.shared.applied_bytes.load(Ordering::Relaxed);
        applied.saturating_sub(self.shared.snapshot_bytes.load(Ordering::Relaxed))
    }

    /// Applied index, key count, memory and digest: O(1).
    pub fn summary(&self) -> StateSummary {
        let st = self.read();
        StateSummary {
            applied_index: st.last_applied.as_ref().map_or(0, |l| l.index),
            keys: st.cache.len() as u64,
            mem_bytes: st.cache.mem_bytes(),
            digest: st.cache.digest(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.read().cache.stats()
    }
}

/// What `GET /v1/status/digest` reports: replicas at the same applied
/// index have the same digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StateSummary {
    pub applied_index: u64,
    pub keys: u64,
    pub mem_bytes: u64,
    pub digest: u64,
}

/// Builds one snapshot (see the module doc).
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl SnapshotBuilder {
    /// Stream the captured state into a snapshot file.
    fn write(shared: &Shared, meta: &typ::SnapshotMeta, stats: &CacheStats) -> io::Result<PathBuf> {
        let mut w = snapshot::Writer::create(&shared.dir, meta, stats)?;
        let mut after: Option<Box<[u8]>> = None;
        loop {
            let chunk = {
                let st = shared.state.read().map_err(|_| lock_poisoned())?;
                st.cache.capture_chunk(after.as_deref(), SNAPSHOT_CHUNK)
            };
            let Some(last) = chunk.last() else { break };
            after = Some(last.key().into());
            w.items(&chunk)?;
        }
        w.finish()
    }
}

fn open_file(path: PathBuf) -> io::Result<SnapshotFile> {
    let file = std::fs::File::open(&path)?;
    Ok(SnapshotFile { path, file })
}

impl Shared {
    /// Make `path` the snapshot readers are given, then remove every older
    /// file. Readers open the current file under the `current` lock, so
    /// once it names `path` none can open an older one (a file already open
    /// stays readable, unlinked). The removal, which may free a large file,
    /// runs on the blocking pool, outside the lock.
    async fn make_current(&self, meta: &typ::SnapshotMeta, path: &Path) -> io::Result<()> {
        *self.current.lock().map_err(|_| lock_poisoned())? =
            Some((meta.clone(), path.to_path_buf()));
        let (dir, keep) = (self.dir.clone(), path.to_path_buf());
        tokio::task::spawn_blocking(move || snapshot::remove_all_but(&dir, &keep))
            .await
            .map_err(io::Error::other)?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<typ::Snapshot, io::Error> {
        let _one = self.shared.build.lock().await;
        let started = std::time::Instant::now();
        let (meta, stats, bytes_at) = {
            let mut st = self.shared.state.write().map_err(|_| lock_poisoned())?;
            let bytes_at = self.shared.applied_bytes.load(Ordering::Relaxed);
            let stats = st
                .cache
                .begin_capture()
                .ok_or_else(|| io::Error::other("a snapshot capture is already active"))?;
            let meta = typ::SnapshotMeta {
                last_log_id: st.last_applied.clone(),
                last_membership: st.membership.clone(),
            };
            (meta, stats, bytes_at)
        };
        let shared = self.shared.clone();
        let meta2 = meta.clone();
        let written =
            tokio::task::spawn_blocking(move || SnapshotBuilder::write(&shared, &meta2, &stats))
                .await
                .map_err(io::Error::other);
        // End the capture whatever happened, freeing what it recorded.
        self.shared
            .state
            .write()
            .map_err(|_| lock_poisoned())?
            .cache
            .end_capture();
        let path = written??;
        self.shared
            .snapshot_bytes
            .store(bytes_at, Ordering::Relaxed);
        let build_ms = started.elapsed().as_millis() as u64;
        tracing::info!(last_log_id = ?meta.last_log_id, keys = stats.keys, build_ms, path = %path.display(), "snapshot taken");
        self.shared.make_current(&meta, &path).await?;
        // Still under the build lock: no other build or install can remove
        // the file before it is open.
        Ok(typ::Snapshot {
            meta,
            snapshot: open_file(path)?,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<typ::LogId>, typ::StoredMembership), io::Error> {
        let st = self.shared.state.read().map_err(|_| lock_poisoned())?;
        Ok((st.last_applied.clone(), st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut st = self.shared.state.write().map_err(|_| lock_poisoned())?;
                st.last_applied = Some(entry.log_id.clone());
                // Under the lock, with the index: a capture's count covers
                // exactly the entries its state holds.
                self.shared
                    .applied_bytes
                    .fetch_add(super::entry_bytes(&entry.payload), Ordering::Relaxed);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Empty,
                    EntryPayload::Normal(ref req) => {
                        let r = st.cache.apply(entry.log_id.index, req);
                        self.shared
                            .clock_ms
                            .store(st.cache.clock_ms(), Ordering::Relaxed);
                        r
                    }
                    EntryPayload::Membership(ref m) => {
                        st.membership =
                            typ::StoredMembership::new(Some(entry.log_id.clone()), m.clone());
                        Response::Empty
                    }
                };
                // Under the lock: the history never lags what readers see.
                let changes = st.cache.take_changes();
                self.shared.sink.applied(entry.log_id.index, changes);
                response
            };
            // After the lock: a woken read finds the state at this index.
            self.shared.applied.advance(entry.log_id.index);
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let _one = self.shared.build.lock().await;
        let shared = self.shared.clone();
        let meta2 = meta.clone();
        let (cache, path) = tokio::task::spawn_blocking(move || -> io::Result<(Cache, PathBuf)> {
            let (_, mut cache) = snapshot::load(&snapshot.path)?;
            cache.record_changes();
            let path = if snapshot.path.parent() == Some(shared.dir.as_path())
                && snapshot
                    .path
                    .to_string_lossy()
                    .ends_with(snapshot::TMP_SUFFIX)
            {
                snapshot::adopt(&shared.dir, &snapshot.path, &meta2)?
            } else {
                snapshot.path
            };
            Ok((cache, path))
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?meta.last_log_id, keys = cache.len(), "installed snapshot");
        self.shared.make_current(meta, &path).await?;
        let old = {
            let mut st = self.shared.state.write().map_err(|_| lock_poisoned())?;
            st.last_applied = meta.last_log_id.clone();
            st.membership = meta.last_membership.clone();
            self.shared
                .clock_ms
                .store(cache.clock_ms(), Ordering::Relaxed);
            let applied = self.shared.applied_bytes.load(Ordering::Relaxed);
            self.shared.snapshot_bytes.store(applied, Ordering::Relaxed);
            self.shared
                .sink
                .reset(meta.last_log_id.as_ref().map_or(0, |l| l.index));
            std::mem::replace(&mut st.cache, cache)
        };
        self.shared
            .applied
            .advance(meta.last_log_id.as_ref().map_or(0, |l| l.index));
        // Free the old state outside the lock (a big map takes a while).
        drop(old);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<typ::Snapshot>, io::Error> {
        // Open under the lock: a build or install finishing now removes the
        // old file only after it takes this lock.
        let current = self.shared.current.lock().map_err(|_| lock_poisoned())?;
        let Some((meta, path)) = current.as_ref() else {
            return Ok(None);
        };
        Ok(Some(typ::Snapshot {
            meta: meta.clone(),
            snapshot: open_file(path.clone())?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;

    use super::*;

    /// Apply one blank entry at `index`, moving the snapshot's name on.
    async fn apply_blank(sm: &mut StateMachine, index: u64) {
        let log_id = openraft::testing::log_id::<TypeConfig>(1, 1u64.into(), index);
        let entry = typ::Entry::new_blank(log_id);
        let one = futures_util::stream::iter([Ok((entry, None))]);
        sm.apply(one).await.expect("apply");
    }

    /// Builds replace the snapshot file while a reader (a leader sending a
    /// snapshot) keeps asking for the current one: every read must open a
    /// file, and only the newest file is left at the end. Before the fix, a
    /// reader could take the old path just as the build removed its file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_never_gets_a_snapshot_a_build_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = StateMachine::open(dir.path()).expect("open");
        apply_blank(&mut sm, 1).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let mut sm = sm.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let snap = sm
                        .get_current_snapshot()
                        .await
                        .expect("open current snapshot");
                    assert!(snap.is_some());
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        };
        for index in 2..300 {
            apply_blank(&mut sm, index).await;
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("build");
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.await.expect("reader");
        assert!(reads > 0);
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
    }
}
