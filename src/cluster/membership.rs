//! Membership and leadership changes: join (probe → learner → catch up →
//! voter), remove, transfer leadership, and the handover on shutdown.
//!
//! Invariants:
//! - A node is added only after its Raft address answered `GET /raft/info`
//!   with the id it claims (no ghost voters), and only the address the
//!   joiner presented is contacted: once, no redirects, within
//!   [`PROBE_TIMEOUT`], reading at most [`PROBE_MAX_BYTES`] of answer, and
//!   presenting the cluster secret (so a joiner whose Raft listener does
//!   not hold the same secret is refused).
//! - Joining an existing voter with the same addresses and incarnation is a
//!   no-op `Ok` (a restarted node may ask again); a member whose data dir
//!   is a new incarnation (it lost its Raft state) is refused until removed.
//! - The last voter cannot be removed.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use tokio::time::Instant;

use super::Cluster;
use super::until;
use crate::error::Error;
use crate::error::Result;
use crate::id::NodeId;
use crate::raft::Node;
use crate::raft::rpc;

/// Bound on the whole join probe (connect, request, answer).
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest `/raft/info` answer read; a real one is a few hundred bytes.
pub(super) const PROBE_MAX_BYTES: usize = 64 * 1024;

impl Cluster {
    /// Options for calls to another node's HTTP port (forwarding, joins):
    /// with TLS on, https with the CA as the only root, the address's host
    /// checked, and this node's certificate as client certificate.
    pub fn node_http_options(&self) -> crate::net::HttpClientOptions {
        let tls = self.cfg.tls.as_ref().map(|t| {
            t.node_client(None)
                .expect("a host-checking client config always builds")
        });
        crate::net::HttpClientOptions {
            tls,
            ..Default::default()
        }
    }

    /// The cluster secret (None: none configured).
    pub fn secret(&self) -> Option<&crate::net::ClusterSecret> {
        self.cfg.secret.as_ref()
    }

