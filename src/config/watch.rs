//! `watch.*`: the event history that watch streams and blocking queries
//! read, and the bounds on watchers.

use serde::Deserialize;
use serde::Serialize;

use super::ByteSize;

/// `watch.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Changes kept in memory for watchers to resume from (`since`,
    /// `Last-Event-ID`); older ones are dropped and a watcher asking for
    /// them gets 410 Gone.
    pub history_events: u64,
    /// Bytes of keys and values the history keeps at most (whichever bound
    /// is reached first drops the oldest changes).
    pub history_bytes: ByteSize,
    /// Watch streams one node serves at once; more get 503
    /// `too_many_watchers`.
    pub max_watchers: u64,
    /// A watch stream whose client has not taken an event for this long
    /// (its buffer is full) is cut, with a final event saying why.
    pub slow_consumer_ms: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            history_events: 100_000,
            history_bytes: ByteSize(64 * 1024 * 1024),
            max_watchers: 1024,
            slow_consumer_ms: 10_000,
        }
    }
}
