//! The client HTTP API of one in-process node: exact status codes and bodies
//! of the seed routes, the native `/v1` routes (keys, limits, CAS, headers),
//! health and metrics, and robustness against hostile or broken clients on
//! both listeners. Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use common::TestCluster;
use dcache::wire::Code;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MAX_KEY: usize = 16;
const MAX_VALUE: usize = 64;

async fn start() -> TestCluster {
    TestCluster::start(1, |cfg| {
        cfg.http.max_key_bytes = MAX_KEY;
        cfg.http.max_value_bytes = MAX_VALUE;
    })
    .await
}

/// A response read fully: status, headers (lower-case names), body.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body read").to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

impl TestCluster0 for TestCluster {
    async fn req(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        send(self.client.request(m, self.url(0, path)).body(body)).await
    }
}

/// Requests against node 0.
trait TestCluster0 {
    async fn req(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> Resp;
}

/// Assert an error body is JSON with a string `error` (and, for v1 routes,
/// a string `code`), and return it.
fn json_error(r: &Resp, v1: bool) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "error body must be JSON: {} {:?}",
        r.status,
        r.text()
    );
    let j = r.json();
    assert!(j["error"].is_string(), "no error message: {j}");
    if v1 {
        assert!(j["code"].is_string(), "no code: {j}");
    }
    j
}

/// Send raw bytes and read whatever comes back until EOF or `timeout`.
/// Returns the bytes read (possibly empty: the peer may just close). Write
/// errors are ignored: a server may close early. The write side is left
/// open (hyper drops a connection whose client half-closes mid-request).
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    out
}

/// Send `head` followed by `body_len` bytes of body from a separate task
/// while reading the response concurrently, the way a careful client
/// does, so an early answer (e.g. 413) is seen even if the server stops
/// reading. Returns the response bytes read until the response is complete
/// (by Content-Length), EOF, an error, or 10 s.
async fn raw_upload(addr: SocketAddr, head: &str, body_len: usize) -> Vec<u8> {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let head = head.to_string();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let n = chunk.len().min(body_len - sent);
            if wr.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            sent += n;
        }
    });
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if raw_complete(&out) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    writer.abort();
    out
}

/// Whether `resp` holds a whole response with a Content-Length body.
fn raw_complete(resp: &[u8]) -> bool {
    let Some(at) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&resp[..at]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    len.is_some_and(|len| resp.len() >= at + 4 + len)
}

