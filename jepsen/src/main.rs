//! `dcache-jepsen`: run a dcache cluster in network namespaces under a
//! seeded fault schedule with a concurrent register workload, a TTL
//! workload and a bank workload (transactions), then check the history for
//! linearizability (with expiry in the model), the TTL deadlines against
//! the nodes' clocks, the bank's totals, and the replicas for convergence.
//!
//! Needs root (ip netns, nft). Prints the seed first so a failing run can
//! be replayed with `--seed`. Exit status 0 only if every check passed.

mod bank;
mod client;
mod db;
mod diagnose;
mod faketime;
mod nemesis;
mod net;
mod register;
mod resp;
mod schedule;
mod ttl_workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use clap::Parser;
use client::Api;
use db::Db;
use dcache_jepsen::checker;
use dcache_jepsen::checker::TtlParams;
use dcache_jepsen::checker::ttl;
use dcache_jepsen::history::Event;
use dcache_jepsen::history::History;
use dcache_jepsen::history::Op;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::TtlMeta;
use nemesis::Fault;
use nemesis::Nemesis;
use tokio::sync::Mutex;

use register::Recorder;
use register::client_loop;
use register::wall_ms;
use ttl_workload::TtlAfter;
use ttl_workload::TtlCtx;
use ttl_workload::TtlKeys;
use ttl_workload::ttl_after_run;
use ttl_workload::ttl_loop;

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
    /// workload on `--ttl-keys` keys; bank: transfers between `--accounts`
    /// accounts in transactions; resp: Redis-protocol clients on
    /// `--resp-keys` register keys and `--resp-counter-keys` INCR counters;
    /// mixed: all four at once.
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
    /// Accounts of the bank workload.
    #[arg(long, default_value_t = 5)]
    accounts: usize,
    /// Clients of the bank workload.
    #[arg(long, default_value_t = 2)]
    bank_clients: usize,
    /// Register keys of the RESP workload (GET, SET, SET NX, SET GET, DEL).
    #[arg(long, default_value_t = 3)]
    resp_keys: usize,
    /// Counter keys of the RESP workload (INCR and GET).
    #[arg(long, default_value_t = 2)]
    resp_counter_keys: usize,
    /// Clients of the RESP workload.
    #[arg(long, default_value_t = 3)]
    resp_clients: usize,
    #[arg(long, default_value_t = 50)]
    snapshot_threshold: u64,
    /// read_index or lease.
    #[arg(long, default_value = "read_index")]
    read_policy: String,
    /// Run the nodes with this `cluster.secret` (peer authentication); the
    /// harness's membership changes carry it.
    #[arg(long)]
    cluster_secret: Option<String>,
    /// TLS and tokens on every node: a test CA and certificates
    /// (scripts/make-certs.sh, openssl) with mutual TLS between nodes and
    /// client certificates required, `auth.enabled` with an admin token.
    /// The harness talks https (and Redis over TLS with AUTH) with them.
    #[arg(long)]
    secure: bool,
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
    Bank,
    Resp,
    Mixed,
}

