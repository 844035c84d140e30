//! Free loopback ports.
//!
//! Ports are taken below the kernel's ephemeral range (32768+), so that
//! while a node is stopped no outgoing connection can be given its port and
//! its restart can bind it again. Candidates come from a per-process offset
//! (concurrent test processes mostly use different ports) plus a region and
//! a counter; a port comes back only after 12,000 candidates, so within one
//! process a port released by a stopped node is not handed out again.
//! Another process may still take a port between the check and the bind:
//! callers that release a port before a child binds it retry on "cannot
//! listen" (see `proc::start_ready`).
//!
//! Port numbers are not random choices (nothing about a test's outcome
//! depends on them), so they are not seeded.

use std::sync::atomic::AtomicU16;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::wait::wait_for;

/// The next candidate port: 20000-31999, from a per-process offset plus
/// `region`, advancing `next`.
pub fn low_port(next: &AtomicU16, region: u16) -> u16 {
    let base = (std::process::id() % 500) as u16 * 20;
    let off = next.fetch_add(1, Ordering::Relaxed) % 12_000;
    20_000 + (base + region + off) % 12_000
}

/// A listener on 127.0.0.1 with a port below the ephemeral range (for
/// in-process nodes, which are handed the bound listener).
pub async fn free_listener() -> TcpListener {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..2000 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", low_port(&NEXT, 0))).await {
            return l;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// `n` distinct loopback ports below the ephemeral range that were free a
/// moment ago (for child processes, which bind them themselves).
pub fn free_ports(n: usize) -> Vec<u16> {
    // Not free_listener's counter: its own region, 6000 ports away.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let mut held = Vec::new();
    for _ in 0..2000 {
        if held.len() == n {
            break;
        }
        let port = low_port(&NEXT, 6_000);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "no free port below the ephemeral range");
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A loopback address nothing listens on (a port that was free a moment
/// ago), for "cannot connect" cases.
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_ports(1)[0])
}

/// Bind `addr` again (a port just released can briefly fail to bind).
pub async fn bind_retry(addr: &str, timeout: Duration) -> TcpListener {
    wait_for(&format!("bind {addr}"), timeout, || async {
        TcpListener::bind(addr).await.ok()
    })
    .await
}
