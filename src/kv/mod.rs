//! The replicated vocabulary: the commands every front end (HTTP seed routes,
//! the native `/v1` API, later RESP) parses into, and the responses the state
//! machine produces; plus the deterministic [`Cache`] they apply to.
//!
//! Invariants:
//! - A [`Request`] is self-contained: everything `apply` needs (the
//!   proposer's clock, the leader's eviction victims and memory limit) is
//!   stamped into it by the proposer. Applying the same request at the same
//!   log index to the same state gives the same result on every replica.
//! - Nothing here depends on tokio or openraft; the module is plain data.
//! - Applies can report what they changed ([`Cache::take_changes`], for
//!   watchers): node-local bookkeeping, the same on every replica for the
//!   same entry, never part of the replicated state or its digest.
//! - Older log entries (without `ttl`, `evict`, `max_memory`) still decode:
//!   new fields have serde defaults.
//!
//! Not here: how requests are replicated (see `raft`), how they are parsed
//! from HTTP (see `api`), which keys to evict (the leader decides, in
//! `cluster`).
//!
//! Uses: nothing in the crate (no tokio, no openraft).

// `Item` keys sets while holding an atomic access word: the word is not part
// of its ordering (`Ord` compares key bytes only), so mutating it through a
// shared reference cannot reorder a set.
#![allow(clippy::mutable_key_type)]

pub mod cache;
pub mod glob;
pub mod item;
pub mod redis;
pub mod result;
pub mod txn;

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

pub use cache::Cache;
pub use cache::CacheBuilder;
pub use cache::CacheStats;
pub use cache::Entry;
pub use item::Access;
pub use item::Item;
pub use txn::CmpOp;
pub use txn::Compare;
pub use txn::KeyRange;
pub use txn::Kv;
pub use txn::Target;

/// Longest TTL accepted: ten years of 365.25 days (humantime's year, so
/// `ttl=10y` is accepted), in milliseconds.
pub const MAX_TTL_MS: u64 = 10 * 36525 * 24 * 3600 * 1000 / 100;

/// A command plus what the proposing leader stamped on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Milliseconds since the Unix epoch as seen by the proposer. The state
    /// machine never reads a clock: its "now" is the largest `now_ms` it has
    /// applied (so the replicated clock never goes back), and TTL deadlines
    /// are computed from it.
    pub now_ms: u64,
    pub cmd: Command,
    /// Keys the leader chose to evict to make room for `cmd`; removed
    /// (those still present) before `cmd` is applied, and only if `cmd` then
    /// fits under `max_memory`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evict: Vec<String>,
    /// The proposing leader's `cache.max_memory` (0 = unlimited): a write
    /// that would take the accounted memory past it is refused.
    #[serde(default)]
    pub max_memory: u64,
}

impl Request {
    /// A request with no eviction and no memory limit.
    pub fn new(now_ms: u64, cmd: Command) -> Request {
        Request {
            now_ms,
            cmd,
            evict: Vec::new(),
            max_memory: 0,
        }
    }
}

/// What a write does to a key's time to live (Redis SET semantics: a write
/// without a TTL clears it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ttl {
    /// No expiry (`persist`, or a plain SET).
    #[default]
    Clear,
    /// Keep the key's current deadline, if any (`keepttl`).
    Keep,
    /// Expire this many milliseconds after the write's time.
    In(u64),
    /// Expire at this time (ms since the epoch, replicated clock).
    At(u64),
}

