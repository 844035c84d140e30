//! The home of openraft's generic types: they appear here and, converted
//! at once, inside `cluster`; nothing above `cluster` names them.
//!
//! Everything openraft-specific (type configuration, log storage, state
//! machine, peer transport, the Raft RPC server) lives under this module.
//! Other modules see [`typ`] aliases and the narrow handles re-exported here.
//!
//! Invariants:
//! - Node ids are the operator's strings ("node1"): [`crate::id::NodeId`]
//!   is openraft's node id type, so no mapping table exists.
//! - A [`Node`] carries both addresses a peer needs: where to send Raft RPCs
//!   and where to forward client requests. Both are advertised addresses.
//!
//! Uses: `kv`, `id`, `net`, `wire` (header names). Used by: `cluster`, `node`.

pub mod applied;
pub mod compaction;
pub mod contact;
pub mod log_store;
pub mod network;
pub mod rpc;
pub mod snapshot;
pub mod state_machine;
pub mod stream;

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

pub use self::contact::LeaderContact;
pub use crate::id::NodeId;
use crate::kv;

/// What the cluster knows about a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Advertised Raft (peer) address, host:port.
    pub raft_addr: String,
    /// Advertised client HTTP address, host:port; forwarding targets this.
    pub http_addr: String,
    /// The member's data-dir incarnation (see `node::identity`); Raft RPCs
    /// carry it and a node with another one refuses them. 0 = unknown
    /// (members added before incarnations): not checked.
    #[serde(default)]
    pub incarnation: u64,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

openraft::declare_raft_types!(
    /// dcache's Raft type configuration.
    pub TypeConfig:
        D = kv::Request,
        R = kv::Response,
        NodeId = NodeId,
        Node = Node,
);

/// About how many bytes an entry with `payload` takes in the log: what
/// raft-log's payload cache counts, and what the snapshot policy
/// (`compaction`) weighs against the state's size.
pub fn entry_bytes(payload: &typ::EntryPayload) -> u64 {
    match payload {
        openraft::EntryPayload::Normal(req) => {
            let evicted: usize = req.evict.iter().map(|k| k.len() + 8).sum();
            (req.cmd.payload_bytes() + evicted + 48) as u64
        }
        _ => 64,
    }
}

/// Snapshot payload as moved between state machine, disk and network: an
/// open snapshot file (never the state in memory).
pub type SnapshotData = snapshot::SnapshotFile;

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// Short aliases for openraft's generic types instantiated with [`TypeConfig`].
pub mod typ {
    use super::TypeConfig;

    pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
    pub type Vote = openraft::alias::VoteOf<TypeConfig>;
    pub type Entry = openraft::alias::EntryOf<TypeConfig>;
    pub type EntryPayload = openraft::EntryPayload<crate::kv::Request, super::NodeId, super::Node>;
    pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
    pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
    pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, super::SnapshotData>;
    pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

    pub type RaftError<E = openraft::errors::Infallible> =
        openraft::errors::RaftError<TypeConfig, E>;
    pub type RPCError = openraft::errors::RPCError<TypeConfig>;
    pub type StreamingError = openraft::errors::StreamingError<TypeConfig>;
    pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    pub type ForwardToLeader = openraft::errors::ForwardToLeader<TypeConfig>;
    pub type LinearizableReadError = openraft::errors::LinearizableReadError<TypeConfig>;
    pub type Linearizer = openraft::raft::linearizable_read::Linearizer<TypeConfig>;

    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
    pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
    pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
    pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
    pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
    pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
}
