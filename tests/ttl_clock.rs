//! The replicated clock against a real clock jump: a three-process cluster
//! is stopped, and started again with every node's wall clock an hour
//! ahead (libfaketime preloaded, found through Debian's package). Keys whose
//! deadline passed "during the stop" must be gone for linearizable reads
//! at once and removed from every replica within a tick; keys with a
//! longer TTL keep the rest of it.
//!
//! Only the wall clock moves (`FAKETIME_DONT_FAKE_MONOTONIC`), as in the
//! fault suite's clock-skew fault: Raft's timers keep real time. Without
//! libfaketime the test fails when tools are required (CI) and is skipped
//! loudly elsewhere (`dcache_testkit::tools`).

use std::path::Path;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use dcache::wire::Code;
use dcache_testkit::dcache_bin;
use dcache_testkit::faketime;
use dcache_testkit::http::client;
use dcache_testkit::http::send;
use dcache_testkit::proc;
use dcache_testkit::proc::Proc;
use dcache_testkit::proc::Spec;
use dcache_testkit::proc::get_json;
use dcache_testkit::proc::wait_leader;
use dcache_testkit::proc::wait_ready;
use dcache_testkit::proc::wait_voters;
use dcache_testkit::tools;
use dcache_testkit::wait::wait_ok;

/// A hang bound for cluster waits.
const CONVERGE: Duration = Duration::from_secs(30);
/// How far the restarted nodes' clocks are moved ahead.
const STOPPED_FOR_S: i64 = 3600;
/// `cache.expiry_tick_ms` of the nodes.
const TICK_MS: u64 = 50;

fn node(dir: &Path, id: &str, join: &str) -> Spec {
    Spec::new(dcache_bin!(), dir, id, join).with_envs(&[
        ("DCACHE_RAFT_HEARTBEAT_INTERVAL_MS", "100"),
        ("DCACHE_RAFT_ELECTION_TIMEOUT_MIN_MS", "500"),
        ("DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS", "1000"),
        ("DCACHE_CACHE_EXPIRY_TICK_MS", "50"),
    ])
}

/// `spec` run with its wall clock `secs` ahead (libfaketime preloaded).
fn ahead(spec: &Spec, lib: &Path, secs: i64) -> Spec {
    faketime::env(lib, secs)
        .iter()
        .fold(spec.clone(), |s, (k, v)| s.with_env(k, v))
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The node's wall clock (`/health` `time`, RFC 3339) minus ours, in s.
async fn clock_offset_s(c: &reqwest::Client, spec: &Spec) -> i64 {
    let h = get_json(c, spec, "/health").await.expect("/health");
    let t = h["time"].as_str().expect("/health time");
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("/health time {t:?}: {e}"))
        .timestamp()
        - now_s()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_whose_deadline_passed_during_an_hour_long_stop_are_gone_at_start() {
    let name = "keys_whose_deadline_passed_during_an_hour_long_stop_are_gone_at_start";
    let lib = match faketime::find() {
        Ok(lib) => lib,
        Err(why) => {
            let install = format!("apt-get install {}", faketime::PACKAGE);
            return tools::unavailable(name, &why, &install);
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = client();
    let specs = proc::nodes(d, 3, node);
    let mut procs = proc::start_all(&c, &specs).await;
    wait_voters(&c, &specs, 3, CONVERGE).await;

    // 30-minute keys, 2-hour keys and keys without a TTL, through every node.
    let mut writes = Vec::new();
    for i in 0..5 {
        writes.push((format!("short{i}"), "?ttl=30m"));
    }
    for i in 0..3 {
        writes.push((format!("long{i}"), "?ttl=2h"));
    }
    for i in 0..2 {
        writes.push((format!("plain{i}"), ""));
    }
    for (n, (key, query)) in writes.iter().enumerate() {
        let s = &specs[n % 3];
        let what = format!("PUT {key}{query} via {}", s.id);
        wait_ok(&what, CONVERGE, || async {
            let r = send(c.put(s.url(&format!("/v1/kv/{key}{query}"))).body("v")).await;
            if r.status == 200 {
                Ok(())
            } else {
                Err(r.text())
            }
        })
        .await;
    }

    for p in procs.iter_mut() {
        p.stop_gracefully(CONVERGE).await;
    }
    drop(procs);

    // "An hour later": every node starts with its clock an hour ahead.
    let later: Vec<Spec> = specs
        .iter()
        .map(|s| ahead(s, &lib, STOPPED_FOR_S))
        .collect();
    let mut procs: Vec<Proc> = later.iter().rev().map(|s| s.spawn()).collect();
    procs.reverse();
    for (s, p) in later.iter().zip(procs.iter_mut()) {
        wait_ready(&c, s, p).await;
    }
    for s in &later {
        let off = clock_offset_s(&c, s).await;
        assert!(
            (off - STOPPED_FOR_S).abs() <= 5,
            "{} runs {off} s ahead, not {STOPPED_FOR_S}: faketime did not apply",
            s.id
        );
    }
    wait_leader(&c, &later, &[0, 1, 2], CONVERGE).await;

    // At once, on every node: linearizable reads miss the 30-minute keys
    // and find the others; a 2-hour key has about an hour left.
    for (n, (key, _)) in writes.iter().enumerate() {
        for s in &later {
            let r = send(c.get(s.url(&format!("/v1/kv/{key}")))).await;
            if key.starts_with("short") {
                r.assert_error(Code::KeyNotFound);
                continue;
            }
            assert_eq!(r.status, 200, "{key} via {}: {}", s.id, r.text());
            if key.starts_with("long") {
                let left: u64 = r
                    .header("x-dcache-ttl-ms")
                    .unwrap_or_else(|| panic!("{key} has no TTL header"))
                    .parse()
                    .unwrap();
                // Written at most CONVERGE-bounded moments before the stop.
                assert!(
                    left <= 3_600_000 && left > 3_000_000,
                    "{key} (write {n}) has {left} ms left, not about an hour"
                );
            }
        }
    }

    // And every replica removes them within a tick plus replication.
    let bound = Duration::from_millis(TICK_MS) + Duration::from_secs(5);
    for s in &later {
        let what = format!("{} to hold only the 5 live keys", s.id);
        wait_ok(&what, bound, || async {
            let st = get_json(&c, s, "/v1/status")
                .await
                .ok_or_else(|| "no /v1/status".to_string())?;
            let got = (&st["keys"], &st["ttl_keys"], &st["expired_keys"]);
            if got == (&5.into(), &3.into(), &5.into()) {
                Ok(())
            } else {
                Err(st.to_string())
            }
        })
        .await;
    }
    for p in procs.iter_mut() {
        p.stop_gracefully(CONVERGE).await;
    }
}
