//! The watch history: what each applied entry changed, kept in a bounded
//! in-memory window, for watch streams (`GET /v1/watch`) and blocking
//! queries (`?index=N&wait=`). The state machine pushes into it (it is the
//! `raft::state_machine::ChangeSink`); the API reads from it.
//!
//! Invariants:
//! - Groups are in log order, one per index that changed something, and
//!   the history covers every index in `(floor, applied]`: a reader asking
//!   for the changes after `since >= floor` gets all of them, without gaps;
//!   one asking for `since < floor` is told so ([`Compacted`]), never given
//!   a partial answer.
//! - Bounded: at most `watch.history_events` changes and about
//!   `watch.history_bytes` of keys and values; the oldest whole groups are
//!   dropped first (raising `floor`). A snapshot install or a restart
//!   resets it (`floor` = the snapshot's index).
//! - Watchers are counted ([`WatcherSlot`]); at most `watch.max_watchers`.
//! - Pushing never blocks on readers: they pull at their own pace and are
//!   woken through a `tokio::sync::watch` of the applied index.
//!
//! Not here: SSE framing, filters by prefix and slow-consumer cuts (`api`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::WatchConfig;
use crate::kv::Change;
use crate::raft::state_machine::ChangeSink;

/// The changes of one applied entry.
#[derive(Debug)]
pub struct Group {
    pub index: u64,
    pub changes: Vec<Change>,
}

impl Group {
    fn bytes(&self) -> u64 {
        self.changes
            .iter()
            .map(|c| (c.key.len() + c.value.len() + 64) as u64)
            .sum()
    }
}

/// The changes after `since` are no longer held; `oldest` is the smallest
/// `since` the history can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub oldest: u64,
}

#[derive(Default)]
struct History {
    /// Changes at or below this index are not held.
    floor: u64,
    groups: VecDeque<Arc<Group>>,
    events: u64,
    bytes: u64,
}

pub struct WatchHub {
    cfg: WatchConfig,
    history: Mutex<History>,
    applied: watch::Sender<u64>,
    watchers: AtomicUsize,
    /// Cancelled when the node shuts down: streams end.
    closing: tokio_util::sync::CancellationToken,
}

