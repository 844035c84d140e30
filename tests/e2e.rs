//! Black-box tests of the real `dcache` binary: configuration errors, the
//! `-config`/`--config` flags, signals and exit codes, JSON logs, the
//! `health` subcommand, start-up refusals (a data dir of another node, a
//! data dir that cannot be written, a join refused for good), and a
//! three-process cluster on loopback surviving a SIGKILL of its leader and
//! a full stop/start.
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

use dcache::wire::Code;
use dcache_testkit::cluster::TestCluster;
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
use dcache_testkit::tools;
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

// --- start-up refusals ------------------------------------------------------

/// `spec` with its data dir moved to `data_dir` (config file rewritten).
fn with_data_dir(spec: Spec, data_dir: &Path) -> Spec {
    let mut s = spec;
    s.data_dir = data_dir.to_path_buf();
    let flag = s.config.take().map_or("--config".to_string(), |(f, _)| f);
    s.with_config_file(&flag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_node_is_refused_naming_both_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = client();
    let alpha = node(d, "alpha", "");
    let mut p = start_ready(&c, &alpha).await;
    put_ok(&c, &alpha, "mine", "alpha's", CONVERGE).await;
    p.stop_gracefully(STOP).await;

    // The same data dir under another node id.
    let beta = with_data_dir(node(d, "beta", ""), &alpha.data_dir);
    let (st, err) = beta.start_expect_exit().await;
    assert_refused(st, &err, "another node's data dir");
    let want = format!(
        "data dir {} belongs to node \"alpha\", not \"beta\"",
        alpha.data_dir.display()
    );
    assert!(err.contains(&want), "{want:?} not in:\n{}", tail(&err));

    // The refusal changed nothing: alpha starts on it with its data.
    let _p = start_ready(&c, &alpha).await;
    assert_eq!(get(&c, &alpha, "mine").await, (200, "alpha's".to_string()));
}

/// A data dir whose Raft state was lost (wiped) but whose identity file
/// remains must not bootstrap a second, empty cluster: without
/// `cluster.join_addr` the start is refused, naming the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_that_lost_its_raft_state_is_not_bootstrapped_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let alpha = node(dir.path(), "alpha", "");
    let mut p = start_ready(&c, &alpha).await;
    put_ok(&c, &alpha, "k", "v", CONVERGE).await;
    p.stop_gracefully(STOP).await;
    std::fs::remove_dir_all(alpha.data_dir.join("raft-log")).unwrap();
    std::fs::remove_dir_all(alpha.data_dir.join("snapshots")).unwrap();

    let (st, err) = alpha.start_expect_exit().await;
    assert_refused(st, &err, "a data dir that lost its Raft state");
    assert!(
        err.contains("has run node \"alpha\" before but holds no Raft state")
            && err.contains("cluster.join_addr"),
        "{}",
        tail(&err)
    );
    // Removing the identity file is the documented way to start afresh.
    std::fs::remove_file(alpha.data_dir.join("node.json")).unwrap();
    let _p = start_ready(&c, &alpha).await;
    assert_eq!(get(&c, &alpha, "k").await.0, 404);
}

/// A refused start stops what it began: the listeners it was handed close
/// with it, so nothing keeps serving and a retry may bind the same ports
/// (in-process: a Redis port already in use, then a data dir that lost its
/// Raft state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_releases_its_listeners() {
    use dcache::node::Node;
    use dcache_testkit::cluster::test_config;
    use dcache_testkit::ports::free_listener;

    async fn refused(cfg: dcache::config::Config) -> String {
        let (h, r) = (free_listener().await, free_listener().await);
        let addrs = [h.local_addr().unwrap(), r.local_addr().unwrap()];
        let err = Node::start(cfg, h, r)
            .await
            .err()
            .expect("the start is refused");
        for a in addrs {
            if let Err(e) = tokio::net::TcpListener::bind(a).await {
                panic!("{a} is still held after the refused start ({err}): {e}");
            }
        }
        err.to_string()
    }

    let dir = tempfile::tempdir().unwrap();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = test_config(dir.path(), 0);
    cfg.redis.bind_addr = taken.local_addr().unwrap().to_string();
    let err = refused(cfg).await;
    assert!(err.contains("cannot listen on redis.bind_addr"), "{err}");

    let cfg = test_config(dir.path(), 1);
    let node = Node::start(cfg.clone(), free_listener().await, free_listener().await)
        .await
        .expect("a fresh node starts");
    node.shutdown(true).await.unwrap();
    std::fs::remove_dir_all(cfg.node.data_dir.join("raft-log")).unwrap();
    std::fs::remove_dir_all(cfg.node.data_dir.join("snapshots")).unwrap();
    let err = refused(cfg).await;
    assert!(err.contains("before but holds no Raft state"), "{err}");
}

/// `chattr -R +i` on a path (even root cannot write it), undone on drop.
struct Immutable(std::path::PathBuf);

