//! The error type of everything below the HTTP API (`cluster`, `raft`,
//! `node`), and what the API renders from.
//!
//! Variants say whether a request was *not applied* (safe to retry
//! anywhere) or its *outcome is unknown* (it may have been applied), because
//! clients must handle those differently; [`Error::code`] maps each variant
//! to its one `wire::Code` (rendered by `api::error` and `resp::route`). openraft's generic errors are converted in `cluster`
//! and never travel further. Source chains are kept (`Storage`); text is
//! made only on the wire.
//!
//! Not here: HTTP statuses and bodies (`api::error`), configuration errors
//! (`config::ConfigError`).
//!
//! Uses: `id`, `wire` (the codes).

use std::time::Duration;

use crate::id::NodeId;
use crate::wire::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A live leader other than this node, and where to forward to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub id: NodeId,
    /// Its advertised client HTTP address.
    pub http_addr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another node is the leader; the request was not proposed here.
    #[error("this node is not the leader; the leader is {}", .0.id)]
    NotLeader(Leader),
    /// No leader is known (election in progress, or no quorum); not applied.
    #[error("leader not available")]
    NoLeader,
    /// The request did not complete in time. For a write, the outcome is
    /// unknown: it may still commit.
    #[error("request timed out after {0:?}; the outcome is unknown")]
    Timeout(Duration),
    /// The write was proposed but the proposing leader lost leadership (or
    /// Raft stopped) before learning its fate; it may or may not have
    /// committed. The text says which.
    #[error("{0}; the outcome is unknown")]
    OutcomeUnknown(&'static str),
    /// Bad input; not applied.
    #[error("{0}")]
    InvalidInput(String),
    /// Input over a configured size limit; not applied.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A membership request conflicts with the current configuration.
    #[error("{0}")]
    Conflict(String),
    /// Something the request names does not exist (e.g. a member id).
    #[error("{0}")]
    NotFound(String),
    /// A node a membership request names could not be reached or is not a
    /// dcache node.
    #[error("{0}")]
    MemberUnreachable(String),
    /// Raft is stopped or busy on this node; not applied.
    #[error("raft unavailable: {0}")]
    Unavailable(String),
    /// The node cannot start: a listener, the data dir, Raft settings.
    #[error("{0}")]
    Startup(String),
    /// A local storage failure (its message already says what failed).
    #[error(transparent)]
    Storage(#[from] std::io::Error),
}

impl Error {
    /// The client-visible code of this error: one mapping for every front
    /// end (HTTP and RESP).
    pub fn code(&self) -> Code {
        match self {
            Error::NotLeader(_) => Code::NotLeader,
            Error::NoLeader => Code::NoLeader,
            Error::Timeout(_) => Code::Timeout,
            Error::OutcomeUnknown(_) => Code::OutcomeUnknown,
            Error::InvalidInput(_) => Code::InvalidInput,
            Error::TooLarge { .. } => Code::TooLarge,
            Error::Conflict(_) => Code::Conflict,
            Error::NotFound(_) => Code::NotFound,
            Error::MemberUnreachable(_) => Code::MemberUnreachable,
            Error::Unavailable(_) => Code::Unavailable,
            // Neither reaches a request today; if one does, the client
            // cannot know what happened.
            Error::Startup(_) | Error::Storage(_) => Code::Internal,
        }
    }
}