/// A mutation of the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Store `value` under `key`.
    ///
    /// `cas`: `None` writes unconditionally; `Some(0)` writes only if the key
    /// is absent; `Some(n)` writes only if the key's modify index is `n`.
    Set {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        cas: Option<u64>,
        #[serde(default)]
        ttl: Ttl,
    },
    /// Remove `key`. `cas` as for [`Command::Set`]; `Some(0)` never matches a
    /// present key and so only "succeeds" on an absent one.
    Delete { key: String, cas: Option<u64> },
    /// Set (`In`/`At`) or remove (`Clear`) the deadline of an existing key;
    /// its value and indexes do not change.
    Expire { key: String, ttl: Ttl },
    /// Remove up to `max` keys whose deadline has passed on the replicated
    /// clock (the leader proposes it when a deadline passes on its own
    /// clock, stamping its time, which advances the replicated clock).
    Tick { max: u32 },
    // Variants below were added after the first release: appended, so older
    // log entries decode as before.
    /// Read `key` (inside a transaction; a read through the log otherwise).
    Get { key: String },
    /// Read up to `limit` keys of `range` in key order (inside a
    /// transaction; scans read the local state instead).
    Range {
        range: KeyRange,
        limit: u32,
        #[serde(default)]
        keys_only: bool,
    },
    /// Remove the keys starting with `prefix`, at most
    /// [`txn::MAX_DELETE_PREFIX`] per entry.
    DeletePrefix { prefix: String },
    /// If every compare holds, run `success`, else `failure`: atomically, at
    /// this entry's index (see [`txn`]).
    Txn {
        compare: Vec<Compare>,
        success: Vec<Command>,
        failure: Vec<Command>,
    },
    /// A Redis read-modify-write command, atomic at this entry's index
    /// (see [`redis`]).
    Rmw(redis::Rmw),
    /// A MULTI/EXEC batch: if every watched key still has its modify index,
    /// every op in order at this index, else nothing.
    Multi {
        watch: Vec<redis::Watched>,
        ops: Vec<redis::MultiOp>,
    },
}

impl Command {
    /// The key the command is about (none for a tick).
    pub fn key(&self) -> Option<&str> {
        match self {
            Command::Set { key, .. }
            | Command::Delete { key, .. }
            | Command::Expire { key, .. }
            | Command::Get { key } => Some(key),
            Command::Tick { .. }
            | Command::Range { .. }
            | Command::DeletePrefix { .. }
            | Command::Txn { .. }
            | Command::Rmw(_)
            | Command::Multi { .. } => None,
        }
    }
}

impl Command {
    /// Roughly the bytes the command carries (keys, values, nested ops):
    /// for the log's in-memory cache accounting.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Command::Set { key, value, .. } => key.len() + value.len(),
            Command::Delete { key, .. } | Command::Expire { key, .. } | Command::Get { key } => {
                key.len()
            }
            Command::Tick { .. } => 0,
            Command::Range { range, .. } => match range {
                KeyRange::Prefix { prefix } => prefix.len(),
                KeyRange::Between { start, end } => {
                    start.len() + end.as_ref().map_or(0, String::len)
                }
            },
            Command::DeletePrefix { prefix } => prefix.len(),
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                let c: usize = compare
                    .iter()
                    .map(|c| {
                        c.key.len()
                            + match &c.target {
                                Target::Value { value } => value.len(),
                                _ => 8,
                            }
                    })
                    .sum();
                c + success
                    .iter()
                    .chain(failure)
                    .map(|op| op.payload_bytes() + 16)
                    .sum::<usize>()
            }
            Command::Rmw(op) => op.payload_bytes(),
            Command::Multi { watch, ops } => {
                watch.iter().map(|w| w.key.len() + 8).sum::<usize>()
                    + ops
                        .iter()
                        .map(|op| match op {
                            redis::MultiOp::Write(w) => w.payload_bytes() + 16,
                            _ => 64,
                        })
                        .sum::<usize>()
            }
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cmd {
            Command::Set {
                key,
                value,
                cas,
                ttl,
            } => write!(
                f,
                "set({key:?}, {} bytes, cas={cas:?}, ttl={ttl:?})",
                value.len()
            )?,
            Command::Delete { key, cas } => write!(f, "delete({key:?}, cas={cas:?})")?,
            Command::Expire { key, ttl } => write!(f, "expire({key:?}, {ttl:?})")?,
            Command::Tick { max } => write!(f, "tick(max={max})")?,
            Command::Get { key } => write!(f, "get({key:?})")?,
            Command::Range { range, limit, .. } => write!(f, "range({range:?}, limit={limit})")?,
            Command::DeletePrefix { prefix } => write!(f, "delete_prefix({prefix:?})")?,
            Command::Txn {
                compare,
                success,
                failure,
            } => write!(
                f,
                "txn({} compares, {} success ops, {} failure ops)",
                compare.len(),
                success.len(),
                failure.len()
            )?,
            Command::Rmw(op) => write!(f, "rmw({op:?})")?,
            Command::Multi { watch, ops } => {
                write!(f, "multi({} watched, {} ops)", watch.len(), ops.len())?
            }
        }
        if !self.evict.is_empty() {
            write!(f, " evict {} keys", self.evict.len())?;
        }
        Ok(())
    }
}

