//! The client-visible contract: every error [`Code`] the server can send,
//! with its HTTP status and what a client may conclude from it, and the
//! names of dcache's own HTTP headers.
//!
//! A leaf shared by the server (`api`), the client (`client`), the
//! fault harness and the tests, so that no code string is written anywhere
//! else. README's "Errors" table is checked against [`Code::ALL`] by a test.
//!
//! Invariants:
//! - A code's string, status and [`Class`] never change once released:
//!   clients retry by them.
//! - Every error response carries its code in [`header::ERROR`], on the
//!   seed routes too (whose bodies cannot carry it).
//!
//! Not here: rendering bodies (`api::error`), deciding which code an
//! internal error becomes (`api::error`'s `From<Error>`).
//!
//! Uses: nothing in the crate (a leaf).

use std::fmt;
use std::str::FromStr;

/// What a client may conclude about a request that got this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The request had no effect: it is safe to retry, on any node.
    NotApplied,
    /// A write may or may not have been applied (it may still commit). Read
    /// the key (or use `cas`) before retrying a write that is not idempotent.
    OutcomeUnknown,
    /// Not a failure of the request: a valid answer (e.g. a key that does
    /// not exist).
    Answer,
}

impl Class {
    /// The words README uses for the class.
    pub const fn describe(self) -> &'static str {
        match self {
            Class::NotApplied => "not applied",
            Class::OutcomeUnknown => "outcome unknown",
            Class::Answer => "an answer, not a failure",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = ($s:literal, $status:literal, $class:ident), )*) => {
        /// An error code: the `code` field of native error bodies and the
        /// value of the `X-Dcache-Error` header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in README order.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            pub const fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $s, )* }
            }

            /// The HTTP status the native API answers with.
            pub const fn status(self) -> u16 {
                match self { $( Code::$variant => $status, )* }
            }

            pub const fn class(self) -> Class {
                match self { $( Code::$variant => Class::$class, )* }
            }
        }

        impl FromStr for Code {
            type Err = UnknownCode;
            fn from_str(s: &str) -> Result<Code, UnknownCode> {
                match s {
                    $( $s => Ok(Code::$variant), )*
                    _ => Err(UnknownCode(s.to_string())),
                }
            }
        }
    };
}

codes! {
    /// Bad key, query, header or body.
    InvalidInput = ("invalid_input", 400, NotApplied),
    /// Over a size cap; the message states the cap.
    TooLarge = ("too_large", 413, NotApplied),
    /// The request body did not arrive within `http.request_timeout_ms`.
    BodyTimeout = ("body_timeout", 408, NotApplied),
    /// The route exists but not with this method (`Allow` lists the methods).
    MethodNotAllowed = ("method_not_allowed", 405, NotApplied),
    /// No such route.
    NoRoute = ("no_route", 404, NotApplied),
    /// The key does not exist (a read's answer).
    KeyNotFound = ("key_not_found", 404, Answer),
    /// The seed API cannot show this value: it is not UTF-8 (read it with
    /// `GET /v1/kv/{key}`).
    NotUtf8 = ("not_utf8", 422, Answer),
    /// The write does not fit under `cache.max_memory` (policy `noeviction`,
    /// or eviction could not free enough); reads and deletes still work.
    OutOfMemory = ("out_of_memory", 507, NotApplied),
    /// A compare-and-set precondition failed; `current_index` is given.
    CasMismatch = ("cas_mismatch", 412, NotApplied),
    /// A forwarded request reached a node that is no longer the leader.
    NotLeader = ("not_leader", 503, NotApplied),
    /// No leader is known (election, or no quorum).
    NoLeader = ("no_leader", 503, NotApplied),
    /// Raft is stopped on this node, or a membership change is in progress.
    Unavailable = ("unavailable", 503, NotApplied),
    /// Forwarding could not connect to the leader.
    LeaderUnreachable = ("leader_unreachable", 502, NotApplied),
    /// A membership request names a Raft address no dcache node answers on.
    MemberUnreachable = ("member_unreachable", 502, NotApplied),
    /// A membership request conflicts with the configuration.
    Conflict = ("conflict", 409, NotApplied),
    /// A membership request names a member that does not exist.
    NotFound = ("not_found", 404, NotApplied),
    /// No answer within `http.request_timeout_ms`: a write may still commit.
    Timeout = ("timeout", 504, OutcomeUnknown),
    /// Leadership changed after the write was proposed.
    OutcomeUnknown = ("outcome_unknown", 503, OutcomeUnknown),
    /// The connection to the leader broke after the request was sent.
    ForwardOutcomeUnknown = ("forward_outcome_unknown", 502, OutcomeUnknown),
    /// A bug or a local failure the server could not classify.
    Internal = ("internal", 500, OutcomeUnknown),
    /// A watch asked for changes older than this node's event history
    /// keeps; `X-Dcache-Oldest-Index` is the oldest `since` it can serve.
    Compacted = ("compacted", 410, NotApplied),
    /// This node already serves `watch.max_watchers` watch streams.
    TooManyWatchers = ("too_many_watchers", 503, NotApplied),
    /// The request lacks the credential the route needs (a valid bearer
    /// token with `auth.enabled`, the cluster secret on membership routes);
    /// refused before its body is read.
    Unauthorized = ("unauthorized", 401, NotApplied),
    /// The token is valid but its role or key prefix does not allow this.
    Forbidden = ("forbidden", 403, NotApplied),
    /// This client IP is over `http.rate_limit_per_ip`; `Retry-After` says
    /// when to try again.
    RateLimited = ("rate_limited", 429, NotApplied),
}