/// The status code of a raw HTTP/1.1 response, if it starts with one.
fn raw_status(resp: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(resp.get(..12)?).ok()?;
    s.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// Body of a raw HTTP/1.1 response (after the blank line).
fn raw_body(resp: &[u8]) -> &[u8] {
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    &resp[at + 4..]
}

/// The node answers a normal client promptly, and `/readyz` reports ready
/// (polled briefly: see `readyz_stays_200_on_a_healthy_leader_under_writes`
/// for why a single probe right after a write is not used here).
async fn assert_serving(c: &TestCluster) {
    let start = Instant::now();
    let r = c.req("GET", "/livez", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "livez took {took:?}");
    common::wait_for("readyz 200", Duration::from_secs(3), || async {
        let r = c.req("GET", "/readyz", "").await;
        (r.status == 200).then_some(())
    })
    .await;
}

// --- seed routes --------------------------------------------------------

// Exact seed bodies and bad-input answers: tests/golden/seed (seed_golden.rs).

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_and_native_routes_share_keys() {
    let c = start().await;
    let r = c.req("PUT", "/v1/kv/cross", "from-v1").await;
    assert_eq!(r.status, 200);
    let r = c.req("GET", "/store/cross", "").await;
    assert_eq!(r.text(), "{\"key\":\"cross\",\"value\":\"from-v1\"}\n");
    let r = c
        .req("POST", "/store", r#"{"key":"ow","value":"two"}"#)
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("GET", "/v1/kv/ow", "").await;
    assert_eq!((r.status, r.text()), (200, "two".to_string()));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_limits_wrong_methods_and_unknown_routes() {
    let c = start().await;

    // Oversized value and key on the seed route: 413 JSON naming the limit.
    let big = "x".repeat(MAX_VALUE + 1);
    let r = c
        .req(
            "POST",
            "/store",
            format!(r#"{{"key":"k","value":"{big}"}}"#),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        r.text(),
        format!(
            "{{\"error\":\"value is {} bytes, over the limit of {MAX_VALUE} bytes\"}}\n",
            MAX_VALUE + 1
        )
    );
    let long = "k".repeat(MAX_KEY + 1);
    let r = c
        .req(
            "POST",
            "/store",
            format!(r#"{{"key":"{long}","value":"v"}}"#),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    let j = json_error(&r, false);
    assert!(
        j["error"].as_str().unwrap().contains(&MAX_KEY.to_string()),
        "{j}"
    );
    // Exactly at the limits is fine.
    let at = "y".repeat(MAX_VALUE);
    let key = "k".repeat(MAX_KEY);
    let r = c
        .req(
            "POST",
            "/store",
            format!(r#"{{"key":"{key}","value":"{at}"}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.req("GET", &format!("/store/{long}"), "").await;
    assert_eq!(r.status, 413);
    json_error(&r, false);

    // Wrong method: 405 JSON with an Allow header.
    for (method, path, allowed) in [
        ("PUT", "/store", "POST"),
        ("GET", "/store", "POST"),
        ("POST", "/store/k", "GET"),
        ("PATCH", "/v1/kv/k", "PUT"),
        ("GET", "/join", "POST"),
        ("POST", "/health", "GET"),
    ] {
        let r = c.req(method, path, "").await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
        json_error(&r, true);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(allow.contains(allowed), "{method} {path}: Allow: {allow}");
    }

    // An unusual method on a known route is a 405 too.
    let r = c.req("PATCH", "/store", "").await;
    assert_eq!(r.status, 405, "{}", r.text());

    // Unknown routes: 404 JSON.
    for path in ["/nope", "/v1", "/v1/kvx/a", "/v2/kv/a", "/store/"] {
        let r = c.req("GET", path, "").await;
        assert!(
            r.status == 404 || (path == "/store/" && r.status == 400),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        let j = json_error(&r, path != "/store/");
        if path != "/store/" {
            assert_eq!(j["code"], Code::NoRoute.as_str());
            assert_eq!(j["error"], format!("no route for GET {path}"));
        }
    }
    c.shutdown_all().await;
}

// --- native routes ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_binary_values_round_trip_with_index_headers() {
    let c = start().await;
    let value: Vec<u8> = vec![0x00, 0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28, 0x00];
    let r = c.req("PUT", "/v1/kv/bin", value.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["key"], "bin");
    let modify = j["modify_index"].as_u64().expect("modify_index");
    assert_eq!(j["create_index"].as_u64(), Some(modify));
    assert_eq!(j["version"].as_u64(), Some(1));
    assert_eq!(
        r.header("x-dcache-index"),
        Some(modify.to_string().as_str())
    );
    assert!(r.header("x-dcache-raft-index").is_some());
    assert_eq!(r.header("x-dcache-served-by"), Some("n0"));

    for q in ["", "?consistency=linearizable", "?consistency=stale"] {
        let r = c.req("GET", &format!("/v1/kv/bin{q}"), "").await;
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(r.body, value, "{q}");
        assert_eq!(
            r.header("x-dcache-index"),
            Some(modify.to_string().as_str())
        );
        let raft: u64 = r.header("x-dcache-raft-index").unwrap().parse().unwrap();
        assert!(raft >= modify, "raft index {raft} < modify index {modify}");
        assert_eq!(r.header("x-dcache-served-by"), Some("n0"));
    }
    // The seed route refuses to put non-UTF-8 into a JSON string.
    let r = c.req("GET", "/store/bin", "").await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.header("x-dcache-error"), Some(Code::NotUtf8.as_str()));
    json_error(&r, false);

    // An empty value is a value.
    let r = c.req("PUT", "/v1/kv/empty", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.req("GET", "/v1/kv/empty", "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Overwrite bumps version and modify index, keeps create index.
    let r = c.req("PUT", "/v1/kv/bin", "second").await;
    let j2 = r.json();
    assert_eq!(j2["version"].as_u64(), Some(2));
    assert_eq!(j2["create_index"].as_u64(), Some(modify));
    assert!(j2["modify_index"].as_u64().unwrap() > modify);

    // Missing key: 404 JSON with a code.
    let r = c.req("GET", "/v1/kv/missing", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        serde_json::json!({"code": "key_not_found", "error": "key not found"})
    );

    // Delete reports whether the key existed.
    let r = c.req("DELETE", "/v1/kv/bin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"key": "bin", "deleted": true}));
    let r = c.req("DELETE", "/v1/kv/bin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"key": "bin", "deleted": false})
    );
    let r = c.req("GET", "/v1/kv/bin", "").await;
    assert_eq!(r.status, 404);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_keys_are_decoded_strictly_once() {
    let c = start().await;

    // A raw `/` and `%2F` name the same key.
    let r = c.req("PUT", "/v1/kv/a/b", "slash").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["key"], "a/b");
    let r = c.req("GET", "/v1/kv/a%2Fb", "").await;
    assert_eq!((r.status, r.text()), (200, "slash".to_string()));
    let r = c.req("GET", "/v1/kv/a%2fb", "").await;
    assert_eq!((r.status, r.text()), (200, "slash".to_string()));
    let r = c.req("GET", "/store/a%2Fb", "").await;
    assert_eq!(r.text(), "{\"key\":\"a/b\",\"value\":\"slash\"}\n");

    // UTF-8 key.
    let r = c.req("PUT", "/v1/kv/caf%C3%A9", "coffee").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["key"], "café");
    let r = c.req("GET", "/v1/kv/caf%c3%a9", "").await;
    assert_eq!((r.status, r.text()), (200, "coffee".to_string()));

    // Decoded once: `%2541` is the key "%41", not "A".
    let r = c.req("PUT", "/v1/kv/%2541", "pct").await;
    assert_eq!(r.json()["key"], "%41");
    let r = c.req("GET", "/v1/kv/A", "").await;
    assert_eq!(r.status, 404);
    // `+` is literal in a path.
    let r = c.req("PUT", "/v1/kv/a+b", "plus").await;
    assert_eq!(r.json()["key"], "a+b");
    let r = c.req("GET", "/v1/kv/a%20b", "").await;
    assert_eq!(r.status, 404);

    // Malformed escapes and bad UTF-8: 400 JSON with a code, on every method.
    for path in [
        "/v1/kv/%zz",
        "/v1/kv/a%zzb",
        "/v1/kv/%C3",
        "/v1/kv/%FF",
        "/v1/kv/x%4",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let r = c.req(method, path, "v").await;
            assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
            let j = json_error(&r, true);
            assert_eq!(j["code"], "invalid_input", "{method} {path}: {j}");
        }
    }
    let r = c.req("GET", "/v1/kv/a%zzb", "").await;
    assert!(r.json()["error"].as_str().unwrap().contains("%zz"));
    // Same strictness on the seed routes, seed-shaped body.
    let r = c.req("GET", "/store/%zz", "").await;
    assert_eq!(r.status, 400);
    let j = json_error(&r, false);
    assert!(j.get("code").is_none(), "seed body has no code: {j}");

    // Empty key: a JSON 4xx, never 200 or 5xx.
    for method in ["GET", "PUT", "DELETE"] {
        let r = c.req(method, "/v1/kv/", "v").await;
        assert!(
            (400..500).contains(&r.status) && r.status != 405,
            "{method} /v1/kv/: {} {}",
            r.status,
            r.text()
        );
        json_error(&r, true);
    }

    // Key length: exactly at the limit is fine, one byte over is 413.
    let ok = "k".repeat(MAX_KEY);
    let r = c.req("PUT", &format!("/v1/kv/{ok}"), "v").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let over = "k".repeat(MAX_KEY + 1);
    for method in ["GET", "PUT", "DELETE"] {
        let r = c.req(method, &format!("/v1/kv/{over}"), "v").await;
        assert_eq!(r.status, 413, "{method}: {}", r.text());
        let j = json_error(&r, true);
        assert_eq!(j["code"], "too_large");
        assert_eq!(
            j["error"],
            format!(
                "key is {} bytes, over the limit of {MAX_KEY} bytes",
                MAX_KEY + 1
            )
        );
    }
    // The limit counts decoded bytes: 8 × "é" is 16 bytes (fine), 9 is 18.
    let r = c
        .req("PUT", &format!("/v1/kv/{}", "%C3%A9".repeat(8)), "v")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .req("PUT", &format!("/v1/kv/{}", "%C3%A9".repeat(9)), "v")
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_value_limit_and_huge_bodies() {
    let c = start().await;
    let r = c.req("PUT", "/v1/kv/v", vec![b'x'; MAX_VALUE]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.req("PUT", "/v1/kv/v", vec![b'x'; MAX_VALUE + 1]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let j = json_error(&r, true);
    assert_eq!(j["code"], "too_large");
    let msg = j["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("limit of {MAX_VALUE} bytes")),
        "{msg}"
    );
    // The rejected write changed nothing.
    let r = c.req("GET", "/v1/kv/v", "").await;
    assert_eq!(r.body.len(), MAX_VALUE);

    // 10 MiB: refused with a JSON 413 without reading it all (a client that
    // reads while it sends sees the answer), on both route families.
    let huge = 10 * 1024 * 1024;
    for (head, v1) in [
        (
            format!("PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: {huge}\r\n\r\n"),
            true,
        ),
        (
            format!(
                "POST /store HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {huge}\r\n\r\n"
            ),
            false,
        ),
    ] {
        let start = Instant::now();
        let resp = raw_upload(c.nodes[0].http, &head, huge).await;
        assert_eq!(
            raw_status(&resp),
            Some(413),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
        let j: Value = serde_json::from_slice(raw_body(&resp)).expect("JSON 413 body");
        assert!(j["error"].as_str().unwrap().contains("limit"), "{j}");
        assert_eq!(j.get("code").is_some(), v1, "{j}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    // Chunked, with no Content-Length: same answer.
    let resp = raw_upload(
        c.nodes[0].http,
        "PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
        0x10000,
    )
    .await;
    assert_eq!(
        raw_status(&resp),
        Some(413),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );

    let r = c.req("GET", "/v1/kv/x", "").await;
    assert_eq!(r.status, 404);
    let r = c.req("PUT", "/v1/kv/after", "ok").await;
    assert_eq!(r.status, 200);
    assert_serving(&c).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_compare_and_set() {
    let c = start().await;
    // cas=0: create only if absent.
    let r = c.req("PUT", "/v1/kv/c?cas=0", "v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json()["modify_index"].as_u64().unwrap();

    let r = c.req("PUT", "/v1/kv/c?cas=0", "v2").await;
    assert_eq!(r.status, 412, "{}", r.text());
    let j = json_error(&r, true);
    assert_eq!(j["code"], "cas_mismatch");
    assert_eq!(j["current_index"].as_u64(), Some(first));
    assert_eq!(r.header("x-dcache-index"), Some(first.to_string().as_str()));

    // Stale index fails too; current index succeeds.
    let r = c
        .req("PUT", &format!("/v1/kv/c?cas={}", first + 1000), "v2")
        .await;
    assert_eq!(r.status, 412);
    let r = c.req("PUT", &format!("/v1/kv/c?cas={first}"), "v2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = r.json()["modify_index"].as_u64().unwrap();
    assert!(second > first);
    let r = c.req("GET", "/v1/kv/c", "").await;
    assert_eq!(r.text(), "v2");
    // The old index no longer matches.
    let r = c.req("PUT", &format!("/v1/kv/c?cas={first}"), "v3").await;
    assert_eq!(r.status, 412);
    assert_eq!(r.json()["current_index"].as_u64(), Some(second));

    // CAS on an absent key with a non-zero index: current_index 0.
    let r = c.req("PUT", "/v1/kv/absent?cas=5", "x").await;
    assert_eq!(r.status, 412);
    assert_eq!(r.json()["current_index"].as_u64(), Some(0));
    let r = c.req("GET", "/v1/kv/absent", "").await;
    assert_eq!(r.status, 404);

    // Delete with the wrong index fails and keeps the key; right index deletes.
    let r = c.req("DELETE", &format!("/v1/kv/c?cas={first}"), "").await;
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["current_index"].as_u64(), Some(second));
    let r = c.req("GET", "/v1/kv/c", "").await;
    assert_eq!((r.status, r.text()), (200, "v2".to_string()));
    let r = c.req("DELETE", &format!("/v1/kv/c?cas={second}"), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);
    let r = c.req("GET", "/v1/kv/c", "").await;
    assert_eq!(r.status, 404);
    // Once deleted, cas=0 creates again.
    let r = c.req("PUT", "/v1/kv/c?cas=0", "again").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Bad query values: 400 JSON, nothing written.
    for (method, path) in [
        ("PUT", "/v1/kv/q?cas=abc"),
        ("PUT", "/v1/kv/q?cas=-1"),
        ("PUT", "/v1/kv/q?cas="),
        ("DELETE", "/v1/kv/q?cas=1.5"),
        ("GET", "/v1/kv/q?consistency=weird"),
        ("GET", "/v1/kv/q?consistency=%zz"),
        ("GET", "/store/q?consistency=weird"),
    ] {
        let r = c.req(method, path, "v").await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        json_error(&r, path.starts_with("/v1/"));
    }
    let r = c.req("GET", "/v1/kv/q", "").await;
    assert_eq!(r.status, 404);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_readiness_cluster_and_metrics() {
    let c = start().await;
    let r = c.req("GET", "/health", "").await;
    assert_eq!(r.status, 200);
    let h = r.json();
    // The seed's fields...
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["is_leader"], true, "{h}");
    let time = h["time"].as_str().expect("time");
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    // ...and the new ones.
    assert_eq!(h["node_id"], "n0");
    assert_eq!(h["leader_id"], "n0");
    assert_eq!(h["leader_addr"], c.nodes[0].http.to_string());
    assert_eq!(h["raft_state"], "Leader", "{h}");
    assert!(h["term"].as_u64().unwrap() >= 1, "{h}");
    assert!(h["applied_index"].is_u64(), "{h}");

    let r = c.req("GET", "/readyz", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ready"], true);
    let r = c.req("GET", "/livez", "").await;
    assert_eq!(r.status, 200);

    let r = c.req("GET", "/v1/cluster", "").await;
    assert_eq!(r.status, 200);
    let st = r.json();
    assert_eq!(st["node_id"], "n0");
    let members = st["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{st}");
    assert_eq!(members[0]["role"], "voter");
    assert_eq!(members[0]["http_addr"], c.nodes[0].http.to_string());

    c.req("PUT", "/v1/kv/m", "1").await;
    let r = c.req("GET", "/v1/status/digest", "").await;
    assert_eq!(r.status, 200);
    assert!(r.json().is_object());

    let r = c.req("GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for needle in [
        "dcache_raft_term",
        "dcache_http_requests_total",
        "dcache_raft_is_leader",
        "dcache_raft_applied_index",
        "dcache_cache_keys",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ordinary_client_sees_the_413_for_a_huge_body() {
    // RFC 9112 §9.6: a server that stops reading a request must close in
    // stages (half-close, keep reading for a while) or the client's TCP
    // stack may get a reset and never see the response. An ordinary client
    // (reqwest) that writes the whole body before reading must get the 413.
    let c = start().await;
    let huge = vec![b'h'; 10 * 1024 * 1024];
    let mut failures = Vec::new();
    for i in 0..20 {
        let (method, path) = if i % 2 == 0 {
            (reqwest::Method::PUT, "/v1/kv/x")
        } else {
            (reqwest::Method::POST, "/store")
        };
        let sent = c
            .client
            .request(method, c.url(0, path))
            .body(huge.clone())
            .send()
            .await;
        match sent {
            Ok(r) => assert_eq!(r.status(), 413, "{path}"),
            Err(e) => failures.push(format!("{path}: {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 20 huge uploads got a transport error instead of the 413: {}",
        failures.len(),
        failures[0]
    );
    assert_serving(&c).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_stays_200_on_a_healthy_leader_under_writes() {
    // A healthy single-node leader must not report "not ready" just because
    // a write was acknowledged a moment ago: load balancers would take it
    // out of rotation under any write load.
    let c = start().await;
    let mut not_ready = Vec::new();
    for i in 0..50 {
        let r = c.req("PUT", &format!("/v1/kv/r{i}"), "v").await;
        assert_eq!(r.status, 200);
        let r = c.req("GET", "/readyz", "").await;
        if r.status != 200 {
            not_ready.push(r.text());
        }
    }
    assert!(
        not_ready.is_empty(),
        "/readyz answered 503 right after {} of 50 acknowledged writes, e.g. {}",
        not_ready.len(),
        not_ready[0]
    );
    c.shutdown_all().await;
}

// --- robustness ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_truncated_and_oversized_requests_do_not_hurt_the_node() {
    let c = start().await;
    let http = c.nodes[0].http;
    let raft = c.nodes[0].raft;
    let t = Duration::from_secs(10);

    let mut garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.extend_from_slice(b"\r\n\r\n");
    for addr in [http, raft] {
        // Binary noise, a broken request line, and a bogus HTTP version.
        for bytes in [
            &garbage[..],
            b"\x00\x01\x02\x03\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n", // 505 is the right answer here
            b"GET /readyz HTTP/1.1\r\nHost\r\n\r\n",
        ] {
            let resp = raw_exchange(addr, bytes, t).await;
            // The server answers 4xx or just closes; it never hangs (bounded
            // by `t`) or answers 2xx/5xx to noise.
            if let Some(s) = raw_status(&resp) {
                assert!((400..500).contains(&s) || s == 505, "{addr}: status {s}");
            }
        }
    }
    assert_serving(&c).await;

    // A request whose body never fully arrives, then the client goes away.
    {
        let mut s = TcpStream::connect(http).await.unwrap();
        s.write_all(b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        drop(s);
    }
    // And one that stalls with the connection open: answered (400 or 408)
    // within the request timeout (5 s in tests) or closed; never a write.
    let start = Instant::now();
    let resp = raw_exchange(
        http,
        b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
        Duration::from_secs(15),
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    if let Some(s) = raw_status(&resp) {
        assert!(s == 400 || s == 408, "stalled body: status {s}");
        let j: Value = serde_json::from_slice(raw_body(&resp)).expect("JSON body");
        assert!(j["code"].is_string(), "{j}");
    }
    let r = c.req("GET", "/v1/kv/a", "").await;
    assert_eq!(
        r.status,
        404,
        "a truncated PUT wrote something: {}",
        r.text()
    );

    // A 1 MiB header.
    let mut req = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let resp = raw_exchange(http, &req, t).await;
    if let Some(s) = raw_status(&resp) {
        assert!(s == 431 || s == 400, "1 MiB header: status {s}");
    }

    // A well-formed request over the raw socket still works, and its error
    // bodies are JSON there too.
    let resp = raw_exchange(
        http,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert_eq!(raw_status(&resp), Some(404));
    let j: Value = serde_json::from_slice(raw_body(&resp)).unwrap();
    assert_eq!(j["code"], Code::NoRoute.as_str());

    // Garbage RPC bodies on the Raft listener: 400, Raft untouched.
    let client = &c.client;
    for path in [
        "/raft/append",
        "/raft/vote",
        "/raft/pre-vote",
        "/raft/snapshot",
    ] {
        for body in [&b"garbage"[..], b"", b"\x93\x01\x02", &garbage[..]] {
            let r = send(
                client
                    .post(format!("http://{raft}{path}"))
                    .header("content-type", "application/msgpack")
                    .body(body.to_vec()),
            )
            .await;
            assert_eq!(
                r.status,
                400,
                "{path}: {:?}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    let before = c.node(0).cluster.status().term;
    assert_serving(&c).await;
    let r = c.req("PUT", "/v1/kv/still", "works").await;
    assert_eq!(r.status, 200);
    assert!(c.node(0).cluster.is_leader());
    assert_eq!(
        c.node(0).cluster.status().term,
        before,
        "garbage RPC changed the term"
    );
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_clients_do_not_block_others() {
    let c = start().await;
    let http = c.nodes[0].http;
    let raft = c.nodes[0].raft;
    let deadline = Duration::from_secs(3);
    // A few slow clients on each listener, each sending one header byte
    // every 200 ms, for 3 s at most.
    let mut slow = Vec::new();
    for addr in [http, http, http, raft, raft] {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req =
                b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let start = Instant::now();
            for b in req.iter() {
                if start.elapsed() >= deadline || s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Meanwhile, normal clients are served promptly.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < deadline {
        assert_serving(&c).await;
        let r = c.req("PUT", &format!("/v1/kv/s{n}"), "v").await;
        assert_eq!(r.status, 200);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in slow {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("slow client finished")
            .unwrap();
    }
    assert_serving(&c).await;
    let r = c.req("GET", "/v1/kv/s0", "").await;
    assert_eq!(r.status, 200);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_opened_and_dropped_do_not_leak() {
    let c = start().await;
    let http = c.nodes[0].http;
    // Open and drop connections, some idle, some mid-request.
    for i in 0..200 {
        let mut s = TcpStream::connect(http).await.unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHo").await;
        }
        drop(s);
    }
    assert_serving(&c).await;
    c.shutdown_all().await;
}
