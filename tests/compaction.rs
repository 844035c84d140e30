//! When a node snapshots (`raft::compaction`): a large state is not written
//! again every `raft.snapshot_threshold` small writes, yet the entry ceiling
//! (10 × the threshold) still snapshots it, and enough bytes written snapshot
//! it after the threshold.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::wait_for;

const THRESHOLD: u64 = 20;
const CEILING: u64 = 10 * THRESHOLD;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_state_is_snapshotted_by_bytes_written_or_by_the_entry_ceiling() {
    let c = TestCluster::start(1, |cfg| cfg.raft.snapshot_threshold = THRESHOLD).await;
    let node = c.node(0).cluster.clone();
    // A state of ~1.3 MB: 80 values of 16 KiB.
    let big = "x".repeat(16 * 1024);
    for i in 0..80 {
        c.put_ok(0, &format!("big{i}"), &big).await;
    }
    let preloaded = node.status().applied_index;

    // Bytes: overwriting a big value writes 16 KiB of log per entry, so
    // after 40 of them (half the state) a snapshot is due. The writes stop
    // as soon as it is seen: the few written while it was built stay far
    // below half the state.
    let mut base = None;
    for _ in 0..1000 {
        c.put_ok(0, "big0", &big).await;
        if let Some(s) = node.status().snapshot_index.filter(|s| *s >= preloaded) {
            base = Some(s);
            break;
        }
    }
    let base = base.unwrap_or_else(|| {
        panic!(
            "no snapshot after 1000 overwrites of 16 KiB: {:?}",
            node.status()
        )
    });

    // Small writes: ~60 bytes of log each, far below half the state. Every
    // snapshot index this node reports meanwhile is recorded (a sampler:
    // one missed would only widen a gap, never narrow it).
    let seen = Arc::new(Mutex::new(vec![base]));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (node, seen, done) = (node.clone(), seen.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(s) = node.status().snapshot_index {
                    let mut v = seen.lock().unwrap();
                    if *v.last().unwrap() != s {
                        v.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let small_writes = 2 * CEILING + 50;
    for i in 0..small_writes {
        c.put_ok(0, "small", &format!("v{i}")).await;
    }
    let last = node.status().applied_index;
    // The ceiling: a snapshot past base + CEILING follows.
    let ceiling_snapshot = wait_for("a snapshot by the entry ceiling", WAIT, || {
        let s = node.status().snapshot_index;
        async move { s.filter(|s| *s >= base + CEILING) }
    })
    .await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let mut seen = seen.lock().unwrap().clone();
    if *seen.last().unwrap() != ceiling_snapshot {
        seen.push(ceiling_snapshot);
    }
    eprintln!("snapshots (base {base}, last applied {last}): {seen:?}");
    // Every snapshot taken during the small writes is at least CEILING
    // entries after the one before (the old entry-count policy took one
    // every THRESHOLD entries).
    for w in seen.windows(2) {
        assert!(
            w[1] >= w[0] + CEILING,
            "snapshots {} then {}: fewer than {CEILING} small entries apart ({seen:?})",
            w[0],
            w[1]
        );
    }
    assert!(seen.len() >= 2, "{seen:?}");

    // The gauge reports the log bytes since the newest snapshot.
    let metrics = c.req(0, "GET", "/metrics", "").await.text();
    let bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dcache_raft_log_bytes_since_snapshot "))
        .unwrap_or_else(|| panic!("no log-bytes gauge in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        bytes < 660_000,
        "{bytes} log bytes since a snapshot of a ~1.3 MB state"
    );
    c.shutdown_all().await;
}
