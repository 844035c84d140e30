//! `dcache bench`: a closed-loop HTTP load generator for the key-value API.
//!
//! # What it measures
//!
//! Throughput (operations per second) and per-request latency (p50, p90, p99
//! and max, in milliseconds) of `PUT /v1/kv/{key}` or `GET /v1/kv/{key}`
//! (optionally `?consistency=stale`) against one or more dcache nodes.
//!
//! # How
//!
//! * `--connections` workers run concurrently as tokio tasks. Each worker owns
//!   its own `reqwest::Client` (HTTP/1.1, no proxy, at most one idle pooled
//!   connection), so each worker reuses one keep-alive connection. Worker `i`
//!   talks to `addrs[i % addrs.len()]` (round-robin over the nodes).
//! * Each worker picks keys `<prefix><n>` (`--key-prefix`, default `bench-`),
//!   `n` uniform in `0..keys`, and sends one
//!   request at a time: it waits for the full response body before sending the
//!   next one. PUT bodies are one random alphanumeric value of `--value-size`
//!   bytes, generated once per worker.
//! * The run ends at the deadline (`--duration` seconds after the start) or once
//!   `--max-requests` requests have been issued in total (a shared atomic
//!   counter), whichever comes first. No new request is issued after either
//!   bound is hit; a request already in flight at the deadline is allowed to
//!   finish, bounded by the 10 s per-request timeout.
//! * Latency is taken with `std::time::Instant` from just before the request is
//!   sent until its body has been read completely, stored as `u32`
//!   microseconds per worker, then merged and sorted; percentiles use the
//!   nearest-rank method.
//! * A 2xx answer is a success; on a GET, 404 is a *miss* (a valid answer, not
//!   an error); anything else — other statuses, connection failures, timeouts —
//!   is an *error*, counted and never fatal. Latency percentiles and
//!   `ops_per_sec` cover successes and misses only (requests that got a valid
//!   answer), so fast failures such as "connection refused" do not inflate
//!   them. When nothing got a valid answer they are all 0.
//! * `--put-query` adds a query string to every PUT (e.g. `ttl=30s`).
//! * With `--preload` on a GET run, every key `<prefix>0 .. <prefix><keys-1>` is
//!   PUT once before the measured phase (spread over the same workers and
//!   connections); that phase is not timed or counted, and any failed preload
//!   PUT makes `run` return an error.
//!
//! # What it does not do
//!
//! * **No coordinated-omission correction.** This is a closed-loop generator:
//!   each worker waits for an answer before sending again, so when the server
//!   stalls the generator stalls with it and sends fewer requests, and the
//!   latencies the stall would have caused to requests that were never sent
//!   are not recorded. Tail percentiles under saturation are therefore
//!   optimistic; it measures the latency seen by N synchronous clients, not
//!   the latency under a fixed offered rate.
//! * No rate limiting / open-loop mode, no warm-up phase, no mixed workloads,
//!   no key-popularity skew (uniform only), no TLS, no HTTP/2.
//! * No check of the values read back (a GET only checks the status).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Timeout of one request, from connecting until the body has been read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `dcache bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Comma-separated HTTP addresses (host:port) of the nodes; connections are spread round-robin.
    #[arg(long, default_value = "localhost:11000", value_delimiter = ',')]
    pub addrs: Vec<String>,
    /// Number of concurrent workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Operation to run.
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub op: Op,
    /// Key space: keys "bench-<n>" for n in 0..keys, chosen uniformly at random.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Size in bytes of each PUT value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Length of the measured run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Hard bound on the total number of requests of the measured run.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_requests: u64,
    /// Add ?consistency=stale to GETs.
    #[arg(long)]
    pub stale: bool,
    /// Before a GET run, PUT every key once (not measured) so that GETs hit.
    #[arg(long)]
    pub preload: bool,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keys are "<prefix><n>".
    #[arg(long, default_value = "bench-")]
    pub key_prefix: String,
    /// Query string added to every PUT (the preload's too), e.g.
    /// `ttl=30s` or `expire_at=1798761599000`.
    #[arg(long, default_value = "")]
    pub put_query: String,
}

/// The operation a bench run sends.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
}

