//! Watch on a 3-node cluster: SSE streams (`GET /v1/watch`) on every node
//! under thousands of writes (ordered, no gaps, the same on every node),
//! resuming with `Last-Event-ID` on another node, across a leader change and
//! a node restart, 410 once `since` is compacted out of the history, the
//! watcher bound (503), a slow consumer cut with a final event; put, delete,
//! expire and evict events; blocking queries on a key and on a scan.

use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use dcache::net::HttpClientOptions;
use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::wait_for;
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

/// One SSE event: `id` (the Raft index), `event` name, JSON data.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// A watch stream being read.
struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Sse {
    async fn open(c: &TestCluster, node: usize, query: &str, last_id: Option<u64>) -> Sse {
        let client = dcache_testkit::http::client_with(
            HttpClientOptions::default().timeout(Duration::from_secs(300)),
        );
        let mut rb = client.get(c.url(node, &format!("/v1/watch?{query}")));
        if let Some(id) = last_id {
            rb = rb.header("Last-Event-ID", id.to_string());
        }
        let resp = rb.send().await.expect("watch request");
        assert_eq!(resp.status(), 200, "watch on node {node}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            body: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); `None` at the end of
    /// the stream. Bounded by [`WAIT`].
    async fn next(&mut self) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Ev {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.into();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data = serde_json::from_str(v).unwrap();
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => panic!("no event within {WAIT:?}; buffered: {:?}", self.buf),
                Ok(None) => return None,
                Ok(Some(chunk)) => self
                    .buf
                    .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
            }
        }
    }

    /// `kv` events until `want` keys have been put; returns them all.
    async fn collect_puts(&mut self, want: usize) -> Vec<Ev> {
        let mut out = Vec::new();
        let mut puts = 0;
        while puts < want {
            let ev = self.next().await.expect("stream ended early");
            assert_eq!(ev.event, "kv", "{ev:?}");
            puts += ev.data["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "put")
                .count();
            out.push(ev);
        }
        out
    }
}

/// Ids strictly increasing, each equal to the event's index.
fn assert_ordered(evs: &[Ev]) {
    let ids: Vec<u64> = evs.iter().map(|e| e.id.unwrap()).collect();
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "ids not increasing: {w:?}");
    }
    for e in evs {
        assert_eq!(e.data["index"].as_u64(), e.id);
    }
}

async fn applied(c: &TestCluster, node: usize) -> u64 {
    c.get_json(node, "/v1/status/digest").await["applied_index"]
        .as_u64()
        .unwrap()
}

