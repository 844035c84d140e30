//! The deterministic cache: an ordered set of packed [`Item`]s, an expiry
//! index, a replicated clock, memory accounting, an incremental digest, and
//! a copy-on-write capture for snapshots that neither stalls apply nor
//! copies the map.
//!
//! Invariants:
//! - [`Cache::apply`] is a pure function of (current state, log index,
//!   request): no clock, no randomness, no I/O, no allocator figure. Every
//!   replica that applies the same log reaches the same state, which
//!   [`Cache::digest`] can prove.
//! - The replicated clock (`clock_ms`) is the largest `now_ms` applied; it
//!   never goes back. A key whose deadline is at or before it is expired:
//!   every read and command treats it as absent, and ticks (or the next
//!   command on that key) remove it.
//! - `mem_bytes` always equals the sum of [`entry_cost`] over all items; a
//!   write never takes it past the request's `max_memory` (when non-zero).
//! - `digest` always equals the wrapping sum of the item hashes.
//! - While a capture is active, the first change to a key records the key's
//!   content at capture time, so [`Cache::capture_chunk`] can stream the
//!   state as it was when the capture began.
//!
//! Not here: snapshot encoding (see `raft::snapshot`), eviction choices (the
//! leader's, see `cluster`).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ops::Bound;

use serde::Serialize;

use super::Change;
use super::ChangeKind;
use super::Command;
use super::EntryMeta;
use super::Request;
use super::Response;
use super::Ttl;
use super::item::Access;
use super::item::Item;
use super::item::ItemRef;

/// Accounted bytes of an item on top of its key and value: the 24-byte
/// handle in a B-tree node (at the ~70% node fill random inserts give, about
/// 35 bytes), the 32-byte meta header and the allocator's rounding of the
/// item's buffer (about 13 bytes on average). Checked against the real
/// process in the memory benchmark (docs/BENCHMARKS.md).
pub const ENTRY_OVERHEAD_BYTES: u64 = 80;
/// Accounted bytes of a key with a deadline, on top of a second copy of the
/// key: its element in the expiry index and that key copy's allocation.
pub const TTL_OVERHEAD_BYTES: u64 = 56;

/// What an item costs in the memory accounting (deterministic: a function
/// of sizes only).
pub fn entry_cost(key_len: usize, value_len: usize, has_ttl: bool) -> u64 {
    let base = key_len as u64 + value_len as u64 + ENTRY_OVERHEAD_BYTES;
    if has_ttl {
        base + key_len as u64 + TTL_OVERHEAD_BYTES
    } else {
        base
    }
}

pub(super) fn item_cost(it: &Item) -> u64 {
    entry_cost(it.key().len(), it.value().len(), it.expires_at() != 0)
}

/// The memory limit a change must respect and the leader's victims that
/// may make room for it.
#[derive(Debug, Clone, Copy)]
pub struct Room<'a> {
    pub(super) evict: &'a [String],
    /// 0 = unlimited.
    pub(super) max: u64,
}

impl Room<'_> {
    /// No limit (the ops of a transaction, whose growth was checked as a
    /// whole).
    pub(super) const UNLIMITED: Room<'static> = Room { evict: &[], max: 0 };
}

/// An owned copy of one stored key, for callers outside the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub value: Vec<u8>,
    pub meta: EntryMeta,
    /// Expiry deadline, ms since the epoch on the replicated clock; 0 = none.
    pub expires_at: u64,
}

impl From<ItemRef<'_>> for Entry {
    fn from(r: ItemRef<'_>) -> Entry {
        Entry {
            value: r.value.to_vec(),
            meta: r.meta,
            expires_at: r.expires_at,
        }
    }
}

/// Counters and sizes of the replicated state (the same on every replica
/// at the same applied index).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub keys: u64,
    pub mem_bytes: u64,
    pub ttl_keys: u64,
    /// Keys removed because their deadline passed.
    pub expired_total: u64,
    /// Keys removed to make room (the leader's choice, replicated).
    pub evicted_total: u64,
    /// Writes refused because the cache was full.
    pub oom_total: u64,
    /// The replicated clock (ms since the epoch).
    pub clock_ms: u64,
    /// The earliest deadline still in the expiry index (0 = none).
    pub next_deadline: u64,
}

/// The content of keys changed since a capture began, as it was then
/// (`None`: the key did not exist).
#[derive(Debug, Clone, Default)]
struct Capture {
    before: BTreeMap<Box<[u8]>, Option<Item>>,
}

