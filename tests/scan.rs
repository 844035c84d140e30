//! Range scans (`GET /v1/kv?prefix=`) and prefix deletes on a 3-node
//! cluster: order, paging with cursors through any node, the cursor
//! promises (README "Scans": each page its own linearizable read; keys
//! inserted behind the cursor are missed, none is returned twice, deleted
//! ones vanish), key ranges, keys_only, count, stale reads, bounds, and the
//! atomic, bounded prefix delete.

use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::cluster::TestCluster;
use serde_json::Value;
use serde_json::json;

async fn scan(c: &TestCluster, node: usize, query: &str) -> Value {
    let r = c.req(node, "GET", &format!("/v1/kv?{query}"), "").await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    let j = r.json();
    assert_eq!(
        r.header(header::RAFT_INDEX).unwrap(),
        j["index"].to_string()
    );
    j
}

fn keys(page: &Value) -> Vec<String> {
    page["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap().to_string())
        .collect()
}

/// Write `n` keys `{prefix}{i:04}` = `v{i}` in transactions of 100 puts.
async fn fill(c: &TestCluster, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"op": "put", "key": format!("{prefix}{i:04}"), "value": format!("v{i}")}))
            .collect();
        let r = c
            .req(0, "POST", "/v1/txn", json!({ "success": ops }).to_string())
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_through_any_node_return_every_key_once_in_order() {
    let c = TestCluster::start(3, |_| {}).await;
    fill(&c, "p/", 250).await;
    fill(&c, "q/", 5).await;
    c.put_ok(0, "p", "not under p/").await;
    let mut seen = Vec::new();
    let mut query = "prefix=p/&limit=100".to_string();
    let mut pages = 0;
    loop {
        let page = scan(&c, pages % 3, &query).await;
        pages += 1;
        seen.extend(keys(&page));
        if page["more"] == false {
            assert!(page["cursor"].is_null());
            break;
        }
        let cursor = page["cursor"].as_str().unwrap();
        query = format!("prefix=p/&limit=100&cursor={cursor}");
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..250).map(|i| format!("p/{i:04}")).collect();
    assert_eq!(seen, want);
    // Default page size is 100; values and metadata are there.
    let page = scan(&c, 1, "prefix=p/").await;
    assert_eq!(page["kvs"].as_array().unwrap().len(), 100);
    assert_eq!(page["kvs"][7]["value"], "v7");
    assert!(page["kvs"][7]["modify_index"].as_u64().unwrap() > 0);
    assert_eq!(page["kvs"][7]["version"], 1);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_promises_hold_across_concurrent_changes() {
    let c = TestCluster::start(3, |_| {}).await;
    fill(&c, "k/", 30).await;
    let first = scan(&c, 0, "prefix=k/&limit=10").await;
    assert_eq!(keys(&first).last().unwrap(), "k/0009");
    // Between pages: a key inserted behind the cursor, one ahead of it, one
    // ahead deleted, one ahead changed.
    c.put_ok(1, "k/0003x", "behind").await;
    c.put_ok(2, "k/0015x", "ahead").await;
    let r = c.req(0, "DELETE", "/v1/kv/k/0012", "").await;
    assert_eq!(r.status, 200);
    c.put_ok(1, "k/0011", "changed").await;
    let mut seen = keys(&first);
    let mut cursor = first["cursor"].as_str().unwrap().to_string();
    let mut changed = None;
    loop {
        let page = scan(&c, 2, &format!("prefix=k/&limit=10&cursor={cursor}")).await;
        for kv in page["kvs"].as_array().unwrap() {
            if kv["key"] == "k/0011" {
                changed = Some(kv["value"].clone());
            }
        }
        seen.extend(keys(&page));
        if page["more"] == false {
            break;
        }
        cursor = page["cursor"].as_str().unwrap().to_string();
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in order, none twice");
    assert!(
        !seen.contains(&"k/0003x".to_string()),
        "inserted behind the cursor: missed"
    );
    assert!(
        seen.contains(&"k/0015x".to_string()),
        "inserted ahead: seen"
    );
    assert!(
        !seen.contains(&"k/0012".to_string()),
        "deleted before its page: gone"
    );
    assert_eq!(
        changed,
        Some(json!("changed")),
        "a page shows values as of its read"
    );
    assert_eq!(seen.len(), 30);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_keys_only_counts_stale_reads_and_bad_parameters() {
    let c = TestCluster::start(3, |_| {}).await;
    fill(&c, "r/", 20).await;
    // An already-expired key is never listed.
    let r = c
        .req(0, "PUT", "/v1/kv/r/0005x?expire_at=1000", "gone")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = scan(&c, 1, "start=r/0005&end=r/0008").await;
    assert_eq!(keys(&page), ["r/0005", "r/0006", "r/0007"]);
    let page = scan(&c, 2, "start=r/0018").await;
    assert_eq!(keys(&page), ["r/0018", "r/0019"]);
    let page = scan(&c, 0, "prefix=r/&keys_only=true&limit=2").await;
    assert!(page["kvs"][0].get("value").is_none());
    assert_eq!(page["more"], true);
    let counted = scan(&c, 1, "prefix=r/&count=true").await;
    assert_eq!(counted["count"], 20);
    assert!(counted.get("kvs").is_none());
    c.wait_converged().await;
    let stale = scan(&c, 2, "prefix=r/&consistency=stale&limit=10000").await;
    assert_eq!(keys(&stale).len(), 20);
    let bin = c.req(0, "PUT", "/v1/kv/r/zbin", vec![0xffu8, 0]).await;
    assert_eq!(bin.status, 200);
    let page = scan(&c, 0, "prefix=r/z").await;
    assert_eq!(page["kvs"][0]["value_base64"], "/wA=");
    let page = scan(&c, 0, "prefix=r/z&encoding=base64").await;
    assert_eq!(page["kvs"][0]["value"], "/wA=");
    for bad in [
        "",
        "prefix=a&start=b",
        "prefix=a&end=b",
        "prefix=a&limit=0",
        "prefix=a&limit=10001",
        "prefix=a&limit=x",
        "prefix=a&cursor=!!",
        "prefix=a&consistency=eventual",
        "prefix=a&encoding=hex",
    ] {
        let r = c.req(1, "GET", &format!("/v1/kv?{bad}"), "").await;
        r.assert_error(Code::InvalidInput);
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_is_bounded_in_bytes_but_always_makes_progress() {
    let c = TestCluster::start(3, |cfg| cfg.http.max_value_bytes = 2 << 20).await;
    let big = "x".repeat(1 << 20);
    for i in 0..6 {
        c.put_ok(i % 3, &format!("big/{i}"), &big).await;
    }
    let page = scan(&c, 1, "prefix=big/&limit=100").await;
    let n = page["kvs"].as_array().unwrap().len();
    assert!((1..6).contains(&n), "{n} values of 1 MiB in one page");
    assert_eq!(page["more"], true);
    let total: usize = page["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["value"].as_str().unwrap().len())
        .sum();
    assert!(total <= 4 << 20, "{total} bytes");
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefix_delete_is_one_entry_bounded_at_ten_thousand_keys() {
    let c = TestCluster::start(3, |_| {}).await;
    fill(&c, "d/", 10_005).await;
    c.put_ok(0, "d", "kept").await;
    c.put_ok(0, "e/1", "kept").await;
    let before = scan(&c, 0, "prefix=d/&count=true").await;
    assert_eq!(before["count"], 10_005);
    let r = c.req(1, "DELETE", "/v1/kv?prefix=d/", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["deleted"].clone(), j["more"].clone()),
        (json!(10_000), json!(true))
    );
    let index = j["index"].as_u64().unwrap();
    let r = c.req(2, "DELETE", "/v1/kv?prefix=d/", "").await;
    let j = r.json();
    assert_eq!(
        (j["deleted"].clone(), j["more"].clone()),
        (json!(5), json!(false))
    );
    assert_eq!(j["index"].as_u64().unwrap(), index + 1, "one entry each");
    assert_eq!(scan(&c, 0, "prefix=d/&count=true").await["count"], 0);
    assert_eq!(c.get(1, "d").await, (200, "kept".into()));
    assert_eq!(c.get(1, "e/1").await, (200, "kept".into()));
    for bad in ["/v1/kv", "/v1/kv?prefix=", "/v1/kv?start=a"] {
        c.req(0, "DELETE", bad, "")
            .await
            .assert_error(Code::InvalidInput);
    }
    c.wait_converged().await;
    c.shutdown_all().await;
}
