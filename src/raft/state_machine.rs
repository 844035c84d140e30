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
//! - A snapshot is durable (fsynced file) before openraft learns of it, so
//!   openraft may purge the log it covers.
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

use futures_util::Stream;
use futures_util::TryStreamExt;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;

use super::SnapshotData;
use super::TypeConfig;
use super::snapshot;
use super::typ;
use crate::kv::Cache;
use crate::kv::Entry;
use crate::kv::Response;

struct SmState {
    last_applied: Option<typ::LogId>,
    membership: typ::StoredMembership,
    cache: Cache,
}

struct Shared {
    state: RwLock<SmState>,
    /// Path and meta of the newest durable snapshot.
    current: Mutex<Option<(typ::SnapshotMeta, PathBuf)>>,
    dir: PathBuf,
}

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Read-only access to the applied state, for the read path and metrics.
#[derive(Clone)]
pub struct StateReader {
    shared: Arc<Shared>,
}

fn lock_poisoned() -> io::Error {
    io::Error::other("state machine lock poisoned")
}

impl StateMachine {
    /// Open the state machine, restoring the newest snapshot in `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (state, current) = match snapshot::load_latest(dir)? {
            Some((meta, data, path)) => {
                let cache = snapshot::decode_data(&data)?;
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
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                current: Mutex::new(current),
                dir: dir.to_path_buf(),
            }),
        })
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }
}

/// What one read of the local state returns.
#[derive(Debug, Clone)]
pub struct LocalRead {
    pub entry: Option<Entry>,
    /// Index of the last applied log entry when the read was made.
    pub applied_index: u64,
}

impl StateReader {
    pub fn get(&self, key: &str) -> LocalRead {
        let st = self
            .shared
            .state
            .read()
            .expect("state machine lock poisoned");
        LocalRead {
            entry: st.cache.get(key).cloned(),
            applied_index: st.last_applied.as_ref().map_or(0, |l| l.index),
        }
    }

    pub fn applied_index(&self) -> u64 {
        let st = self
            .shared
            .state
            .read()
            .expect("state machine lock poisoned");
        st.last_applied.as_ref().map_or(0, |l| l.index)
    }

    /// (applied index, number of keys, accounted memory bytes, digest).
    pub fn summary(&self) -> StateSummary {
        let st = self
            .shared
            .state
            .read()
            .expect("state machine lock poisoned");
        StateSummary {
            applied_index: st.last_applied.as_ref().map_or(0, |l| l.index),
            keys: st.cache.len() as u64,
            mem_bytes: st.cache.mem_bytes(),
            digest: st.cache.digest(),
        }
    }

    /// (keys, memory bytes) without hashing everything.
    pub fn size(&self) -> (u64, u64) {
        let st = self
            .shared
            .state
            .read()
            .expect("state machine lock poisoned");
        (st.cache.len() as u64, st.cache.mem_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StateSummary {
    pub applied_index: u64,
    pub keys: u64,
    pub mem_bytes: u64,
    pub digest: u64,
}

/// Builds one snapshot: copies the state under the read lock, encodes and
/// writes it without holding the lock.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<typ::Snapshot, io::Error> {
        let (entries, last_applied, membership) = {
            let st = self.shared.state.read().map_err(|_| lock_poisoned())?;
            let entries: Vec<(String, Entry)> = st
                .cache
                .iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            (entries, st.last_applied.clone(), st.membership.clone())
        };
        let meta = typ::SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
        };
        let shared = self.shared.clone();
        let meta2 = meta.clone();
        let data = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let data = snapshot::encode_data(&entries)?;
            let path = snapshot::write_file(&shared.dir, &meta2, &data)?;
            *shared.current.lock().map_err(|_| lock_poisoned())? = Some((meta2, path));
            Ok(data)
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(typ::Snapshot {
            meta,
            snapshot: std::io::Cursor::new(data),
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
                match entry.payload {
                    EntryPayload::Blank => Response::Empty,
                    EntryPayload::Normal(ref req) => st.cache.apply(entry.log_id.index, req),
                    EntryPayload::Membership(ref m) => {
                        st.membership =
                            typ::StoredMembership::new(Some(entry.log_id.clone()), m.clone());
                        Response::Empty
                    }
                }
            };
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
        let data = snapshot.into_inner();
        let shared = self.shared.clone();
        let meta2 = meta.clone();
        let cache = tokio::task::spawn_blocking(move || -> io::Result<Cache> {
            let cache = snapshot::decode_data(&data)?;
            let path = snapshot::write_file(&shared.dir, &meta2, &data)?;
            *shared.current.lock().map_err(|_| lock_poisoned())? = Some((meta2, path));
            Ok(cache)
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?meta.last_log_id, keys = cache.len(), "installed snapshot");
        let mut st = self.shared.state.write().map_err(|_| lock_poisoned())?;
        st.last_applied = meta.last_log_id.clone();
        st.membership = meta.last_membership.clone();
        st.cache = cache;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<typ::Snapshot>, io::Error> {
        let current = self
            .shared
            .current
            .lock()
            .map_err(|_| lock_poisoned())?
            .clone();
        let Some((meta, path)) = current else {
            return Ok(None);
        };
        let (_, data) = tokio::task::spawn_blocking(move || snapshot::read_file(&path))
            .await
            .map_err(io::Error::other)??;
        Ok(Some(typ::Snapshot {
            meta,
            snapshot: std::io::Cursor::new(data),
        }))
    }
}