/// Result of a bench run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// "put" or "get".
    pub op: String,
    pub connections: usize,
    pub value_size: usize,
    /// Measured wall time, in seconds, from the start of the load until the
    /// last worker finished (excludes preload).
    pub duration_s: f64,
    /// Requests that completed, whatever their outcome (successes + misses + errors).
    pub requests: u64,
    /// Requests that failed: connection errors, timeouts, non-2xx (other than 404 on GET).
    pub errors: u64,
    /// GETs answered 404.
    pub misses: u64,
    /// (requests - errors) / duration_s.
    pub ops_per_sec: f64,
    /// Latency percentiles (nearest rank) over requests that got a valid
    /// answer (successes and misses); 0 when there were none.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} x{} conn, value {} B: {} requests in {:.2} s, {} errors, {} misses, {:.1} ops/s",
            self.op,
            self.connections,
            self.value_size,
            self.requests,
            self.duration_s,
            self.errors,
            self.misses,
            self.ops_per_sec,
        )?;
        write!(
            f,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// What one worker brings back.
#[derive(Default)]
struct WorkerResult {
    /// Latencies in microseconds of requests that got a valid answer.
    latencies_us: Vec<u32>,
    requests: u64,
    errors: u64,
    misses: u64,
}

/// The outcome of one request.
enum Outcome {
    Ok,
    Miss,
    Error,
}

/// Immutable per-worker setup.
struct Worker {
    client: reqwest::Client,
    base: String,
    value: Bytes,
    op: Op,
    stale: bool,
    key_prefix: String,
    /// `?...` added to PUT URLs, or empty.
    put_query: String,
}

impl Worker {
    /// `<base>/v1/kv/<prefix><n>`, the key percent-encoded.
    fn key_url(&self, n: u64) -> String {
        let key = format!("{}{n}", self.key_prefix);
        format!("{}/v1/kv/{}", self.base, dcache::client::encode_key(&key))
    }

    fn put_url(&self, n: u64) -> String {
        self.key_url(n) + &self.put_query
    }

    /// The URL of the measured request for key `n`.
    fn url(&self, n: u64) -> String {
        match self.op {
            Op::Get if self.stale => self.key_url(n) + "?consistency=stale",
            Op::Get => self.key_url(n),
            Op::Put => self.put_url(n),
        }
    }

    async fn put(&self, n: u64) -> Result<(), String> {
        let resp = self
            .client
            .put(self.put_url(n))
            .body(self.value.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read the body so that the connection can be reused.
        resp.bytes().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }

    async fn request(&self, n: u64) -> Outcome {
        let req = match self.op {
            Op::Put => self.client.put(self.url(n)).body(self.value.clone()),
            Op::Get => self.client.get(self.url(n)),
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(_) => return Outcome::Error,
        };
        let status = resp.status();
        // Read the whole body: it is part of the latency, and it lets the
        // connection go back to the pool.
        if resp.bytes().await.is_err() {
            return Outcome::Error;
        }
        if status.is_success() {
            Outcome::Ok
        } else if self.op == Op::Get && status == reqwest::StatusCode::NOT_FOUND {
            Outcome::Miss
        } else {
            Outcome::Error
        }
    }
}

/// Turns "host:port" (or "http://host:port") into a base URL without a trailing '/'.
fn base_url(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        bail!("empty address in --addrs");
    }
    if addr.starts_with("https://") {
        bail!("{addr}: https is not supported by the bench client");
    }
    if addr.starts_with("http://") {
        Ok(addr.to_string())
    } else {
        Ok(format!("http://{addr}"))
    }
}

fn build_client() -> reqwest::Client {
    dcache::net::http_client(dcache::net::HttpClientOptions {
        timeout: Some(REQUEST_TIMEOUT),
        pool_max_idle_per_host: Some(1),
        ..Default::default()
    })
}

/// Nearest-rank percentile of a sorted slice, in milliseconds; 0 when empty.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let n = sorted_us.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    f64::from(sorted_us[idx]) / 1000.0
}

