//! What the cluster service reports about this node: [`Status`] (for
//! `/v1/cluster` and `/health`), [`Readiness`] (for `/readyz`) and [`Stats`]
//! (for `/metrics`). Plain data: no openraft type leaves this module.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use serde::Serialize;

use super::Cluster;
use crate::id::NodeId;

/// A node's role in Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Leader,
        Role::Follower,
        Role::Candidate,
        Role::Learner,
        Role::Shutdown,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "Leader",
            Role::Follower => "Follower",
            Role::Candidate => "Candidate",
            Role::Learner => "Learner",
            Role::Shutdown => "Shutdown",
        }
    }

    fn from_raft(s: ServerState) -> Role {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// One member as `/v1/cluster` reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Member {
    pub id: String,
    pub raft_addr: String,
    pub http_addr: String,
    /// "voter" or "learner".
    pub role: &'static str,
    /// Highest log index the leader knows this member has (leader only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
}

/// A point-in-time view of this node's Raft state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub node_id: String,
    pub raft_state: Role,
    pub is_leader: bool,
    pub term: u64,
    pub leader_id: Option<String>,
    /// The leader's HTTP address (where writes go).
    pub leader_addr: Option<String>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<Member>,
    /// The membership shown is committed and not a joint configuration,
    /// i.e. no membership change is in flight.
    pub membership_settled: bool,
    /// Raft stopped with an error (storage failure, shutdown).
    pub fatal: Option<String>,
    /// Raft RPCs this node refused because they named an earlier
    /// incarnation of it: it lost its data and must be removed, then join
    /// again (README "A member that lost its data").
    pub refused_rpcs: u64,
    /// This node's Redis protocol address (`redis.bind_addr`, or the bound
    /// port when it is 0); absent when the Redis listener is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_addr: Option<String>,
}

/// Readiness: each check and whether it passes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: BTreeMap<&'static str, bool>,
}

/// The cache as `GET /v1/status` and `/metrics` report it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CacheStatus {
    pub node_id: String,
    pub applied_index: u64,
    /// Keys stored (expired ones not yet removed included).
    pub keys: u64,
    /// Keys with a deadline.
    pub ttl_keys: u64,
    /// Accounted bytes of keys, values and per-key overhead.
    pub memory_bytes: u64,
    /// `cache.max_memory` (0 = unlimited).
    pub max_memory_bytes: u64,
    pub eviction_policy: &'static str,
    /// Reads served by this node that found / did not find the key.
    pub hits: u64,
    pub misses: u64,
    /// Keys removed because their deadline passed (replicated count).
    pub expired_keys: u64,
    /// Keys evicted to make room (replicated count).
    pub evicted_keys: u64,
    /// Writes refused as out of memory (replicated count).
    pub out_of_memory_writes: u64,
    /// The replicated clock, ms since the epoch.
    pub clock_ms: u64,
    /// How far behind active expiry is: this node's time minus the earliest
    /// deadline that has passed but whose key is not removed yet (0: none).
    pub expiry_lag_ms: u64,
}

/// Everything `/metrics` samples at scrape time.
#[derive(Debug, Clone)]
pub struct Stats {
    pub status: Status,
    /// Log entries stored on disk.
    pub log_entries: u64,
    /// Log bytes applied since the newest snapshot's capture (what the
    /// snapshot policy weighs against the state's size, `raft::compaction`).
    pub log_bytes_since_snapshot: u64,
    pub cache: CacheStatus,
}

/// How long readiness waits for the state machine to apply what is already
/// known committed (a healthy node needs microseconds to milliseconds).
const APPLY_CATCH_UP_GRACE: Duration = Duration::from_millis(500);

