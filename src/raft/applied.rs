//! Waiting until the state machine has applied a log index.
//!
//! A linearizable read waits here for its read index. openraft's own wait
//! (`Raft::wait`, `Linearizer::await_ready`) watches the metrics channel,
//! which Raft's core publishes after every batch of work: each waiting read
//! is woken, and re-checks, on every publish until its index is applied. On
//! a busy node with many reads in flight those wake-ups cost more than the
//! reads. Here each waiter is woken once, by the apply that reaches its
//! index.
//!
//! Owns: the applied index as apply reports it, and the waiters. Not part
//! of the replicated state (apply stays deterministic); must not take the
//! state machine's lock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;

use tokio::sync::oneshot;

/// Above this many queued waiters, the ones whose reader gave up (timed
/// out) are dropped when the next one queues.
const PRUNE_ABOVE: usize = 1024;

#[derive(Debug, Default)]
pub struct AppliedIndex {
    applied: AtomicU64,
    /// The smallest index a waiter waits for (`u64::MAX`: none). Lets
    /// `advance` skip the lock when nobody waits for what it reached.
    min_waiting: AtomicU64,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    by_index: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
    count: usize,
}

impl AppliedIndex {
    pub fn new(applied: u64) -> Self {
        AppliedIndex {
            applied: AtomicU64::new(applied),
            min_waiting: AtomicU64::new(u64::MAX),
            waiters: Mutex::default(),
        }
    }

    pub fn get(&self) -> u64 {
        self.applied.load(SeqCst)
    }

    /// Apply has reached `index` (entries, or an installed snapshot): wake
    /// every waiter for an index at or below it.
    pub fn advance(&self, index: u64) {
        let index = self.applied.fetch_max(index, SeqCst).max(index);
        if self.min_waiting.load(SeqCst) > index {
            return;
        }
        let ready = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let rest = w.by_index.split_off(&(index + 1));
            let ready = std::mem::replace(&mut w.by_index, rest);
            w.count -= ready.values().map(Vec::len).sum::<usize>();
            let min = w.by_index.keys().next().copied().unwrap_or(u64::MAX);
            self.min_waiting.store(min, SeqCst);
            ready
        };
        for tx in ready.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// Resolves once the applied index is at least `index`. Callers bound
    /// it with their deadline; a waiter dropped early is cleaned up later.
    pub async fn wait(&self, index: u64) {
        if self.get() >= index {
            return;
        }
        let rx = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            // Lowered before the re-check: an `advance` that stores a new
            // index after this load sees the lowered mark and takes the lock.
            self.min_waiting.fetch_min(index, SeqCst);
            if self.get() >= index {
                return;
            }
            if w.count >= PRUNE_ABOVE {
                w.by_index.retain(|_, v| {
                    v.retain(|tx| !tx.is_closed());
                    !v.is_empty()
                });
                w.count = w.by_index.values().map(Vec::len).sum();
            }
            let (tx, rx) = oneshot::channel();
            w.by_index.entry(index).or_default().push(tx);
            w.count += 1;
            rx
        };
        let _ = rx.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_its_index_is_applied_not_before() {
        let a = Arc::new(AppliedIndex::new(3));
        a.wait(3).await; // already there
        let (a2, a3) = (a.clone(), a.clone());
        let w5 = tokio::spawn(async move { a2.wait(5).await });
        let w9 = tokio::spawn(async move { a3.wait(9).await });
        tokio::task::yield_now().await;
        while a.waiters.lock().unwrap().count < 2 {
            tokio::task::yield_now().await;
        }
        a.advance(4);
        assert!(!w5.is_finished() && !w9.is_finished());
        a.advance(7);
        tokio::time::timeout(Duration::from_secs(5), w5)
            .await
            .expect("the waiter for 5 wakes at 7")
            .unwrap();
        assert!(!w9.is_finished());
        assert_eq!(a.min_waiting.load(SeqCst), 9);
        a.advance(9);
        tokio::time::timeout(Duration::from_secs(5), w9)
            .await
            .expect("the waiter for 9 wakes at 9")
            .unwrap();
        assert_eq!(a.min_waiting.load(SeqCst), u64::MAX);
        assert_eq!(a.waiters.lock().unwrap().count, 0);
    }

    #[tokio::test]
    async fn abandoned_waiters_are_pruned() {
        let a = AppliedIndex::new(0);
        for i in 0..(PRUNE_ABOVE as u64 + 10) {
            // Polled once (queued), then dropped: a read that timed out.
            let mut f = Box::pin(a.wait(100 + i));
            assert!(futures_util::poll!(&mut f).is_pending());
        }
        assert!(a.waiters.lock().unwrap().count <= PRUNE_ABOVE + 1);
    }

    #[test]
    fn concurrent_advances_never_lose_a_waiter() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Arc::new(AppliedIndex::new(0));
            let waits: Vec<_> = (1..=2000u64)
                .map(|i| {
                    let a = a.clone();
                    tokio::spawn(async move { a.wait(i).await })
                })
                .collect();
            let adv = a.clone();
            let t = std::thread::spawn(move || {
                for i in 1..=2000u64 {
                    adv.advance(i);
                }
            });
            for w in waits {
                tokio::time::timeout(Duration::from_secs(10), w)
                    .await
                    .expect("every waiter wakes")
                    .unwrap();
            }
            t.join().unwrap();
        });
    }
}
