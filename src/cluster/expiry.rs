//! Active expiry: the leader removes keys whose deadline has passed.
//!
//! Every `cache.expiry_tick_ms` the leader compares the earliest deadline in
//! the state with its own stamp (its clock, never below the replicated
//! clock); if it has passed, it proposes a `Tick` entry stamped with that
//! time, which advances the replicated clock and removes up to
//! `cache.expiry_batch` due keys on every replica. While a tick removes a
//! full batch, the next one follows at once; each is one log entry among the
//! client writes, so a mass expiry is spread over many small entries
//! instead of stalling writes behind one huge one.
//!
//! Invariant: only the leader proposes ticks; followers' expired keys are
//! removed by the same replicated entries.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::kv::Command;
use crate::kv::Response;

impl Cluster {
    /// Run the expiry loop until `stop`.
    pub async fn run_expiry(self: Arc<Self>, stop: CancellationToken) {
        let tick = Duration::from_millis(self.cfg.cache.expiry_tick_ms);
        let batch = self.cfg.cache.expiry_batch;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            // Ticks back to back while each removes a full batch.
            while self.is_leader() && !stop.is_cancelled() {
                let next = self.reader.stats().next_deadline;
                if next == 0 || next > self.stamp() {
                    break;
                }
                let deadline = Instant::now() + self.cfg.election_timeout * 2;
                match self.write(Command::Tick { max: batch }, deadline).await {
                    Ok(out) => match out.response {
                        Response::Ticked { removed } if removed >= u64::from(batch) => continue,
                        _ => break,
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "expiry tick not applied");
                        break;
                    }
                }
            }
        }
    }
}