    /// The URL scheme of calls to other nodes.
    pub fn scheme(&self) -> &'static str {
        crate::net::scheme(self.cfg.tls.is_some())
    }

    /// Ask the node listening on `raft_addr`, which says it is `id`, who it
    /// is (with TLS: its certificate must name `id`).
    async fn probe(&self, id: &NodeId, raft_addr: &str) -> Result<rpc::NodeInfo> {
        let unreachable = |msg: String| Error::MemberUnreachable(msg);
        let tls = match &self.cfg.tls {
            Some(t) => Some(
                t.node_client(Some(&id.0))
                    .map_err(|e| Error::InvalidInput(e.to_string()))?,
            ),
            None => None,
        };
        let client = crate::net::http_client(crate::net::HttpClientOptions {
            tls,
            ..crate::net::HttpClientOptions::default()
                .timeout(PROBE_TIMEOUT)
                .connect_timeout(PROBE_TIMEOUT)
        });
        let url = format!("{}://{raft_addr}{}", self.scheme(), rpc::INFO);
        let mut req = client
            .get(&url)
            .header(rpc::FROM_HEADER, self.id().0.as_str());
        if let Some(s) = &self.cfg.secret {
            req = req.header(crate::wire::header::CLUSTER_SECRET, s.header_value());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| unreachable(format!("cannot reach a dcache node at {raft_addr}: {e}")))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Error::Conflict(format!(
                "the node at {raft_addr} refused this cluster's secret (its cluster.secret differs)"
            )));
        }
        if !resp.status().is_success() {
            return Err(unreachable(format!(
                "{raft_addr} answered {} to {}",
                resp.status(),
                rpc::INFO
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unreachable(format!("reading from {raft_addr}: {e}")))?
        {
            if bytes.len() + chunk.len() > PROBE_MAX_BYTES {
                return Err(unreachable(format!(
                    "{raft_addr} answered more than {PROBE_MAX_BYTES} bytes to {}: not a dcache Raft listener",
                    rpc::INFO
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| unreachable(format!("{raft_addr} is not a dcache Raft listener: {e}")))
    }

    /// Add a node as a voter: check it is reachable and is who it claims to
    /// be, add it as a learner, wait for it to catch up (bounded by the
    /// catch-up timeout, which may exceed the request deadline: a large
    /// snapshot takes time), then promote it.
    pub async fn join(&self, id: NodeId, raft_addr: String, deadline: Instant) -> Result<()> {
        self.lead(deadline).await?;
        let info = self.probe(&id, &raft_addr).await?;
        if info.id != id {
            return Err(Error::Conflict(format!(
                "the node at {raft_addr} reports id {:?}, not {:?}",
                info.id.0, id.0
            )));
        }
        let node = Node {
            raft_addr: raft_addr.clone(),
            http_addr: info.http_addr,
            incarnation: info.incarnation,
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
        // A member that lost its data (and its vote) is not the member the
        // cluster knows: treating it as the same one would let it vote twice
        // in a term and would have the leader's replication to it go back
        // (openraft refuses a log reversion). It refuses RPCs addressed to
        // its old incarnation (raft::rpc) and must be removed, then join as
        // new. Members recorded before incarnations (0) are recognised by an
        // empty log where the leader had matched entries.
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten());
        let same_addrs = |n: &Node| n.raft_addr == node.raft_addr && n.http_addr == node.http_addr;
        let lost_state = |n: &Node| match n.incarnation {
            0 => info.empty_log && matched.is_some(),
            known => known != node.incarnation,
        };
        let catch_up = Instant::now() + self.cfg.catch_up_timeout;
        match membership.get_node(&id) {
            Some(existing) if !same_addrs(existing) => {
                return Err(Error::Conflict(format!(
                    "member {:?} already exists with addresses ({existing}); remove it first",
                    id.0
                )));
            }
            Some(existing) if lost_state(existing) => {
                return Err(Error::Conflict(format!(
                    "member {:?} lost its Raft state (its data dir is a new incarnation, or its log is empty where it had acknowledged entries); remove it (DELETE /v1/cluster/members/{}) and start it again to rejoin",
                    id.0, id.0
                )));
            }
            Some(_) if is_voter => return Ok(()),
            Some(_) => {}
            None => match until(catch_up, self.raft.add_learner(id.clone(), node, true)).await {
                None => return Err(Error::Timeout(self.cfg.catch_up_timeout)),
                Some(Err(e)) => return Err(self.write_error(e)),
                Some(Ok(_)) => {}
            },
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), catch_up)
            .await
    }

    async fn change(&self, change: ChangeMembers<NodeId, Node>, by: Instant) -> Result<()> {
        let start = Instant::now();
        match until(by, self.raft.change_membership(change, false)).await {
            None => Err(Error::Timeout(start.elapsed())),
            Some(Err(e)) => Err(self.write_error(e)),
            Some(Ok(_)) => Ok(()),
        }
    }

    /// Remove a member (voter or learner) from the cluster.
    pub async fn remove(&self, id: NodeId, deadline: Instant) -> Result<()> {
        self.lead(deadline).await?;
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
        self.change(change, deadline).await
    }

    /// The voter other than this node that has replicated the most, among
    /// those that acknowledged a heartbeat within the last election timeout
    /// (a node that is down or shutting down cannot take over).
    fn best_transfer_target(&self) -> Option<NodeId> {
        let m = self.metrics();
        let matched = m.replication.clone().unwrap_or_default();
        let acked = m.heartbeat.clone().unwrap_or_default();
        let live = |v: &NodeId| {
            acked
                .get(v)
                .cloned()
                .flatten()
                .is_some_and(|t| openraft::Instant::elapsed(&*t) < self.cfg.election_timeout)
        };
        m.membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id && live(v))
            .max_by_key(|v| matched.get(v).cloned().flatten().map(|l| l.index))
    }

    /// Hand leadership to `to` (or the most up-to-date live voter) and wait
    /// until another node leads. Returns the new leader if known.
    pub async fn transfer_leader(
        &self,
        to: Option<NodeId>,
        deadline: Instant,
    ) -> Result<Option<NodeId>> {
        self.lead(deadline).await?;
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
                Error::Conflict("no other live voter to transfer leadership to".into())
            })?,
        };
        self.raft
            .trigger()
            .transfer_leader(target.clone())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let me = self.id.clone();
        let start = Instant::now();
        let wait = self
            .raft
            .wait(Some(deadline.saturating_duration_since(start)));
        let moved = wait
            .metrics(
                move |m| m.current_leader.as_ref().is_some_and(|l| *l != me),
                "leadership moved",
            )
            .await;
        match moved {
            Ok(m) => Ok(m.current_leader.clone()),
            Err(_) => Err(Error::Timeout(start.elapsed())),
        }
    }

    /// On shutdown: if this node leads and a live voter can take over, hand
    /// leadership to it and wait (at most two election timeouts). Logs the
    /// outcome; a failed handover only costs the cluster an election.
    pub async fn handover(&self) {
        if !self.is_leader() || self.best_transfer_target().is_none() {
            return;
        }
        let deadline = Instant::now() + self.cfg.election_timeout * 2;
        match self.transfer_leader(None, deadline).await {
            Ok(new) => tracing::info!(new_leader = ?new.map(|n| n.0), "leadership handed over"),
            Err(e) => tracing::warn!(error = %e, "leadership transfer failed"),
        }
    }
}