#[derive(Debug, Default)]
pub struct Cache {
    items: BTreeSet<Item>,
    /// (deadline, key) of every key with a deadline.
    expiry: BTreeSet<(u64, Box<[u8]>)>,
    clock_ms: u64,
    mem_bytes: u64,
    digest: u64,
    expired_total: u64,
    evicted_total: u64,
    oom_total: u64,
    capture: Option<Capture>,
    /// What the applies since the last [`Cache::take_changes`] changed, when
    /// recording (node-local bookkeeping, not replicated state).
    changes: Option<Vec<Change>>,
}

/// FNV-1a of one item's replicated content: fixed, dependency-free, and
/// identical across platforms and builds (unlike `DefaultHasher`).
fn item_hash(it: &Item) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let (raw, key_len) = it.raw();
    eat(&key_len.to_le_bytes());
    eat(raw);
    h
}

impl PartialEq for Cache {
    /// Equal replicated state (captures and access words aside).
    fn eq(&self, other: &Cache) -> bool {
        self.items == other.items
            && self.clock_ms == other.clock_ms
            && self.mem_bytes == other.mem_bytes
            && self.expired_total == other.expired_total
            && self.evicted_total == other.evicted_total
            && self.oom_total == other.oom_total
    }
}

impl Eq for Cache {}

impl Clone for Cache {
    fn clone(&self) -> Cache {
        let mut c = Cache::from_items(self.items.iter().cloned(), self.clock_ms);
        c.expired_total = self.expired_total;
        c.evicted_total = self.evicted_total;
        c.oom_total = self.oom_total;
        c
    }
}

/// Builds a [`Cache`] from items, best in key order (a snapshot being
/// loaded), without a second buffer of the whole state: items gather in a
/// chunk of at least [`CacheBuilder::MIN_CHUNK`] and an eighth of the tree
/// so far, and each full chunk is merged into the tree in one pass with
/// full nodes (`BTreeSet::append`). The merges move about 9× the item
/// count in all, and the transient buffer is an eighth of the handles, not
/// all of them (a vector of every handle plus the sort's scratch cost a
/// million-key install 0.2× of the raw data, docs/BENCHMARKS.md "Memory").
#[derive(Default)]
pub struct CacheBuilder {
    cache: Cache,
    chunk: Vec<Item>,
}

impl CacheBuilder {
    pub const MIN_CHUNK: usize = 1 << 16;

    pub fn new() -> Self {
        CacheBuilder {
            cache: Cache::default(),
            chunk: Vec::new(),
        }
    }

