//! `dcache bench`: a closed-loop HTTP load generator for dcache's key-value
//! API and, for side-by-side comparisons, etcd's v3 JSON gateway
//! (`--target etcd`).
//!
//! # What it measures
//!
//! Throughput (operations per second), per-request latency (p50, p90, p99
//! and max, in milliseconds) and the generator's own CPU time, for PUTs,
//! GETs (optionally stale: dcache `?consistency=stale`, etcd
//! `"serializable": true`) or a mix (`--op mix --get-ratio 0.9`) against one
//! or more nodes. `target.rs` builds and judges the requests of each target;
//! `report.rs` owns the report, percentiles, CPU time and the latency CDF;
//! `conn.rs` the connection.
//!
//! # How
//!
//! * `--connections` workers run concurrently as tokio tasks. Each worker owns
//!   one HTTP/1.1 keep-alive connection (`conn.rs`: a socket the worker
//!   drives itself, cheaper per request than hyper's or reqwest's client),
//!   reopened after a failure.
//!   Worker `i` talks to `addrs[i % addrs.len()]` (round-robin over the nodes).
//! * Each worker picks keys `<prefix><n>` (`--key-prefix`, default `bench-`),
//!   `n` uniform in `0..keys`, and sends one request at a time: it waits for
//!   the full response body before sending the next one. With `--op mix`
//!   each request is a GET with probability `--get-ratio`, else a PUT. The
//!   value (`--value-size` random alphanumeric bytes) is generated once;
//!   paths and bodies are built once per key before the run. All choices
//!   come from `--seed` (random when not given; the report carries it).
//! * The run ends at the deadline (`--duration` seconds after the start) or once
//!   `--max-requests` requests have been issued in total (a shared atomic
//!   counter), whichever comes first. No new request is issued after either
//!   bound is hit; a request already in flight at the deadline is allowed to
//!   finish, bounded by the 10 s per-request timeout.
//! * Latency is taken with `std::time::Instant` from just before the request is
//!   sent until its body has been read completely, stored as `u32`
//!   microseconds per worker, then merged and sorted; percentiles use the
//!   nearest-rank method. `--latency-cdf FILE` writes 1000 of them as CSV.
//! * Outcomes: see `target.rs` (a miss is a valid answer, not an error).
//!   Errors are counted and never fatal. Latency percentiles and
//!   `ops_per_sec` cover successes and misses only, so fast failures such as
//!   "connection refused" do not inflate them.
//! * `--put-query` adds a query string to every dcache PUT (e.g. `ttl=30s`).
//! * With `--preload` on a GET or mix run, every key `<prefix>0 ..
//!   <prefix><keys-1>` is PUT once before the measured phase (spread over
//!   the same workers and connections); that phase is not timed or counted,
//!   and any failed preload PUT makes `run` return an error.
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
//! * No rate limiting / open-loop mode, no warm-up phase, no key-popularity
//!   skew (uniform only), no TLS, no HTTP/2.
//! * No check of the values read back (a GET only checks the status, and
//!   for etcd whether the answer holds a value).

mod conn;
mod report;
mod target;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use report::Report;
pub use target::Target;
use target::{Kind, Outcome, Requests};

/// Timeout of one request, from connecting until the body has been read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `dcache bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Comma-separated HTTP addresses (host:port) of the nodes; connections are spread round-robin.
    #[arg(long, default_value = "localhost:11000", value_delimiter = ',')]
    pub addrs: Vec<String>,
    /// The system under test: dcache, or etcd's v3 JSON gateway (for comparisons).
    #[arg(long, value_enum, default_value_t = Target::Dcache)]
    pub target: Target,
    /// Number of concurrent workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Operation to run.
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub op: Op,
    /// With --op mix: the probability that a request is a GET (else a PUT).
    #[arg(long, default_value_t = 0.9)]
    pub get_ratio: f64,
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
    /// Stale GETs: dcache ?consistency=stale, etcd "serializable": true.
    #[arg(long)]
    pub stale: bool,
    /// Before a GET or mix run, PUT every key once (not measured) so that GETs hit.
    #[arg(long)]
    pub preload: bool,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keys are "<prefix><n>".
    #[arg(long, default_value = "bench-")]
    pub key_prefix: String,
    /// Query string added to every dcache PUT (the preload's too), e.g.
    /// `ttl=30s` or `expire_at=1798761599000`.
    #[arg(long, default_value = "")]
    pub put_query: String,
    /// Write the latency CDF (1000 nearest-rank percentiles) to this CSV file.
    #[arg(long)]
    pub latency_cdf: Option<PathBuf>,
    /// Seed of the key and operation choices and of the value (worker i
    /// uses seed + 1 + i); random when not given. The report carries it.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The operation a bench run sends.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    /// GETs with probability --get-ratio, else PUTs.
    Mix,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Mix => "mix",
        }
    }
}

/// What one worker brings back.
#[derive(Default)]
struct WorkerResult {
    /// Latencies in microseconds of requests that got a valid answer.
    latencies_us: Vec<u32>,
    requests: u64,
    gets: u64,
    errors: u64,
    misses: u64,
}

/// One worker: its connection and the shared request material.
struct Worker {
    conn: conn::Conn,
    requests: Arc<Requests>,
    /// Probability of a GET: 0 for put, 1 for get.
    get_ratio: f64,
}

impl Worker {
    async fn put(&mut self, n: usize) -> Result<(), String> {
        let req = self.requests.build(Kind::Put, n);
        let (status, body) = self.conn.send(&req).await?;
        match target::judge(self.requests.target(), Kind::Put, status, body) {
            Outcome::Ok => Ok(()),
            _ => Err(format!("status {status}")),
        }
    }

