//! What each route answers: the seed routes, `/v1` keys (binary values,
//! key decoding, limits, CAS), health, readiness and metrics.

use super::*;

// --- seed routes --------------------------------------------------------

// Exact seed bodies and bad-input answers: tests/golden/seed (seed_golden.rs).

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_and_native_routes_share_keys() {
    let c = start().await;
    let r = c.req(0, "PUT", "/v1/kv/cross", "from-v1").await;
    assert_eq!(r.status, 200);
    let r = c.req(0, "GET", "/store/cross", "").await;
    assert_eq!(r.text(), "{\"key\":\"cross\",\"value\":\"from-v1\"}\n");
    let r = c
        .req(0, "POST", "/store", r#"{"key":"ow","value":"two"}"#)
        .await;
    assert_eq!(r.status, 201);
    let r = c.req(0, "GET", "/v1/kv/ow", "").await;
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
            0,
            "POST",
            "/store",
            format!(r#"{{"key":"k","value":"{big}"}}"#),
        )
        .await;
    seed_error(&r, 413, Code::TooLarge);
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
            0,
            "POST",
            "/store",
            format!(r#"{{"key":"{long}","value":"v"}}"#),
        )
        .await;
    let j = seed_error(&r, 413, Code::TooLarge);
    assert_eq!(
        j["error"],
        format!(
            "key is {} bytes, over the limit of {MAX_KEY} bytes",
            MAX_KEY + 1
        )
    );
    // Exactly at the limits is fine.
    let at = "y".repeat(MAX_VALUE);
    let key = "k".repeat(MAX_KEY);
    let r = c
        .req(
            0,
            "POST",
            "/store",
            format!(r#"{{"key":"{key}","value":"{at}"}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.req(0, "GET", &format!("/store/{long}"), "").await;
    seed_error(&r, 413, Code::TooLarge);

    // Wrong method (an unusual one too): 405 with the route's methods in
    // `Allow`, on both route families.
    for (method, path, allow) in [
        ("PUT", "/store", "POST"),
        ("GET", "/store", "POST"),
        ("PATCH", "/store", "POST"),
        ("POST", "/store/k", "GET,HEAD,DELETE"),
        ("PATCH", "/v1/kv/k", "GET,HEAD,PUT,POST,DELETE"),
        ("GET", "/join", "POST"),
        ("POST", "/health", "GET,HEAD"),
    ] {
        let r = c.req(0, method, path, "").await;
        r.assert_error(Code::MethodNotAllowed);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(
            r.json()["error"],
            format!("method {method} is not allowed on {path}")
        );
    }

    // Unknown routes: 404 no_route. A key route with an empty key
    // (`/store/`, `/v1/kv/`) is no route either: keys are non-empty.
    for path in [
        "/nope",
        "/v1",
        "/v1/kvx/a",
        "/v2/kv/a",
        "/store/",
        "/v1/kv/",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let r = c.req(0, method, path, "v").await;
            r.assert_error(Code::NoRoute);
            assert_eq!(r.json()["error"], format!("no route for {method} {path}"));
        }
    }
    c.shutdown_all().await;
}

// --- native routes ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_binary_values_round_trip_with_index_headers() {
    let c = start().await;
    let value: Vec<u8> = vec![0x00, 0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28, 0x00];
    let r = c.req(0, "PUT", "/v1/kv/bin", value.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["key"], "bin");
    let modify = j["modify_index"].as_u64().expect("modify_index");
    assert_eq!(j["create_index"].as_u64(), Some(modify));
    assert_eq!(j["version"].as_u64(), Some(1));
    assert_eq!(r.header(header::INDEX), Some(modify.to_string().as_str()));
    let raft: u64 = r.header(header::RAFT_INDEX).unwrap().parse().unwrap();
    assert_eq!(raft, modify, "a write's raft index is its entry's");
    assert_eq!(r.header(header::SERVED_BY), Some("n0"));

    for q in ["", "?consistency=linearizable", "?consistency=stale"] {
        let r = c.req(0, "GET", &format!("/v1/kv/bin{q}"), "").await;
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(r.body, value, "{q}");
        assert_eq!(r.header(header::INDEX), Some(modify.to_string().as_str()));
        let raft: u64 = r.header(header::RAFT_INDEX).unwrap().parse().unwrap();
        assert!(raft >= modify, "raft index {raft} < modify index {modify}");
        assert_eq!(r.header(header::SERVED_BY), Some("n0"));
    }
    // The seed route refuses to put non-UTF-8 into a JSON string.
    let r = c.req(0, "GET", "/store/bin", "").await;
    seed_error(&r, 422, Code::NotUtf8);

    // An empty value is a value.
    let r = c.req(0, "PUT", "/v1/kv/empty", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.req(0, "GET", "/v1/kv/empty", "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Overwrite bumps version and modify index, keeps create index.
    let r = c.req(0, "PUT", "/v1/kv/bin", "second").await;
    let j2 = r.json();
    assert_eq!(j2["version"].as_u64(), Some(2));
    assert_eq!(j2["create_index"].as_u64(), Some(modify));
    assert!(j2["modify_index"].as_u64().unwrap() > modify);

    // Missing key: 404 JSON with a code.
    let r = c.req(0, "GET", "/v1/kv/missing", "").await;
    r.assert_error(Code::KeyNotFound);
    assert_eq!(
        r.json(),
        json!({"code": Code::KeyNotFound.as_str(), "error": "key not found"})
    );

    // Delete reports whether the key existed.
    let r = c.req(0, "DELETE", "/v1/kv/bin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"key": "bin", "deleted": true}));
    let r = c.req(0, "DELETE", "/v1/kv/bin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"key": "bin", "deleted": false}));
    let r = c.req(0, "GET", "/v1/kv/bin", "").await;
    assert_eq!(r.status, 404);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_keys_are_decoded_strictly_once() {
    let c = start().await;

    // A raw `/` and `%2F` name the same key.
    let r = c.req(0, "PUT", "/v1/kv/a/b", "slash").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["key"], "a/b");
    let r = c.req(0, "GET", "/v1/kv/a%2Fb", "").await;
    assert_eq!((r.status, r.text()), (200, "slash".to_string()));
    let r = c.req(0, "GET", "/v1/kv/a%2fb", "").await;
    assert_eq!((r.status, r.text()), (200, "slash".to_string()));
    let r = c.req(0, "GET", "/store/a%2Fb", "").await;
    assert_eq!(r.text(), "{\"key\":\"a/b\",\"value\":\"slash\"}\n");

    // UTF-8 key.
    let r = c.req(0, "PUT", "/v1/kv/caf%C3%A9", "coffee").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["key"], "café");
    let r = c.req(0, "GET", "/v1/kv/caf%c3%a9", "").await;
    assert_eq!((r.status, r.text()), (200, "coffee".to_string()));

    // Decoded once: `%2541` is the key "%41", not "A".
    let r = c.req(0, "PUT", "/v1/kv/%2541", "pct").await;
    assert_eq!(r.json()["key"], "%41");
    let r = c.req(0, "GET", "/v1/kv/A", "").await;
    assert_eq!(r.status, 404);
    // `+` is literal in a path.
    let r = c.req(0, "PUT", "/v1/kv/a+b", "plus").await;
    assert_eq!(r.json()["key"], "a+b");
    let r = c.req(0, "GET", "/v1/kv/a%20b", "").await;
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
            let r = c.req(0, method, path, "v").await;
            r.assert_error(Code::InvalidInput);
        }
    }
    let r = c.req(0, "GET", "/v1/kv/a%zzb", "").await;
    assert!(r.json()["error"].as_str().unwrap().contains("%zz"));
    // Same strictness on the seed routes, seed-shaped body.
    let r = c.req(0, "GET", "/store/%zz", "").await;
    seed_error(&r, 400, Code::InvalidInput);
    // (An empty key is no route: seed_limits_wrong_methods_and_unknown_routes.)

    // Key length: exactly at the limit is fine, one byte over is 413.
    let ok = "k".repeat(MAX_KEY);
    let r = c.req(0, "PUT", &format!("/v1/kv/{ok}"), "v").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let over = "k".repeat(MAX_KEY + 1);
    for method in ["GET", "PUT", "DELETE"] {
        let r = c.req(0, method, &format!("/v1/kv/{over}"), "v").await;
        r.assert_error(Code::TooLarge);
        assert_eq!(
            r.json()["error"],
            format!(
                "key is {} bytes, over the limit of {MAX_KEY} bytes",
                MAX_KEY + 1
            )
        );
    }
    // The limit counts decoded bytes: 8 × "é" is 16 bytes (fine), 9 is 18.
    let r = c
        .req(0, "PUT", &format!("/v1/kv/{}", "%C3%A9".repeat(8)), "v")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .req(0, "PUT", &format!("/v1/kv/{}", "%C3%A9".repeat(9)), "v")
        .await;
    r.assert_error(Code::TooLarge);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_value_limit_and_huge_bodies() {
    let c = start().await;
    let r = c.req(0, "PUT", "/v1/kv/v", vec![b'x'; MAX_VALUE]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.req(0, "PUT", "/v1/kv/v", vec![b'x'; MAX_VALUE + 1]).await;
    r.assert_error(Code::TooLarge);
    assert_eq!(
        r.json()["error"],
        format!(
            "value is {} bytes, over the limit of {MAX_VALUE} bytes",
            MAX_VALUE + 1
        )
    );
    // The rejected write changed nothing.
    let r = c.req(0, "GET", "/v1/kv/v", "").await;
    assert_eq!((r.status, r.body.len()), (200, MAX_VALUE));

    // 10 MiB: refused with a JSON 413 without reading it all (a client that
    // reads while it sends sees the answer), on both route families. (No
    // time bound: the upload is bounded, and a hang shows as no answer.)
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
        let resp = raw::request(c.nodes[0].http, head.as_bytes(), huge, UPLOAD).await;
        assert_eq!(
            raw::status(&resp),
            Some(413),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
        assert_eq!(
            raw::header(&resp, header::ERROR).as_deref(),
            Some(Code::TooLarge.as_str())
        );
        let j: Value = serde_json::from_slice(raw::body(&resp)).expect("JSON 413 body");
        assert!(
            j["error"].as_str().unwrap().contains(&format!(
                "request body is {huge} bytes, over the accepted size; \
                 values are limited to {MAX_VALUE} bytes (http.max_value_bytes)"
            )),
            "{j}"
        );
        // The seed route keeps the seed's body shape: no code field.
        assert_eq!(j.get("code").is_some(), v1, "{j}");
    }
    // Chunked, with no Content-Length: same answer once the body ends.
    let mut chunked =
        b"PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n".to_vec();
    chunked.extend(std::iter::repeat_n(b'z', 0x10000));
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let resp = raw::request(c.nodes[0].http, &chunked, 0, UPLOAD).await;
    assert_eq!(
        raw::status(&resp),
        Some(413),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );

    let r = c.req(0, "GET", "/v1/kv/x", "").await;
    assert_eq!(r.status, 404);
    let r = c.req(0, "PUT", "/v1/kv/after", "ok").await;
    assert_eq!(r.status, 200);
    assert_serving(&c).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_compare_and_set() {
    let c = start().await;
    // cas=0: create only if absent.
    let r = c.req(0, "PUT", "/v1/kv/c?cas=0", "v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json()["modify_index"].as_u64().unwrap();

    let r = c.req(0, "PUT", "/v1/kv/c?cas=0", "v2").await;
    r.assert_error(Code::CasMismatch);
    assert_eq!(r.json()["current_index"].as_u64(), Some(first));
    assert_eq!(r.header(header::INDEX), Some(first.to_string().as_str()));

    // Stale index fails too; current index succeeds.
    let r = c
        .req(0, "PUT", &format!("/v1/kv/c?cas={}", first + 1000), "v2")
        .await;
    r.assert_error(Code::CasMismatch);
    let r = c
        .req(0, "PUT", &format!("/v1/kv/c?cas={first}"), "v2")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = r.json()["modify_index"].as_u64().unwrap();
    assert!(second > first);
    let r = c.req(0, "GET", "/v1/kv/c", "").await;
    assert_eq!(r.text(), "v2");
    // The old index no longer matches.
    let r = c
        .req(0, "PUT", &format!("/v1/kv/c?cas={first}"), "v3")
        .await;
    r.assert_error(Code::CasMismatch);
    assert_eq!(r.json()["current_index"].as_u64(), Some(second));

    // CAS on an absent key with a non-zero index: current_index 0.
    let r = c.req(0, "PUT", "/v1/kv/absent?cas=5", "x").await;
    r.assert_error(Code::CasMismatch);
    assert_eq!(r.json()["current_index"].as_u64(), Some(0));
    let r = c.req(0, "GET", "/v1/kv/absent", "").await;
    assert_eq!(r.status, 404);

    // Delete with the wrong index fails and keeps the key; right index deletes.
    let r = c
        .req(0, "DELETE", &format!("/v1/kv/c?cas={first}"), "")
        .await;
    r.assert_error(Code::CasMismatch);
    assert_eq!(r.json()["current_index"].as_u64(), Some(second));
    let r = c.req(0, "GET", "/v1/kv/c", "").await;
    assert_eq!((r.status, r.text()), (200, "v2".to_string()));
    let r = c
        .req(0, "DELETE", &format!("/v1/kv/c?cas={second}"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);
    let r = c.req(0, "GET", "/v1/kv/c", "").await;
    assert_eq!(r.status, 404);
    // Once deleted, cas=0 creates again.
    let r = c.req(0, "PUT", "/v1/kv/c?cas=0", "again").await;
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
        let r = c.req(0, method, path, "v").await;
        if path.starts_with("/v1/") {
            r.assert_error(Code::InvalidInput);
        } else {
            seed_error(&r, 400, Code::InvalidInput);
        }
    }
    let r = c.req(0, "GET", "/v1/kv/q", "").await;
    assert_eq!(r.status, 404);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_readiness_cluster_and_metrics() {
    let c = start().await;
    let r = c.req(0, "GET", "/health", "").await;
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

    let r = c.req(0, "GET", "/readyz", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ready"], true);
    let r = c.req(0, "GET", "/livez", "").await;
    assert_eq!(r.status, 200);

    let r = c.req(0, "GET", "/v1/cluster", "").await;
    assert_eq!(r.status, 200);
    let st = r.json();
    assert_eq!(st["node_id"], "n0");
    let members = st["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{st}");
    assert_eq!(members[0]["role"], "voter");
    assert_eq!(members[0]["http_addr"], c.nodes[0].http.to_string());

    let w = c.req(0, "PUT", "/v1/kv/m", "1").await;
    assert_eq!(w.status, 200, "{}", w.text());
    let written: u64 = w.header(header::RAFT_INDEX).unwrap().parse().unwrap();
    let r = c.req(0, "GET", "/v1/status/digest", "").await;
    assert_eq!(r.status, 200);
    let d = r.json();
    assert_eq!(d["keys"], 1, "{d}");
    assert!(d["applied_index"].as_u64().unwrap() >= written, "{d}");
    assert!(d["digest"].is_u64(), "{d}");

    let r = c.req(0, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    // Sampled at scrape time: one key, this node leads.
    for line in ["dcache_cache_keys 1", "dcache_raft_is_leader 1"] {
        assert!(
            text.lines().any(|l| l == line),
            "metrics lack the line {line:?}:\n{text}"
        );
    }
    for needle in [
        "dcache_raft_term",
        "dcache_http_requests_total",
        "dcache_raft_applied_index",
        "dcache_cache_expiry_lag_seconds",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }

    // Hits and misses count the reads served here; an expired key counts
    // once it is removed, and then no passed deadline is left (lag 0).
    let (h0, m0, e0) = (
        metric(&text, "dcache_cache_hits_total"),
        metric(&text, "dcache_cache_misses_total"),
        metric(&text, "dcache_cache_expired_keys_total"),
    );
    for (key, status) in [("m", 200), ("m", 200), ("absent", 404)] {
        let r = c.req(0, "GET", &format!("/v1/kv/{key}"), "").await;
        assert_eq!(r.status, status, "{key}: {}", r.text());
    }
    let w = c.req(0, "PUT", "/v1/kv/short?ttl=1ms", "x").await;
    assert_eq!(w.status, 200, "{}", w.text());
    let text = wait_for("the 1 ms key to expire", WAIT, || async {
        let text = c.req(0, "GET", "/metrics", "").await.text();
        (metric(&text, "dcache_cache_expired_keys_total") == e0 + 1.0).then_some(text)
    })
    .await;
    assert_eq!(metric(&text, "dcache_cache_hits_total"), h0 + 2.0, "{text}");
    assert_eq!(
        metric(&text, "dcache_cache_misses_total"),
        m0 + 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "dcache_cache_expiry_lag_seconds"),
        0.0,
        "{text}"
    );
    c.shutdown_all().await;
}

/// The value of the sample `name` (no labels) in a Prometheus text page.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name}:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}:\n{text}"))
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
        let r = c.req(0, "PUT", &format!("/v1/kv/r{i}"), "v").await;
        assert_eq!(r.status, 200);
        let r = c.req(0, "GET", "/readyz", "").await;
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
