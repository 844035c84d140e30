//! Linearizable reads answered by a follower: the follower asks the leader
//! for a read index (one ReadIndex round on the leader, `raft::rpc`'s
//! `READ_INDEX`, sent on a peer stream: `raft::stream`), waits until its
//! own state machine has applied that index, and reads locally. The reads waiting on one follower at the same moment
//! share one request to the leader ([`SharedRound`]; the leader's own reads
//! share ReadIndex rounds the same way).
//!
//! Why: forwarding the whole HTTP request to the leader cost a second HTTP
//! exchange per read on both nodes (about half the CPU of a linearizable
//! read at 64 connections, see docs/BENCHMARKS.md); a shared read-index
//! request costs one small RPC per batch, and the read itself is as cheap
//! as a stale one.
//!
//! Invariants:
//! - A read joins only a request sent after it arrived: a waiter that comes
//!   while a request is in flight waits for the next one. The leader
//!   confirms leadership with a quorum after receiving that request, so
//!   the index covers every write acknowledged before the read began.
//! - Committed entries are the same on every node, so a follower whose
//!   applied index is at or past the read index holds every write the read
//!   must see.
//! - Any failure (no answer, a node that is no longer leader, no quorum, a
//!   follower that does not catch up in time) gives `None`: the caller
//!   forwards the read as before. Nothing here changes what a client sees,
//!   only where the read is answered.
//!
//! Not here: what is read and the expiry rule (`Cluster::read` and
//! `Cluster::query`).

use std::sync::Arc;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Cluster;
use super::until;
use crate::error::Leader;
use crate::raft::network::PeerClient;
use crate::raft::rpc::ReadIndex;

/// One round (a request to the leader, or a ReadIndex round on the leader
/// itself), started when no other round is in flight.
pub(super) type Round<T> = Box<dyn FnOnce() -> BoxFuture<'static, T> + Send>;

/// Callers waiting for the result of a round begun after they arrived, and
/// whether a round is in flight: every caller that comes while one is in
/// flight shares the next one.
pub(super) struct SharedRound<T> {
    pending: Mutex<Pending<T>>,
}

struct Pending<T> {
    /// A task is running rounds for the waiters.
    running: bool,
    waiters: Vec<oneshot::Sender<T>>,
    /// The latest caller's round (the next one run).
    next: Option<Round<T>>,
}

impl<T> Default for SharedRound<T> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Pending {
                running: false,
                waiters: Vec::new(),
                next: None,
            }),
        }
    }
}

impl<T: Clone + Send + 'static> SharedRound<T> {
    /// The result of a round begun after this call (`round`, or a later
    /// caller's); `None` only if the task running rounds died.
    pub(super) async fn join(self: &Arc<Self>, round: Round<T>) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.waiters.push(tx);
            p.next = Some(round);
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            tokio::spawn(self.clone().drive());
        }
        rx.await.ok()
    }

    /// Run one round per batch of waiters until none is left.
    async fn drive(self: Arc<Self>) {
        loop {
            let (batch, round) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                match p.next.take() {
                    Some(r) if !p.waiters.is_empty() => (std::mem::take(&mut p.waiters), r),
                    _ => {
                        p.running = false;
                        return;
                    }
                }
            };
            let result = round().await;
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }
}

impl Cluster {
    /// The peer client for `leader`, reused while it stays leader (follower
    /// reads and forwarded writes).
    pub(super) fn leader_client(&self, leader: &Leader) -> Option<Arc<PeerClient>> {
        let mut cached = self.leader_peer.lock().unwrap_or_else(|e| e.into_inner());
        let node = {
            let m = self.raft.metrics();
            let m = openraft::async_runtime::WatchReceiver::borrow_watched(&m);
            let node = m.membership_config.membership().get_node(&leader.id)?;
            // Same id is not enough: a member removed, wiped and added back
            // has a new incarnation (and maybe address), which RPCs must
            // name.
            if let Some(c) = cached
                .as_ref()
                .filter(|c| c.target() == &leader.id && c.reaches(node))
            {
                return Some(c.clone());
            }
            // Built after the metrics are released: a new client may take a
            // while (TLS roots), and Raft's core publishes through them.
            node.clone()
        };
        let c = Arc::new(self.cfg.peers.peer(leader.id.clone(), &node));
        *cached = Some(c.clone());
        Some(c)
    }

    /// On a follower: get a read index from `leader` and wait until this
    /// node has applied it. `Some(leader_ms)` when a local read is now
    /// linearizable (read deadlines at no earlier time than `leader_ms`);
    /// `None` when the read must be forwarded instead.
    pub(super) async fn follower_linearize(
        &self,
        leader: &Leader,
        deadline: Instant,
    ) -> Option<u64> {
        let client = self.leader_client(leader)?;
        // Take at most half of what is left (and an election timeout), so
        // that a forwarded fallback still has the other half.
        let now = Instant::now();
        let ttl = (deadline.saturating_duration_since(now) / 2).min(self.cfg.election_timeout);
        let bound = now + ttl;
        let round: Round<Option<ReadIndex>> = Box::new(move || {
            Box::pin(async move {
                client
                    .read_index(ttl)
                    .await
                    .inspect_err(|e| {
                        tracing::debug!(leader = %client.target(), error = %e,
                            "read index from the leader failed; forwarding reads");
                    })
                    .ok()
            })
        });
        let ri = until(bound, self.follower_reads.join(round)).await???;
        // Woken once, by the apply that reaches the index (`raft::applied`).
        let caught_up = until(bound, self.reader.wait_applied(ri.index)).await;
        caught_up.map(|()| ri.leader_ms)
    }
}