    /// Add one item; keys must be distinct (each one is accounted).
    pub fn push(&mut self, it: Item) {
        let c = &mut self.cache;
        c.mem_bytes += item_cost(&it);
        c.digest = c.digest.wrapping_add(item_hash(&it));
        if it.expires_at() != 0 {
            c.expiry.insert((it.expires_at(), it.key().into()));
        }
        self.chunk.push(it);
        if self.chunk.len() >= Self::MIN_CHUNK.max(c.items.len() / 8) {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut part: BTreeSet<Item> = std::mem::take(&mut self.chunk).into_iter().collect();
        self.cache.items.append(&mut part);
    }

    /// The cache, its replicated clock at `clock_ms`.
    pub fn finish(mut self, clock_ms: u64) -> Cache {
        self.merge();
        self.cache.clock_ms = clock_ms;
        self.cache
    }
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from items (a decoded snapshot) and the replicated clock;
    /// see [`CacheBuilder`].
    pub fn from_items(items: impl IntoIterator<Item = Item>, clock_ms: u64) -> Self {
        let mut b = CacheBuilder::new();
        for it in items {
            b.push(it);
        }
        b.finish(clock_ms)
    }

    /// Record what every apply changes, for [`Cache::take_changes`].
    pub fn record_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// What the applies since the last call changed, in order (empty when
    /// not recording).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Restore the counters a snapshot carries.
    pub fn set_totals(&mut self, expired: u64, evicted: u64, oom: u64) {
        self.expired_total = expired;
        self.evicted_total = evicted;
        self.oom_total = oom;
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Whether `it` has not expired on the replicated clock.
    pub fn is_live(&self, it: &Item) -> bool {
        it.expires_at() == 0 || it.expires_at() > self.clock_ms
    }

    /// The item under `key`, if present and not expired on the replicated
    /// clock.
    pub fn get_item(&self, key: &str) -> Option<&Item> {
        self.items.get(key.as_bytes()).filter(|it| self.is_live(it))
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.get_item(key).map(|it| it.view().into())
    }

    /// Keys present (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn mem_bytes(&self) -> u64 {
        self.mem_bytes
    }

    /// Order-independent digest of the content (keys, values, metadata,
    /// deadlines), maintained on every change: O(1) to read.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            keys: self.items.len() as u64,
            mem_bytes: self.mem_bytes,
            ttl_keys: self.expiry.len() as u64,
            expired_total: self.expired_total,
            evicted_total: self.evicted_total,
            oom_total: self.oom_total,
            clock_ms: self.clock_ms,
            next_deadline: self.expiry.first().map_or(0, |(d, _)| *d),
        }
    }

    /// Every item in key order (expired ones not yet removed included).
    pub fn items(&self) -> std::collections::btree_set::Iter<'_, Item> {
        self.items.iter()
    }

    /// The item under `key` (expired or not).
    pub fn get_item_bytes(&self, key: &[u8]) -> Option<&Item> {
        self.items.get(key)
    }

    /// Items from the first key after `after` (all when `None`), in order.
    pub fn items_after<'a>(&'a self, after: Option<&[u8]>) -> impl Iterator<Item = &'a Item> + 'a {
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        self.items.range::<[u8], _>((lower, Bound::Unbounded))
    }

    /// Items from `lower` on, in key order.
    pub fn items_from_bound<'a>(
        &'a self,
        lower: Bound<&[u8]>,
    ) -> impl Iterator<Item = &'a Item> + 'a {
        self.items.range::<[u8], _>((lower, Bound::Unbounded))
    }

    /// Keys with a deadline, earliest first.
    pub fn deadlines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.expiry.iter().map(|(d, k)| (*d, &**k))
    }

    /// Keys with a deadline at or after `from`, earliest first.
    pub fn deadlines_from(&self, from: u64) -> impl Iterator<Item = (u64, &[u8])> {
        let start: (u64, Box<[u8]>) = (from, Box::default());
        self.expiry.range(start..).map(|(d, k)| (*d, &**k))
    }

    /// The earliest and the latest deadline, if any key has one.
    pub fn deadline_range(&self) -> Option<(u64, u64)> {
        Some((self.expiry.first()?.0, self.expiry.last()?.0))
    }

    /// Items whose key starts at or after `from` (for sampling).
    pub fn items_from<'a>(&'a self, from: &[u8]) -> impl Iterator<Item = &'a Item> + 'a {
        self.items
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
    }

    // ---- changes (every one goes through these four) ----------------------

    /// Record `key`'s content for an active capture, before its first
    /// change.
    fn note(&mut self, key: &[u8]) {
        if let Some(cap) = &mut self.capture
            && !cap.before.contains_key(key)
        {
            let old = self.items.get(key).cloned();
            cap.before.insert(key.into(), old);
        }
    }

    pub(super) fn insert(&mut self, it: Item) -> Option<Item> {
        self.note(it.key());
        if let Some(changes) = &mut self.changes {
            changes.push(Change {
                kind: ChangeKind::Put,
                key: String::from_utf8_lossy(it.key()).into_owned(),
                value: it.value().to_vec(),
                meta: it.meta(),
                expires_at: it.expires_at(),
            });
        }
        let (cost, hash, deadline) = (item_cost(&it), item_hash(&it), it.expires_at());
        let key: Option<Box<[u8]>> = (deadline != 0).then(|| it.key().into());
        let old = self.items.replace(it);
        // Forget the old item first: it may share the new one's deadline.
        if let Some(old) = &old {
            self.forget(old);
        }
        self.mem_bytes += cost;
        self.digest = self.digest.wrapping_add(hash);
        if let Some(key) = key {
            self.expiry.insert((deadline, key));
        }
        old
    }

    /// Remove `key`; `kind` says why (for watchers).
    pub(super) fn remove(&mut self, key: &[u8], kind: ChangeKind) -> Option<Item> {
        self.note(key);
        let old = self.items.take(key)?;
        self.forget(&old);
        if let Some(changes) = &mut self.changes {
            changes.push(Change {
                kind,
                key: String::from_utf8_lossy(key).into_owned(),
                value: Vec::new(),
                meta: old.meta(),
                expires_at: 0,
            });
        }
        Some(old)
    }

    /// Undo `old`'s share of the accounting and the expiry index.
    fn forget(&mut self, old: &Item) {
        self.mem_bytes -= item_cost(old);
        self.digest = self.digest.wrapping_sub(item_hash(old));
        if old.expires_at() != 0 {
            self.expiry
                .remove(&(old.expires_at(), Box::<[u8]>::from(old.key())));
        }
    }

    /// Remove `key` if its deadline has passed; true if it did.
    pub(super) fn expire_if_due(&mut self, key: &[u8]) -> bool {
        let due = self
            .items
            .get(key)
            .is_some_and(|it| it.expires_at() != 0 && it.expires_at() <= self.clock_ms);
        if due {
            self.remove(key, ChangeKind::Expire);
            self.expired_total += 1;
        }
        due
    }

    // ---- apply -------------------------------------------------------------

    /// Apply one request that was committed at log index `index`.
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        self.clock_ms = self.clock_ms.max(req.now_ms);
        let room = Room {
            evict: &req.evict,
            max: req.max_memory,
        };
        let mut budget = super::result::MAX_RESULT_BYTES;
        self.exec(index, &req.cmd, room, &mut budget)
    }

    /// Run one command (a request's, or an op of a transaction) at
    /// `index`. `budget`: the bytes reads may still return.
    pub(super) fn exec(
        &mut self,
        index: u64,
        cmd: &Command,
        room: Room<'_>,
        budget: &mut u64,
    ) -> Response {
        if let Some(k) = cmd.key() {
            self.expire_if_due(k.as_bytes());
        }
        match cmd {
            Command::Set {
                key,
                value,
                cas,
                ttl,
            } => self.set(index, room, key, value, *cas, *ttl),
            Command::Delete { key, cas } => {
                let current = self
                    .items
                    .get(key.as_bytes())
                    .map_or(0, |e| e.meta().modify_index);
                if let Some(expected) = cas
                    && (*expected != current || current == 0)
                {
                    return Response::CasFailed { current };
                }
                Response::Deleted {
                    existed: self.remove(key.as_bytes(), ChangeKind::Delete).is_some(),
                }
            }
            Command::Expire { key, ttl } => {
                let Some(it) = self.items.get(key.as_bytes()) else {
                    return Response::Expired {
                        found: false,
                        expires_at: 0,
                    };
                };
                let deadline = self.deadline(*ttl, it.expires_at());
                if deadline != it.expires_at() {
                    let new = it.with_expiry(deadline);
                    let (old_cost, new_cost) = (item_cost(it), item_cost(&new));
                    if let Err(full) = self.make_room(room, key, old_cost, new_cost) {
                        return full;
                    }
                    self.insert(new);
                }
                Response::Expired {
                    found: true,
                    expires_at: deadline,
                }
            }
            Command::Tick { max } => {
                let due: Vec<Box<[u8]>> = self
                    .expiry
                    .iter()
                    .take_while(|(d, _)| *d <= self.clock_ms)
                    .take(*max as usize)
                    .map(|(_, k)| k.clone())
                    .collect();
                for k in &due {
                    self.remove(k, ChangeKind::Expire);
                }
                self.expired_total += due.len() as u64;
                Response::Ticked {
                    removed: due.len() as u64,
                }
            }
            Command::Get { key } => {
                let kv = self
                    .get_item(key)
                    .map(|it| super::result::Kv::of(it, false));
                if let Some(kv) = &kv {
                    *budget = budget.saturating_sub(kv.size());
                }
                Response::Value { kv }
            }
            Command::Range {
                range,
                limit,
                keys_only,
            } => {
                let limit = (*limit).min(super::result::MAX_RANGE_LIMIT) as usize;
                let page = self.range(range, None, limit, *keys_only, budget);
                Response::Range {
                    kvs: page.kvs,
                    more: page.more,
                }
            }
            Command::DeletePrefix { prefix } => self.delete_prefix(prefix),
            Command::Txn {
                compare,
                success,
                failure,
            } => self.apply_txn(index, compare, success, failure, room),
            Command::Rmw(op) => self.apply_rmw(index, op, room),
            Command::Multi { watch, ops } => self.apply_multi(index, watch, ops, room),
        }
    }

    /// Before a change of `key` from `old_cost` to `new_cost` bytes: check it
    /// fits under the request's `max_memory` once the leader's victims are
    /// gone, and evict them only then. `Err` is the refusal.
    fn make_room(
        &mut self,
        room: Room<'_>,
        key: &str,
        old_cost: u64,
        new_cost: u64,
    ) -> Result<(), Response> {
        self.make_room_for(room, &[key], new_cost.saturating_sub(old_cost), new_cost)
    }

    /// Before changes of `keys` that add at most `growth` bytes: check they
    /// fit under the room's limit once its victims (other than `keys`) are
    /// gone, and evict them only then. `Err` is the refusal, reporting
    /// `needed` bytes.
    pub(super) fn make_room_for(
        &mut self,
        room: Room<'_>,
        keys: &[&str],
        growth: u64,
        needed: u64,
    ) -> Result<(), Response> {
        if room.max == 0 || growth == 0 {
            return Ok(());
        }
        let victim = |k: &&String| !keys.contains(&k.as_str());
        let freed: u64 = room
            .evict
            .iter()
            .filter(victim)
            .filter_map(|k| self.items.get(k.as_bytes()))
            .map(item_cost)
            .sum();
        if (self.mem_bytes - freed).saturating_add(growth) > room.max {
            self.oom_total += 1;
            return Err(Response::OutOfMemory {
                needed,
                max: room.max,
            });
        }
        for k in room.evict.iter().filter(victim) {
            if self.remove(k.as_bytes(), ChangeKind::Evict).is_some() {
                self.evicted_total += 1;
            }
        }
        Ok(())
    }

    /// The deadline a TTL gives at the current replicated time.
    pub(super) fn deadline(&self, ttl: Ttl, current: u64) -> u64 {
        match ttl {
            Ttl::Clear => 0,
            Ttl::Keep => current,
            Ttl::In(ms) => self.clock_ms.saturating_add(ms.max(1)),
            // A deadline already passed expires the key at once (Redis
            // EXPIREAT with a past time): the next tick removes it.
            Ttl::At(at) => at.max(1),
        }
    }

    pub(super) fn set(
        &mut self,
        index: u64,
        room: Room<'_>,
        key: &str,
        value: &[u8],
        cas: Option<u64>,
        ttl: Ttl,
    ) -> Response {
        let current = self.items.get(key.as_bytes());
        let current_index = current.map_or(0, |e| e.meta().modify_index);
        if let Some(expected) = cas
            && expected != current_index
        {
            return Response::CasFailed {
                current: current_index,
            };
        }
        let meta = match current {
            Some(e) => EntryMeta {
                create_index: e.meta().create_index,
                modify_index: index,
                version: e.meta().version + 1,
            },
            None => EntryMeta {
                create_index: index,
                modify_index: index,
                version: 1,
            },
        };
        let expires_at = self.deadline(ttl, current.map_or(0, Item::expires_at));
        let new_cost = entry_cost(key.len(), value.len(), expires_at != 0);
        let old_cost = current.map_or(0, item_cost);
        if let Err(full) = self.make_room(room, key, old_cost, new_cost) {
            return full;
        }
        let access = Access::new(self.clock_ms).0;
        self.insert(Item::new(key.as_bytes(), value, meta, expires_at, access));
        Response::Set { meta, expires_at }
    }

    // ---- capture (snapshots) ----------------------------------------------

    /// Begin capturing the current state for a snapshot: returns its
    /// counters and clock, or `None` if a capture is already active.
    pub fn begin_capture(&mut self) -> Option<CacheStats> {
        if self.capture.is_some() {
            return None;
        }
        self.capture = Some(Capture::default());
        Some(self.stats())
    }

    /// End the capture and free what it recorded.
    pub fn end_capture(&mut self) {
        self.capture = None;
    }

    /// Up to `max` items of the captured state, in key order, starting after
    /// `after`; the last key returned is the next call's `after`. An empty
    /// result means the end. Call with the cache locked for reading; between
    /// calls apply may run.
    pub fn capture_chunk(&self, after: Option<&[u8]>, max: usize) -> Vec<Item> {
        let cap = self
            .capture
            .as_ref()
            .expect("capture_chunk without begin_capture");
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let mut live = self
            .items
            .range::<[u8], _>((lower, Bound::Unbounded))
            .peekable();
        let mut changed = cap
            .before
            .range::<[u8], _>((lower, Bound::Unbounded))
            .peekable();
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            // Merge the live items with the recorded ones; a recorded key
            // shows its content at capture time, whatever it is now.
            let next_live = live.peek().map(|it| it.key());
            let next_changed = changed.peek().map(|(k, _)| &***k);
            match (next_live, next_changed) {
                (None, None) => break,
                (Some(l), Some(c)) if l == c => {
                    live.next();
                    let (_, before) = changed.next().expect("peeked");
                    out.extend(before.clone());
                }
                (Some(l), c) if c.is_none_or(|c| l < c) => {
                    out.push(live.next().expect("peeked").clone());
                }
                _ => {
                    let (_, before) = changed.next().expect("peeked");
                    out.extend(before.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
