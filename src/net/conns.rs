//! The table of a listener's open connections: per-client-IP counts, and
//! which connections are idle, so that a new client can take the place of
//! the connection that has been idle the longest.
//!
//! A connection is *busy* while a request of it is being handled or its
//! response body is being sent ([`Busy`] guards, held by the request
//! future and the response body), and *idle* otherwise: waiting for the
//! next request on a kept-alive connection, or for (the rest of) the first
//! request's headers. Closing an idle connection loses nothing: no request
//! of it has been read whole.
//!
//! Invariants:
//! - Every open connection has one entry, removed when its task ends
//!   ([`Slot`]'s `Drop`), so the per-IP counts cannot leak.
//! - A connection is chosen for eviction at most once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// Activity of one connection, shared with its request futures and bodies.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    /// When the connection last became idle (ms since the table's base).
    idle_since_ms: AtomicU64,
    base: Instant,
}

impl Activity {
    /// Mark a request in flight until the returned guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }
}

/// A request (or its response body) in flight; idle again when dropped.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms
            .store(a.base.elapsed().as_millis() as u64, Ordering::Release);
        a.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Entry {
    ip: IpAddr,
    activity: Arc<Activity>,
    evict: CancellationToken,
    evicting: bool,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The open connections of one listener.
#[derive(Clone)]
pub struct Table {
    inner: Arc<Mutex<Inner>>,
    base: Instant,
}

/// One connection's place in the table; leaves it when dropped.
pub struct Slot {
    table: Table,
    id: u64,
    pub activity: Arc<Activity>,
    /// Cancelled when the connection is chosen to make room.
    pub evict: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(e) = t.conns.remove(&self.id)
            && let Some(n) = t.per_ip.get_mut(&e.ip)
        {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&e.ip);
            }
        }
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub fn new() -> Self {
        Table {
            inner: Arc::default(),
            base: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Register a new connection from `ip`.
    pub fn insert(&self, ip: IpAddr) -> Slot {
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.base.elapsed().as_millis() as u64),
            base: self.base,
        });
        let evict = CancellationToken::new();
        let mut t = self.lock();
        let id = t.next_id;
        t.next_id += 1;
        t.conns.insert(
            id,
            Entry {
                ip,
                activity: activity.clone(),
                evict: evict.clone(),
                evicting: false,
            },
        );
        *t.per_ip.entry(ip).or_default() += 1;
        drop(t);
        Slot {
            table: self.clone(),
            id,
            activity,
            evict,
        }
    }

    /// Close the connection (from `ip`, or from anyone) that has been idle
    /// the longest. Returns whether there was one.
    pub fn evict_oldest_idle(&self, ip: Option<IpAddr>) -> bool {
        let mut t = self.lock();
        let victim = t
            .conns
            .iter()
            .filter(|(_, e)| !e.evicting && ip.is_none_or(|ip| e.ip == ip) && e.activity.is_idle())
            .min_by_key(|(id, e)| (e.activity.idle_since_ms.load(Ordering::Acquire), **id))
            .map(|(id, _)| *id);
        match victim.and_then(|id| t.conns.get_mut(&id)) {
            Some(e) => {
                e.evicting = true;
                e.evict.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_longest_idle_and_never_a_busy_one() {
        let t = Table::new();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = t.insert(a);
        let s2 = t.insert(a);
        let s3 = t.insert(b);
        assert_eq!((t.count(a), t.count(b)), (2, 1));
        let busy = s1.activity.busy();
        // s1 is busy: s2 (idle, from a) goes first.
        assert!(t.evict_oldest_idle(Some(a)));
        assert!(s2.evict.is_cancelled() && !s1.evict.is_cancelled());
        // Nothing else idle from a.
        assert!(!t.evict_oldest_idle(Some(a)));
        assert!(t.evict_oldest_idle(None));
        assert!(s3.evict.is_cancelled());
        drop(busy);
        assert!(t.evict_oldest_idle(None));
        assert!(s1.evict.is_cancelled());
        drop((s1, s2, s3));
        assert_eq!((t.count(a), t.count(b)), (0, 0));
    }
}