/// A watcher's place in the count; released on drop.
pub struct WatcherSlot(Arc<WatchHub>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WatchHub {
    pub fn new(cfg: WatchConfig) -> Arc<WatchHub> {
        Arc::new(WatchHub {
            cfg,
            history: Mutex::new(History::default()),
            applied: watch::channel(0).0,
            watchers: AtomicUsize::new(0),
            closing: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn config(&self) -> &WatchConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().expect("watch history lock")
    }

    /// The last applied index this history has seen.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The smallest `since` the history can serve now.
    pub fn oldest(&self) -> u64 {
        self.lock().floor
    }

    /// Woken on every applied entry (and reset).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Up to `max` groups after index `since`, oldest first.
    pub fn after(&self, since: u64, max: usize) -> Result<Vec<Arc<Group>>, Compacted> {
        let h = self.lock();
        if since < h.floor {
            return Err(Compacted { oldest: h.floor });
        }
        let start = h.groups.partition_point(|g| g.index <= since);
        Ok(h.groups.range(start..).take(max).cloned().collect())
    }

    /// Take a watcher slot, or `None` when `watch.max_watchers` are busy.
    pub fn register(self: &Arc<Self>) -> Option<WatcherSlot> {
        let max = usize::try_from(self.cfg.max_watchers).unwrap_or(usize::MAX);
        let taken = self
            .watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        taken.ok().map(|_| WatcherSlot(self.clone()))
    }

    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Ends every stream (node shutdown).
    pub fn close(&self) {
        self.closing.cancel();
    }

    pub fn closing(&self) -> &tokio_util::sync::CancellationToken {
        &self.closing
    }

    /// Wait until an entry after `since` changed a key `wanted` accepts, or
    /// `until`, or the history cannot tell (`since` compacted out: return at
    /// once, as Consul does for an index it cannot compare).
    pub async fn wait_change(&self, since: u64, wanted: impl Fn(&str) -> bool, until: Instant) {
        let mut rx = self.subscribe();
        let mut pos = since;
        loop {
            rx.borrow_and_update();
            match self.after(pos, 1024) {
                Err(_) => return,
                Ok(groups) => {
                    if groups
                        .iter()
                        .any(|g| g.changes.iter().any(|c| wanted(&c.key)))
                    {
                        return;
                    }
                    if let Some(last) = groups.last() {
                        pos = last.index;
                        continue;
                    }
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(until) => return,
                _ = self.closing.cancelled() => return,
            }
        }
    }
}

impl ChangeSink for WatchHub {
    fn applied(&self, index: u64, changes: Vec<Change>) {
        if !changes.is_empty() {
            let mut h = self.lock();
            let g = Arc::new(Group { index, changes });
            h.events += g.changes.len() as u64;
            h.bytes += g.bytes();
            h.groups.push_back(g);
            while h.events > self.cfg.history_events || h.bytes > self.cfg.history_bytes.0 {
                let Some(old) = h.groups.pop_front() else {
                    break;
                };
                h.events -= old.changes.len() as u64;
                h.bytes -= old.bytes();
                h.floor = old.index;
            }
        }
        self.applied.send_replace(index);
    }

    fn reset(&self, index: u64) {
        {
            let mut h = self.lock();
            *h = History {
                floor: index,
                ..History::default()
            };
        }
        self.applied.send_replace(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use crate::kv::ChangeKind;
    use crate::kv::EntryMeta;

    fn change(key: &str, value_len: usize) -> Change {
        Change {
            kind: ChangeKind::Put,
            key: key.into(),
            value: vec![b'x'; value_len],
            meta: EntryMeta {
                create_index: 1,
                modify_index: 1,
                version: 1,
            },
            expires_at: 0,
        }
    }

    fn hub(events: u64, bytes: u64) -> Arc<WatchHub> {
        WatchHub::new(WatchConfig {
            history_events: events,
            history_bytes: ByteSize(bytes),
            max_watchers: 2,
            ..WatchConfig::default()
        })
    }

    #[test]
    fn serves_every_change_after_since_or_says_it_is_gone() {
        let h = hub(3, 1 << 20);
        h.reset(10);
        h.applied(11, vec![change("a", 1)]);
        h.applied(12, vec![]);
        h.applied(13, vec![change("b", 1), change("c", 1)]);
        let idx = |v: Vec<Arc<Group>>| v.iter().map(|g| g.index).collect::<Vec<_>>();
        assert_eq!(idx(h.after(10, 10).unwrap()), [11, 13]);
        assert_eq!(idx(h.after(11, 10).unwrap()), [13]);
        assert_eq!(idx(h.after(12, 10).unwrap()), [13]);
        assert_eq!(h.applied_index(), 13);
        // A fourth change drops the oldest whole group.
        h.applied(14, vec![change("d", 1)]);
        assert_eq!(h.after(10, 10).unwrap_err(), Compacted { oldest: 11 });
        assert_eq!(idx(h.after(11, 10).unwrap()), [13, 14]);
        h.reset(20);
        assert_eq!(h.after(14, 10).unwrap_err(), Compacted { oldest: 20 });
        assert!(h.after(20, 10).unwrap().is_empty());
    }

    #[test]
    fn bounded_in_bytes_and_watchers() {
        let h = hub(1000, 1024);
        for i in 1..=10 {
            h.applied(i, vec![change("k", 300)]);
        }
        let held = h.after(h.oldest(), 100).unwrap();
        assert!(held.len() <= 3 && !held.is_empty());
        let a = h.register().unwrap();
        let _b = h.register().unwrap();
        assert!(h.register().is_none());
        drop(a);
        assert!(h.register().is_some());
    }
}
