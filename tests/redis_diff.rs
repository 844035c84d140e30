//! Differential test: one seeded random command sequence (strings, the INCR
//! family, APPEND/GETRANGE/SETRANGE, MSET/MSETNX/MGET, DEL/EXISTS/TYPE, SET
//! with NX/XX/GET/EX, EXPIRE/TTL with long TTLs, PERSIST, MULTI/EXEC) over
//! 20 keys is sent to a real `redis-server` and to a one-node dcache; every
//! reply must be identical. The commands avoid README's documented
//! differences (RANDOMKEY, SCAN order, SELECT n, float results that are not
//! exact in binary, PTTL's millisecond drift).
//!
//! The seed is printed (`DCACHE_TEST_SEED` repeats a run); a mismatch
//! names the command's index, the command and both replies.

use std::time::Duration;

use dcache_testkit::cluster::TestCluster;
use dcache_testkit::ports::free_ports;
use dcache_testkit::proc::Proc;
use dcache_testkit::redis::Client;
use dcache_testkit::redis::REDIS_PACKAGES;
use dcache_testkit::redis::Value;
use dcache_testkit::seed::rng;
use dcache_testkit::tools;
use dcache_testkit::wait_ok;
use rand::Rng;
use rand::rngs::StdRng;

const OPS: usize = 3000;
const KEYS: usize = 20;

fn key(r: &mut StdRng) -> String {
    format!("k{}", r.gen_range(0..KEYS))
}

/// Keys below this index may hold integers near `i64::MAX` (INCR
/// overflow); INCRBYFLOAT runs only on the others (an `f64` cannot hold
/// such a sum exactly, Redis's `long double` can: README lists it).
const BIG_KEYS: usize = 5;

fn value_for(r: &mut StdRng, key: &str) -> String {
    let big = key[1..].parse::<usize>().is_ok_and(|i| i < BIG_KEYS);
    match r.gen_range(0..6) {
        0 => r.gen_range(-100..100).to_string(),
        1 => ["1.5", "-0.25", "3.5", "0"][r.gen_range(0..4)].to_string(),
        2 => String::new(),
        3 if big => "9223372036854775806".to_string(),
        _ => ["abc", "hello world", "x", "007"][r.gen_range(0..4)].to_string(),
    }
}

fn value(r: &mut StdRng) -> String {
    value_for(r, "k")
}

fn ttl(r: &mut StdRng) -> String {
    r.gen_range(1000..100_000).to_string()
}

