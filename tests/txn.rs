//! `POST /v1/txn` on a 3-node cluster: through any node, atomic (one index
//! for every op), compares deciding the branch, 400 naming the op at fault,
//! value encodings, and a concurrent bank-transfer workload whose total is
//! conserved (README "Transactions").

use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::Resp;
use futures_util::future::join_all;
use rand::Rng;
use serde_json::Value;
use serde_json::json;

async fn txn(c: &TestCluster, node: usize, body: &Value) -> Resp {
    c.req(node, "POST", "/v1/txn", body.to_string()).await
}

async fn txn_ok(c: &TestCluster, node: usize, body: &Value) -> Value {
    let r = txn(c, node, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        r.header(header::RAFT_INDEX).unwrap(),
        j["index"].to_string(),
        "the header and the body name the same index"
    );
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_txn_through_any_node_applies_all_its_ops_at_one_index() {
    let c = TestCluster::start(3, |_| {}).await;
    for node in 0..3 {
        let p = format!("n{node}/");
        let j = txn_ok(
            &c,
            node,
            &json!({
                "compare": [{"key": format!("{p}a"), "target": "absent"}],
                "success": [
                    {"op": "put", "key": format!("{p}a"), "value": "1"},
                    {"op": "put", "key": format!("{p}b"), "value": "2", "ttl": "1h"},
                    {"op": "get", "key": format!("{p}a")},
                    {"op": "range", "prefix": p, "limit": 10},
                ],
                "failure": [{"op": "get", "key": format!("{p}a")}],
            }),
        )
        .await;
        assert_eq!(j["succeeded"], true, "{j}");
        let index = j["index"].as_u64().unwrap();
        let r = &j["results"];
        assert_eq!(r[0]["op"], "put");
        assert_eq!(r[0]["modify_index"], index, "{j}");
        assert_eq!(r[1]["modify_index"], index);
        assert!(r[1]["expires_at"].is_string());
        assert_eq!(r[2]["found"], true);
        assert_eq!(r[2]["value"], "1");
        let keys: Vec<&str> = r[3]["kvs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| kv["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, [format!("{p}a"), format!("{p}b")]);
        assert!(r[3]["kvs"][1]["ttl_ms"].as_u64().unwrap() > 0);
        // Every node sees both keys at once (linearizable reads).
        for reader in 0..3 {
            assert_eq!(c.get(reader, &format!("{p}b")).await, (200, "2".into()));
        }
        // The same txn again: the compare fails, the failure branch runs.
        let j = txn_ok(
            &c,
            (node + 1) % 3,
            &json!({
                "compare": [{"key": format!("{p}a"), "target": "absent"}],
                "success": [{"op": "delete_prefix", "prefix": p}],
                "failure": [{"op": "get", "key": format!("{p}a")}, {"op": "delete_prefix", "prefix": p}],
            }),
        )
        .await;
        assert_eq!(j["succeeded"], false);
        assert_eq!(j["results"][0]["modify_index"], index);
        assert_eq!(j["results"][1]["deleted"], 2);
        assert_eq!(j["results"][1]["more"], false);
        assert_eq!(c.get(node, &format!("{p}a")).await.0, 404);
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compares_on_versions_and_indexes_decide_the_branch() {
    let c = TestCluster::start(3, |_| {}).await;
    c.put_ok(0, "k", "v1").await;
    c.put_ok(0, "k", "v2").await;
    let cases = [
        (
            json!({"key": "k", "target": "version", "op": "=", "value": 2}),
            true,
        ),
        (
            json!({"key": "k", "target": "version", "op": ">", "value": 2}),
            false,
        ),
        (
            json!({"key": "k", "target": "version", "op": "<", "value": 3}),
            true,
        ),
        (
            json!({"key": "k", "target": "value", "op": "!=", "value": "v1"}),
            true,
        ),
        (json!({"key": "k", "target": "value", "value": "v2"}), true),
        (json!({"key": "k", "target": "exists"}), true),
        (
            json!({"key": "nope", "target": "modify_index", "op": "=", "value": 0}),
            true,
        ),
        (
            json!({"key": "nope", "target": "value", "op": "!=", "value": "x"}),
            false,
        ),
        (
            json!({"key": "k", "target": "create_index", "op": "<", "value": 1}),
            false,
        ),
    ];
    for (i, (cmp, want)) in cases.into_iter().enumerate() {
        let j = txn_ok(
            &c,
            i % 3,
            &json!({ "compare": [cmp], "success": [], "failure": [] }),
        )
        .await;
        assert_eq!(j["succeeded"], want, "case {i}: {cmp}");
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_txn_is_refused_naming_the_op_and_nothing_is_applied() {
    let c = TestCluster::start(3, |cfg| cfg.http.max_value_bytes = 64).await;
    let many: Vec<Value> = (0..129)
        .map(|i| json!({"op": "get", "key": format!("k{i}")}))
        .collect();
    let cases = [
        (
            json!({"success": [{"op": "put", "key": "a", "value": "1"}, {"op": "frobnicate"}]}),
            "success[1]",
        ),
        (
            json!({"success": [{"op": "put", "value": "1"}]}),
            "success[0]",
        ),
        (
            json!({"failure": [{"op": "put", "key": "a", "value": "1", "cas": 3}]}),
            "failure[0]",
        ),
        (
            json!({"success": [{"op": "put", "key": "", "value": "1"}]}),
            "success[0]",
        ),
        (
            json!({"success": [{"op": "put", "key": "a", "value": "1", "ttl": "0s"}]}),
            "success[0]",
        ),
        (
            json!({"success": [{"op": "range", "prefix": "a", "limit": 10001}]}),
            "success[0]",
        ),
        (
            json!({"success": [{"op": "range", "prefix": "a", "start": "b"}]}),
            "success[0]",
        ),
        (
            json!({"compare": [{"key": "a", "target": "colour"}]}),
            "compare[0]",
        ),
        (
            json!({"compare": [{"key": "a", "target": "version", "value": "x"}]}),
            "compare[0]",
        ),
        (
            json!({"compare": [{"key": "a", "target": "exists"}, {"key": "a", "target": "value", "op": "~", "value": "x"}]}),
            "compare[1]",
        ),
        (json!({"success": many}), "txn"),
        (
            json!({"success": [{"op": "put", "key": "a", "value": "x".repeat(65)}]}),
            "success[0]",
        ),
        (
            json!({"success": [{"op": "put", "key": "a", "value": "x".repeat(40)}, {"op": "put", "key": "b", "value": "x".repeat(40)}]}),
            "txn",
        ),
        (json!({"sucess": []}), "txn"),
    ];
    for (i, (body, op)) in cases.iter().enumerate() {
        let r = txn(&c, i % 3, body).await;
        r.assert_error(Code::InvalidInput);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.starts_with(&format!("{op}: ")), "case {i}: {msg}");
    }
    let r = c.req(1, "POST", "/v1/txn", "{not json").await;
    r.assert_error(Code::InvalidInput);
    let r = c
        .req(
            1,
            "POST",
            "/v1/txn?encoding=base64",
            json!({"success": [{"op": "put", "key": "a", "value": "%%"}]}).to_string(),
        )
        .await;
    r.assert_error(Code::InvalidInput);
    assert_eq!(c.get(0, "a").await.0, 404, "nothing was applied");
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_values_round_trip_in_base64_and_are_never_altered_in_utf8() {
    let c = TestCluster::start(3, |_| {}).await;
    let j = txn_ok(
        &c,
        1,
        &json!({"success": [{"op": "put", "key": "bin", "value": "/wA="}, {"op": "get", "key": "bin"}]}),
    )
    .await;
    // Without ?encoding=base64 the value is the text "/wA=".
    assert_eq!(j["results"][1]["value"], "/wA=");
    let r = c
        .req(
            2,
            "POST",
            "/v1/txn?encoding=base64",
            json!({"success": [{"op": "put", "key": "bin", "value": "/wA="}]}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let raw = c.req(0, "GET", "/v1/kv/bin", "").await;
    assert_eq!(raw.body, [0xff, 0]);
    let j = txn_ok(&c, 0, &json!({"success": [{"op": "get", "key": "bin"}]})).await;
    assert_eq!(j["results"][0]["value_base64"], "/wA=");
    assert!(j["results"][0].get("value").is_none());
    c.shutdown_all().await;
}

/// Bank transfers: concurrent clients on every node move money between
/// accounts with compare-on-value txns (read, then transfer only if both
/// balances are unchanged). A lost update or a half-applied transfer would
/// change the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_through_every_node_conserve_the_total() {
    const ACCOUNTS: usize = 5;
    const WORKERS: usize = 6;
    const TRANSFERS: usize = 15;
    let c = TestCluster::start(3, |_| {}).await;
    let init: Vec<Value> = (0..ACCOUNTS)
        .map(|i| json!({"op": "put", "key": format!("acct/{i}"), "value": "100"}))
        .collect();
    txn_ok(&c, 0, &json!({ "success": init })).await;
    let worker = |w: usize| {
        let c = &c;
        async move {
            let mut rng = dcache_testkit::seed::rng(&format!("bank-{w}"));
            let mut done = 0;
            let mut conflicts = 0;
            while done < TRANSFERS {
                let node = rng.gen_range(0..3);
                let from = rng.gen_range(0..ACCOUNTS);
                let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                let (fk, tk) = (format!("acct/{from}"), format!("acct/{to}"));
                let read = txn_ok(
                    c,
                    node,
                    &json!({"success": [{"op": "get", "key": fk}, {"op": "get", "key": tk}]}),
                )
                .await;
                let bal = |i: usize| -> i64 {
                    read["results"][i]["value"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                let (fb, tb) = (bal(0), bal(1));
                let amount = rng.gen_range(0..=fb.min(30));
                let j = txn_ok(
                    c,
                    (node + 1) % 3,
                    &json!({
                        "compare": [
                            {"key": fk, "target": "value", "value": fb.to_string()},
                            {"key": tk, "target": "value", "value": tb.to_string()},
                        ],
                        "success": [
                            {"op": "put", "key": fk, "value": (fb - amount).to_string()},
                            {"op": "put", "key": tk, "value": (tb + amount).to_string()},
                        ],
                    }),
                )
                .await;
                if j["succeeded"] == true {
                    done += 1;
                } else {
                    conflicts += 1;
                    assert!(conflicts < 500, "worker {w} starved");
                }
            }
            conflicts
        }
    };
    let conflicts: usize = join_all((0..WORKERS).map(worker)).await.into_iter().sum();
    eprintln!(
        "bank: {} transfers, {conflicts} retried on a changed balance",
        WORKERS * TRANSFERS
    );
    for node in 0..3 {
        let j = txn_ok(
            &c,
            node,
            &json!({"success": [{"op": "range", "prefix": "acct/"}]}),
        )
        .await;
        let kvs = j["results"][0]["kvs"].as_array().unwrap();
        assert_eq!(kvs.len(), ACCOUNTS);
        let total: i64 = kvs
            .iter()
            .map(|kv| kv["value"].as_str().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, 100 * ACCOUNTS as i64, "node {node}: {j}");
    }
    c.wait_converged().await;
    c.shutdown_all().await;
}