impl Workload {
    fn register(self) -> bool {
        matches!(self, Workload::Register | Workload::Mixed)
    }
    fn ttl(self) -> bool {
        matches!(self, Workload::Ttl | Workload::Mixed)
    }
    fn bank(self) -> bool {
        matches!(self, Workload::Bank | Workload::Mixed)
    }
    fn resp(self) -> bool {
        matches!(self, Workload::Resp | Workload::Mixed)
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

/// Whether `cond` holds within `timeout`, checked every 100 ms (testkit's
/// one poll loop).
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let every = Duration::from_millis(100);
    dcache_testkit::wait::until_every(timeout, every, || {
        let f = cond();
        async move { if f.await { Ok(()) } else { Err(()) } }
    })
    .await
    .is_ok()
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
    if args.workload.bank() && args.accounts < 2 {
        bail!("--accounts must be at least 2");
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
    let mut db = Db::new(
        topo,
        bin,
        out.clone(),
        args.snapshot_threshold,
        args.read_policy.clone(),
        libfaketime,
    );
    db.cluster_secret = args.cluster_secret.clone();
    let mut access = client::Access {
        secret: args.cluster_secret.clone(),
        ..Default::default()
    };
    if args.secure {
        let (tls, token) = db.make_secure(args.nodes)?;
        println!(
            "dcache-jepsen: TLS (mutual, client certificates required) and tokens on; certificates in {}",
            db.secure_dir().display()
        );
        access.tls = Some(tls);
        access.token = Some(token);
    }
    let db = Arc::new(Mutex::new(db));
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
        r = run_with(&args, seed, faults, db.clone(), &out, &access) => r,
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
    access: &client::Access,
) -> anyhow::Result<Summary> {
    let api = Api::new(Duration::from_secs(4), access);
    let n = args.nodes;
    db::form_cluster(&db, &api, n).await?;
    println!("dcache-jepsen: cluster of {n} formed");

    let bank = Arc::new(bank::Bank {
        api: api.clone(),
        n,
        accounts: args.accounts,
        reads: std::sync::Mutex::new(Vec::new()),
        tally: bank::Tally::default(),
        created_at: Default::default(),
    });
    if args.workload.bank() {
        bank.setup().await?;
        println!(
            "dcache-jepsen: bank of {} accounts x {} created",
            args.accounts,
            bank::INITIAL
        );
    }
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
    if args.workload.bank() {
        for c in 0..args.bank_clients {
            tasks.push(tokio::spawn(bank::bank_loop(
                bank.clone(),
                schedule::stream_seed(seed, schedule::BANK_CLIENT_STREAM + c as u64),
                until,
            )));
        }
    }
    let resp_ctx = Arc::new(resp::RespCtx {
        rec: rec.clone(),
        counters: Default::default(),
        n,
        keys: args.resp_keys,
        counter_keys: args.resp_counter_keys,
        access: access.clone(),
    });
    if args.workload.resp() {
        for c in 0..args.resp_clients {
            tasks.push(tokio::spawn(resp::resp_loop(
                resp_ctx.clone(),
                schedule::stream_seed(seed, schedule::RESP_CLIENT_STREAM + c as u64),
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
    if !all_ready {
        diagnose::print_nodes(&api, &db).await;
    }
    // A final write must succeed.
    let final_ok = wait_until(Duration::from_secs(30), || async {
        matches!(
            api.write(&Db::http(1), "final", "done", false).await,
            Outcome::Ok(_)
        )
    })
    .await;
    // Final linearizable reads of every key from every node join the history.
    let mut register_keys: Vec<String> = Vec::new();
    if args.workload.register() {
        register_keys.extend((0..args.keys).map(|k| format!("k{k}")));
    }
    if args.workload.resp() {
        register_keys.extend((0..args.resp_keys).map(|k| format!("rk{k}")));
    }
    register::final_reads(&rec, &api, n, &register_keys).await;
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
    let mut other_keys = register_keys.clone();
    other_keys.push("final".into());
    if args.workload.resp() {
        other_keys.extend(resp::keys(0, args.resp_counter_keys));
    }
    if args.workload.bank() {
        other_keys.extend(bank.keys());
    }
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
    let bank_report = if args.workload.bank() {
        bank.final_reads().await;
        let reads = bank.reads.lock().expect("bank reads").clone();
        Some(checker::bank::check_bank(
            &reads,
            args.accounts,
            bank.total(),
            bank.created_at.load(std::sync::atomic::Ordering::Relaxed),
        ))
    } else {
        None
    };
    if let Some(r) = &bank_report {
        println!("dcache-jepsen: bank: {r}");
    }
    let counter_report = if args.workload.resp() {
        resp::final_counter_reads(&resp_ctx).await;
        let events = resp_ctx.counters.lock().expect("counters").clone();
        let r = checker::counter::check_counters(&events);
        println!("dcache-jepsen: RESP counters: {r}");
        Some(r)
    } else {
        None
    };

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
    if let Some(r) = &bank_report {
        anomalies.extend(r.violations.iter().map(|v| format!("bank: {v}")));
    }
    if let Some(r) = &counter_report {
        anomalies.extend(r.violations.iter().map(|v| format!("RESP counter: {v}")));
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
    if let Some(r) = &bank_report {
        lines.push(format!(
            "bank: {} accounts, total {}; {}; {} reads of all accounts, {} violations",
            args.accounts,
            bank.total(),
            bank.tally.line(),
            r.reads,
            r.violations.len()
        ));
    }
    if let Some(r) = &counter_report {
        let line = r.to_string();
        lines.push(format!(
            "RESP counters: {}",
            line.lines().next().unwrap_or("")
        ));
    }
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
