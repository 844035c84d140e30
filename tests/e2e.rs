//! Black-box tests of the real `dcache` binary: configuration errors, the
//! `-config`/`--config` flags, signals and exit codes, JSON logs, the
//! `health` subcommand, and a three-process cluster on loopback surviving a
//! SIGKILL of its leader and a full stop/start.
//!
//! Every child runs in its own temp dir (cwd and data dirs); the process
//! helpers (clean environment, `Proc` killing its child on drop, port
//! choice) are in `dcache_testkit::proc`. Waits poll a condition under a
//! deadline. Exit codes (src/bin/dcache/main.rs): 0 after a graceful stop,
//! 1 for a start-up failure or a node that failed for good.

use std::path::Path;
use std::process::Command;
use std::process::ExitStatus;
use std::time::Duration;
use std::time::Instant;

use dcache_testkit::dcache_bin;
use dcache_testkit::http::client;
use dcache_testkit::ports::free_ports;
use dcache_testkit::proc;
use dcache_testkit::proc::Proc;
use dcache_testkit::proc::Spec;
use dcache_testkit::proc::get;
use dcache_testkit::proc::get_json;
use dcache_testkit::proc::put_ok;
use dcache_testkit::proc::start_ready;
use dcache_testkit::proc::tail;
use dcache_testkit::proc::wait_leader;
use dcache_testkit::proc::wait_ready;
use dcache_testkit::proc::wait_voters;
use dcache_testkit::seed;
use rand::Rng;
use serde_json::Value;

/// How long a cluster may take to converge (a hang bound).
const CONVERGE: Duration = Duration::from_secs(30);
/// How long a graceful stop may take (a hang bound).
const STOP: Duration = Duration::from_secs(30);
/// How long a process that should exit by itself may take (a hang bound).
const EXIT: Duration = Duration::from_secs(30);

/// Fast Raft timings, as environment variables.
const FAST_RAFT: &[(&str, &str)] = &[
    ("DCACHE_RAFT_HEARTBEAT_INTERVAL_MS", "100"),
    ("DCACHE_RAFT_ELECTION_TIMEOUT_MIN_MS", "500"),
    ("DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS", "1000"),
];

/// `dcache` in `cwd`, with a clean environment.
fn dcache(cwd: &Path) -> Command {
    proc::command(dcache_bin!(), cwd)
}

/// Run `cmd` (with cwd already set) to completion: its status and stderr.
async fn run_to_exit(cmd: Command, dir: &Path) -> (ExitStatus, String) {
    proc::run_to_exit(cmd, dir, EXIT).await
}

/// Node `id` in `dir` with its settings in `<dir>/<id>.yaml`, started with
/// `--config FILE` and fast Raft timings.
fn node(dir: &Path, id: &str, join: &str) -> Spec {
    Spec::new(dcache_bin!(), dir, id, join)
        .with_envs(FAST_RAFT)
        .with_config_file("--config")
}

/// `spec` started with another config flag (`-config`, `-config=`).
fn with_flag(spec: &Spec, flag: &str) -> Spec {
    let mut s = spec.clone();
    s.config.as_mut().unwrap().0 = flag.into();
    s
}

/// A start-up refusal: exit code 1 and `dcache: error: ...` on stderr.
fn assert_refused(st: ExitStatus, stderr: &str, what: &str) {
    assert_eq!(
        st.code(),
        Some(1),
        "{what}: exit {st:?}; stderr:\n{}",
        tail(stderr)
    );
    assert!(
        stderr.contains("dcache: error: "),
        "{what}: no error line; stderr:\n{}",
        tail(stderr)
    );
}