impl Cluster {
    pub fn status(&self) -> Status {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = m.replication.clone().unwrap_or_default();
        let is_leader = m.state == ServerState::Leader;
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: id.0.clone(),
                raft_addr: node.raft_addr.clone(),
                http_addr: node.http_addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                },
                matched_index: match (is_leader, *id == self.id) {
                    (false, _) => None,
                    (true, true) => m.last_log_index,
                    (true, false) => matched.get(id).cloned().flatten().map(|l| l.index),
                },
            })
            .collect();
        let leader_addr = m
            .current_leader
            .as_ref()
            .and_then(|l| membership.get_node(l))
            .map(|n| n.http_addr.clone());
        Status {
            node_id: self.id.0.clone(),
            raft_state: Role::from_raft(m.state),
            is_leader: is_leader && m.current_leader.as_ref() == Some(&self.id),
            term: m.current_term,
            leader_id: m.current_leader.as_ref().map(|l| l.0.clone()),
            leader_addr,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: m.cluster_committed.as_ref().map_or(0, |l| l.index),
            applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            members,
            membership_settled: m.membership_config.log_id()
                == m.committed_membership_config.log_id()
                && membership.get_joint_config().len() == 1,
            fatal: m.running_state.as_ref().err().map(|e| e.to_string()),
            refused_rpcs: self.contact.refused(),
            redis_addr: self.redis_addr().map(str::to_string),
        }
    }

    /// Status plus log and cache figures, for `/metrics`.
    pub async fn stats(&self) -> Stats {
        let (log_entries, _, _) = self.log.stats().await;
        Stats {
            status: self.status(),
            log_entries,
            log_bytes_since_snapshot: self.reader.log_bytes_since_snapshot(),
            cache: self.cache_status(),
        }
    }

    pub fn cache_status(&self) -> CacheStatus {
        let c = self.reader.stats();
        let now = self.stamp();
        CacheStatus {
            node_id: self.id.0.clone(),
            applied_index: self.reader.applied_index(),
            keys: c.keys,
            ttl_keys: c.ttl_keys,
            memory_bytes: c.mem_bytes,
            max_memory_bytes: self.evictor.max_memory(),
            eviction_policy: self.evictor.policy().as_str(),
            hits: self.hits.load(std::sync::atomic::Ordering::Relaxed),
            misses: self.misses.load(std::sync::atomic::Ordering::Relaxed),
            expired_keys: c.expired_total,
            evicted_keys: c.evicted_total,
            out_of_memory_writes: c.oom_total,
            clock_ms: c.clock_ms,
            expiry_lag_ms: if c.next_deadline != 0 && c.next_deadline <= now {
                now - c.next_deadline
            } else {
                0
            },
        }
    }

    /// Ready = Raft is running, this node is a member, a live leader is
    /// known, and it has applied everything it knew to be committed when
    /// asked. openraft publishes a new commit index before the matching
    /// applied index, so the last check waits briefly for apply to catch up
    /// instead of comparing one metrics snapshot (which would flap under
    /// writes).
    pub async fn readiness(&self) -> Readiness {
        let m = self.metrics();
        let mut checks = BTreeMap::new();
        checks.insert("raft_running", m.running_state.is_ok());
        checks.insert(
            "member",
            m.membership_config
                .membership()
                .get_node(&self.id)
                .is_some(),
        );
        // A leader counts only if it holds a quorum now (a node restarting
        // from its own leader vote briefly reports itself leader); a
        // follower only if its leader reached it within an election timeout.
        let deadline = tokio::time::Instant::now() + self.cfg.election_timeout;
        let leader_live = match self.route() {
            super::Route::Here => self
                .confirm_leadership(crate::config::ReadPolicy::Lease, deadline)
                .await
                .is_ok(),
            super::Route::Forward(_) => true,
            super::Route::NoLeader => false,
        };
        checks.insert("leader_known", leader_live);
        let committed = m.cluster_committed.as_ref().map_or(0, |l| l.index);
        let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
        let caught_up = applied >= committed
            || self
                .raft
                .wait(Some(APPLY_CATCH_UP_GRACE))
                .metrics(
                    move |m| m.last_applied.as_ref().map_or(0, |l| l.index) >= committed,
                    "applied reaches commit",
                )
                .await
                .is_ok();
        checks.insert("applied_committed", caught_up);
        Readiness {
            ready: checks.values().all(|ok| *ok),
            checks,
        }
    }

    /// Log every change of leader at `info` ("leader changed", with term and
    /// leader id) until Raft stops. Run as a background task.
    pub async fn log_leader_changes(self: std::sync::Arc<Self>) {
        // The server metrics change with the vote, leader or membership
        // only; `metrics()` is published after every batch of Raft's work
        // and would wake this task for each.
        let mut rx = self.raft.server_metrics();
        let mut last: Option<(u64, NodeId)> = None;
        loop {
            let now = {
                let m = rx.borrow_watched();
                m.current_leader
                    .clone()
                    .map(|l| (m.vote.leader_id().term, l))
            };
            if let Some(now) = now
                && last.as_ref() != Some(&now)
            {
                let me = now.1 == self.id;
                tracing::info!(term = now.0, leader = %now.1, this_node = me, "leader changed");
                last = Some(now);
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether this node is a voter with exactly these addresses (a
    /// restarted member need not join again).
    pub fn is_voter_at(&self, raft_addr: &str, http_addr: &str) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        membership.voter_ids().any(|v| v == self.id)
            && membership
                .get_node(&self.id)
                .is_some_and(|n| n.raft_addr == raft_addr && n.http_addr == http_addr)
    }
}