    async fn request(&mut self, kind: Kind, n: usize) -> Outcome {
        // The whole body is read: it is part of the latency.
        let req = self.requests.build(kind, n);
        match self.conn.send(&req).await {
            Ok((status, body)) => target::judge(self.requests.target(), kind, status, body),
            Err(_) => Outcome::Error,
        }
    }
}

/// Turns "host:port" (or "http://host:port") into "host:port".
fn host_port(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim();
    if addr.starts_with("https://") {
        bail!("{addr}: https is not supported by the bench client");
    }
    let addr = addr.strip_prefix("http://").unwrap_or(addr);
    let addr = addr.trim_end_matches('/');
    if addr.is_empty() {
        bail!("empty address in --addrs");
    }
    if addr.contains('/') {
        bail!("{addr}: give host:port, without a path");
    }
    Ok(addr.to_string())
}

/// PUTs every key of `0..keys` once, key `n` by worker `n % workers.len()`,
/// and gives the workers back (their connections stay open).
async fn preload(workers: Vec<Worker>, keys: u64) -> anyhow::Result<Vec<Worker>> {
    let stride = workers.len();
    let keys = usize::try_from(keys).context("--keys too large")?;
    let mut tasks = Vec::with_capacity(workers.len());
    for (i, mut w) in workers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut failed = 0u64;
            let mut first_error = None;
            let mut n = i;
            while n < keys {
                if let Err(e) = w.put(n).await {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{} key {n}: {e}", w.conn.addr()));
                }
                n += stride;
            }
            (w, failed, first_error)
        }));
    }
    let mut failed = 0u64;
    let mut first_error = None;
    let mut workers = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (w, f, e) = t.await.context("preload worker panicked")?;
        workers.push(w);
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
    Ok(workers)
}

/// Runs the load described by `args`, bounded by `args.duration` and
/// `args.max_requests`, and returns the report. Request failures are counted
/// in the report, not returned as errors; `run` fails only on invalid
/// arguments, a failed preload, a panicked worker, or an unwritable CDF file.
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
    if !(0.0..=1.0).contains(&args.get_ratio) {
        bail!("--get-ratio must be within 0..=1, got {}", args.get_ratio);
    }
    let duration = Duration::try_from_secs_f64(args.duration)
        .map_err(|e| anyhow::anyhow!("invalid --duration {}: {e}", args.duration))?;
    let addrs = args
        .addrs
        .iter()
        .map(|a| host_port(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let get_ratio = match args.op {
        Op::Put => 0.0,
        Op::Get => 1.0,
        Op::Mix => args.get_ratio,
    };
    let preloading = args.preload && args.op != Op::Put;
    let put_query = if args.put_query.is_empty() {
        String::new()
    } else {
        format!("?{}", args.put_query.trim_start_matches('?'))
    };
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    let value: Vec<u8> = StdRng::seed_from_u64(seed)
        .sample_iter(&Alphanumeric)
        .take(args.value_size)
        .collect();
    let requests = Arc::new(Requests::new(&target::Spec {
        target: args.target,
        keys: args.keys,
        key_prefix: &args.key_prefix,
        put_query: &put_query,
        stale: args.stale,
        value: Bytes::from(value),
        need_put: get_ratio < 1.0 || preloading,
        need_get: get_ratio > 0.0,
    })?);

    let mut workers = (0..args.connections)
        .map(|i| {
            Ok(Worker {
                conn: conn::Conn::new(&addrs[i % addrs.len()], REQUEST_TIMEOUT)?,
                requests: Arc::clone(&requests),
                get_ratio,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    if preloading {
        workers = preload(workers, args.keys).await?;
    }

    let issued = Arc::new(AtomicU64::new(0));
    let max_requests = args.max_requests;
    let keys = usize::try_from(args.keys).context("--keys too large")?;
    // Per-worker latency buffer: grows as needed, never past max_requests in
    // total; reserve a modest amount up front.
    let reserve =
        usize::try_from((max_requests / args.connections as u64).min(1 << 16)).unwrap_or(1 << 16);

    let cpu_before = report::process_cpu_s();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(workers.len());
    for (i, mut w) in workers.into_iter().enumerate() {
        let worker_seed = seed.wrapping_add(1 + i as u64);
        let issued = Arc::clone(&issued);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(worker_seed);
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
                let kind = if w.get_ratio >= 1.0 || (w.get_ratio > 0.0 && rng.gen_bool(w.get_ratio))
                {
                    Kind::Get
                } else {
                    Kind::Put
                };
                let t0 = Instant::now();
                let outcome = w.request(kind, n).await;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                res.requests += 1;
                if kind == Kind::Get {
                    res.gets += 1;
                }
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
        all.gets += r.gets;
        all.errors += r.errors;
        all.misses += r.misses;
        all.latencies_us.extend_from_slice(&r.latencies_us);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let client_cpu_s = report::process_cpu_s() - cpu_before;
    all.latencies_us.sort_unstable();
    let answered = all.requests - all.errors;
    let ops_per_sec = if elapsed > 0.0 {
        answered as f64 / elapsed
    } else {
        0.0
    };
    let lat = &all.latencies_us;
    if let Some(path) = &args.latency_cdf {
        report::write_cdf(path, lat)?;
    }
    Ok(Report {
        target: args.target.as_str().to_string(),
        op: args.op.as_str().to_string(),
        connections: args.connections,
        value_size: args.value_size,
        duration_s: elapsed,
        requests: all.requests,
        gets: all.gets,
        errors: all.errors,
        misses: all.misses,
        ops_per_sec,
        p50_ms: report::percentile_ms(lat, 50.0),
        p90_ms: report::percentile_ms(lat, 90.0),
        p99_ms: report::percentile_ms(lat, 99.0),
        max_ms: lat.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
        client_cpu_s,
        seed,
    })
}
