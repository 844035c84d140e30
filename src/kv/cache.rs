//! The deterministic cache: an ordered map from key to value plus metadata.
//!
//! Invariants:
//! - [`Cache::apply`] is a pure function of (current state, log index,
//!   request): no clock, no randomness, no I/O. Every replica that applies the
//!   same log reaches the same state, which [`Cache::digest`] can prove.
//! - `mem_bytes` always equals the sum of [`entry_cost`] over all entries.
//! - `modify_index` of an entry is the log index of the write that produced
//!   it; indexes only grow.
//!
//! Not here: TTL expiry and eviction policies (they will use
//! [`Request::now_ms`](super::Request) and `Entry::expires_at_ms`), snapshot
//! encoding (see `raft::snapshot`).

use std::collections::BTreeMap;
use std::hash::Hasher;

use serde::Deserialize;
use serde::Serialize;

use super::Command;
use super::EntryMeta;
use super::Request;
use super::Response;

/// Bookkeeping bytes charged per entry on top of key and value (map node,
/// metadata). An estimate, used for the memory gauge and, later, eviction.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub meta: EntryMeta,
    /// Expiry deadline in ms since the epoch, in the proposer's clock. Always
    /// `None` until TTL lands; kept in the format so snapshots stay compatible.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

/// What an entry costs in the memory accounting.
pub fn entry_cost(key: &str, entry: &Entry) -> u64 {
    key.len() as u64 + entry.value.len() as u64 + ENTRY_OVERHEAD_BYTES
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    map: BTreeMap<String, Entry>,
    mem_bytes: u64,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from entries (a decoded snapshot).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Entry)>) -> Self {
        let mut cache = Cache::new();
        for (k, e) in entries {
            cache.mem_bytes += entry_cost(&k, &e);
            if let Some(old) = cache.map.insert(k.clone(), e) {
                cache.mem_bytes -= entry_cost(&k, &old);
            }
        }
        cache
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn mem_bytes(&self) -> u64 {
        self.mem_bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.map.iter()
    }

    /// Apply one request that was committed at log index `index`.
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        match &req.cmd {
            Command::Set { key, value, cas } => {
                let current = self.map.get(key);
                let current_index = current.map_or(0, |e| e.meta.modify_index);
                if let Some(expected) = cas
                    && *expected != current_index
                {
                    return Response::CasFailed {
                        current: current_index,
                    };
                }
                let meta = match current {
                    Some(e) => EntryMeta {
                        create_index: e.meta.create_index,
                        modify_index: index,
                        version: e.meta.version + 1,
                    },
                    None => EntryMeta {
                        create_index: index,
                        modify_index: index,
                        version: 1,
                    },
                };
                let entry = Entry {
                    value: value.clone(),
                    meta,
                    expires_at_ms: None,
                };
                self.mem_bytes += entry_cost(key, &entry);
                if let Some(old) = self.map.insert(key.clone(), entry) {
                    self.mem_bytes -= entry_cost(key, &old);
                }
                Response::Set { meta }
            }
            Command::Delete { key, cas } => {
                let current_index = self.map.get(key).map_or(0, |e| e.meta.modify_index);
                if let Some(expected) = cas
                    && (*expected != current_index || current_index == 0)
                {
                    return Response::CasFailed {
                        current: current_index,
                    };
                }
                match self.map.remove(key) {
                    Some(old) => {
                        self.mem_bytes -= entry_cost(key, &old);
                        Response::Deleted { existed: true }
                    }
                    None => Response::Deleted { existed: false },
                }
            }
        }
    }

    /// A stable 64-bit digest of the whole content (keys, values, metadata),
    /// for comparing replicas. FNV-1a: fixed, dependency-free, and identical
    /// across platforms and builds (unlike `DefaultHasher`).
    pub fn digest(&self) -> u64 {
        let mut h = Fnv1a::default();
        for (k, e) in &self.map {
            h.write_u64(k.len() as u64);
            h.write(k.as_bytes());
            h.write_u64(e.value.len() as u64);
            h.write(&e.value);
            h.write_u64(e.meta.create_index);
            h.write_u64(e.meta.modify_index);
            h.write_u64(e.meta.version);
            h.write_u64(e.expires_at_ms.unwrap_or(0));
        }
        h.finish()
    }
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str, cas: Option<u64>) -> Request {
        Request {
            now_ms: 0,
            cmd: Command::Set {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                cas,
            },
        }
    }

    fn del(key: &str, cas: Option<u64>) -> Request {
        Request {
            now_ms: 0,
            cmd: Command::Delete {
                key: key.into(),
                cas,
            },
        }
    }

    #[test]
    fn set_tracks_create_modify_and_version() {
        let mut c = Cache::new();
        assert_eq!(
            c.apply(5, &set("a", "1", None)),
            Response::Set {
                meta: EntryMeta {
                    create_index: 5,
                    modify_index: 5,
                    version: 1
                }
            }
        );
        assert_eq!(
            c.apply(9, &set("a", "2", None)),
            Response::Set {
                meta: EntryMeta {
                    create_index: 5,
                    modify_index: 9,
                    version: 2
                }
            }
        );
        assert_eq!(c.get("a").unwrap().value, b"2");
    }

    #[test]
    fn cas_zero_means_absent_only() {
        let mut c = Cache::new();
        assert!(matches!(
            c.apply(1, &set("k", "v", Some(0))),
            Response::Set { .. }
        ));
        assert_eq!(
            c.apply(2, &set("k", "w", Some(0))),
            Response::CasFailed { current: 1 }
        );
        assert_eq!(c.get("k").unwrap().value, b"v");
    }

    #[test]
    fn cas_matches_modify_index() {
        let mut c = Cache::new();
        c.apply(3, &set("k", "v", None));
        assert_eq!(
            c.apply(4, &set("k", "x", Some(2))),
            Response::CasFailed { current: 3 }
        );
        assert!(matches!(
            c.apply(5, &set("k", "x", Some(3))),
            Response::Set { .. }
        ));
        assert_eq!(
            c.apply(6, &del("k", Some(3))),
            Response::CasFailed { current: 5 }
        );
        assert_eq!(
            c.apply(7, &del("k", Some(5))),
            Response::Deleted { existed: true }
        );
        assert_eq!(
            c.apply(8, &del("k", Some(0))),
            Response::CasFailed { current: 0 }
        );
    }

    #[test]
    fn delete_absent_reports_not_existed_and_recreate_resets_create_index() {
        let mut c = Cache::new();
        assert_eq!(
            c.apply(1, &del("x", None)),
            Response::Deleted { existed: false }
        );
        c.apply(2, &set("x", "a", None));
        c.apply(3, &del("x", None));
        let r = c.apply(4, &set("x", "b", None));
        assert_eq!(
            r,
            Response::Set {
                meta: EntryMeta {
                    create_index: 4,
                    modify_index: 4,
                    version: 1
                }
            }
        );
    }

    #[test]
    fn memory_accounting_follows_writes_and_deletes() {
        let mut c = Cache::new();
        c.apply(1, &set("ab", "xyz", None));
        assert_eq!(c.mem_bytes(), 2 + 3 + ENTRY_OVERHEAD_BYTES);
        c.apply(2, &set("ab", "x", None));
        assert_eq!(c.mem_bytes(), 2 + 1 + ENTRY_OVERHEAD_BYTES);
        c.apply(3, &set("c", "", None));
        assert_eq!(c.mem_bytes(), 2 + 1 + 1 + 2 * ENTRY_OVERHEAD_BYTES);
        c.apply(4, &del("ab", None));
        assert_eq!(c.mem_bytes(), 1 + ENTRY_OVERHEAD_BYTES);
        let rebuilt = Cache::from_entries(c.iter().map(|(k, e)| (k.clone(), e.clone())));
        assert_eq!(rebuilt, c);
    }

    #[test]
    fn same_log_same_digest_different_log_different_digest() {
        let log = [set("a", "1", None), set("b", "2", None), del("a", None)];
        let mut x = Cache::new();
        let mut y = Cache::new();
        for (i, r) in log.iter().enumerate() {
            x.apply(i as u64 + 1, r);
            y.apply(i as u64 + 1, r);
        }
        assert_eq!(x.digest(), y.digest());
        y.apply(10, &set("b", "3", None));
        assert_ne!(x.digest(), y.digest());
    }
}
