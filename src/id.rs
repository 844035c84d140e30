//! [`NodeId`]: a node's identity, the operator's string from `node.id`
//! ("node1"), or its Raft advertise address when that is empty.
//!
//! A leaf: every layer names nodes, so the type lives below all of them.
//! openraft uses it directly as its node id type (see `raft::TypeConfig`),
//! so there is no mapping table between ids to keep consistent.
//!
//! Uses: nothing in the crate (a leaf).

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// A node's id.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId(s)
    }
}

/// openraft's storage test suite names nodes by number.
impl From<u64> for NodeId {
    fn from(n: u64) -> Self {
        NodeId(n.to_string())
    }
}
