//! Limits that hold under abuse: idle connections make room for new
//! clients, a per-IP connection cap, per-IP request rate limits, and a
//! flood of junk and slow connections on both ports while a normal client
//! keeps being served with bounded memory.

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use dcache::net::HttpClientOptions;
use dcache::wire::Code;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::send;
use dcache_testkit::raw;
use dcache_testkit::wait_for;
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::net::TcpStream;

/// The tests here run one at a time: the flood test measures the
/// process's memory, which the others would disturb.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// "Promptly", generously (a loaded CI box must not fail it): a new client
/// is answered within this. A locked-out client would wait for as long as
/// the test holds its idle connections, far past it.
const PROMPT: Duration = Duration::from_secs(5);

/// A client that opens a fresh connection per request (so no pooled idle
/// connection of its own is evicted under it).
fn fresh_client() -> reqwest::Client {
    dcache_testkit::http::client_with(HttpClientOptions {
        pool_max_idle_per_host: Some(0),
        ..HttpClientOptions::default()
    })
}

async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{local}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Whether the server closed `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// cap + 50 idle connections (half never sent a byte, half kept alive
/// after a request): a new client's `/livez` still answers promptly, and
/// the oldest idle connections were closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_do_not_lock_out_new_clients() {
    let _serial = SERIAL.lock().await;
    const CAP: usize = 64;
    let c = TestCluster::start(1, |cfg| cfg.http.max_connections = CAP).await;
    let http = c.nodes[0].http;
    let mut idle = Vec::new();
    for i in 0..CAP + 50 {
        let mut s = TcpStream::connect(http).await.unwrap();
        if i % 2 == 1 {
            // A kept-alive connection: one request answered, then idle.
            s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            let t = Instant::now();
            while !raw::complete(&got) && t.elapsed() < WAIT {
                match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            assert_eq!(raw::status(&got), Some(200), "keep-alive request {i}");
        }
        idle.push(s);
    }
    let client = fresh_client();
    let t = Instant::now();
    let r = tokio::time::timeout(PROMPT, send(client.get(c.url(0, "/livez"))))
        .await
        .expect("/livez answered promptly with cap + 50 idle connections");
    assert_eq!(r.status, 200);
    eprintln!(
        "/livez with {} idle connections: {:?}",
        CAP + 50,
        t.elapsed()
    );
    // The first connection (idle the longest) was closed to make room.
    assert!(
        closed_within(&mut idle[0], PROMPT).await,
        "the oldest idle connection is still open"
    );
    drop(idle);
    c.shutdown_all().await;
}

/// `http.max_connections_per_ip`: one more connection from an IP at its
/// cap closes that IP's longest-idle connection; other IPs are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_ip_connection_cap() {
    let _serial = SERIAL.lock().await;
    const PER_IP: usize = 4;
    let c = TestCluster::start(1, |cfg| cfg.http.max_connections_per_ip = PER_IP).await;
    let http = c.nodes[0].http;
    let mut other = connect_from("127.0.0.3", http).await;
    let mut conns = Vec::new();
    for _ in 0..PER_IP {
        conns.push(connect_from("127.0.0.2", http).await);
    }
    // The server has registered them once it answers a request after them.
    assert_eq!(c.req(0, "GET", "/livez", "").await.status, 200);
    let mut extra = connect_from("127.0.0.2", http).await;
    assert!(
        closed_within(&mut conns[0], PROMPT).await,
        "the oldest connection of the IP at its cap is still open"
    );
    extra
        .write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PROMPT, extra.read_to_end(&mut got)).await;
    assert_eq!(
        raw::status(&got),
        Some(200),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The other IP's connection was not touched.
    assert!(!closed_within(&mut other, Duration::from_millis(200)).await);
    c.shutdown_all().await;
}

/// `http.rate_limit_per_ip`: past the burst, 429 `rate_limited` with
/// `Retry-After`, on native and seed routes; later, served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_per_ip() {
    let _serial = SERIAL.lock().await;
    const BURST: u32 = 5;
    let c = TestCluster::start(1, |cfg| {
        cfg.http.rate_limit_per_ip = 2;
        cfg.http.rate_limit_burst = BURST;
    })
    .await;
    // The cluster start used part of the bucket: drain it and count.
    let mut limited = None;
    for i in 0..BURST + 1 {
        let r = c.req(0, "GET", "/v1/kv/k", "").await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, 404, "{}", r.text());
    }
    let (_, r) = limited.expect("a 429 within burst + 1 requests");
    r.assert_error(Code::RateLimited);
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&secs), "Retry-After {secs}");
    let r = c.req(0, "GET", "/store/k", "").await;
    r.assert_seed_error(429, Code::RateLimited);
    // Tokens come back at 2/s.
    wait_for("served again", WAIT, || async {
        (c.req(0, "GET", "/v1/kv/k", "").await.status == 404).then_some(())
    })
    .await;
    c.shutdown_all().await;
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A flood on the three ports (HTTP, Raft, Redis): connections sending
/// junk, connections dripping partial headers or commands, connections
/// declaring huge bodies or bulk strings; a normal HTTP client and a Redis
/// client keep getting answers, and the process's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flood_of_junk_and_slow_connections() {
    let _serial = SERIAL.lock().await;
    const FLOODERS: usize = 120;
    const REQUESTS: usize = 40;
    let mut rng = dcache_testkit::seed::rng("flood_of_junk_and_slow_connections");
    let c = TestCluster::start_tuned(
        1,
        dcache::node::Tuning {
            header_timeout: Duration::from_secs(3),
        },
        |cfg| cfg.http.max_connections = 64,
    )
    .await;
    let (http, raft) = (c.nodes[0].http, c.nodes[0].raft);
    let redis = c.node(0).redis_addr.expect("redis listener");
    let rss_before = rss_bytes();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..FLOODERS {
        let to = [http, raft, redis][i % 3];
        let is_redis = i % 3 == 2;
        let kind = (i / 3) % 3;
        let seed: u64 = rng.r#gen();
        let stop = stop.clone();
        flood.spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            // Bounded: each flooder reconnects at most 200 times.
            for _ in 0..200 {
                if stop.is_cancelled() {
                    return;
                }
                let Ok(mut s) = TcpStream::connect(to).await else {
                    continue;
                };
                let junk: Vec<u8> = match (kind, is_redis) {
                    (0, _) => (0..64 * 1024).map(|_| rng.r#gen::<u8>()).collect(),
                    (1, false) => b"POST /raft/append HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n"
                        .to_vec(),
                    (1, true) => b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\n".to_vec(),
                    (_, false) => b"GET /livez HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
                    (_, true) => b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$64\r\naaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
                };
                let every = if kind == 2 {
                    Duration::from_millis(50)
                } else {
                    Duration::ZERO
                };
                for chunk in junk.chunks(if kind == 2 { 1 } else { 8192 }) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = s.write_all(chunk) => if r.is_err() { break },
                    }
                    if !every.is_zero() {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(every) => {}
                        }
                    }
                }
                let mut buf = [0u8; 4096];
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)) => {}
                }
            }
        });
    }
    let client = fresh_client();
    let mut ok = 0;
    let mut worst = Duration::ZERO;
    let mut pongs = 0;
    for i in 0..REQUESTS {
        if i % 4 == 3 {
            // A Redis client on a fresh connection is served too.
            if tokio::time::timeout(Duration::from_secs(5), redis_ping(redis))
                .await
                .is_ok_and(|ok| ok)
            {
                pongs += 1;
            }
        }
        let t = Instant::now();
        let req = if i % 2 == 0 {
            client.put(c.url(0, &format!("/v1/kv/f{i}"))).body("v")
        } else {
            client.get(c.url(0, &format!("/v1/kv/f{}", i - 1)))
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), req.send()).await
            && r.status().is_success()
        {
            ok += 1;
            worst = worst.max(t.elapsed());
        }
    }
    stop.cancel();
    while flood.join_next().await.is_some() {}
    let rss_after = rss_bytes();
    let grew = rss_after.saturating_sub(rss_before);
    eprintln!(
        "flood: {ok}/{REQUESTS} normal requests served, slowest {worst:?}; RSS {} -> {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    assert_eq!(ok, REQUESTS, "normal requests failed under the flood");
    assert_eq!(pongs, REQUESTS / 4, "Redis PINGs failed under the flood");
    assert!(worst < Duration::from_secs(5), "slowest {worst:?}");
    assert!(grew < 100 << 20, "RSS grew by {} MiB", grew >> 20);
    assert!(c.node(0).cluster.is_leader());
    c.shutdown_all().await;
}

/// Peer bodies are bounded by what a legitimate message can be: a vote by
/// a small fixed bound, an append by the config (here: small values), and
/// an over-bound declared length is refused without being read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_bodies_are_bounded_by_the_config() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(1, |cfg| {
        cfg.http.max_key_bytes = 64;
        cfg.http.max_value_bytes = 1024;
    })
    .await;
    let raft = c.nodes[0].raft;
    // 300 entries × (6 × (64 + 1024) + 4096 + 1024 × 80 + 1024) + 64 KiB ≈ 29 MiB.
    for (path, len) in [
        ("/raft/vote", 1u64 << 20),
        ("/raft/pre-vote", 1 << 20),
        ("/raft/append", 64 << 20),
        // Forwarded writes share the append bound.
        ("/raft/writes", 64 << 20),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/msgpack\r\n\
             x-dcache-raft-to: n0\r\ncontent-length: {len}\r\n\r\n"
        );
        let resp = raw::request(raft, head.as_bytes(), 0, Duration::from_secs(5)).await;
        assert_eq!(
            raw::status(&resp),
            Some(413),
            "{path} with {len} bytes declared: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    assert!(c.node(0).cluster.is_leader());
    c.shutdown_all().await;
}

/// A peer body that stops arriving (an append, or a snapshot between
/// chunks) is answered 408 once the body timeout (the header timeout)
/// passes; the node goes on leading.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_peer_body_gets_408() {
    let _serial = SERIAL.lock().await;
    let c = one_node_with_a_1s_header_timeout().await;
    let raft = c.nodes[0].raft;
    for (path, partial) in [
        ("/raft/append", &b"\x85"[..]),
        ("/raft/vote", &b"\x83"[..]),
        ("/raft/writes", &b"\x81"[..]),
        // A snapshot's first bytes (the vote's length), then nothing.
        ("/raft/snapshot", &b"\x10\x00\x00\x00"[..]),
    ] {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/msgpack\r\n\
             x-dcache-raft-to: n0\r\ncontent-length: 1000\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(partial);
        let t = Instant::now();
        let resp = raw::request(raft, &req, 0, WAIT).await;
        assert_eq!(
            raw::status(&resp),
            Some(408),
            "{path} stalled: {}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            t.elapsed() >= Duration::from_secs(1),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    assert!(c.node(0).cluster.is_leader());
    c.shutdown_all().await;
}

/// `PING` on a fresh connection to a Redis port: whether `+PONG` came back.
/// (testkit's fallible reply parser: a refused or cut connection is false).
async fn redis_ping(addr: std::net::SocketAddr) -> bool {
    use dcache_testkit::redis::Bounds;
    use dcache_testkit::redis::Value;
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(&dcache_testkit::redis::encode(&[b"PING"]))
        .await
        .is_err()
    {
        return false;
    }
    let mut rd = tokio::io::BufReader::new(s);
    matches!(
        dcache_testkit::redis::read_value(&mut rd, Bounds::TESTS).await,
        Ok(Value::Simple(ref pong)) if pong == "PONG"
    )
}

/// A Redis connection that started a command must finish it within the
/// command timeout (the header timeout): a trickle that never completes one
/// is closed, while a connection idle between commands stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_command_timeout_closes_a_stalled_command_not_an_idle_connection() {
    let _serial = SERIAL.lock().await;
    let c = one_node_with_a_1s_header_timeout().await;
    let redis = c.node(0).redis_addr.expect("redis listener");
    let mut idle = TcpStream::connect(redis).await.unwrap();
    let mut stalled = TcpStream::connect(redis).await.unwrap();
    // Half a command, then a byte at a time that never completes it: each
    // byte arriving must not restart the timeout.
    stalled
        .write_all(b"*2\r\n$4\r\nECHO\r\n$100\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let closed = async {
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                r = stalled.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => panic!("an answer to half a command"),
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stalled.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(WAIT, closed)
        .await
        .expect("the stalled command's connection is closed");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "closed before the command timeout: {:?}",
        t.elapsed()
    );
    // The idle connection (no byte sent, longer than the timeout) still
    // answers.
    idle.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut got = [0u8; 7];
    tokio::time::timeout(WAIT, idle.read_exact(&mut got))
        .await
        .expect("idle connection answers")
        .unwrap();
    assert_eq!(&got, b"+PONG\r\n");
    c.shutdown_all().await;
}

/// One node whose header timeout (and so peer body and Redis command
/// timeouts) is 1 s.
async fn one_node_with_a_1s_header_timeout() -> TestCluster {
    TestCluster::start_tuned(
        1,
        dcache::node::Tuning {
            header_timeout: Duration::from_secs(1),
        },
        |_| {},
    )
    .await
}