/// One random command (not MULTI).
fn command(r: &mut StdRng) -> Vec<String> {
    let k = key(r);
    let s = |x: &str| x.to_string();
    match r.gen_range(0..30) {
        0 | 1 => vec![s("GET"), k],
        2 | 3 => {
            let v = value_for(r, &k);
            let mut c = vec![s("SET"), k, v];
            match r.gen_range(0..3) {
                0 => c.push(s("NX")),
                1 => c.push(s("XX")),
                _ => {}
            }
            if r.gen_bool(0.3) {
                c.push(s("GET"));
            }
            if r.gen_bool(0.3) {
                c.extend([s("EX"), ttl(r)]);
            } else if r.gen_bool(0.1) {
                c.push(s("KEEPTTL"));
            }
            c
        }
        4 => {
            let v = value_for(r, &k);
            vec![s("GETSET"), k, v]
        }
        5 => vec![s("GETDEL"), k],
        6 => {
            let v = value_for(r, &k);
            vec![s("SETNX"), k, v]
        }
        7 => vec![s("APPEND"), k, value(r)],
        8 => vec![s("STRLEN"), k],
        9 => vec![
            s("GETRANGE"),
            k,
            r.gen_range(-10..10).to_string(),
            r.gen_range(-10..10).to_string(),
        ],
        10 => vec![s("SETRANGE"), k, r.gen_range(0..24).to_string(), value(r)],
        11 => vec![s("INCR"), k],
        12 => vec![s("DECR"), k],
        13 => vec![s("INCRBY"), k, r.gen_range(-1000..1000).to_string()],
        14 => vec![s("DECRBY"), k, r.gen_range(-1000..1000).to_string()],
        15 => vec![
            s("INCRBYFLOAT"),
            format!("k{}", r.gen_range(BIG_KEYS..KEYS)),
            ["1.5", "-0.25", "2", "0.5", "-3"][r.gen_range(0..5)].to_string(),
        ],
        16 => {
            let mut c = vec![s(if r.gen_bool(0.5) { "MSET" } else { "MSETNX" })];
            for _ in 0..r.gen_range(1..4) {
                let k = key(r);
                let v = value_for(r, &k);
                c.extend([k, v]);
            }
            c
        }
        17 => {
            let mut c = vec![s("MGET")];
            c.extend((0..r.gen_range(1..5)).map(|_| key(r)));
            c
        }
        18 => {
            let mut c = vec![s(if r.gen_bool(0.5) { "DEL" } else { "UNLINK" })];
            c.extend((0..r.gen_range(1..3)).map(|_| key(r)));
            c
        }
        19 => {
            let mut c = vec![s("EXISTS")];
            c.extend((0..r.gen_range(1..4)).map(|_| key(r)));
            c
        }
        20 => vec![s("TYPE"), k],
        21 | 22 => {
            let mut c = vec![s("EXPIRE"), k, ttl(r)];
            if r.gen_bool(0.3) {
                c.push(["NX", "XX", "GT", "LT"][r.gen_range(0..4)].to_string());
            }
            c
        }
        23 => vec![s("TTL"), k],
        24 => vec![s("PERSIST"), k],
        25 => {
            let v = value_for(r, &k);
            vec![s("SETEX"), k, ttl(r), v]
        }
        26 => vec![s("GETEX"), k, s("PERSIST")],
        27 => vec![s("EXPIRE"), k, s("-1")],
        28 => vec![s("ECHO"), value(r)],
        _ => vec![s("DBSIZE")],
    }
}

/// A command or a MULTI/EXEC block (sent command by command; the replies
/// compared are every reply, QUEUED ones included).
fn step(r: &mut StdRng) -> Vec<Vec<String>> {
    if r.gen_bool(0.05) {
        let mut block = vec![vec!["MULTI".to_string()]];
        for _ in 0..r.gen_range(1..5) {
            block.push(command(r));
        }
        block.push(vec!["EXEC".to_string()]);
        block
    } else {
        vec![command(r)]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dcache_answers_exactly_as_redis_server() {
    if !tools::require(
        "dcache_answers_exactly_as_redis_server",
        &["redis-server"],
        REDIS_PACKAGES,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let mut cmd = std::process::Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.path().display().to_string(),
    ])
    .stdout(std::process::Stdio::null());
    let mut redis = Proc::spawn(cmd, &dir.path().join("redis.log"));
    let mut want = wait_ok(
        "redis-server to answer",
        Duration::from_secs(20),
        || async {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => Ok(Client::connect(("127.0.0.1", port)).await),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    assert_eq!(want.cmd(&["PING"]).await, Value::Simple("PONG".into()));

    let c = TestCluster::start(1, |_| {}).await;
    let mut got = Client::connect(c.node(0).redis_addr.unwrap()).await;

    let mut r = rng("redis_diff");
    let mut n = 0;
    while n < OPS {
        for cmd in step(&mut r) {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let (a, b) = (want.cmd(&args).await, got.cmd(&args).await);
            assert_eq!(
                a, b,
                "command {n}: {cmd:?}\n  redis-server: {a}\n  dcache:       {b}"
            );
            n += 1;
        }
    }
    // The final states agree too.
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert_eq!(want.cmd(&mget).await, got.cmd(&mget).await);
    println!("{n} commands, identical replies");
    redis.sigkill();
    c.shutdown_all().await;
}