/// Write `keys` concurrently through every node (8 writers).
async fn write_all(c: &TestCluster, keys: &[String]) {
    let chunks: Vec<&[String]> = keys.chunks(keys.len().div_ceil(8)).collect();
    join_all(chunks.into_iter().enumerate().map(|(w, chunk)| async move {
        for k in chunk {
            let r = c.put(w % 3, k, "v").await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_on_every_node_see_every_write_once_in_the_same_order() {
    const N: usize = 2000;
    let c = TestCluster::start(3, |_| {}).await;
    c.put_ok(0, "other", "x").await;
    let since = applied(&c, 0).await;
    let mut streams = Vec::new();
    for node in 0..3 {
        streams.push(Sse::open(&c, node, &format!("prefix=w/&since={since}"), None).await);
    }
    let keys: Vec<String> = (0..N).map(|i| format!("w/{i:05}")).collect();
    let start = Instant::now();
    write_all(&c, &keys).await;
    c.put_ok(1, "other", "y").await;
    eprintln!("{N} writes through 3 nodes in {:?}", start.elapsed());
    let all = join_all(streams.iter_mut().map(|s| s.collect_puts(N))).await;
    for evs in &all {
        assert_ordered(evs);
        let seen: BTreeSet<String> = evs
            .iter()
            .flat_map(|e| e.data["events"].as_array().unwrap().clone())
            .map(|e| {
                assert!(e["key"].as_str().unwrap().starts_with("w/"), "{e}");
                e["key"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(seen.len(), N);
        assert_eq!(evs, &all[0], "every node streams the same events");
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_to_another_node_resumes_without_gap_or_duplicate() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let since = applied(&c, 0).await;
    // The reference: one uninterrupted stream.
    let mut reference = Sse::open(&c, 2, &format!("prefix=r/&since={since}"), None).await;
    let first: Vec<String> = (0..100).map(|i| format!("r/a{i:03}")).collect();
    write_all(&c, &first).await;
    let mut s = Sse::open(&c, 0, &format!("prefix=r/&since={since}"), None).await;
    let mut got = s.collect_puts(50).await;
    let last = got.last().unwrap().id;
    drop(s);
    // Resume on node 1, then through a leader change.
    let mut s = Sse::open(&c, 1, "prefix=r/", last).await;
    let leader = c.leader().await;
    c.transfer_leader(leader, (leader + 1) % 3).await;
    let second: Vec<String> = (0..100).map(|i| format!("r/b{i:03}")).collect();
    write_all(&c, &second).await;
    let have: usize = got
        .iter()
        .map(|e| e.data["events"].as_array().unwrap().len())
        .sum();
    got.extend(s.collect_puts(200 - have).await);
    drop(s);
    // Node 1 restarts; the watcher comes back to it.
    let last = got.last().unwrap().id;
    c.stop(1, false).await;
    c.restart(1).await;
    c.wait_ready(1).await;
    let third: Vec<String> = (0..50).map(|i| format!("r/c{i:03}")).collect();
    write_all(&c, &third).await;
    let mut s = Sse::open(&c, 1, "prefix=r/", last).await;
    got.extend(s.collect_puts(50).await);
    let want = reference.collect_puts(250).await;
    assert_ordered(&got);
    assert_eq!(got, want, "resumed streams = one uninterrupted stream");
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_since_compacted_out_of_the_history_is_410_with_the_oldest_index() {
    let c = TestCluster::start(3, |cfg| cfg.watch.history_events = 20).await;
    let since = applied(&c, 0).await;
    let keys: Vec<String> = (0..50).map(|i| format!("h/{i}")).collect();
    write_all(&c, &keys).await;
    c.wait_converged().await;
    for node in 0..3 {
        let r = c
            .req(node, "GET", &format!("/v1/watch?since={since}"), "")
            .await;
        r.assert_error(Code::Compacted);
        let oldest: u64 = r.header(header::OLDEST_INDEX).unwrap().parse().unwrap();
        assert!(oldest > since);
        // From the oldest index it serves, the stream holds the last 20.
        let mut s = Sse::open(&c, node, &format!("since={oldest}"), None).await;
        let evs = s.collect_puts(20).await;
        assert_ordered(&evs);
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_are_bounded_per_node() {
    let c = TestCluster::start(3, |cfg| cfg.watch.max_watchers = 2).await;
    let a = Sse::open(&c, 0, "", None).await;
    let _b = Sse::open(&c, 0, "", None).await;
    let r = c.req(0, "GET", "/v1/watch", "").await;
    r.assert_error(Code::TooManyWatchers);
    // Other nodes have their own bound.
    let _c1 = Sse::open(&c, 1, "", None).await;
    drop(a);
    wait_for("a slot to free up", WAIT, || async {
        // A stream that opens is held by the response; drop it at once.
        let r = c.client.get(c.url(0, "/v1/watch")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_consumer_is_cut_with_a_final_event() {
    let c = TestCluster::start(3, |cfg| {
        cfg.watch.slow_consumer_ms = 200;
        cfg.http.max_value_bytes = 1 << 20;
    })
    .await;
    // A client that sends the request and then reads nothing.
    let addr = c
        .url(0, "")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(format!("GET /v1/watch?prefix=s/ HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let value = "x".repeat(256 << 10);
    // Enough to fill the socket buffers and the stream's buffer; bounded.
    for i in 0..400 {
        let r = c.put(i % 3, &format!("s/{i}"), &value).await;
        assert_eq!(r.status, 200);
    }
    // Now read: the buffered events, then the final one.
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before the final event");
            seen.extend_from_slice(&chunk[..n]);
            let tail =
                String::from_utf8_lossy(&seen[seen.len().saturating_sub(4096)..]).into_owned();
            if let Some(i) = tail.find("event: cut\ndata: ") {
                return tail[i..].lines().nth(1).unwrap().to_string();
            }
        }
    })
    .await
    .expect("a final cut event");
    assert!(found.contains("slow consumer"), "{found}");
    let received = String::from_utf8_lossy(&seen).matches("event: kv").count();
    assert!(received < 400, "cut before all events: {received}");
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_deletes_expiries_and_evictions_are_events() {
    let c = TestCluster::start(3, |cfg| {
        cfg.cache.max_memory = dcache::config::ByteSize(4096);
        cfg.cache.eviction_policy = dcache::config::EvictionPolicy::AllkeysLru;
    })
    .await;
    let mut s = Sse::open(&c, 1, "prefix=e/", None).await;
    c.put_ok(0, "e/del", "1").await;
    assert_eq!(c.req(0, "DELETE", "/v1/kv/e/del", "").await.status, 200);
    assert_eq!(
        c.req(0, "PUT", "/v1/kv/e/ttl?ttl=1ms", "x").await.status,
        200
    );
    let mut kinds = Vec::new();
    let mut i = 0;
    // Fill past 4 KiB: something gets evicted.
    while !kinds.iter().any(|(k, _): &(String, String)| k == "evict") {
        if i < 100 {
            c.put_ok(i % 3, &format!("e/fill{i:03}"), &"y".repeat(100))
                .await;
            i += 1;
        }
        let ev = s.next().await.unwrap();
        for e in ev.data["events"].as_array().unwrap() {
            kinds.push((
                e["type"].as_str().unwrap().into(),
                e["key"].as_str().unwrap().into(),
            ));
        }
    }
    fn has(kinds: &[(String, String)], t: &str, k: &str) -> bool {
        kinds.iter().any(|(a, b)| a == t && b == k)
    }
    assert!(
        has(&kinds, "put", "e/del") && has(&kinds, "delete", "e/del"),
        "{kinds:?}"
    );
    assert!(has(&kinds, "put", "e/ttl"), "{kinds:?}");
    // The 1 ms TTL passes and an expiry entry removes the key.
    while !has(&kinds, "expire", "e/ttl") {
        let ev = s.next().await.unwrap();
        for e in ev.data["events"].as_array().unwrap() {
            kinds.push((
                e["type"].as_str().unwrap().into(),
                e["key"].as_str().unwrap().into(),
            ));
        }
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_queries_return_on_a_change_after_index_or_at_the_wait() {
    let c = TestCluster::start(3, |_| {}).await;
    c.put_ok(0, "b/k", "v1").await;
    let r = c.req(1, "GET", "/v1/kv/b/k", "").await;
    let index: u64 = r.header(header::RAFT_INDEX).unwrap().parse().unwrap();
    // Nothing changes: the wait ends with the same value.
    let t = Instant::now();
    let r = c
        .req(
            2,
            "GET",
            &format!("/v1/kv/b/k?index={index}&wait=300ms"),
            "",
        )
        .await;
    assert_eq!((r.status, r.text()), (200, "v1".into()));
    assert!(t.elapsed() >= Duration::from_millis(300));
    // A change of another key does not end it; a change of this key does.
    let blocked = async {
        c.req(2, "GET", &format!("/v1/kv/b/k?index={index}&wait=20s"), "")
            .await
    };
    let writes = async {
        c.put_ok(0, "b/other", "x").await;
        c.put_ok(1, "b/k", "v2").await;
    };
    let (r, ()) = tokio::join!(blocked, writes);
    assert_eq!((r.status, r.text()), (200, "v2".into()));
    assert!(
        r.header(header::RAFT_INDEX)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > index
    );
    // A scan blocks on its range only.
    let scan = c.get_json(0, "/v1/kv?prefix=b/&limit=10").await;
    let index = scan["index"].as_u64().unwrap();
    let blocked = async {
        c.get_json(1, &format!("/v1/kv?prefix=b/&index={index}&wait=20s"))
            .await
    };
    let writes = async {
        c.put_ok(0, "c/elsewhere", "x").await;
        c.put_ok(2, "b/new", "x").await;
    };
    let (page, ()) = tokio::join!(blocked, writes);
    let keys: Vec<&str> = page["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"b/new"), "{page}");
    for bad in [
        "/v1/kv/b/k?index=x",
        "/v1/kv/b/k?index=1&wait=11m",
        "/v1/kv?prefix=b/&index=1&wait=0s",
    ] {
        c.req(0, "GET", bad, "")
            .await
            .assert_error(Code::InvalidInput);
    }
    c.shutdown_all().await;
}