impl Immutable {
    /// None if the filesystem (or a missing `chattr`) does not allow it.
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("-R")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// Tests run as root, which writes anywhere permissions say it may not, so
/// "read-only" here is: a regular file where the data dir should be
/// (always), and a data dir that is immutable (`chattr +i`: not even root
/// may create files in it), fresh or already holding a node's data (where
/// `chattr -R +i` makes the raft-log dir immutable too). Each start is
/// refused with exit code 1 and an error naming the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_that_cannot_be_written_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // A file where the data dir should be.
    let file = d.join("data-is-a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let spec = with_data_dir(node(d, "ro", ""), &file);
    let (st, err) = spec.start_expect_exit().await;
    assert_refused(st, &err, "a file as data dir");
    let want = format!("cannot create node.data_dir {}", file.display());
    assert!(err.contains(&want), "{want:?} not in:\n{}", tail(&err));

    if !tools::require(
        "a_data_dir_that_cannot_be_written_is_refused_naming_the_path (chattr cases)",
        &["chattr"],
        "apt-get install e2fsprogs",
    ) {
        return;
    }
    // A fresh data dir that is immutable: node.json cannot be created.
    let fresh = d.join("immutable-fresh");
    std::fs::create_dir(&fresh).unwrap();
    let Some(_guard) = Immutable::set(&fresh) else {
        tools::unavailable(
            "a_data_dir_that_cannot_be_written_is_refused_naming_the_path (chattr cases)",
            &format!(
                "chattr +i is not supported on the filesystem of {}",
                d.display()
            ),
            "run the tests on ext4/xfs/btrfs (TMPDIR)",
        );
        return;
    };
    let spec = with_data_dir(node(d, "ro", ""), &fresh);
    let (st, err) = spec.start_expect_exit().await;
    assert_refused(st, &err, "an immutable fresh data dir");
    let want = format!("cannot write {}", fresh.join("node.json").display());
    assert!(err.contains(&want), "{want:?} not in:\n{}", tail(&err));

    // A data dir that already holds this node's data, made immutable with
    // everything in it: the raft log cannot be opened for writing.
    let c = client();
    let used = node(d, "used", "");
    let mut p = start_ready(&c, &used).await;
    p.stop_gracefully(STOP).await;
    let _guard = Immutable::set(&used.data_dir).expect("chattr +i worked above");
    let (st, err) = used.start_expect_exit().await;
    assert_refused(st, &err, "an immutable data dir with data");
    let want = format!(
        "cannot open raft log in {}",
        used.data_dir.join("raft-log").display()
    );
    assert!(err.contains(&want), "{want:?} not in:\n{}", tail(&err));
}

/// A node whose join is refused for good (src/node/join.rs: a conflict,
/// bad input, no such route) stops and exits 1 with the reason; here its id
/// is already a member with other addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_refused_for_good_exits_1_with_the_reason() {
    let cluster = TestCluster::start(1, |_| {}).await;
    let via = cluster.nodes[0].http.to_string();
    let dir = tempfile::tempdir().unwrap();
    // The cluster's own member id "n0", from another process and ports.
    let impostor = node(dir.path(), "n0", &via);
    let (st, err) = impostor.start_expect_exit().await;
    assert_refused(st, &err, "a join refused for good");
    let want = format!(
        "joining through {via} was refused (409 Conflict, {}): ",
        Code::Conflict.as_str()
    );
    assert!(err.contains(&want), "{want:?} not in:\n{}", tail(&err));
    assert!(
        err.contains("member \\\"n0\\\" already exists with addresses"),
        "{}",
        tail(&err)
    );
    // The cluster is unchanged and serves.
    assert_eq!(cluster.voters(0), ["n0"]);
    cluster.put_ok(0, "after", "refusal").await;
    cluster.shutdown_all().await;
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
    let specs = proc::nodes(d, 3, node);
    let mut procs: Vec<Option<Proc>> = proc::start_all(&c, &specs)
        .await
        .into_iter()
        .map(Some)
        .collect();

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

/// `node.worker_threads` sizes the node's runtime; 0 (the default) is one
/// thread per core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_worker_threads_sizes_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let cores = std::thread::available_parallelism().unwrap().get();
    for (setting, want) in [("1", 1), ("3", 3), ("0", cores)] {
        let spec = node(dir.path(), &format!("w{setting}"), "")
            .with_env("DCACHE_NODE_WORKER_THREADS", setting);
        let mut p = start_ready(&c, &spec).await;
        put_ok(&c, &spec, "k", setting, CONVERGE).await;
        let metrics = c
            .get(spec.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = format!("dcache_runtime_worker_threads {want}\n");
        assert!(
            metrics.contains(&line),
            "DCACHE_NODE_WORKER_THREADS={setting}: no {line:?} in /metrics:\n{}",
            tail(&metrics)
        );
        p.stop_gracefully(STOP).await;
    }
}
