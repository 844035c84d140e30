//! When a node snapshots its state (and so may purge the log before it).
//!
//! openraft's own policy counts entries only (`LogsSinceLast`): every
//! `raft.snapshot_threshold` entries it writes the whole state again. With a
//! large state and small writes that is most of a node's disk and CPU (170 MB
//! rewritten every 10,000 puts of 100 bytes: docs/BENCHMARKS.md). dcache
//! sets openraft's policy to `Never` and runs [`run`] on every node instead,
//! which asks for a snapshot when
//!
//! - at least `threshold` entries were applied since the last snapshot (or
//!   the last request for one), **and** the log bytes applied since the
//!   snapshot's capture reach half the state's accounted size
//!   ([`should_snapshot`]); a snapshot then costs at most about twice the
//!   log written since the last one, whatever the state's size;
//! - or, whatever the bytes, [`MAX_FACTOR`] × `threshold` entries were
//!   applied, which bounds the log kept on disk and replayed at restart in
//!   entries as well. This is Redis's rule for rewriting its append-only
//!   file (`auto-aof-rewrite-percentage`), with an entry floor and ceiling.
//!
//! Each node decides for itself, from its own applied state: the decision
//! never reaches the replicated state, which stays deterministic.
//!
//! Not here: building the snapshot (`state_machine`), purging the log
//! after it (openraft, keeping `max_in_snapshot_log_to_keep` entries).

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio_util::sync::CancellationToken;

use super::Raft;
use super::state_machine::StateReader;

/// However large the state, a snapshot follows at the latest after this
/// many times `raft.snapshot_threshold` entries (100,000 by default, etcd
/// 3.4's `--snapshot-count`).
pub const MAX_FACTOR: u64 = 10;

/// How often the policy looks at the applied index.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Whether a snapshot is due, with `entries` applied since the last snapshot
/// (or request for one), `log_bytes` applied since the last snapshot's
/// capture and a state of `state_bytes` (the cache's accounted memory).
pub fn should_snapshot(entries: u64, log_bytes: u64, state_bytes: u64, threshold: u64) -> bool {
    entries >= threshold.saturating_mul(MAX_FACTOR)
        || (entries >= threshold && log_bytes >= state_bytes / 2)
}

/// Ask openraft for a snapshot whenever [`should_snapshot`] says so, until
/// `stop`. openraft drops a request while a build is running; the next one
/// follows `threshold` entries later.
pub async fn run(raft: Raft, reader: StateReader, threshold: u64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Applied index at the last request: a failed or dropped build is asked
    // for again only `threshold` entries later, as openraft's own policy.
    let mut requested_at = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (applied, snapshot) = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            (
                m.last_applied.as_ref().map_or(0, |l| l.index),
                m.snapshot.as_ref().map_or(0, |l| l.index),
            )
        };
        let entries = applied.saturating_sub(snapshot.max(requested_at));
        if entries < threshold {
            continue;
        }
        let log_bytes = reader.log_bytes_since_snapshot();
        let state_bytes = reader.summary().mem_bytes;
        if !should_snapshot(entries, log_bytes, state_bytes, threshold) {
            continue;
        }
        tracing::debug!(
            applied,
            snapshot,
            log_bytes,
            state_bytes,
            "asking for a snapshot"
        );
        requested_at = applied;
        if raft.trigger().snapshot().await.is_err() {
            // Raft has stopped (shutdown or a fatal storage error).
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_below_the_threshold_never_snapshot() {
        assert!(!should_snapshot(99, u64::MAX, 0, 100));
        assert!(!should_snapshot(0, 0, 0, 1));
    }

    #[test]
    fn a_small_state_snapshots_every_threshold_entries() {
        // 100 entries of ~150 bytes against a 10 KB state.
        assert!(should_snapshot(100, 15_000, 10_000, 100));
        // Exactly half the state is enough.
        assert!(should_snapshot(100, 5_000, 10_000, 100));
        assert!(!should_snapshot(100, 4_999, 10_000, 100));
    }

    #[test]
    fn a_large_state_waits_for_half_its_size_in_log_bytes() {
        // 170 MB state, 100-byte puts: 10,000 entries are ~1.5 MB of log.
        let state = 170_000_000;
        assert!(!should_snapshot(10_000, 1_500_000, state, 10_000));
        assert!(!should_snapshot(99_999, 15_000_000, state, 10_000));
        // 16 KiB values: 10,000 entries are 160 MB, more than half of it.
        assert!(should_snapshot(10_000, 160_000_000, state, 10_000));
    }

    #[test]
    fn the_entry_ceiling_holds_whatever_the_state() {
        assert!(should_snapshot(100_000, 0, u64::MAX, 10_000));
        assert!(should_snapshot(10, 0, u64::MAX, 1));
        assert!(!should_snapshot(9, 0, u64::MAX, 1));
        // No overflow for absurd thresholds.
        assert!(!should_snapshot(u64::MAX - 1, 0, u64::MAX, u64::MAX));
    }
}
