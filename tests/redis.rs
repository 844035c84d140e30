//! The Redis protocol against a 3-node cluster, with the real clients:
//! `redis-cli` scripted against every node for each command family, a
//! pipeline of 10,000 commands, a pipeline of reads without a log entry,
//! a MULTI/EXEC race under WATCH, INCR from
//! many clients on every node at once, and `redis-benchmark` at `-P 1` and
//! `-P 16` against every node with no errors.
//!
//! redis-cli and redis-benchmark come from Debian's `redis-tools`; a
//! missing tool skips loudly, or fails with `TESTKIT_REQUIRE_TOOLS=1` (CI).

use dcache_testkit::cluster::TestCluster;
use dcache_testkit::redis::Client;
use dcache_testkit::redis::REDIS_PACKAGES;
use dcache_testkit::redis::Value;
use dcache_testkit::redis::encode;
use dcache_testkit::tools;

fn port(c: &TestCluster, i: usize) -> u16 {
    c.node(i).redis_addr.expect("redis listener").port()
}

async fn cli(port: u16, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = dcache_testkit::redis::cli(port, &a);
        assert!(ok, "redis-cli {a:?} failed: {out}");
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cli_every_command_family_on_every_node() {
    if !tools::require(
        "redis_cli_every_command_family_on_every_node",
        &["redis-cli"],
        REDIS_PACKAGES,
    ) {
        return;
    }
    let c = TestCluster::start(3, |_| {}).await;
    for i in 0..3 {
        let p = port(&c, i);
        let k = |s: &str| format!("n{i}:{s}");
        let (s, n, f, t, m1, m2, r) = (k("s"), k("n"), k("f"), k("t"), k("m1"), k("m2"), k("r"));
        let (absent, nope, pattern) = (k("absent"), k("nope"), format!("n{i}:m*"));
        // (command, redis-cli's output). redis-cli prints nil as an empty
        // line and an array one element per line.
        let script: Vec<(Vec<&str>, String)> = vec![
            (vec!["PING"], "PONG".into()),
            (vec!["ECHO", "hi"], "hi".into()),
            // strings
            (vec!["SET", &s, "hello"], "OK".into()),
            (vec!["GET", &s], "hello".into()),
            (vec!["SET", &s, "x", "NX"], "".into()),
            (vec!["SET", &s, "world", "XX", "GET"], "hello".into()),
            (vec!["GETSET", &s, "v2"], "world".into()),
            (vec!["APPEND", &s, "!"], "3".into()),
            (vec!["STRLEN", &s], "3".into()),
            (vec!["GETRANGE", &s, "0", "1"], "v2".into()),
            (vec!["SETRANGE", &s, "1", "XY"], "3".into()),
            (vec!["GET", &s], "vXY".into()),
            (vec!["SETNX", &s, "z"], "0".into()),
            (vec!["GETDEL", &s], "vXY".into()),
            (vec!["GET", &s], "".into()),
            // numbers
            (vec!["INCR", &n], "1".into()),
            (vec!["INCRBY", &n, "41"], "42".into()),
            (vec!["DECR", &n], "41".into()),
            (vec!["DECRBY", &n, "1"], "40".into()),
            (vec!["INCRBYFLOAT", &f, "10.5"], "10.5".into()),
            (vec!["INCRBYFLOAT", &f, "0.1"], "10.6".into()),
            (
                vec!["INCR", &f],
                "ERR value is not an integer or out of range".into(),
            ),
            (vec!["SET", &n, "9223372036854775807"], "OK".into()),
            (
                vec!["INCR", &n],
                "ERR increment or decrement would overflow".into(),
            ),
            // TTLs
            (vec!["SET", &t, "v", "EX", "100"], "OK".into()),
            (vec!["TTL", &t], "100".into()),
            (vec!["PERSIST", &t], "1".into()),
            (vec!["TTL", &t], "-1".into()),
            (vec!["EXPIRE", &t, "50"], "1".into()),
            (vec!["EXPIRE", &t, "10", "GT"], "0".into()),
            (vec!["SETEX", &t, "30", "v"], "OK".into()),
            (vec!["TTL", &t], "30".into()),
            (vec!["GETEX", &t, "PERSIST"], "v".into()),
            (vec!["TTL", &t], "-1".into()),
            (vec!["PEXPIRE", &t, "-1"], "1".into()),
            (vec!["TTL", &t], "-2".into()),
            (vec!["TTL", &absent], "-2".into()),
            // keys
            (vec!["MSET", &m1, "a", &m2, "b"], "OK".into()),
            (vec!["MGET", &m1, &nope, &m2], "a\n\nb".into()),
            (vec!["MSETNX", &m1, "x", &r, "y"], "0".into()),
            (vec!["EXISTS", &m1, &m2, &r], "2".into()),
            (vec!["TYPE", &m1], "string".into()),
            (vec!["TYPE", &r], "none".into()),
            (vec!["KEYS", &pattern], format!("{m1}\n{m2}")),
            (vec!["DEL", &m1, &m2, &r], "2".into()),
            (vec!["UNLINK", &m1], "0".into()),
            // transactions (redis-cli sends each as its own connection:
            // a lone EXEC is an error)
            (vec!["EXEC"], "ERR EXEC without MULTI".into()),
            // server
            (vec!["SELECT", "0"], "OK".into()),
            (vec!["SELECT", "1"], "ERR DB index is out of range".into()),
            (vec!["CLIENT", "SETNAME", "x"], "OK".into()),
            (vec!["CONFIG", "GET", "appendonly"], "appendonly\nno".into()),
            (vec!["WAIT", "1", "0"], "1".into()),
            (
                vec!["NOSUCH", "a"],
                // (redis-cli's output is trimmed: Redis's text ends in a blank)
                "ERR unknown command 'NOSUCH', with args beginning with: 'a'".into(),
            ),
        ];
        for (args, want) in &script {
            let got = cli(p, args).await;
            assert_eq!(&got, want, "node {i}: redis-cli {args:?}");
        }
        let info = cli(p, &["INFO", "replication"]).await;
        let role = if c.node(i).cluster.is_leader() {
            "role:master"
        } else {
            "role:slave"
        };
        assert!(info.contains(role), "node {i}: {info}");
        let dbsize: i64 = cli(p, &["DBSIZE"]).await.parse().unwrap();
        assert!(dbsize >= 2, "node {i}: dbsize {dbsize}");
        let time = cli(p, &["TIME"]).await;
        assert_eq!(time.lines().count(), 2, "{time}");
        let count: usize = cli(p, &["COMMAND", "COUNT"]).await.parse().unwrap();
        assert!(count > 50, "{count}");
    }
    // A MULTI through redis-cli's stdin (one connection).
    let p = port(&c, 1);
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &p.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"MULTI\nSET tx 1\nINCR tx\nGET tx\nEXEC\n")
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.trim_end(), "OK\nQUEUED\nQUEUED\nQUEUED\nOK\n2\n2");
    // Everything written through any node is on every node.
    for i in 0..3 {
        assert_eq!(cli(port(&c, i), &["GET", "tx"]).await, "2");
        assert_eq!(cli(port(&c, i), &["GET", "n0:f"]).await, "10.6");
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_of_ten_thousand_commands_answers_in_order() {
    let c = TestCluster::start(3, |_| {}).await;
    // A follower: every command is forwarded.
    let follower = (0..3).find(|&i| !c.node(i).cluster.is_leader()).unwrap();
    let mut cl = Client::connect(("127.0.0.1", port(&c, follower))).await;
    let mut wire = Vec::new();
    for j in 0..5_000 {
        let v = j.to_string();
        wire.extend(encode(&[b"SET", b"pipe", v.as_bytes()]));
        wire.extend(encode(&[b"GET", b"pipe"]));
    }
    cl.send_raw(&wire).await;
    for j in 0..5_000 {
        assert_eq!(cl.read().await, Value::ok(), "reply {}", 2 * j);
        assert_eq!(
            cl.read().await,
            Value::bulk(&j.to_string()),
            "reply {}",
            2 * j + 1
        );
    }
    // Inline commands (telnet) and RESP3.
    cl.send_raw(b"PING\r\nECHO \"a b\"\r\n").await;
    assert_eq!(cl.read().await, Value::Simple("PONG".into()));
    assert_eq!(cl.read().await, Value::bulk("a b"));
    // RESP3: a null is `_`.
    let hello = cl.cmd(&["HELLO", "3"]).await;
    assert!(
        matches!(&hello, Value::Array(kv) if kv.contains(&Value::Int(3))),
        "{hello}"
    );
    assert_eq!(cl.cmd(&["GET", "absent"]).await, Value::Nil);
    // Garbage: a protocol error, then the connection is closed.
    cl.send_raw(b"*1\r\n+x\r\n").await;
    assert_eq!(
        cl.read().await,
        Value::Error("ERR Protocol error: expected '$', got '+'".into())
    );
    assert!(cl.closed().await);
    c.shutdown_all().await;
}

/// A pipeline of reads shares one read index and adds nothing to
/// the Raft log (only writes are proposed), on the leader and on a
/// follower; each read still sees every write acknowledged before it, and
/// a read after a write in the same pipeline sees that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_of_reads_is_answered_without_a_log_entry() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let mut w = Client::connect(("127.0.0.1", port(&c, leader))).await;
    for j in 0..20 {
        let v = format!("v{j}");
        assert_eq!(w.cmd(&["SET", &format!("r{j}"), &v]).await, Value::ok());
    }
    for node in [leader, follower] {
        let mut cl = Client::connect(("127.0.0.1", port(&c, node))).await;
        let before = c.node(leader).cluster.status().last_log_index;
        let mut wire = Vec::new();
        for j in 0..200 {
            let k = format!("r{}", j % 25);
            wire.extend(encode(&[b"GET", k.as_bytes()]));
        }
        cl.send_raw(&wire).await;
        for j in 0..200 {
            let want = if j % 25 < 20 {
                Value::bulk(&format!("v{}", j % 25))
            } else {
                Value::Nil
            };
            assert_eq!(cl.read().await, want, "node {node}, reply {j}");
        }
        let after = c.node(leader).cluster.status().last_log_index;
        assert_eq!(
            before, after,
            "node {node}: 200 pipelined GETs added log entries"
        );
        // A read behind a write in one pipeline sees it (that batch is one
        // log entry).
        let mut wire = Vec::new();
        wire.extend(encode(&[b"SET", b"r0", b"new"]));
        wire.extend(encode(&[b"GET", b"r0"]));
        wire.extend(encode(&[b"GET", b"r1"]));
        cl.send_raw(&wire).await;
        assert_eq!(cl.read().await, Value::ok());
        assert_eq!(cl.read().await, Value::bulk("new"));
        assert_eq!(cl.read().await, Value::bulk("v1"));
        assert_eq!(w.cmd(&["SET", "r0", "v0"]).await, Value::ok());
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_fails_when_a_watched_key_changed() {
    let c = TestCluster::start(3, |_| {}).await;
    let mut a = Client::connect(("127.0.0.1", port(&c, 1))).await;
    let mut b = Client::connect(("127.0.0.1", port(&c, 2))).await;
    assert_eq!(a.cmd(&["SET", "w", "1"]).await, Value::ok());
    // Race: a watches and reads, b writes, a's EXEC must not run.
    assert_eq!(a.cmd(&["WATCH", "w"]).await, Value::ok());
    assert_eq!(a.cmd(&["GET", "w"]).await, Value::bulk("1"));
    assert_eq!(b.cmd(&["INCR", "w"]).await, Value::Int(2));
    assert_eq!(a.cmd(&["MULTI"]).await, Value::ok());
    assert_eq!(
        a.cmd(&["SET", "w", "10"]).await,
        Value::Simple("QUEUED".into())
    );
    assert_eq!(a.cmd(&["EXEC"]).await, Value::NilArray);
    assert_eq!(b.cmd(&["GET", "w"]).await, Value::bulk("2"));
    // Unchanged: it runs, atomically, with each reply.
    assert_eq!(a.cmd(&["WATCH", "w"]).await, Value::ok());
    assert_eq!(a.cmd(&["MULTI"]).await, Value::ok());
    a.cmd(&["INCRBY", "w", "5"]).await;
    a.cmd(&["GET", "w"]).await;
    a.cmd(&["PING"]).await;
    assert_eq!(
        a.cmd(&["EXEC"]).await,
        Value::Array(vec![
            Value::Int(7),
            Value::bulk("7"),
            Value::Simple("PONG".into())
        ])
    );
    // A queueing error discards the whole transaction.
    assert_eq!(a.cmd(&["MULTI"]).await, Value::ok());
    assert!(matches!(a.cmd(&["GET"]).await, Value::Error(_)));
    a.cmd(&["SET", "w", "0"]).await;
    assert_eq!(
        a.cmd(&["EXEC"]).await,
        Value::Error("EXECABORT Transaction discarded because of previous errors.".into())
    );
    assert_eq!(b.cmd(&["GET", "w"]).await, Value::bulk("7"));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incr_from_many_clients_on_every_node_sums_exactly() {
    let c = TestCluster::start(3, |_| {}).await;
    const CLIENTS_PER_NODE: usize = 4;
    const INCRS: usize = 50;
    let mut tasks = Vec::new();
    for i in 0..3 {
        for _ in 0..CLIENTS_PER_NODE {
            let p = port(&c, i);
            tasks.push(tokio::spawn(async move {
                let mut cl = Client::connect(("127.0.0.1", p)).await;
                for _ in 0..INCRS {
                    let r = cl.cmd(&["INCR", "counter"]).await;
                    assert!(matches!(r, Value::Int(_)), "{r}");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (3 * CLIENTS_PER_NODE * INCRS).to_string();
    for i in 0..3 {
        let mut cl = Client::connect(("127.0.0.1", port(&c, i))).await;
        assert_eq!(cl.cmd(&["GET", "counter"]).await, Value::bulk(&total));
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_benchmark_runs_without_errors_against_every_node() {
    if !tools::require(
        "redis_benchmark_runs_without_errors_against_every_node",
        &["redis-benchmark"],
        REDIS_PACKAGES,
    ) {
        return;
    }
    let c = TestCluster::start(3, |_| {}).await;
    for i in 0..3 {
        for pipeline in ["1", "16"] {
            let p = port(&c, i).to_string();
            let args = [
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-t",
                "set,get,incr,mset",
                "-n",
                "2000",
                "-P",
                pipeline,
                "-c",
                "10",
                "--csv",
            ];
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("redis-benchmark")
                    .args(&args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "node {i} -P {pipeline}: {stderr}");
            let rows: Vec<&str> = stdout.lines().skip(1).collect();
            println!("node {i} -P {pipeline}:\n{stdout}");
            for test in ["SET", "GET", "INCR", "MSET"] {
                assert!(
                    rows.iter().any(|r| r.starts_with(&format!("\"{test}"))),
                    "node {i} -P {pipeline}: no {test} row in {stdout}"
                );
            }
            for text in [&stdout, &stderr] {
                assert!(
                    !text.to_ascii_lowercase().contains("error"),
                    "node {i} -P {pipeline}: {text}"
                );
            }
        }
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_cache_answers_oom_and_no_quorum_answers_tryagain() {
    let c = TestCluster::start(3, |cfg| {
        cfg.cache.max_memory = dcache::config::ByteSize(64 * 1024);
    })
    .await;
    let mut cl = Client::connect(("127.0.0.1", port(&c, 1))).await;
    let big = "v".repeat(8 * 1024);
    let mut oom = None;
    for i in 0..20 {
        match cl.cmd(&["SET", &format!("big{i}"), &big]).await {
            Value::Simple(s) if s == "OK" => {}
            other => {
                oom = Some(other);
                break;
            }
        }
    }
    assert_eq!(
        oom,
        Some(Value::Error(
            "OOM command not allowed when used memory > 'maxmemory'.".into()
        ))
    );
    // Reads and deletes still work.
    assert_eq!(cl.cmd(&["DEL", "big0"]).await, Value::Int(1));
    // Without a quorum (the leader and one follower stopped), the last node
    // answers TRYAGAIN: not applied.
    let mut c = c;
    let leader = c.leader().await;
    let other = (0..3).find(|&i| i != leader).unwrap();
    let last = (0..3).find(|&i| i != leader && i != other).unwrap();
    let mut cl = Client::connect(("127.0.0.1", port(&c, last))).await;
    c.stop(leader, false).await;
    c.stop(other, false).await;
    match cl.cmd(&["SET", "k", "v"]).await {
        Value::Error(e) => assert!(
            e.starts_with("TRYAGAIN ") && e.ends_with("(not applied; retry)"),
            "{e}"
        ),
        other => panic!("expected TRYAGAIN, got {other}"),
    }
    c.shutdown_all().await;
}
