//! Tests of `dcache bench` against in-process fake servers: a fake dcache
//! (`/v1/kv/{key}`) and a fake etcd JSON gateway (`/v3/kv/put|range`).

use super::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

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

fn b64_field(v: &serde_json::Value, name: &str) -> Option<String> {
    let bytes = B64.decode(v.get(name)?.as_str()?).ok()?;
    String::from_utf8(bytes).ok()
}

/// etcd's gateway: `{"key","value"}` in base64; 400 on a malformed body.
async fn etcd_put(State(s): State<Arc<Fake>>, body: Bytes) -> Result<&'static str, StatusCode> {
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let key = b64_field(&v, "key").ok_or(StatusCode::BAD_REQUEST)?;
    let value = b64_field(&v, "value").ok_or(StatusCode::BAD_REQUEST)?;
    s.puts.fetch_add(1, Ordering::SeqCst);
    s.map.lock().unwrap().insert(key, Bytes::from(value));
    Ok(r#"{"header":{"revision":"2"}}"#)
}

/// etcd's gateway answers 200 without "kvs" for a missing key.
async fn etcd_range(State(s): State<Arc<Fake>>, body: Bytes) -> Result<String, StatusCode> {
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let key = b64_field(&v, "key").ok_or(StatusCode::BAD_REQUEST)?;
    s.gets.fetch_add(1, Ordering::SeqCst);
    if v.get("serializable") == Some(&serde_json::Value::Bool(true)) {
        s.stale_gets.fetch_add(1, Ordering::SeqCst);
    }
    Ok(match s.map.lock().unwrap().get(&key) {
        Some(val) => format!(
            r#"{{"header":{{}},"kvs":[{{"key":"{}","value":"{}"}}],"count":"1"}}"#,
            B64.encode(&key),
            B64.encode(val)
        ),
        None => r#"{"header":{}}"#.to_string(),
    })
}

/// Starts the fake server; the listener is bound before this returns,
/// so the server accepts connections right away.
async fn fake_server() -> (String, Arc<Fake>) {
    let state = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/kv/{*key}", get(get_kv).put(put_kv))
        .route("/v3/kv/put", post(etcd_put))
        .route("/v3/kv/range", post(etcd_range))
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
        target: Target::Dcache,
        get_ratio: 0.9,
        latency_cdf: None,
        seed: None,
    }
}

/// Runs `dcache bench` with the arguments `make` builds from [`args`]
/// against a fresh fake server: the report, the server's view, the
/// arguments.
async fn on_fake(make: impl FnOnce(BenchArgs) -> BenchArgs) -> (Report, Arc<Fake>, BenchArgs) {
    let (addr, fake) = fake_server().await;
    let a = make(args(&addr));
    let r = run_bounded(&a).await.unwrap();
    (r, fake, a)
}

/// `--preload` PUT each of the `keys` keys once, with the value size of
/// [`args`].
fn assert_preloaded(fake: &Fake, keys: usize) {
    assert_eq!(
        fake.puts.load(Ordering::SeqCst),
        keys as u64,
        "preload PUTs each key once"
    );
    let map = fake.map.lock().unwrap();
    assert_eq!(map.len(), keys);
    assert!(map.values().all(|v| v.len() == 16));
    assert!(map.contains_key(&format!("bench-{}", keys - 1)));
}

