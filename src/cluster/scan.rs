//! Range scans at a consistency level: one page of a key range (or the
//! count of its keys) read from the local state machine, after the same
//! linearization as a key read.
//!
//! Invariants:
//! - A linearizable page reflects every write acknowledged before the scan
//!   began (the leader confirms leadership and waits for its state machine
//!   to apply the read index, as `Cluster::read`); a stale page is what
//!   this node has applied.
//! - A page is read under one read lock: it is the state at one applied
//!   index (`raft_index`).
//! - Like key reads, a linearizable scan never returns a key whose deadline
//!   has passed on the leader's clock: if the page holds one, the leader
//!   first proposes an expiry entry (advancing the replicated clock) and
//!   reads again.
//!
//! Not here: cursors and JSON (`api`), the range walk itself (`kv::txn`).

use tokio::time::Instant;

use super::Cluster;
use super::Consistency;
use crate::error::Result;
use crate::kv;
use crate::kv::KeyRange;
use crate::kv::txn::Page;

/// What to scan.
#[derive(Debug, Clone)]
pub struct Scan {
    pub range: KeyRange,
    /// Resume after this key (a cursor), or from the range's start.
    pub after: Option<String>,
    /// Keys per page: 1 to `kv::txn::MAX_RANGE_LIMIT`.
    pub limit: u32,
    pub keys_only: bool,
    /// Count the range's live keys instead of returning a page.
    pub count: bool,
}

/// One page (or a count) and the state it was read from.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub page: Page,
    /// With `Scan::count`: the number of live keys in the range.
    pub count: Option<u64>,
    /// Applied index of the state the page was read from.
    pub raft_index: u64,
    /// The serving node's time (for TTLs left).
    pub now_ms: u64,
}

impl Cluster {
    /// Read one page of `scan` at `consistency`.
    pub async fn scan(
        &self,
        scan: &Scan,
        consistency: Consistency,
        deadline: Instant,
    ) -> Result<ScanOutcome> {
        if consistency == Consistency::Linearizable {
            self.linearize(deadline).await?;
        }
        let now = self.stamp();
        let mut out = self.scan_local(scan, now);
        let due = out
            .page
            .kvs
            .iter()
            .any(|kv| kv.expires_at != 0 && kv.expires_at <= now);
        if consistency == Consistency::Linearizable && due {
            self.tick(deadline).await?;
            out = self.scan_local(scan, self.stamp());
        }
        Ok(out)
    }

    fn scan_local(&self, scan: &Scan, now_ms: u64) -> ScanOutcome {
        let ((page, count), raft_index) = self.reader.inspect_at(|cache| {
            if scan.count {
                (Page::default(), Some(cache.count(&scan.range)))
            } else {
                let mut budget = kv::txn::MAX_RESULT_BYTES;
                let after = scan.after.as_deref().map(str::as_bytes);
                let limit = scan.limit.min(kv::txn::MAX_RANGE_LIMIT) as usize;
                let page = cache.range(&scan.range, after, limit, scan.keys_only, &mut budget);
                (page, None)
            }
        });
        ScanOutcome {
            page,
            count,
            raft_index,
            now_ms,
        }
    }
}