impl Code {
    /// Whether responses with this code carry `Retry-After`.
    pub const fn retry_after(self) -> bool {
        matches!(self.status(), 503 | 429)
    }

    /// The code of a response, from its [`header::ERROR`] value.
    pub fn from_header(v: Option<&str>) -> Option<Code> {
        v?.parse().ok()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its string (peers exchange codes, e.g. forwarded writes' outcomes).
impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A code string this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownCode(pub String);

/// The media type of `POST /internal/kv` bodies and answers (a follower's
/// forwarded Redis command, MessagePack).
pub const MSGPACK: &str = "application/msgpack";

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// dcache's HTTP headers (lowercase, as `http::HeaderName` wants them).
pub mod header {
    /// The error code of an error response.
    pub const ERROR: &str = "x-dcache-error";
    /// The key's modify index.
    pub const INDEX: &str = "x-dcache-index";
    /// The key's create index.
    pub const CREATE_INDEX: &str = "x-dcache-create-index";
    /// The key's version (writes since creation).
    pub const VERSION: &str = "x-dcache-version";
    /// The key's expiry deadline (RFC 3339, milliseconds, UTC), if it has
    /// one.
    pub const EXPIRES_AT: &str = "x-dcache-expires-at";
    /// Milliseconds the key has left to live, if it has a deadline.
    pub const TTL_MS: &str = "x-dcache-ttl-ms";
    /// The Raft log index that served the request (the applied index a read
    /// observed, the index of a write).
    pub const RAFT_INDEX: &str = "x-dcache-raft-index";
    /// With `compacted`: the oldest `since` a watch may ask this node for.
    pub const OLDEST_INDEX: &str = "x-dcache-oldest-index";
    /// The node that produced the response.
    pub const SERVED_BY: &str = "x-dcache-served-by";
    /// Set on a request a follower forwarded to the leader; a node that
    /// receives it never forwards again.
    pub const FORWARDED_BY: &str = "x-dcache-forwarded-by";
    /// On a forwarded request: the milliseconds left of the client's
    /// request budget, so the whole request stays within one
    /// `http.request_timeout_ms`.
    pub const BUDGET_MS: &str = "x-dcache-budget-ms";
    /// The cluster secret (`cluster.secret`), on every Raft RPC, the join
    /// probe and membership requests. Never logged.
    pub const CLUSTER_SECRET: &str = "x-dcache-cluster-secret";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert_eq!(c.as_str().parse::<Code>(), Ok(*c));
            assert!((400..600).contains(&c.status()), "{c}");
        }
        assert!("seed".parse::<Code>().is_err());
        assert_eq!(Code::from_header(Some("timeout")), Some(Code::Timeout));
        assert_eq!(Code::from_header(None), None);
    }

    #[test]
    fn only_unknown_outcomes_are_marked_so() {
        use Class::*;
        assert_eq!(Code::Timeout.class(), OutcomeUnknown);
        assert_eq!(Code::NoLeader.class(), NotApplied);
        assert_eq!(Code::KeyNotFound.class(), Answer);
        assert!(Code::NoLeader.retry_after() && !Code::Timeout.retry_after());
    }
}
