//! `dcache-jepsen`: run a dcache cluster in network namespaces under a
//! seeded fault schedule with a concurrent register workload and a TTL
//! workload, then check the history for linearizability (with expiry in the
//! model), the TTL deadlines against the nodes' clocks, and the replicas for
//! convergence.
//!
//! Needs root (ip netns, nft). Prints the seed first so a failing run can
//! be replayed with `--seed`. Exit status 0 only if every check passed.

mod client;
mod db;
mod faketime;
mod nemesis;
mod net;
mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use clap::Parser;
use client::Api;
use client::PutTtl;
use db::Db;
use db::SkewLog;
use dcache_jepsen::checker;
use dcache_jepsen::checker::TtlParams;
use dcache_jepsen::checker::ttl;
use dcache_jepsen::history::Event;
use dcache_jepsen::history::History;
use dcache_jepsen::history::Op;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;
use dcache_jepsen::history::TtlMeta;
use nemesis::Fault;
use nemesis::Nemesis;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "Fault-injection run against a dcache cluster in network namespaces")]
struct Args {
    /// dcache binary to run (the release build, as users run it).
    #[arg(long, default_value = "target/release/dcache")]
    bin: PathBuf,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds of faulted workload.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// RNG seed (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault kinds (comma-separated); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Disable faults (a control run).
    #[arg(long)]
    no_faults: bool,
    /// register: reads, writes and CAS on `--keys` keys; ttl: the TTL
    /// workload on `--ttl-keys` keys; mixed: both at once.
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    workload: Workload,
    /// Keys of the register workload.
    #[arg(long, default_value_t = 5)]
    keys: usize,
    /// Clients of the register workload.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Keys of the TTL workload (a key is replaced by a fresh one after an
    /// expire or persist with an unknown outcome).
    #[arg(long, default_value_t = 4)]
    ttl_keys: usize,
    /// Clients of the TTL workload (each paces itself: 10-60 ms between ops).
    #[arg(long, default_value_t = 4)]
    ttl_clients: usize,
    #[arg(long, default_value_t = 50)]
    snapshot_threshold: u64,
    /// read_index or lease.
    #[arg(long, default_value = "read_index")]
    read_policy: String,
    /// Where logs and the history go (default: a new dir under /tmp).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only check a recorded history (history.jsonl) and print the report.
    #[arg(long)]
    check: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    Register,
    Ttl,
    Mixed,
}

