//! The cluster service: what the HTTP API (and later RESP) calls to write,
//! read with a consistency level, and manage membership. It owns the
//! translation from openraft's errors to [`crate::error::Error`].
//!
//! Invariants:
//! - Writes go through Raft only; reads touch the state machine only through
//!   [`StateReader`]. Nothing here holds the state machine's lock across an
//!   await.
//! - A linearizable read confirms leadership (ReadIndex, or a valid lease when
//!   configured) and waits until the local state machine has applied up to
//!   the read index before reading.
//! - Every client-facing wait is bounded by `request_timeout`.
//! - `NotLeader`/`NoLeader` are returned only when the request was not
//!   proposed, so the caller may forward or retry it safely.
//!
//! Not here: HTTP forwarding to the leader (the API layer does it, because it
//! holds the original request).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use openraft::ChangeMembers;
use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ChangeMembershipError;
use openraft::errors::ClientWriteError;
use openraft::errors::LinearizableReadError;
use openraft::errors::RaftError;
use serde::Serialize;

use crate::error::Error;
use crate::error::Result;
use crate::kv;
use crate::kv::Entry;
use crate::raft::Node;
use crate::raft::NodeId;
use crate::raft::Raft;
use crate::raft::log_store::LogStore;
use crate::raft::rpc;
use crate::raft::rpc::LeaderContact;
use crate::raft::state_machine::StateReader;
use crate::raft::typ;

/// Consistency level of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (default).
    Linearizable,
    /// Whatever this node has applied; may lag the leader.
    Stale,
}

/// Result of a write that committed and was applied.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub response: kv::Response,
    /// Log index of the write.
    pub raft_index: u64,
}

/// Result of a read.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub entry: Option<Entry>,
    /// Applied index of the state the read observed.
    pub raft_index: u64,
}

/// One member as `/v1/cluster` reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node_id: String,
    pub raft_state: String,
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
}

/// Readiness: each check and whether it passes.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: BTreeMap<&'static str, bool>,
}

/// Tunables of the service, from config.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub request_timeout: Duration,
    pub read_policy: ReadPolicy,
    /// How long a joining learner may take to catch up before promotion.
    pub catch_up_timeout: Duration,
    /// How long to wait for a new leader after a transfer.
    pub transfer_timeout: Duration,
    /// A leader that has not heard from a quorum for this long refuses new
    /// requests (503) instead of proposing entries that cannot commit.
    pub quorum_timeout: Duration,
}

pub struct Cluster {
    raft: Raft,
    contact: Arc<LeaderContact>,
    reader: StateReader,
    log: LogStore,
    id: NodeId,
    cfg: ServiceConfig,
    probe: reqwest::Client,
}

