//! [`LeaderContact`]: when this node last heard from a leader.
//!
//! The Raft RPC listener touches it on every AppendEntries (heartbeats
//! included) that a current leader sent; `cluster` reads it to decide
//! whether the leader openraft remembers is still worth routing to. With
//! pre-vote enabled, a follower cut off from its leader keeps the old
//! `current_leader` indefinitely, and a restarted follower restores it from
//! its saved vote: neither means the leader is alive.
//!
//! It also counts the Raft RPCs this node refused because they named an
//! earlier incarnation of it (see `node::identity`): a member that lost its
//! data and is still in the membership.
//!
//! Invariant: a fresh process counts as "never contacted" until a leader
//! actually reaches it.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Debug)]
pub struct LeaderContact {
    origin: Instant,
    last_ms: AtomicU64,
    touched: Notify,
    refused: AtomicU64,
}

/// `last_ms` value meaning "no contact since this process started".
const NEVER: u64 = u64::MAX;

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(NEVER),
            touched: Notify::new(),
            refused: AtomicU64::new(0),
        }
    }
}

impl LeaderContact {
    /// Count an RPC refused because it named an earlier incarnation.
    pub fn refused_stale_incarnation(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// RPCs refused because they named an earlier incarnation.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Record contact from the leader now.
    pub fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        let _ = self
            .last_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == NEVER || ms > cur).then_some(ms)
            });
        // Wake anyone waiting for a live leader (cheap when nobody waits).
        self.touched.notify_waiters();
    }

    /// Time since the last contact; `Duration::MAX` if there was none.
    pub fn since(&self) -> Duration {
        match self.last_ms.load(Ordering::Relaxed) {
            NEVER => Duration::MAX,
            last => self
                .origin
                .elapsed()
                .saturating_sub(Duration::from_millis(last)),
        }
    }

    /// Resolves at the next contact. Create the future before checking the
    /// condition it waits for, so a contact in between is not missed.
    pub fn touched(&self) -> tokio::sync::futures::Notified<'_> {
        self.touched.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_until_touched() {
        let c = LeaderContact::default();
        assert_eq!(c.since(), Duration::MAX);
        c.touch();
        assert!(c.since() < Duration::from_secs(1));
    }
}