impl Workload {
    fn register(self) -> bool {
        matches!(self, Workload::Register | Workload::Mixed)
    }
    fn ttl(self) -> bool {
        matches!(self, Workload::Ttl | Workload::Mixed)
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("dcache-jepsen: cannot read {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        };
        let history = match History::from_json_lines(&text) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("dcache-jepsen: bad history {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        };
        let report = checker::check(&history, checker::Budget::default());
        println!("{report}");
        let ttl_report = ttl::check_ttl(&history, &TtlParams::default());
        println!("TTL: {ttl_report}");
        return if report.ok() && ttl_report.ok() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        };
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    match rt.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("dcache-jepsen: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

struct Recorder {
    start: Instant,
    events: std::sync::Mutex<Vec<Event>>,
    next_client: std::sync::atomic::AtomicU64,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    fn record(&self, e: Event) {
        self.events.lock().expect("events").push(e);
    }
    fn new_client(&self) -> u64 {
        self.next_client
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Record a write-like op that completed now, and return the client id
    /// to go on with: a client whose op has an unknown outcome may still
    /// have it in flight, so it continues as a new client.
    fn record_write(&self, client: u64, key: String, op: Op, invoke: u64, outcome: Outcome) -> u64 {
        let now = self.now();
        let indeterminate = matches!(outcome, Outcome::Indeterminate);
        self.record(Event {
            client,
            key,
            op,
            invoke_ns: invoke,
            complete_ns: completed(&outcome, now),
            outcome,
            ttl: None,
        });
        if indeterminate {
            self.new_client()
        } else {
            client
        }
    }
}

/// The harness's wall clock, ms since the Unix epoch.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn completed(outcome: &Outcome, now: u64) -> Option<u64> {
    match outcome {
        Outcome::Indeterminate => None,
        _ => Some(now),
    }
}

/// One client: random ops on random nodes until `until`. After an
/// indeterminate outcome it continues under a new client id, as Jepsen's
/// process model requires.
async fn client_loop(
    rec: Arc<Recorder>,
    api: Api,
    n: usize,
    keys: usize,
    seed: u64,
    until: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = rec.new_client();
    let mut counter = 0u64;
    while Instant::now() < until {
        let node = rng.gen_range(1..=n);
        let addr = Db::http(node);
        let key = format!("k{}", rng.gen_range(0..keys));
        let seed_api = rng.gen_bool(0.2);
        let choice = rng.gen_range(0..10);
        let invoke = rec.now();
        // Set when the operation did not succeed (refused, failed, unknown).
        let backoff;
        if choice < 5 {
            let r = api.read(&addr, &key, seed_api).await;
            let now = rec.now();
            backoff = !matches!(r.outcome, Outcome::Ok(_));
            if !matches!(r.outcome, Outcome::Fail) {
                rec.record(Event {
                    client,
                    key,
                    op: Op::Read,
                    invoke_ns: invoke,
                    complete_ns: Some(now),
                    outcome: r.outcome,
                    ttl: None,
                });
            }
        } else if choice < 8 {
            counter += 1;
            let value = format!("c{client}-{counter}");
            let outcome = api.write(&addr, &key, &value, seed_api).await;
            backoff = !matches!(outcome, Outcome::Ok(_));
            client = rec.record_write(client, key, Op::Write(value), invoke, outcome);
        } else {
            // CAS: read (recorded as a read), then cas on its modify index.
            let r = api.read(&addr, &key, false).await;
            let now = rec.now();
            let expected = match &r.outcome {
                Outcome::Ok(Ret::Read(v)) => v.clone(),
                // The read failed: no CAS, and back off like any failure.
                _ => {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
                    continue;
                }
            };
            rec.record(Event {
                client,
                key: key.clone(),
                op: Op::Read,
                invoke_ns: invoke,
                complete_ns: Some(now),
                outcome: r.outcome,
                ttl: None,
            });
            counter += 1;
            let value = format!("c{client}-{counter}");
            let invoke = rec.now();
            let outcome = api.cas(&addr, &key, r.index, &value).await;
            backoff = !matches!(outcome, Outcome::Ok(_));
            let op = Op::Cas {
                expected,
                new: value,
            };
            client = rec.record_write(client, key, op, invoke, outcome);
        }
        // After a refused or failed request, back off a little instead of
        // spinning on a dead node.
        if backoff {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
        }
    }
}

/// A long TTL: far beyond any run and any skew the nemesis injects.
const LONG_TTL_MS: u64 = 3_600_000;

/// The keys of the TTL workload: `t<slot>`, renamed `t<slot>.<gen>` after
/// an expire or persist with an unknown outcome (it may take effect at any
/// later time, which would leave every later deadline on that key unknown
/// to the TTL checks).
struct TtlKeys {
    gens: Vec<std::sync::atomic::AtomicU64>,
}

impl TtlKeys {
    fn new(n: usize) -> TtlKeys {
        TtlKeys {
            gens: (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    fn name(slot: usize, generation: u64) -> String {
        if generation == 0 {
            format!("t{slot}")
        } else {
            format!("t{slot}.{generation}")
        }
    }

    /// The current key of `slot` and its generation.
    fn key(&self, slot: usize) -> (String, u64) {
        let g = self.gens[slot].load(std::sync::atomic::Ordering::Relaxed);
        (Self::name(slot, g), g)
    }

    /// Move `slot` on from generation `g` (once, however many clients ask).
    fn retire(&self, slot: usize, g: u64) {
        let _ = self.gens[slot].compare_exchange(
            g,
            g + 1,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Every key used so far.
    fn all(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (slot, g) in self.gens.iter().enumerate() {
            for generation in 0..=g.load(std::sync::atomic::Ordering::Relaxed) {
                out.push(Self::name(slot, generation));
            }
        }
        out
    }
}

/// A short TTL: half 10-200 ms (most expire before the key is written
/// again), half 200 ms - 2 s.
fn short_ttl(rng: &mut StdRng) -> u64 {
    if rng.gen_bool(0.5) {
        rng.gen_range(10..200)
    } else {
        rng.gen_range(200..2_000)
    }
}

/// Everything the TTL clients share.
struct TtlCtx {
    rec: Arc<Recorder>,
    api: Api,
    n: usize,
    keys: Arc<TtlKeys>,
    skews: SkewLog,
}

impl TtlCtx {
    /// The TTL facts of a read: its wall time, the deadline it reported,
    /// and the lowest skew the node that served it had meanwhile.
    fn read_meta(&self, wall: u64, t0: Instant, a: &client::TtlAnswer) -> TtlMeta {
        let node = a
            .served_by
            .as_deref()
            .and_then(|s| s.strip_prefix('n'))
            .and_then(|s| s.parse::<usize>().ok());
        TtlMeta {
            wall_ms: wall,
            expires_at_ms: a.expires_at_ms,
            served_by: a.served_by.clone(),
            node_skew_ms: node.and_then(|i| self.skews.lowest(i, t0, Instant::now())),
            unreported: false,
        }
    }
}

/// The TTL facts of a write, expire or persist.
fn write_meta(wall: u64, expires_at_ms: Option<u64>) -> TtlMeta {
    TtlMeta {
        wall_ms: wall,
        expires_at_ms,
        ..TtlMeta::default()
    }
}

/// One TTL client: on the TTL keys, 80% linearizable reads (15% of them
/// through the seed API), 20% writes: with a short TTL, a long TTL (1 h),
/// none (clears it), keepttl, expire (short or long), persist, CAS. It
/// paces itself (10-60 ms between ops) so that keys live long enough to
/// expire between writes. Its last op is a write with a short TTL.
async fn ttl_loop(ctx: Arc<TtlCtx>, index: usize, seed: u64, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rec = &ctx.rec;
    let api = &ctx.api;
    let mut client = rec.new_client();
    let mut counter = 0u64;
    while Instant::now() < until {
        let addr = Db::http(rng.gen_range(1..=ctx.n));
        let slot = rng.gen_range(0..ctx.keys.gens.len());
        let (key, generation) = ctx.keys.key(slot);
        let choice = rng.gen_range(0..100);
        let (t0, mut invoke, mut wall) = (Instant::now(), rec.now(), wall_ms());
        let ok;
        if choice < 80 {
            let (outcome, meta) = if rng.gen_bool(0.15) {
                // The seed API: no deadline header, serving node unknown.
                let r = api.read(&addr, &key, true).await;
                let meta = TtlMeta {
                    unreported: true,
                    ..write_meta(wall, None)
                };
                (r.outcome, meta)
            } else {
                let a = api.read_ttl(&addr, &key, false).await;
                let meta = ctx.read_meta(wall, t0, &a);
                (a.outcome, meta)
            };
            ok = matches!(outcome, Outcome::Ok(_));
            if ok {
                rec.record(Event {
                    client,
                    key,
                    op: Op::Read,
                    invoke_ns: invoke,
                    complete_ns: Some(rec.now()),
                    outcome,
                    ttl: Some(meta),
                });
            }
        } else {
            counter += 1;
            let value = format!("t{client}-{counter}");
            let (op, a) = match choice {
                80..84 => {
                    let ms = short_ttl(&mut rng);
                    let a = api.put_ttl(&addr, &key, &value, PutTtl::In(ms), None).await;
                    (Op::WriteTtl { value, ttl_ms: ms }, a)
                }
                84..86 => {
                    let a = api
                        .put_ttl(&addr, &key, &value, PutTtl::In(LONG_TTL_MS), None)
                        .await;
                    (
                        Op::WriteTtl {
                            value,
                            ttl_ms: LONG_TTL_MS,
                        },
                        a,
                    )
                }
                86..89 => {
                    let a = api.put_ttl(&addr, &key, &value, PutTtl::Clear, None).await;
                    (Op::Write(value), a)
                }
                89..90 => {
                    let a = api.put_ttl(&addr, &key, &value, PutTtl::Keep, None).await;
                    (Op::WriteKeepTtl(value), a)
                }
                90..94 => {
                    let ms = short_ttl(&mut rng);
                    let a = api.expire(&addr, &key, Some(ms)).await;
                    (Op::Expire { ttl_ms: ms }, a)
                }
                94..95 => {
                    let a = api.expire(&addr, &key, Some(LONG_TTL_MS)).await;
                    (
                        Op::Expire {
                            ttl_ms: LONG_TTL_MS,
                        },
                        a,
                    )
                }
                95..97 => {
                    let a = api.expire(&addr, &key, None).await;
                    (Op::Persist, a)
                }
                _ => {
                    // CAS: a read (recorded), then a PUT on its modify index.
                    let r = api.read_ttl(&addr, &key, false).await;
                    let Outcome::Ok(Ret::Read(expected)) = r.outcome.clone() else {
                        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
                        continue;
                    };
                    let meta = ctx.read_meta(wall, t0, &r);
                    rec.record(Event {
                        client,
                        key: key.clone(),
                        op: Op::Read,
                        invoke_ns: invoke,
                        complete_ns: Some(rec.now()),
                        outcome: r.outcome,
                        ttl: Some(meta),
                    });
                    (invoke, wall) = (rec.now(), wall_ms());
                    let a = api
                        .put_ttl(&addr, &key, &value, PutTtl::Clear, Some(r.index))
                        .await;
                    let op = Op::Cas {
                        expected,
                        new: value,
                    };
                    (op, a)
                }
            };
            ok = matches!(a.outcome, Outcome::Ok(_));
            let indeterminate = a.outcome == Outcome::Indeterminate;
            let ttl_op = matches!(op, Op::Expire { .. } | Op::Persist);
            rec.record(Event {
                client,
                key,
                op,
                invoke_ns: invoke,
                complete_ns: completed(&a.outcome, rec.now()),
                outcome: a.outcome,
                ttl: Some(write_meta(wall, a.expires_at_ms)),
            });
            if indeterminate {
                client = rec.new_client();
                if ttl_op {
                    ctx.keys.retire(slot, generation);
                }
            }
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..60))).await;
    }
    // End on a short TTL (on this client's key; retried while refused, for
    // a few seconds), so that the check after the run has expired values
    // to look for, written while the last faults were still in place.
    let slot = index % ctx.keys.gens.len();
    let give_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < give_up {
        let (key, _) = ctx.keys.key(slot);
        counter += 1;
        let value = format!("t{client}-{counter}");
        let ms = rng.gen_range(10..200);
        let (invoke, wall) = (rec.now(), wall_ms());
        let addr = Db::http(rng.gen_range(1..=ctx.n));
        let a = api.put_ttl(&addr, &key, &value, PutTtl::In(ms), None).await;
        let refused = a.outcome == Outcome::Fail;
        rec.record(Event {
            client,
            key,
            op: Op::WriteTtl { value, ttl_ms: ms },
            invoke_ns: invoke,
            complete_ns: completed(&a.outcome, rec.now()),
            outcome: a.outcome,
            ttl: Some(write_meta(wall, a.expires_at_ms)),
        });
        if !refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the check after the run found (see [`ttl_after_run`]).
#[derive(Default)]
struct TtlAfter {
    /// Values past their deadline still on a replica, or with a deadline
    /// they cannot have.
    violations: Vec<ttl::TtlViolation>,
    /// Replicas whose state holds more keys than their reads show: expired
    /// entries the leader never ticked away.
    unremoved: Vec<String>,
    /// Stale reads of the TTL keys in the last round, and how many found a
    /// value: without a deadline, with a long one, with a short one still
    /// ahead on the leader's clock (all legitimately there).
    reads: usize,
    present: usize,
    no_deadline: usize,
    long_deadline: usize,
    deadline_ahead: usize,
    /// The skew of the leader at the end, if known (ms).
    leader_skew_ms: Option<i64>,
    /// Problems at the first look (the leader may still have been ticking),
    /// and how long after it they were gone (if they were).
    first_look: Vec<String>,
    settled_after: Option<Duration>,
    /// The replicated clock minus the harness's clock, on the leader (ms).
    clock_ahead_ms: Option<i64>,
}

/// After healing: every replica must have dropped the values whose
/// deadline passed on the leader's clock (stale reads of the TTL keys on
/// every node, `ttl::check_final`), and must hold no more keys than it
/// shows (`/v1/status/digest` `keys` against stale reads of every key the
/// run wrote, the count stable around the reads): an expired key is
/// invisible to reads at once, but only the leader's expiry tick removes it
/// from the state. Starts once the last short TTLs (2 s at most) and a tick
/// have passed; polled for up to 15 s.
async fn ttl_after_run(
    api: &Api,
    db: &Arc<Mutex<Db>>,
    history: &History,
    ttl_keys: &[String],
    other_keys: &[String],
    params: &TtlParams,
) -> TtlAfter {
    let n = db.lock().await.n();
    let skews = db.lock().await.skews.clone();
    // Let the short TTLs of the last writes (at most 2 s) pass, and the
    // leader tick: problems at the first look are then real delays.
    tokio::time::sleep(
        Duration::from_millis(2_000) + Duration::from_millis(params.late_margin_ms()),
    )
    .await;
    let start = Instant::now();
    let give_up = start + Duration::from_secs(15);
    let mut first_look: Option<Vec<String>> = None;
    loop {
        let mut out = TtlAfter::default();
        let leader = nemesis::find_leader(api, db).await;
        let leader_skew = leader.and_then(|l| skews.current(l));
        let floor = wall_ms() as i64 + leader_skew.unwrap_or(-(params.max_skew_ms as i64));
        if let Some(l) = leader
            && let Some(v) = api.json(&Db::http(l), "/v1/status").await
            && let Some(clock) = v["clock_ms"].as_u64()
        {
            out.clock_ahead_ms = Some(clock as i64 - wall_ms() as i64);
        }
        let mut reads = Vec::new();
        for i in 1..=n {
            let addr = Db::http(i);
            let count = |v: Option<serde_json::Value>| v.and_then(|v| v["keys"].as_u64());
            let before = count(api.json(&addr, "/v1/status/digest").await);
            let mut visible = 0u64;
            let mut complete = true;
            for key in ttl_keys.iter().chain(other_keys) {
                let a = api.read_ttl(&addr, key, true).await;
                let Outcome::Ok(Ret::Read(value)) = a.outcome else {
                    complete = false;
                    continue;
                };
                visible += value.is_some() as u64;
                if ttl_keys.contains(key) {
                    reads.push(ttl::FinalRead {
                        node: Db::id(i),
                        key: key.clone(),
                        value,
                        expires_at_ms: a.expires_at_ms,
                    });
                }
            }
            let after = count(api.json(&addr, "/v1/status/digest").await);
            if complete
                && let (Some(b), Some(a)) = (before, after)
                && a == b
                && a != visible
            {
                out.unremoved.push(format!(
                    "n{i} holds {a} keys but only {visible} of the keys the run wrote are readable on it: expired entries were not removed"
                ));
            }
        }
        out.reads = reads.len();
        out.present = reads.iter().filter(|r| r.value.is_some()).count();
        let present = || reads.iter().filter(|r| r.value.is_some());
        out.no_deadline = present().filter(|r| r.expires_at_ms.is_none()).count();
        let long = floor + LONG_TTL_MS as i64 / 2;
        out.long_deadline = present()
            .filter(|r| r.expires_at_ms.is_some_and(|d| d as i64 > long))
            .count();
        out.deadline_ahead = present()
            .filter(|r| {
                r.expires_at_ms
                    .is_some_and(|d| d as i64 > floor && d as i64 <= long)
            })
            .count();
        out.leader_skew_ms = leader_skew;
        out.violations = ttl::check_final(history, &reads, floor, params);
        let problems = out.violations.len() + out.unremoved.len();
        out.first_look = first_look
            .get_or_insert_with(|| {
                let v = out.violations.iter().map(|v| v.to_string());
                v.chain(out.unremoved.iter().cloned()).collect()
            })
            .clone();
        if problems == 0 {
            out.settled_after = Some(start.elapsed());
            return out;
        }
        if Instant::now() >= give_up {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Poll `cond` every 100 ms until true or `timeout`.
async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Samples every running node's applied index; an index that goes down
/// within one process lifetime is an anomaly.
async fn sampler(
    api: Api,
    db: Arc<Mutex<Db>>,
    until: Instant,
    violations: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let n = db.lock().await.n();
    let mut last: BTreeMap<(usize, u32), u64> = BTreeMap::new();
    while Instant::now() < until {
        // Notice nodes that exit on their own as soon as they do.
        db.lock().await.procs.poll();
        for i in 1..=n {
            let pid = db.lock().await.procs.pid(i);
            let Some(pid) = pid else { continue };
            if let Some(v) = api.json(&Db::http(i), "/v1/status/digest").await
                && let Some(applied) = v["applied_index"].as_u64()
            {
                let prev = last.insert((i, pid), applied);
                if let Some(p) = prev
                    && applied < p
                {
                    violations.lock().expect("violations").push(format!(
                        "n{i} (pid {pid}) applied index went back from {p} to {applied}"
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let wall = Instant::now();
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("dcache-jepsen: seed {seed} (replay with --seed {seed})");
    if args.nodes < 3 {
        bail!("--nodes must be at least 3");
    }
    let bin = std::fs::canonicalize(&args.bin)
        .with_context(|| format!("binary {}", args.bin.display()))?;
    let out = match &args.out {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("dcache-jepsen-{seed}")),
    };
    let mut faults = if args.no_faults {
        Vec::new()
    } else if args.faults.is_empty() {
        Fault::all()
    } else {
        args.faults.clone()
    };
    faults.sort();
    faults.dedup();
    // A requested fault that cannot happen fails now, not silently later.
    let libfaketime = if faults.contains(&Fault::ClockSkew) {
        let lib = faketime::find().map_err(|e| anyhow::anyhow!(e))?;
        println!("dcache-jepsen: libfaketime {}", lib.display());
        Some(lib)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let names: Vec<String> = faults.iter().map(Fault::to_string).collect();
    println!(
        "dcache-jepsen: {} nodes, {} s, faults [{}], binary {}, output {}",
        args.nodes,
        args.duration,
        names.join(", "),
        bin.display(),
        out.display()
    );
    if !faults.is_empty() {
        match schedule::plan(Duration::from_secs(args.duration), faults.len()) {
            schedule::Plan::Comfortable => {}
            schedule::Plan::Shortened { cycle_secs } => println!(
                "dcache-jepsen: note: {} s is less than one unhurried cycle of {} fault kinds (~{cycle_secs} s): holds are shortened until every kind has been injected",
                args.duration,
                faults.len()
            ),
            schedule::Plan::TooShort { needed_secs } => println!(
                "dcache-jepsen: WARNING: {} s is too short to inject all {} fault kind(s) (needs about {needed_secs} s); a kind never injected fails the run",
                args.duration,
                faults.len()
            ),
        }
    }

    let topo = net::Topology::create(args.nodes)?;
    let db = Arc::new(Mutex::new(Db::new(
        topo,
        bin,
        out.clone(),
        args.snapshot_threshold,
        args.read_policy.clone(),
        libfaketime,
    )));
    // SIGINT/SIGTERM (e.g. a CI timeout) still removes the namespaces and
    // kills the nodes: stop the run and fall through to the teardown.
    let interrupted = async {
        use tokio::signal::unix::SignalKind;
        use tokio::signal::unix::signal;
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let result = tokio::select! {
        r = run_with(&args, seed, faults, db.clone(), &out) => r,
        _ = interrupted => Err(anyhow::anyhow!("interrupted; cleaning up")),
    };
    {
        let mut db = db.lock().await;
        db.teardown();
    }
    let summary = result?;
    println!(
        "dcache-jepsen: summary (seed {seed}, {} nodes, {} s of faults, wall time {:.1} s)",
        args.nodes,
        args.duration,
        wall.elapsed().as_secs_f64()
    );
    for line in &summary.lines {
        println!("  {line}");
    }
    println!(
        "dcache-jepsen: {} (seed {seed}; logs and history in {})",
        if summary.ok { "PASS" } else { "FAIL" },
        out.display()
    );
    Ok(summary.ok)
}

/// The end of a run: pass or fail, and the lines of its summary.
struct Summary {
    ok: bool,
    lines: Vec<String>,
}

async fn run_with(
    args: &Args,
    seed: u64,
    faults: Vec<Fault>,
    db: Arc<Mutex<Db>>,
    out: &std::path::Path,
) -> anyhow::Result<Summary> {
    let api = Api::new(Duration::from_secs(4));
    let n = args.nodes;
    // Form the cluster: n1 bootstraps, the others join through it.
    db.lock().await.start(1, None, None)?;
    let n1 = Db::http(1);
    if !wait_until(Duration::from_secs(20), || api.ready(&n1)).await {
        bail!("n1 did not become ready");
    }
    for i in 2..=n {
        db.lock().await.start(i, Some(Db::http(1)), None)?;
    }
    let formed = wait_until(Duration::from_secs(60), || async {
        let Some(v) = api.json(&Db::http(1), "/v1/cluster").await else {
            return false;
        };
        let voters = v["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|x| x["role"] == "voter").count());
        voters == n && v["membership_settled"] == true
    })
    .await;
    if !formed {
        bail!("the cluster did not form with {n} voters");
    }
    println!("dcache-jepsen: cluster of {n} formed");

    let rec = Arc::new(Recorder {
        start: Instant::now(),
        events: std::sync::Mutex::new(Vec::new()),
        next_client: std::sync::atomic::AtomicU64::new(0),
    });
    db.lock().await.procs.set_epoch(rec.start);
    let until = Instant::now() + Duration::from_secs(args.duration);
    let violations = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let register_clients = if args.workload.register() {
        args.clients
    } else {
        0
    };
    for c in 0..register_clients {
        tasks.push(tokio::spawn(client_loop(
            rec.clone(),
            api.clone(),
            n,
            args.keys,
            schedule::stream_seed(seed, schedule::CLIENT_STREAM + c as u64),
            until,
        )));
    }
    let ttl_keys = Arc::new(TtlKeys::new(if args.workload.ttl() {
        args.ttl_keys
    } else {
        0
    }));
    if args.workload.ttl() && args.ttl_keys > 0 {
        let ctx = Arc::new(TtlCtx {
            rec: rec.clone(),
            api: api.clone(),
            n,
            keys: ttl_keys.clone(),
            skews: db.lock().await.skews.clone(),
        });
        for c in 0..args.ttl_clients {
            tasks.push(tokio::spawn(ttl_loop(
                ctx.clone(),
                c,
                schedule::stream_seed(seed, schedule::TTL_CLIENT_STREAM + c as u64),
                until,
            )));
        }
    }
    let sampler_task = tokio::spawn(sampler(api.clone(), db.clone(), until, violations.clone()));
    let mut nemesis = Nemesis::new(db.clone(), api.clone(), seed, faults.clone(), rec.start);
    nemesis.run(until).await?;
    for t in tasks {
        let _ = t.await;
    }
    let _ = sampler_task.await;

    // Heal everything and bring every node back.
    nemesis.heal().await;
    // A membership removal answered with an error may land late: give it
    // a moment, and complete it (wipe, rejoin) if it does.
    let unresolved = nemesis.settle_removals(Duration::from_secs(10)).await?;
    if !unresolved.is_empty() {
        println!(
            "dcache-jepsen: note: removals never confirmed (the nodes are still members): {unresolved:?}"
        );
    }
    for i in 1..=n {
        let running = db.lock().await.is_running(i);
        if running {
            db.lock().await.procs.resume(i);
        } else {
            nemesis.restart(i, None).await?;
        }
    }
    let healed_at = Instant::now();
    let all_ready = wait_until(Duration::from_secs(60), || async {
        for i in 1..=n {
            if !api.ready(&Db::http(i)).await {
                return false;
            }
        }
        true
    })
    .await;
    println!(
        "dcache-jepsen: after healing, all nodes ready: {all_ready} ({:.1} s)",
        healed_at.elapsed().as_secs_f64()
    );
    // A final write must succeed.
    let final_ok = wait_until(Duration::from_secs(30), || async {
        matches!(
            api.write(&Db::http(1), "final", "done", false).await,
            Outcome::Ok(_)
        )
    })
    .await;
    // Final linearizable reads of every key from every node join the history.
    let register_keys = if args.workload.register() {
        args.keys
    } else {
        0
    };
    for i in 1..=n {
        for k in 0..register_keys {
            let key = format!("k{k}");
            let invoke = rec.now();
            let r = api.read(&Db::http(i), &key, false).await;
            let now = rec.now();
            if !matches!(r.outcome, Outcome::Fail) {
                rec.record(Event {
                    client: u64::MAX - i as u64,
                    key,
                    op: Op::Read,
                    invoke_ns: invoke,
                    complete_ns: Some(now),
                    outcome: r.outcome,
                    ttl: None,
                });
            }
        }
    }
    let ttl_params = TtlParams {
        max_skew_ms: if faults.contains(&Fault::ClockSkew) {
            nemesis::SKEW_SECS.unsigned_abs() * 1000
        } else {
            0
        },
        tick_ms: db::EXPIRY_TICK_MS,
        ..TtlParams::default()
    };
    let skews = db.lock().await.skews.clone();
    let all_ttl_keys = ttl_keys.all();
    // Expired keys are gone from every replica (before any final
    // linearizable read of the TTL keys, which would tick them away itself).
    let mut other_keys: Vec<String> = (0..register_keys).map(|k| format!("k{k}")).collect();
    other_keys.push("final".into());
    let after = if all_ttl_keys.is_empty() {
        TtlAfter::default()
    } else {
        let snapshot = History {
            events: rec.events.lock().expect("events").clone(),
        };
        ttl_after_run(
            &api,
            &db,
            &snapshot,
            &all_ttl_keys,
            &other_keys,
            &ttl_params,
        )
        .await
    };
    // Final linearizable reads of the TTL keys from every node join the
    // history too (after the check above, so that it sees what the
    // leader's expiry ticks did, not what these reads' own ticks did).
    for i in 1..=n {
        for key in &all_ttl_keys {
            let (t0, invoke, wall) = (Instant::now(), rec.now(), wall_ms());
            let a = api.read_ttl(&Db::http(i), key, false).await;
            if matches!(a.outcome, Outcome::Ok(_)) {
                let node = a
                    .served_by
                    .as_deref()
                    .and_then(|s| s.strip_prefix('n'))
                    .and_then(|s| s.parse::<usize>().ok());
                rec.record(Event {
                    client: u64::MAX - i as u64,
                    key: key.clone(),
                    op: Op::Read,
                    invoke_ns: invoke,
                    complete_ns: Some(rec.now()),
                    ttl: Some(TtlMeta {
                        wall_ms: wall,
                        expires_at_ms: a.expires_at_ms,
                        served_by: a.served_by.clone(),
                        node_skew_ms: node.and_then(|l| skews.lowest(l, t0, Instant::now())),
                        unreported: false,
                    }),
                    outcome: a.outcome,
                });
            }
        }
    }
    // Replicas converge: same applied index and digest everywhere.
    let last_digests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let converged = wait_until(Duration::from_secs(30), || {
        let last = last_digests.clone();
        let api = api.clone();
        async move {
            let mut seen = Vec::new();
            for i in 1..=n {
                match api.json(&Db::http(i), "/v1/status/digest").await {
                    Some(v) => seen.push((v["applied_index"].as_u64(), v["digest"].as_u64())),
                    None => return false,
                }
            }
            let same = seen.windows(2).all(|w| w[0] == w[1]);
            *last.lock().expect("digests") = seen;
            same
        }
    })
    .await;
    let last_digests = last_digests.lock().expect("digests").clone();

    let history = History {
        events: rec.events.lock().expect("events").clone(),
    };
    std::fs::write(out.join("history.jsonl"), history.to_json_lines())?;
    let tally = nemesis.tally.summary(&faults);
    let mut nemesis_log = nemesis.log.clone();
    nemesis_log.push("faults per kind:".into());
    nemesis_log.extend(tally.iter().map(|l| format!("  {l}")));
    std::fs::write(out.join("nemesis.log"), nemesis_log.join("\n"))?;
    let (mut ok_ops, mut fail_ops, mut info_ops) = (0, 0, 0);
    for e in &history.events {
        match e.outcome {
            Outcome::Ok(_) => ok_ops += 1,
            Outcome::Fail => fail_ops += 1,
            Outcome::Indeterminate => info_ops += 1,
        }
    }
    let ops_line = format!(
        "ops: {} recorded: {ok_ops} ok, {fail_ops} failed (not applied), {info_ops} indeterminate",
        history.events.len()
    );
    println!("dcache-jepsen: {ops_line}");
    let t = Instant::now();
    let report = checker::check_with(&history, checker::Budget::default(), &ttl_params);
    let check_secs = t.elapsed().as_secs_f64();
    println!("dcache-jepsen: linearizability check took {check_secs:.2} s");
    println!("{report}");
    let ttl_report = ttl::check_ttl(&history, &ttl_params);
    println!("dcache-jepsen: TTL: {ttl_report}");
    for v in &after.first_look {
        println!("dcache-jepsen: TTL after the run, at first look: {v}");
    }
    for v in &after.violations {
        println!("dcache-jepsen: TTL after the run: {v}");
    }
    for v in &after.unremoved {
        println!("dcache-jepsen: TTL after the run: {v}");
    }
    // The last look for nodes that exited on their own (before teardown).
    let (exits, crashed) = {
        let mut db = db.lock().await;
        db.procs.poll();
        (db.procs.exits().to_vec(), db.procs.failures())
    };

    let mut anomalies = Vec::new();
    if !report.ok() {
        anomalies.push("history is not linearizable (or the check was inconclusive)".to_string());
    }
    if !all_ready {
        anomalies.push("not every node became ready within 60 s of healing".into());
    }
    if !final_ok {
        anomalies.push("the final write did not succeed within 30 s".into());
    }
    anomalies.extend(ttl_report.violations.iter().map(|v| format!("TTL: {v}")));
    anomalies.extend(
        after
            .violations
            .iter()
            .map(|v| format!("TTL after the run: {v}")),
    );
    anomalies.extend(
        after
            .unremoved
            .iter()
            .map(|v| format!("TTL after the run: {v}")),
    );
    if !converged {
        anomalies.push(format!("replicas did not converge: {last_digests:?}"));
    }
    anomalies.extend(crashed.iter().cloned());
    anomalies.extend(violations.lock().expect("violations").iter().cloned());
    // The run must prove its faults happened.
    let not_injected = nemesis.tally.failures(&faults);
    for a in &anomalies {
        println!("dcache-jepsen: ANOMALY: {a}");
    }
    for f in &not_injected {
        println!("dcache-jepsen: FAULT NOT INJECTED: {f}");
    }
    let mut lines = vec![ops_line];
    lines.push(if faults.is_empty() {
        "faults: none (control run)".to_string()
    } else {
        "faults injected per kind:".to_string()
    });
    lines.extend(tally.iter().map(|l| format!("  {l}")));
    let expected_exits = exits.iter().filter(|e| e.expected).count();
    lines.push(format!(
        "node exits: {expected_exits} by the harness (kills), {} on their own",
        crashed.len()
    ));
    lines.push(format!(
        "linearizability: {:?}, {} keys, checked in {check_secs:.2} s",
        report.overall(),
        report.keys.len()
    ));
    lines.push(format!(
        "ttl: {} TTL keys; {} present reads checked against a deadline (latest {} relative to it, margin {} ms, max skew {} ms); {} deadline headers checked; {} absent reads; {} violations",
        ttl_report.keys,
        ttl_report.late_checked,
        ttl_report
            .max_lateness_ms
            .map_or("-".to_string(), |m| format!("{m:+} ms")),
        ttl_report.margin_ms,
        ttl_params.max_skew_ms,
        ttl_report.deadline_checked,
        ttl_report.absent_reads,
        ttl_report.violations.len()
    ));
    lines.push(format!(
        "ttl after the run: {} stale reads ({} keys x {n} nodes), {} present ({} without a deadline, {} with a long TTL, {} with a short deadline still ahead on the leader's clock; leader skew {}); replicated clock {} the harness's; problems: {} at first look, {} at the end{}",
        after.reads,
        all_ttl_keys.len(),
        after.present,
        after.no_deadline,
        after.long_deadline,
        after.deadline_ahead,
        after
            .leader_skew_ms
            .map_or("unknown".to_string(), |ms| format!("{:+} s", ms / 1000)),
        after.clock_ahead_ms.map_or("unknown vs".to_string(), |ms| format!(
            "{:+.1} s vs",
            ms as f64 / 1000.0
        )),
        after.first_look.len(),
        after.violations.len() + after.unremoved.len(),
        match after.settled_after {
            Some(d) if !after.first_look.is_empty() => format!(" (gone after {:.1} s)", d.as_secs_f64()),
            _ => String::new(),
        }
    ));
    lines.push(format!(
        "recovery: all ready {all_ready}, final write {final_ok}, converged {converged}"
    ));
    lines.push(format!(
        "anomalies: {}; fault kinds never injected: {}",
        anomalies.len(),
        not_injected.len()
    ));
    Ok(Summary {
        ok: anomalies.is_empty() && not_injected.is_empty(),
        lines,
    })
}