/// How long readiness waits for the state machine to apply what is already
/// known committed (a healthy node needs microseconds to milliseconds).
const APPLY_CATCH_UP_GRACE: Duration = Duration::from_millis(500);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Cluster {
    pub fn new(
        raft: Raft,
        reader: StateReader,
        log: LogStore,
        id: NodeId,
        cfg: ServiceConfig,
        contact: Arc<LeaderContact>,
    ) -> Self {
        let probe = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .no_proxy()
            .build()
            .expect("build HTTP client");
        Self {
            raft,
            contact,
            reader,
            log,
            id,
            cfg,
            probe,
        }
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn reader(&self) -> &StateReader {
        &self.reader
    }

    pub fn log_store(&self) -> &LogStore {
        &self.log
    }

    pub fn metrics(&self) -> typ::RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The known leader: (id, node), if any.
    pub fn leader(&self) -> Option<(NodeId, Node)> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader.clone()?;
        let node = m.membership_config.membership().get_node(&id).cloned()?;
        Some((id, node))
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader.as_ref() == Some(&self.id)
    }

    /// `Ok` if this node believes it is the leader, else the error that says
    /// where the leader is (or that there is none). Metrics-based: use
    /// [`Cluster::ensure_leader`] before serving a client request.
    pub fn require_leader(&self) -> Result<()> {
        if self.is_leader() {
            return Ok(());
        }
        match self.leader() {
            // A follower that has not heard from its leader for an election
            // timeout does not route to it: the leader is gone or cut off.
            Some((id, node)) if id != self.id && self.contact.since() < self.cfg.quorum_timeout => {
                Err(Error::NotLeader {
                    leader_id: Some(id),
                    leader_http: Some(node.http_addr),
                })
            }
            _ => Err(Error::NoLeader),
        }
    }

    /// Like [`Cluster::require_leader`], and also checks with Raft that this
    /// leader's lease is valid, i.e. a quorum acknowledged it within the
    /// lease (CheckQuorum). A leader cut off from its quorum answers
    /// `NoLeader` at once instead of proposing entries that cannot commit.
    pub async fn ensure_leader(&self) -> Result<()> {
        self.require_leader()?;
        let map = |e: typ::RaftError<typ::LinearizableReadError>| match e {
            RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => self.not_leader(f),
            RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => Error::NoLeader,
            RaftError::Fatal(f) => Error::Unavailable(f.to_string()),
        };
        match self.raft.get_read_linearizer(ReadPolicy::LeaseRead).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                // No valid lease: a leader just elected, or one cut off from
                // its quorum. Ask the quorum (one heartbeat round), bounded.
                let confirm = self.raft.get_read_linearizer(ReadPolicy::ReadIndex);
                match tokio::time::timeout(self.cfg.quorum_timeout, confirm).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(map(e)),
                    Err(_) => Err(Error::NoLeader),
                }
            }
            Err(e) => Err(map(e)),
        }
    }

    /// Wait (bounded by two election timeouts) until some leader is known.
    pub async fn wait_for_leader(&self) {
        let _ = self
            .raft
            .wait(Some(self.cfg.quorum_timeout * 2))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await;
    }

    fn not_leader(&self, f: typ::ForwardToLeader) -> Error {
        match (f.leader_id, f.leader_node) {
            (Some(id), Some(node)) if id != self.id => Error::NotLeader {
                leader_id: Some(id),
                leader_http: Some(node.http_addr),
            },
            _ => Error::NoLeader,
        }
    }

    /// Wait (bounded by an election timeout) until the leader is someone
    /// other than `old`, or this node.
    pub async fn wait_leader_change(&self, old: &NodeId) {
        let old = old.clone();
        let _ = self
            .raft
            .wait(Some(self.cfg.quorum_timeout * 2))
            .metrics(
                move |m| m.current_leader.as_ref().is_some_and(|l| *l != old),
                "leader changed",
            )
            .await;
    }

    /// Propose a command and wait until it is committed and applied.
    pub async fn write(&self, cmd: kv::Command) -> Result<WriteOutcome> {
        let req = kv::Request {
            now_ms: now_ms(),
            cmd,
        };
        let res = tokio::time::timeout(self.cfg.request_timeout, self.raft.client_write(req)).await;
        match res {
            Err(_) => Err(Error::Timeout(self.cfg.request_timeout)),
            Ok(Ok(resp)) => Ok(WriteOutcome {
                response: resp.data,
                raft_index: resp.log_id.index,
            }),
            Ok(Err(e)) => Err(self.write_error(e)),
        }
    }

    fn write_error(&self, e: typ::RaftError<typ::ClientWriteError>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.not_leader(f),
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => Error::OutcomeUnknown,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(e),
            )) => Error::Unavailable(format!(
                "another membership change is in progress, retry: {e}"
            )),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Error::Conflict(e.to_string())
            }
            RaftError::APIError(other) => Error::Conflict(other.to_string()),
            // Raft stopped while the write was in flight: it may have been
            // proposed, so its fate is unknown.
            RaftError::Fatal(_) => Error::OutcomeUnknown,
        }
    }

    /// Read a key at the given consistency level.
    pub async fn read(&self, key: &str, consistency: Consistency) -> Result<ReadOutcome> {
        if consistency == Consistency::Linearizable {
            let res = tokio::time::timeout(
                self.cfg.request_timeout,
                self.raft.ensure_linearizable(self.cfg.read_policy.clone()),
            )
            .await;
            match res {
                Err(_) => return Err(Error::Timeout(self.cfg.request_timeout)),
                Ok(Ok(_read_log_id)) => {}
                Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                    return Err(self.not_leader(f));
                }
                Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)))) => {
                    tracing::debug!(error = %e, "linearizable read: no quorum");
                    return Err(Error::NoLeader);
                }
                Ok(Err(RaftError::Fatal(f))) => return Err(Error::Unavailable(f.to_string())),
            }
        }
        let r = self.reader.get(key);
        Ok(ReadOutcome {
            entry: r.entry,
            raft_index: r.applied_index,
        })
    }

    pub fn status(&self) -> Status {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = m.replication.clone().unwrap_or_default();
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
                matched_index: if m.state == ServerState::Leader {
                    if *id == self.id {
                        m.last_log_index
                    } else {
                        matched.get(id).cloned().flatten().map(|l| l.index)
                    }
                } else {
                    None
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
            raft_state: format!("{:?}", m.state),
            is_leader: m.state == ServerState::Leader
                && m.current_leader.as_ref() == Some(&self.id),
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
        let leader_live = match &m.current_leader {
            Some(l) if *l == self.id => self.ensure_leader().await.is_ok(),
            Some(_) => self.contact.since() < self.cfg.quorum_timeout,
            None => false,
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

    /// Ask the node listening on `raft_addr` who it is.
    pub async fn probe(&self, raft_addr: &str) -> Result<rpc::NodeInfo> {
        let url = format!("http://{raft_addr}{}", rpc::INFO);
        let resp = self.probe.get(&url).send().await.map_err(|e| {
            Error::Unreachable(format!("cannot reach a dcache node at {raft_addr}: {e}"))
        })?;
        if !resp.status().is_success() {
            return Err(Error::Unreachable(format!(
                "{raft_addr} answered {} to {}",
                resp.status(),
                rpc::INFO
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Unreachable(format!("reading from {raft_addr}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Unreachable(format!("{raft_addr} is not a dcache Raft listener: {e}"))
        })
    }

    /// Add a node as a voter: check it is reachable and is who it claims to
    /// be, add it as a learner, wait for it to catch up, then promote it.
    /// Idempotent: joining an existing voter with the same addresses is Ok.
    pub async fn join(&self, id: NodeId, raft_addr: String) -> Result<()> {
        self.require_leader()?;
        let info = self.probe(&raft_addr).await?;
        if info.id != id {
            return Err(Error::Conflict(format!(
                "the node at {raft_addr} reports id {:?}, not {:?}",
                info.id.0, id.0
            )));
        }
        let node = Node {
            raft_addr: raft_addr.clone(),
            http_addr: info.http_addr,
        };
        let m = self.metrics();
        let membership = m.membership_config.membership();
        for (other, n) in membership.nodes() {
            if *other != id && n.raft_addr == raft_addr {
                return Err(Error::Conflict(format!(
                    "raft address {raft_addr} already belongs to member {:?}",
                    other.0
                )));
            }
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        match membership.get_node(&id) {
            Some(existing) if *existing != node => {
                return Err(Error::Conflict(format!(
                    "member {:?} already exists with addresses ({existing}); remove it first",
                    id.0
                )));
            }
            Some(_) if is_voter => return Ok(()),
            Some(_) => {}
            None => {
                let add = self.raft.add_learner(id.clone(), node, true);
                match tokio::time::timeout(self.cfg.catch_up_timeout, add).await {
                    Err(_) => return Err(Error::Timeout(self.cfg.catch_up_timeout)),
                    Ok(Err(e)) => return Err(self.write_error(e)),
                    Ok(Ok(_)) => {}
                }
            }
        }
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        match tokio::time::timeout(
            self.cfg.catch_up_timeout,
            self.raft.change_membership(change, false),
        )
        .await
        {
            Err(_) => Err(Error::Timeout(self.cfg.catch_up_timeout)),
            Ok(Err(e)) => Err(self.write_error(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Remove a member (voter or learner) from the cluster.
    pub async fn remove(&self, id: NodeId) -> Result<()> {
        self.require_leader()?;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(Error::NotFound(format!("no member with id {:?}", id.0)));
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        if is_voter && membership.voter_ids().count() == 1 {
            return Err(Error::Conflict(format!(
                "{:?} is the only voter; removing it would leave no cluster",
                id.0
            )));
        }
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        match tokio::time::timeout(
            self.cfg.request_timeout,
            self.raft.change_membership(change, false),
        )
        .await
        {
            Err(_) => Err(Error::Timeout(self.cfg.request_timeout)),
            Ok(Err(e)) => Err(self.write_error(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The voter other than this node that has replicated the most, among
    /// those that acknowledged a heartbeat within the last election timeout
    /// (a node that is down or shutting down cannot take over).
    pub fn best_transfer_target(&self) -> Option<NodeId> {
        let m = self.metrics();
        let matched = m.replication.clone().unwrap_or_default();
        let acked = m.heartbeat.clone().unwrap_or_default();
        let live = |v: &NodeId| {
            acked
                .get(v)
                .cloned()
                .flatten()
                .is_some_and(|t| openraft::Instant::elapsed(&*t) < self.cfg.quorum_timeout)
        };
        m.membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id && live(v))
            .max_by_key(|v| matched.get(v).cloned().flatten().map(|l| l.index))
    }

    /// Hand leadership to `to` (or the most up-to-date other voter) and wait
    /// until this node is no longer leader. Returns the new leader if known.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<Option<NodeId>> {
        self.require_leader()?;
        let target = match to {
            Some(t) => {
                let m = self.metrics();
                if !m.membership_config.membership().voter_ids().any(|v| v == t) {
                    return Err(Error::NotFound(format!("{:?} is not a voter", t.0)));
                }
                if t == self.id {
                    return Ok(Some(t));
                }
                t
            }
            None => self.best_transfer_target().ok_or_else(|| {
                Error::Conflict("no other voter to transfer leadership to".into())
            })?,
        };
        self.raft
            .trigger()
            .transfer_leader(target.clone())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let me = self.id.clone();
        let wait = self.raft.wait(Some(self.cfg.transfer_timeout));
        let moved = wait
            .metrics(
                move |m| m.current_leader.as_ref().is_some_and(|l| *l != me),
                "leadership moved",
            )
            .await;
        match moved {
            Ok(m) => Ok(m.current_leader.clone()),
            Err(_) => Err(Error::Timeout(self.cfg.transfer_timeout)),
        }
    }
}