// --- configuration errors ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_exit_non_zero_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unknown = d.join("unknown.yaml");
    std::fs::write(&unknown, "node:\n  idd: node1\n").unwrap();
    let bad_type = d.join("badtype.yaml");
    std::fs::write(&bad_type, "raft:\n  heartbeat_interval_ms: fast\n").unwrap();

    struct Case {
        args: Vec<String>,
        env: Vec<(&'static str, &'static str)>,
        want: Vec<String>,
    }
    let s = |x: &str| x.to_string();
    let cases = vec![
        Case {
            args: vec![s("-config"), s("/nonexistent.yaml")],
            env: vec![],
            want: vec![s("/nonexistent.yaml"), s("not found")],
        },
        Case {
            args: vec![s("--config"), s("/nonexistent.yaml")],
            env: vec![],
            want: vec![s("/nonexistent.yaml")],
        },
        Case {
            args: vec![s("-config"), unknown.display().to_string()],
            env: vec![],
            want: vec![s("idd"), unknown.display().to_string()],
        },
        Case {
            args: vec![s("-config"), bad_type.display().to_string()],
            env: vec![],
            want: vec![s("raft.heartbeat_interval_ms"), s("fast")],
        },
        Case {
            args: vec![],
            env: vec![("DCACHE_LOGGING_LEVEL", "loud")],
            want: vec![s("DCACHE_LOGGING_LEVEL"), s("loud")],
        },
        Case {
            args: vec![],
            env: vec![("DCACHE_LOGGING_JSON", "maybe")],
            want: vec![s("DCACHE_LOGGING_JSON"), s("maybe")],
        },
        Case {
            args: vec![],
            env: vec![("DCACHE_HTTP_BIND_ADDR", "nohost")],
            want: vec![s("DCACHE_HTTP_BIND_ADDR"), s("nohost")],
        },
        Case {
            args: vec![],
            env: vec![("DCACHE_LOGING_LEVEL", "debug")],
            want: vec![s("DCACHE_LOGING_LEVEL")],
        },
    ];
    for case in cases {
        let mut cmd = dcache(d);
        cmd.args(&case.args).envs(case.env.iter().copied());
        let (st, stderr) = run_to_exit(cmd, d).await;
        let what = format!("args {:?} env {:?}", case.args, case.env);
        assert_eq!(st.code(), Some(1), "{what}: exit {st:?}");
        assert!(
            stderr.starts_with("dcache: error: "),
            "{what}: stderr {stderr:?}"
        );
        for w in &case.want {
            assert!(
                stderr.contains(w.as_str()),
                "{what}: {w:?} not in {stderr:?}"
            );
        }
    }
    // Nothing was created in the working directory by a failed start.
    assert!(!d.join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let raft = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut cmd = dcache(dir.path());
    cmd.env("DCACHE_HTTP_BIND_ADDR", &addr)
        .env("DCACHE_RAFT_BIND_ADDR", &raft);
    let (st, stderr) = run_to_exit(cmd, dir.path()).await;
    assert_refused(st, &stderr, "port in use");
    assert!(stderr.contains("http.bind_addr"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    drop(held);
}

// --- a single node --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_config_flag_forms_sigterm_exits_zero_and_data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = client();
    let spec = node(d, "solo", "");

    // --config FILE
    let mut p = start_ready(&c, &spec).await;
    let h = get_json(&c, &spec, "/health").await.expect("health");
    assert_eq!(h["node_id"], "solo");
    assert_eq!(h["is_leader"], true);
    put_ok(&c, &spec, "persist", "me", CONVERGE).await;
    let r = c
        .post(spec.url("/store"))
        .body(r#"{"key":"seed","value":"v"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // `dcache health`: 0 on a ready node.
    let (st, err) = run_to_exit(
        {
            let mut cmd = dcache(d);
            cmd.args(["health", "--addr", &spec.http]);
            cmd
        },
        d,
    )
    .await;
    assert!(st.success(), "health on a ready node: {st:?} {err}");

    p.stop_gracefully(STOP).await;
    let log = p.stderr();
    assert!(log.contains("SIGTERM"), "{}", tail(&log));

    // `dcache health`: non-zero on a closed port (the node is gone).
    let (st, err) = run_to_exit(
        {
            let mut cmd = dcache(d);
            cmd.args(["health", "--addr", &spec.http]);
            cmd
        },
        d,
    )
    .await;
    assert_eq!(st.code(), Some(1), "health on a closed port: {st:?}");
    assert!(err.contains(&spec.http), "{err}");

    // -config FILE, same data dir: the data is still there.
    let mut p = start_ready(&c, &with_flag(&spec, "-config")).await;
    assert_eq!(get(&c, &spec, "persist").await, (200, "me".to_string()));
    let r = c.get(spec.url("/store/seed")).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "{\"key\":\"seed\",\"value\":\"v\"}\n"
    );
    put_ok(&c, &spec, "second", "run", CONVERGE).await;
    p.stop_gracefully(STOP).await;

    // -config=FILE, and SIGINT is graceful too.
    let mut p = start_ready(&c, &with_flag(&spec, "-config=")).await;
    assert_eq!(get(&c, &spec, "second").await, (200, "run".to_string()));
    p.signal("INT");
    let st = p.wait_exit(STOP).await;
    assert_eq!(st.code(), Some(0), "{}", tail(&p.stderr()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logging_puts_node_id_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = client();
    let spec = node(d, "jsonnode", "");
    let mut p = spec.clone().with_env("DCACHE_LOGGING_JSON", "true").spawn();
    wait_ready(&c, &spec, &mut p).await;
    put_ok(&c, &spec, "k", "v", CONVERGE).await;
    p.stop_gracefully(STOP).await;
    let log = p.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines:\n{log}");
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert_eq!(v["node_id"], "jsonnode", "{line}");
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(log.contains("node started"), "{log}");
}

// --- a three-process cluster ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_sigkill_of_the_leader_and_a_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = client();
    let n1 = node(d, "node1", "");
    let n2 = node(d, "node2", &n1.http);
    let n3 = node(d, "node3", &n1.http);
    let specs = vec![n1, n2, n3];
    let mut procs: Vec<Option<Proc>> = Vec::new();
    for s in &specs {
        procs.push(Some(start_ready(&c, s).await));
    }

    // The leader reports three voters.
    let voters = wait_voters(&c, &specs, 3, CONVERGE).await;
    assert_eq!(voters, ["node1", "node2", "node3"]);

    // 100 writes through random nodes (seeded), each acknowledged.
    let mut rng = seed::rng("three_processes_survive_sigkill_of_the_leader_and_a_full_restart");
    let mut acked = Vec::new();
    for i in 0..100 {
        let n = rng.gen_range(0..3);
        let key = format!("key{i}");
        put_ok(&c, &specs[n], &key, &format!("value{i}"), CONVERGE).await;
        acked.push(key);
    }

    // SIGKILL the leader.
    let leader = wait_leader(&c, &specs, &[0, 1, 2], CONVERGE).await;
    let killed_at = Instant::now();
    procs[leader].as_mut().unwrap().sigkill();
    procs[leader] = None;
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = wait_leader(&c, &specs, &alive, CONVERGE).await;
    assert_ne!(new_leader, leader);
    put_ok(&c, &specs[new_leader], "after-failover", "yes", CONVERGE).await;
    // A measurement, not a pass/fail line (the waits above catch a hang).
    eprintln!(
        "failover: a write acknowledged {:?} after SIGKILL of the leader",
        killed_at.elapsed()
    );
    acked.push("after-failover".into());

    let value_of = |k: &str| {
        k.strip_prefix("key")
            .map(|n| format!("value{n}"))
            .unwrap_or_else(|| "yes".into())
    };
    for &s in &alive {
        for k in &acked {
            assert_eq!(
                get(&c, &specs[s], k).await,
                (200, value_of(k)),
                "{k} on {s}"
            );
        }
    }

    // The killed node comes back with the same config and serves the keys.
    procs[leader] = Some(start_ready(&c, &specs[leader]).await);
    for k in &acked {
        assert_eq!(get(&c, &specs[leader], k).await, (200, value_of(k)), "{k}");
    }
    put_ok(&c, &specs[leader], "after-rejoin", "yes", CONVERGE).await;
    acked.push("after-rejoin".into());

    // Stop all with SIGTERM; each exits 0.
    for p in procs.iter_mut() {
        p.as_mut().unwrap().stop_gracefully(STOP).await;
    }
    // Start again in reverse order: everything is there.
    let mut procs2: Vec<Proc> = Vec::new();
    for s in specs.iter().rev() {
        procs2.push(s.spawn());
    }
    procs2.reverse();
    for (s, p) in specs.iter().zip(procs2.iter_mut()) {
        wait_ready(&c, s, p).await;
    }
    wait_leader(&c, &specs, &[0, 1, 2], CONVERGE).await;
    for (i, k) in acked.iter().enumerate() {
        let s = &specs[i % 3];
        assert_eq!(get(&c, s, k).await, (200, value_of(k)), "{k} on {}", s.id);
    }
    for p in procs2.iter_mut() {
        p.stop_gracefully(STOP).await;
    }
}
