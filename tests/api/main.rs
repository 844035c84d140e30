//! The client HTTP API of one in-process node: exact status codes and bodies
//! of the seed routes, the native `/v1` routes (keys, limits, CAS, headers),
//! health and metrics, and robustness against hostile or broken clients on
//! both listeners (garbage, truncated and oversized requests, slow clients,
//! the connection cap). Every wait is bounded; every expected status is
//! the documented one (README: HTTP API, Errors).
//!
//! `routes`: what each route answers; `hostile`: clients that misbehave.

use std::time::Duration;
use std::time::Instant;

use dcache::net::HttpClientOptions;
use dcache::node::Tuning;
use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::Resp;
use dcache_testkit::http::send;
use dcache_testkit::raw;
use dcache_testkit::wait_for;
use serde_json::Value;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod hostile;
mod routes;

const MAX_KEY: usize = 16;
const MAX_VALUE: usize = 64;
/// Bound on one raw exchange: only a hang reaches it.
const UPLOAD: Duration = Duration::from_secs(30);

async fn start() -> TestCluster {
    TestCluster::start(1, |cfg| {
        cfg.http.max_key_bytes = MAX_KEY;
        cfg.http.max_value_bytes = MAX_VALUE;
    })
    .await
}

/// Assert a seed route's error body: JSON with a string `error` and no
/// `code` field (the code is in the header only), and return it.
fn seed_error(r: &Resp, status: u16, code: Code) -> Value {
    r.assert_seed_error(status, code);
    let j = r.json();
    assert!(j.get("code").is_none(), "seed bodies carry no code: {j}");
    j
}

/// The node answers a normal client, and `/readyz` reports ready (polled:
/// see `readyz_stays_200_on_a_healthy_leader_under_writes` for why a single
/// probe right after a write is not used here).
async fn assert_serving(c: &TestCluster) {
    let r = c.req(0, "GET", "/livez", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for("readyz 200", WAIT, || async {
        let r = c.req(0, "GET", "/readyz", "").await;
        (r.status == 200).then_some(())
    })
    .await;
}
