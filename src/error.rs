//! The error type every layer below the HTTP API returns.
//!
//! One enum, one HTTP mapping (in `api::error`). Variants say whether the
//! request was *not applied* (safe to retry anywhere) or its *outcome is
//! unknown* (it may have been applied), because clients must handle those
//! differently. openraft's generic errors are converted in `cluster` and never
//! travel further.

use crate::raft::NodeId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; the request was not applied.
    #[error("this node is not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_http: Option<String>,
    },
    /// No leader is known (election in progress, or no quorum); not applied.
    #[error("leader not available")]
    NoLeader,
    /// The request did not complete in time. For a write, the outcome is
    /// unknown: it may still commit.
    #[error("request timed out after {0:?}; the outcome is unknown")]
    Timeout(std::time::Duration),
    /// The write was proposed but the proposing leader lost leadership before
    /// learning its fate; it may or may not have committed.
    #[error("leadership changed after the write was proposed; the outcome is unknown")]
    OutcomeUnknown,
    /// Bad input from the client; not applied.
    #[error("{0}")]
    InvalidInput(String),
    /// Input over a configured size limit; not applied.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A request body over the accepted size; not applied. `size` is the
    /// declared or counted size (at least the part received).
    #[error(
        "request body is {size} bytes, over the accepted size; values are limited to {max_value} bytes (http.max_value_bytes)"
    )]
    BodyTooLarge { size: u64, max_value: usize },
    /// A membership request conflicts with the current configuration.
    #[error("{0}")]
    Conflict(String),
    /// Something the request names does not exist (e.g. a member id).
    #[error("{0}")]
    NotFound(String),
    /// A node the request depends on could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Raft is stopped or failed on this node; not applied.
    #[error("raft unavailable: {0}")]
    Unavailable(String),
    /// A local storage failure (its message already says what failed).
    #[error(transparent)]
    Storage(#[from] std::io::Error),
}