/// PUTs every key of `0..keys` once, key `n` by worker `n % workers.len()`.
async fn preload(workers: &[Arc<Worker>], keys: u64) -> anyhow::Result<()> {
    let stride = workers.len() as u64;
    let mut tasks = Vec::with_capacity(workers.len());
    for (i, w) in workers.iter().enumerate() {
        let w = Arc::clone(w);
        tasks.push(tokio::spawn(async move {
            let mut failed = 0u64;
            let mut first_error = None;
            let mut n = i as u64;
            while n < keys {
                if let Err(e) = w.put(n).await {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{} bench-{n}: {e}", w.base));
                }
                n += stride;
            }
            (failed, first_error)
        }));
    }
    let mut failed = 0u64;
    let mut first_error = None;
    for t in tasks {
        let (f, e) = t.await.context("preload worker panicked")?;
        failed += f;
        if first_error.is_none() {
            first_error = e;
        }
    }
    if failed > 0 {
        bail!(
            "preload: {failed} of {keys} PUTs failed; first error: {}",
            first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs the load described by `args`, bounded by `args.duration` and
/// `args.max_requests`, and returns the report. Request failures are counted
/// in the report, not returned as errors; `run` fails only on invalid
/// arguments, a failed preload, or a panicked worker.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.addrs.is_empty() {
        bail!("--addrs is empty: give at least one host:port");
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    let duration = Duration::try_from_secs_f64(args.duration)
        .map_err(|e| anyhow::anyhow!("invalid --duration {}: {e}", args.duration))?;
    let bases = args
        .addrs
        .iter()
        .map(|a| base_url(a))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut workers = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let value: Vec<u8> = StdRng::from_entropy()
            .sample_iter(&Alphanumeric)
            .take(args.value_size)
            .collect();
        workers.push(Arc::new(Worker {
            client: build_client(),
            base: bases[i % bases.len()].clone(),
            value: Bytes::from(value),
            op: args.op,
            stale: args.stale,
            key_prefix: args.key_prefix.clone(),
            put_query: if args.put_query.is_empty() {
                String::new()
            } else {
                format!("?{}", args.put_query.trim_start_matches('?'))
            },
        }));
    }

    if args.preload && args.op == Op::Get {
        preload(&workers, args.keys).await?;
    }

    let issued = Arc::new(AtomicU64::new(0));
    let max_requests = args.max_requests;
    let keys = args.keys;
    // Per-worker latency buffer: grows as needed, never past max_requests in
    // total; reserve a modest amount up front.
    let reserve =
        usize::try_from((max_requests / args.connections as u64).min(1 << 16)).unwrap_or(1 << 16);

    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(workers.len());
    for w in &workers {
        let w = Arc::clone(w);
        let issued = Arc::clone(&issued);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut res = WorkerResult {
                latencies_us: Vec::with_capacity(reserve),
                ..WorkerResult::default()
            };
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                if issued.fetch_add(1, Ordering::Relaxed) >= max_requests {
                    break;
                }
                let n = rng.gen_range(0..keys);
                let t0 = Instant::now();
                let outcome = w.request(n).await;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                res.requests += 1;
                match outcome {
                    Outcome::Ok => res.latencies_us.push(us),
                    Outcome::Miss => {
                        res.misses += 1;
                        res.latencies_us.push(us);
                    }
                    Outcome::Error => res.errors += 1,
                }
            }
            res
        }));
    }

    let mut all = WorkerResult::default();
    for t in tasks {
        let r = t.await.context("bench worker panicked")?;
        all.requests += r.requests;
        all.errors += r.errors;
        all.misses += r.misses;
        all.latencies_us.extend_from_slice(&r.latencies_us);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let answered = all.requests - all.errors;
    let ops_per_sec = if elapsed > 0.0 {
        answered as f64 / elapsed
    } else {
        0.0
    };
    let lat = &all.latencies_us;
    Ok(Report {
        op: args.op.as_str().to_string(),
        connections: args.connections,
        value_size: args.value_size,
        duration_s: elapsed,
        requests: all.requests,
        errors: all.errors,
        misses: all.misses,
        ops_per_sec,
        p50_ms: percentile_ms(lat, 50.0),
        p90_ms: percentile_ms(lat, 90.0),
        p99_ms: percentile_ms(lat, 99.0),
        max_ms: lat.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::Router;
    use axum::extract::{ConnectInfo, Path, RawQuery, State};
    use axum::http::StatusCode;
    use axum::routing::get;

    #[derive(Default)]
    struct Fake {
        map: Mutex<HashMap<String, Bytes>>,
        puts: AtomicU64,
        gets: AtomicU64,
        stale_gets: AtomicU64,
        /// Client addresses seen by PUTs: one per connection.
        put_peers: Mutex<HashSet<SocketAddr>>,
    }

    async fn put_kv(
        State(s): State<Arc<Fake>>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        Path(key): Path<String>,
        body: Bytes,
    ) -> StatusCode {
        s.puts.fetch_add(1, Ordering::SeqCst);
        s.put_peers.lock().unwrap().insert(peer);
        s.map.lock().unwrap().insert(key, body);
        StatusCode::OK
    }

    async fn get_kv(
        State(s): State<Arc<Fake>>,
        Path(key): Path<String>,
        RawQuery(q): RawQuery,
    ) -> Result<Bytes, StatusCode> {
        s.gets.fetch_add(1, Ordering::SeqCst);
        if q.as_deref() == Some("consistency=stale") {
            s.stale_gets.fetch_add(1, Ordering::SeqCst);
        }
        s.map
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .ok_or(StatusCode::NOT_FOUND)
    }

    /// Starts the fake server; the listener is bound before this returns,
    /// so the server accepts connections right away.
    async fn fake_server() -> (String, Arc<Fake>) {
        let state = Arc::new(Fake::default());
        let app = Router::new()
            .route("/v1/kv/{*key}", get(get_kv).put(put_kv))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, state)
    }

    fn args(addr: &str) -> BenchArgs {
        BenchArgs {
            addrs: vec![addr.to_string()],
            connections: 1,
            op: Op::Put,
            keys: 100,
            value_size: 16,
            duration: 30.0,
            max_requests: 100,
            stale: false,
            preload: false,
            json: false,
            key_prefix: "bench-".into(),
            put_query: String::new(),
        }
    }

    /// Runs with a safety net so a bug cannot hang the test suite.
    async fn run_bounded(a: &BenchArgs) -> anyhow::Result<Report> {
        tokio::time::timeout(Duration::from_secs(60), run(a))
            .await
            .expect("bench run did not finish within 60 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_run_does_exactly_max_requests() {
        let (addr, fake) = fake_server().await;
        let a = BenchArgs {
            connections: 2,
            max_requests: 200,
            ..args(&addr)
        };
        let r = run_bounded(&a).await.unwrap();
        assert_eq!(r.requests, 200, "{r}");
        assert_eq!(r.errors, 0, "{r}");
        assert_eq!(r.misses, 0, "{r}");
        assert_eq!(fake.puts.load(Ordering::SeqCst), 200);
        // Each worker kept its one keep-alive connection.
        assert_eq!(fake.put_peers.lock().unwrap().len(), 2);
        assert_eq!(r.op, "put");
        assert_eq!(r.connections, 2);
        assert!(r.ops_per_sec > 0.0);
        // Values have the requested size.
        let map = fake.map.lock().unwrap();
        assert!(map.values().all(|v| v.len() == 16));
        assert!(map.keys().all(|k| k.starts_with("bench-")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_with_preload_has_no_misses() {
        let (addr, fake) = fake_server().await;
        let a = BenchArgs {
            op: Op::Get,
            keys: 50,
            connections: 3,
            max_requests: 300,
            preload: true,
            stale: true,
            ..args(&addr)
        };
        let r = run_bounded(&a).await.unwrap();
        assert_eq!(
            fake.puts.load(Ordering::SeqCst),
            50,
            "preload PUTs each key once"
        );
        assert_eq!(fake.map.lock().unwrap().len(), 50);
        assert_eq!(r.requests, 300, "{r}");
        assert_eq!(r.misses, 0, "{r}");
        assert_eq!(r.errors, 0, "{r}");
        assert_eq!(r.op, "get");
        assert_eq!(fake.gets.load(Ordering::SeqCst), 300);
        assert_eq!(fake.stale_gets.load(Ordering::SeqCst), 300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_without_preload_counts_misses_not_errors() {
        let (addr, fake) = fake_server().await;
        let a = BenchArgs {
            op: Op::Get,
            max_requests: 100,
            ..args(&addr)
        };
        let r = run_bounded(&a).await.unwrap();
        assert_eq!(r.requests, 100, "{r}");
        assert_eq!(r.misses, 100, "{r}");
        assert_eq!(r.errors, 0, "{r}");
        assert_eq!(fake.puts.load(Ordering::SeqCst), 0);
        assert_eq!(fake.stale_gets.load(Ordering::SeqCst), 0);
        // Misses are valid answers: they have latencies.
        assert!(r.max_ms > 0.0, "{r}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_port_counts_errors_and_returns() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let a = BenchArgs {
            connections: 2,
            max_requests: 20,
            ..args(&format!("127.0.0.1:{port}"))
        };
        let r = run_bounded(&a).await.unwrap();
        assert_eq!(r.requests, 20, "{r}");
        assert_eq!(r.errors, 20, "{r}");
        assert_eq!(r.ops_per_sec, 0.0, "{r}");
        assert_eq!(r.max_ms, 0.0, "{r}");
        // Display and JSON still work on an all-error report.
        assert!(r.to_string().contains("20 errors"));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["errors"], 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_requests_bounds_a_long_duration() {
        let (addr, fake) = fake_server().await;
        let a = BenchArgs {
            connections: 4,
            duration: 3600.0,
            max_requests: 150,
            ..args(&addr)
        };
        let t0 = Instant::now();
        let r = run_bounded(&a).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(30));
        assert_eq!(r.requests, 150, "{r}");
        assert_eq!(fake.puts.load(Ordering::SeqCst), 150);
        assert!(r.duration_s < 30.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duration_bounds_a_large_max_requests() {
        let (addr, _fake) = fake_server().await;
        let a = BenchArgs {
            duration: 0.3,
            max_requests: u64::MAX,
            ..args(&addr)
        };
        let t0 = Instant::now();
        let r = run_bounded(&a).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(r.requests > 0, "{r}");
        assert!(r.duration_s >= 0.3, "{r}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn percentiles_are_ordered() {
        let (addr, _fake) = fake_server().await;
        let a = BenchArgs {
            connections: 2,
            max_requests: 500,
            ..args(&addr)
        };
        let r = run_bounded(&a).await.unwrap();
        assert!(r.p50_ms > 0.0, "{r}");
        assert!(r.p50_ms <= r.p90_ms, "{r}");
        assert!(r.p90_ms <= r.p99_ms, "{r}");
        assert!(r.p99_ms <= r.max_ms, "{r}");
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 90.0), 90.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[7000], 50.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
        let v = [1000, 2000, 3000];
        assert_eq!(percentile_ms(&v, 50.0), 2.0);
        assert_eq!(percentile_ms(&v, 99.0), 3.0);
    }

    #[test]
    fn keys_are_percent_encoded_and_stale_only_on_get() {
        let w = Worker {
            client: build_client(),
            base: base_url("http://h:1/").unwrap(),
            value: Bytes::new(),
            op: Op::Get,
            stale: true,
            key_prefix: "bench-".into(),
            put_query: "?ttl=5s".into(),
        };
        assert_eq!(w.url(7), "http://h:1/v1/kv/bench-7?consistency=stale");
        assert_eq!(dcache::client::encode_key("a b/c?%"), "a%20b/c%3F%25");
        let w = Worker { op: Op::Put, ..w };
        assert_eq!(w.url(7), "http://h:1/v1/kv/bench-7?ttl=5s");
        assert_eq!(base_url(" h:2 ").unwrap(), "http://h:2");
        assert!(base_url("https://h:3").is_err());
    }

    #[tokio::test]
    async fn invalid_args_are_errors() {
        let ok = args("127.0.0.1:1");
        let no_addrs = BenchArgs {
            addrs: vec![],
            ..ok.clone()
        };
        assert!(run(&no_addrs).await.is_err());
        let no_conns = BenchArgs {
            connections: 0,
            ..ok.clone()
        };
        assert!(run(&no_conns).await.is_err());
        let no_keys = BenchArgs {
            keys: 0,
            ..ok.clone()
        };
        assert!(run(&no_keys).await.is_err());
        let bad_duration = BenchArgs {
            duration: -1.0,
            ..ok.clone()
        };
        assert!(run(&bad_duration).await.is_err());
        let nan_duration = BenchArgs {
            duration: f64::NAN,
            ..ok
        };
        assert!(run(&nan_duration).await.is_err());
    }

    #[test]
    fn clap_parses_the_documented_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let c = Cli::parse_from([
            "x",
            "--addrs",
            "a:1,b:2",
            "--connections",
            "4",
            "--op",
            "get",
            "--stale",
            "--preload",
            "--json",
        ]);
        assert_eq!(c.bench.addrs, vec!["a:1", "b:2"]);
        assert_eq!(c.bench.connections, 4);
        assert_eq!(c.bench.op, Op::Get);
        assert!(c.bench.stale && c.bench.preload && c.bench.json);
        let d = Cli::parse_from(["x"]);
        assert_eq!(d.bench.addrs, vec!["localhost:11000"]);
        assert_eq!(d.bench.op, Op::Put);
        assert_eq!(d.bench.keys, 10_000);
        assert_eq!(d.bench.max_requests, 1_000_000);
    }
}