/// Runs with a safety net so a bug cannot hang the test suite.
async fn run_bounded(a: &BenchArgs) -> anyhow::Result<Report> {
    tokio::time::timeout(Duration::from_secs(60), run(a))
        .await
        .expect("bench run did not finish within 60 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_run_does_exactly_max_requests() {
    let (r, fake, _) = on_fake(|a| BenchArgs {
        connections: 2,
        max_requests: 200,
        ..a
    })
    .await;
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
    let (r, fake, _) = on_fake(|a| BenchArgs {
        op: Op::Get,
        keys: 50,
        connections: 3,
        max_requests: 300,
        preload: true,
        stale: true,
        ..a
    })
    .await;
    assert_preloaded(&fake, 50);
    assert_eq!(r.requests, 300, "{r}");
    assert_eq!(r.misses, 0, "{r}");
    assert_eq!(r.errors, 0, "{r}");
    assert_eq!(r.op, "get");
    assert_eq!(fake.gets.load(Ordering::SeqCst), 300);
    assert_eq!(fake.stale_gets.load(Ordering::SeqCst), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_without_preload_counts_misses_not_errors() {
    let (r, fake, _) = on_fake(|a| BenchArgs {
        op: Op::Get,
        max_requests: 100,
        ..a
    })
    .await;
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
    let t0 = Instant::now();
    let (r, fake, _) = on_fake(|a| BenchArgs {
        connections: 4,
        duration: 3600.0,
        max_requests: 150,
        ..a
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(r.requests, 150, "{r}");
    assert_eq!(fake.puts.load(Ordering::SeqCst), 150);
    assert!(r.duration_s < 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_bounds_a_large_max_requests() {
    let t0 = Instant::now();
    let (r, _, _) = on_fake(|a| BenchArgs {
        duration: 0.3,
        max_requests: u64::MAX,
        ..a
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(r.requests > 0, "{r}");
    assert!(r.duration_s >= 0.3, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_are_ordered() {
    let (r, _, _) = on_fake(|a| BenchArgs {
        connections: 2,
        max_requests: 500,
        ..a
    })
    .await;
    assert!(r.p50_ms > 0.0, "{r}");
    assert!(r.p50_ms <= r.p90_ms, "{r}");
    assert!(r.p90_ms <= r.p99_ms, "{r}");
    assert!(r.p99_ms <= r.max_ms, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_target_puts_then_reads_serializable() {
    let (r, fake, a) = on_fake(|a| BenchArgs {
        target: Target::Etcd,
        op: Op::Get,
        keys: 40,
        connections: 2,
        max_requests: 200,
        preload: true,
        stale: true,
        ..a
    })
    .await;
    assert_preloaded(&fake, 40);
    assert_eq!(
        (r.requests, r.gets, r.errors, r.misses),
        (200, 200, 0, 0),
        "{r}"
    );
    assert_eq!(r.target, "etcd");
    assert_eq!(fake.stale_gets.load(Ordering::SeqCst), 200);
    // Without preload every range is a miss, not an error.
    let a = BenchArgs {
        key_prefix: "other-".into(),
        preload: false,
        stale: false,
        max_requests: 50,
        ..a
    };
    let r = run_bounded(&a).await.unwrap();
    assert_eq!((r.requests, r.errors, r.misses), (50, 0, 50), "{r}");
    assert_eq!(fake.stale_gets.load(Ordering::SeqCst), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_sends_both_kinds_and_writes_the_cdf() {
    let dir = std::env::temp_dir().join(format!("bench-mix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cdf = dir.join("cdf.csv");
    let (r, fake, _) = on_fake(|a| BenchArgs {
        op: Op::Mix,
        get_ratio: 0.9,
        keys: 20,
        connections: 2,
        max_requests: 1000,
        preload: true,
        latency_cdf: Some(cdf.clone()),
        seed: Some(42),
        ..a
    })
    .await;
    assert_eq!((r.requests, r.errors, r.misses), (1000, 0, 0), "{r}");
    let puts = fake.puts.load(Ordering::SeqCst) - 20;
    assert_eq!(puts, r.requests - r.gets);
    // 1000 draws at p = 0.9: the GET count is within 800..=980 except with
    // probability far below 1e-9.
    assert!((800..=980).contains(&r.gets), "{r}");
    assert_eq!(r.op, "mix");
    let rows = std::fs::read_to_string(&cdf).unwrap().lines().count();
    assert_eq!(rows, 1 + crate::bench::report::CDF_POINTS);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(r.client_cpu_s >= 0.0);
    assert_eq!(r.seed, 42);
    assert!(r.to_string().contains("seed 42"), "{r}");
}

#[test]
fn addresses() {
    assert_eq!(host_port("http://h:1/").unwrap(), "h:1");
    assert_eq!(host_port(" h:2 ").unwrap(), "h:2");
    assert!(host_port("https://h:3").is_err());
    assert!(host_port(" ").is_err());
    assert!(host_port("http://").is_err());
    assert!(host_port("h:4/x").is_err());
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
        ..ok.clone()
    };
    assert!(run(&nan_duration).await.is_err());
    let bad_ratio = BenchArgs {
        op: Op::Mix,
        get_ratio: 1.5,
        ..ok
    };
    assert!(run(&bad_ratio).await.is_err());
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
        "--target",
        "etcd",
    ]);
    assert_eq!(c.bench.addrs, vec!["a:1", "b:2"]);
    assert_eq!(c.bench.connections, 4);
    assert_eq!(c.bench.op, Op::Get);
    assert!(c.bench.stale && c.bench.preload && c.bench.json);
    assert_eq!(c.bench.target, Target::Etcd);
    let m = Cli::parse_from([
        "x",
        "--op",
        "mix",
        "--get-ratio",
        "0.5",
        "--latency-cdf",
        "f.csv",
    ]);
    assert_eq!((m.bench.op, m.bench.get_ratio), (Op::Mix, 0.5));
    assert_eq!(m.bench.latency_cdf, Some(PathBuf::from("f.csv")));
    assert_eq!(Cli::parse_from(["x", "--seed", "7"]).bench.seed, Some(7));
    let d = Cli::parse_from(["x"]);
    assert_eq!(d.bench.addrs, vec!["localhost:11000"]);
    assert_eq!(d.bench.op, Op::Put);
    assert_eq!(d.bench.keys, 10_000);
    assert_eq!(d.bench.max_requests, 1_000_000);
    assert_eq!(d.bench.target, Target::Dcache);
    assert_eq!(d.bench.get_ratio, 0.9);
}
