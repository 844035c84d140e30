//! dcache-testkit: what dcache's tests and the fault harness (`jepsen/`,
//! without the `cluster` feature: `wait`, `redis`) share.
//!
//! ```text
//! wait      wait_for / wait_ok / until(_every): a condition under a deadline (the one poll loop)
//! ports     free loopback ports below the ephemeral range
//! seed      the run's seed (DCACHE_TEST_SEED) and seeded RNGs; printed on panic
//! tools     external tools a test needs (TESTKIT_REQUIRE_TOOLS)
//! faketime  libfaketime: the library (found through its package) and a skewed node's environment
//! http      the test HTTP client (dcache::net::http_client) and a read response
//! raw       raw HTTP/1.1 over TCP, for requests a client library will not send
//! redis     the one RESP reply parser (fallible, bounded), a RESP2 test client, redis-cli
//! proc      the real binary as child processes (Proc kills on drop), Spec
//! certs     test CA and certificates (scripts/make-certs.sh), TLS configs
//! cluster   in-process nodes in a temp dir (feature "cluster", default)
//! ```
//!
//! Only `cluster` runs dcache inside the test process (`dcache::node`);
//! the rest talks to nodes over HTTP and processes, using dcache's leaves
//! (`client`, `net`, `wire`) only.
//!
//! Rules the tests follow with it: no fixed sleeps and no hand-written poll
//! loops (use [`wait::wait_for`]); every random choice comes from
//! [`seed::rng`]; no other `reqwest::Client` builder than [`http::client`].

pub mod certs;
pub mod faketime;
pub mod http;
pub mod ports;
pub mod proc;
pub mod raw;
pub mod redis;
pub mod seed;
pub mod tools;
pub mod wait;

#[cfg(feature = "cluster")]
pub mod cluster;

pub use wait::WAIT;
pub use wait::wait_for;
pub use wait::wait_ok;

/// The path of the `dcache` binary of the package being tested, for
/// [`proc::Spec::new`]: `env!("CARGO_BIN_EXE_dcache")`, which Cargo sets
/// only when it compiles that package's integration tests (so this must
/// expand there, not in this crate).
#[macro_export]
macro_rules! dcache_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_dcache"))
    };
}
