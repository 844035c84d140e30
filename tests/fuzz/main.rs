//! Property-based fuzzing (proptest, stable Rust) of everything that parses
//! untrusted bytes: key and query decoding, the HTTP handlers, WAL records,
//! snapshot blobs and files, the YAML config, the tokens file, route needs,
//! presented bearer tokens and RESP requests; plus the cache's accounting
//! and determinism under random command sequences.
//!
//! Properties: no panic, no huge allocation from a lying length header
//! (a per-thread allocation tracker checks the largest single request),
//! correct round trips, damaged checksummed data is rejected.
//!
//! Case counts are bounded so the suite runs in well under a minute in debug.
//! Every property draws from `DCACHE_TEST_SEED` (printed; see
//! `dcache_testkit::seed`): a failure is repeated by setting it.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;
use std::cell::Cell;
use std::time::Duration;
use std::time::Instant;

use dcache::api::keys;
use dcache::config::Config;
use dcache::kv::Cache;
use dcache::kv::Command;
use dcache::kv::Request;
use dcache::kv::Ttl;
use dcache::kv::cache::entry_cost;
use dcache::raft::NodeId;
use dcache::raft::TypeConfig;
use dcache::raft::log_store::Rec;
use dcache::raft::snapshot;
use dcache::raft::typ;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::proc::unique;
use dcache_testkit::seed;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use proptest::test_runner::TestCaseError;
use proptest::test_runner::TestRunner;
use storage::arb_command;
use storage::write_snapshot;

mod auth;
mod cache;
mod config_file;
mod http;
mod key_decoding;
mod resp;
mod storage;

// --- largest allocation, per thread ---------------------------------------

/// Tracks the largest single allocation made on the current thread, so a
/// decoder that trusts a length header (e.g. "4 GiB string follows") is
/// caught even when the allocator would happen to satisfy it lazily.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Run `f` and return its result with the largest allocation it made on
/// this thread.
fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(|l| l.get()))
}

/// No single allocation while decoding `n` input bytes may exceed this.
fn alloc_budget(n: usize) -> usize {
    64 * 1024 + 16 * n
}

/// `cases` cases drawn from the run's seed (so a failure is repeated with
/// the same `DCACHE_TEST_SEED`; proptest prints the minimal failing input).
fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed::seed()),
        ..ProptestConfig::default()
    }
}