/// What applying one log entry produced.
///
/// Deterministic failures (a CAS mismatch, a full cache) are values here,
/// not errors: every replica computes the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A blank or membership entry: nothing for a client.
    Empty,
    /// The key now holds the new value; `expires_at` is its deadline (0 =
    /// none).
    Set { meta: EntryMeta, expires_at: u64 },
    /// The key was removed. `existed` is false for a key that was absent.
    Deleted { existed: bool },
    /// A compare-and-set precondition failed. `current` is the key's modify
    /// index (0 when the key is absent).
    CasFailed { current: u64 },
    /// An `Expire`: `found` is false for an absent key (nothing changed);
    /// `expires_at` is the key's deadline now (0 = none).
    Expired { found: bool, expires_at: u64 },
    /// A tick removed this many expired keys.
    Ticked { removed: u64 },
    /// The write would take the accounted memory past `max` even after the
    /// leader's evictions: not applied.
    OutOfMemory { needed: u64, max: u64 },
    // Variants below were added after the first release (appended).
    /// A `Get`: the key, or `None` when absent.
    Value { kv: Option<Kv> },
    /// A `Range`: keys in order; `more` when the range holds more after the
    /// last one (limit or byte budget reached).
    Range { kvs: Vec<Kv>, more: bool },
    /// A `DeletePrefix` removed `deleted` keys; `more` when keys with the
    /// prefix are left (over [`txn::MAX_DELETE_PREFIX`]).
    DeletedPrefix { deleted: u64, more: bool },
    /// A transaction: which branch ran, and each of its ops' responses.
    Txn {
        succeeded: bool,
        results: Vec<Response>,
    },
    /// A malformed command reached the log (the proposer checks first, so
    /// this is a bug or an old proposer): nothing was applied. `op` names
    /// the part at fault.
    Invalid { op: String, reason: String },
    /// A Redis command's reply ([`Command::Rmw`]).
    Reply(redis::Reply),
    /// A MULTI/EXEC batch: `None` when a watched key had changed (nothing
    /// ran), else each op's response.
    Multi { results: Option<Vec<Response>> },
}

/// Why a key changed (for watchers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Written (a set, or a new deadline).
    Put,
    /// Deleted by a client (a delete, a prefix delete, a txn).
    Delete,
    /// Removed because its deadline passed.
    Expire,
    /// Evicted to make room.
    Evict,
}

/// One key changed by an applied entry, as [`Cache::take_changes`]
/// reports it: every replica reports the same changes for the same entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: String,
    /// The new value (`Put`); empty otherwise.
    pub value: Vec<u8>,
    /// The key's metadata after a `Put`, before a removal.
    pub meta: EntryMeta,
    /// The deadline after a `Put` (0 = none).
    pub expires_at: u64,
}

/// Per-key metadata, etcd style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Raft log index that created the key (reset when a deleted key is set again).
    pub create_index: u64,
    /// Raft log index of the last modification.
    pub modify_index: u64,
    /// Number of writes since creation, starting at 1.
    pub version: u64,
}

#[cfg(test)]
impl EntryMeta {
    /// The metadata (create index, modify index, version), for tests.
    pub(crate) fn at(create_index: u64, modify_index: u64, version: u64) -> EntryMeta {
        EntryMeta {
            create_index,
            modify_index,
            version,
        }
    }
}
