//! The replicated vocabulary: the commands every front end (HTTP seed routes,
//! the native `/v1` API, later RESP) parses into, and the responses the state
//! machine produces.
//!
//! Invariants:
//! - A [`Request`] is self-contained: everything `apply` needs, including the
//!   wall-clock time, is stamped into it by the proposer. Applying the same
//!   request at the same log index gives the same result on every replica.
//! - Nothing here depends on tokio or openraft; the module is plain data.
//!
//! Not here: how requests are replicated (see `raft`), how they are parsed
//! from HTTP (see `api`).
//!
//! Uses: nothing in the crate (no tokio, no openraft).

pub mod cache;

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

pub use cache::Cache;
pub use cache::Entry;

/// A command plus the time the proposing leader stamped on it.
///
/// `now_ms` is milliseconds since the Unix epoch as seen by the proposer. The
/// state machine never reads a clock; time-based behaviour (TTL, coming later)
/// uses this field so that every replica decides the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub cmd: Command,
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
    },
    /// Remove `key`. `cas` as for [`Command::Set`]; `Some(0)` never matches a
    /// present key and so only "succeeds" on an absent one.
    Delete { key: String, cas: Option<u64> },
}

impl Command {
    pub fn key(&self) -> &str {
        match self {
            Command::Set { key, .. } | Command::Delete { key, .. } => key,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cmd {
            Command::Set { key, value, cas } => {
                write!(f, "set({key:?}, {} bytes, cas={cas:?})", value.len())
            }
            Command::Delete { key, cas } => write!(f, "delete({key:?}, cas={cas:?})"),
        }
    }
}

/// What applying one log entry produced.
///
/// Deterministic failures (a CAS mismatch) are values here, not errors: every
/// replica computes the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A blank or membership entry: nothing for a client.
    Empty,
    /// The key now holds the new value.
    Set { meta: EntryMeta },
    /// The key was removed. `existed` is false for a key that was absent.
    Deleted { existed: bool },
    /// A compare-and-set precondition failed. `current` is the key's modify
    /// index (0 when the key is absent).
    CasFailed { current: u64 },
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
