//! Clients that misbehave, on both listeners: garbage, truncated and
//! oversized requests, slow clients, connections opened and dropped.

use super::*;

/// Noise for the parsers: 4 KiB of a fixed pseudo-random sequence (not a
/// random choice: the same bytes every run).
fn garbage() -> Vec<u8> {
    let mut g: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    g.extend_from_slice(b"\r\n\r\n");
    g
}

/// hyper's answer to a request it rejects before routing (README: a
/// malformed request line or header is a 400, a request line over hyper's
/// limit a 414, a header section over hyper's limit a 431, with an empty
/// body and no code header).
fn assert_hyper_answer(resp: &[u8], status: u16, what: &str) {
    let text = String::from_utf8_lossy(resp);
    assert_eq!(raw::status(resp), Some(status), "{what}: {text:?}");
    assert_eq!(
        raw::header(resp, "content-length").as_deref(),
        Some("0"),
        "{what}: {text:?}"
    );
    assert_eq!(
        raw::header(resp, "connection").as_deref(),
        Some("close"),
        "{what}: {text:?}"
    );
    assert_eq!(raw::header(resp, header::ERROR), None, "{what}: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_truncated_and_oversized_requests_do_not_hurt_the_node() {
    let c = start().await;
    let http = c.nodes[0].http;
    let raft = c.nodes[0].raft;
    let garbage = garbage();

    for addr in [http, raft] {
        // Binary noise, a broken request line, a bogus HTTP version, a
        // header without a colon: hyper's 400, on both listeners.
        for bytes in [
            &garbage[..],
            b"\x00\x01\x02\x03\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /readyz HTTP/1.1\r\nHost\r\n\r\n",
        ] {
            let resp = raw::request(addr, bytes, 0, UPLOAD).await;
            let what = format!(
                "{addr} {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            );
            assert_hyper_answer(&resp, 400, &what);
        }
        // A 1 MiB header: over hyper's header limit, 431.
        let mut req = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        let resp = raw::request(addr, &req, 0, UPLOAD).await;
        assert_hyper_answer(&resp, 431, &format!("{addr} 1 MiB header"));
        // A 70 KB path: over hyper's request-line limit (64 KiB), 414.
        let mut req = b"GET /v1/kv/".to_vec();
        req.extend(std::iter::repeat_n(b'a', 70_000));
        req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = raw::request(addr, &req, 0, UPLOAD).await;
        assert_hyper_answer(&resp, 414, &format!("{addr} 70 KB request line"));
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
    // And one that stalls with the connection open: 408 body_timeout once
    // http.request_timeout_ms (5 s here) has passed; never a write.
    let start = Instant::now();
    let resp = raw::request(
        http,
        b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
        0,
        UPLOAD,
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        raw::status(&resp),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(
        raw::header(&resp, header::ERROR).as_deref(),
        Some(Code::BodyTimeout.as_str())
    );
    let j: Value = serde_json::from_slice(raw::body(&resp)).expect("JSON body");
    assert_eq!(j["code"], Code::BodyTimeout.as_str(), "{j}");
    // Not before the stated timeout (a lower bound: the timeout answered,
    // not some error on the way).
    let request_timeout = Duration::from_millis(c.nodes[0].cfg.http.request_timeout_ms);
    assert!(took >= request_timeout, "answered after {took:?}");
    let r = c.req(0, "GET", "/v1/kv/a", "").await;
    r.assert_error(Code::KeyNotFound);

    // A well-formed request over the raw socket still works, and its error
    // bodies are JSON there too.
    let resp = raw::request(
        http,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        0,
        UPLOAD,
    )
    .await;
    assert_eq!(raw::status(&resp), Some(404));
    assert_eq!(
        raw::header(&resp, header::ERROR).as_deref(),
        Some(Code::NoRoute.as_str())
    );
    let j: Value = serde_json::from_slice(raw::body(&resp)).unwrap();
    assert_eq!(j["code"], Code::NoRoute.as_str());

    // Garbage RPC bodies on the Raft listener: 400, Raft untouched. An RPC
    // that does not name this node as its target (or names another) is
    // refused with 421 before its body is read.
    let client = &c.client;
    let me = c.nodes[0].cfg.node.id.clone();
    for path in [
        "/raft/append",
        "/raft/vote",
        "/raft/pre-vote",
        "/raft/snapshot",
    ] {
        for body in [&b"garbage"[..], b"", b"\x93\x01\x02", &garbage[..]] {
            for (to, want) in [
                (Some(me.as_str()), 400),
                (Some("someone-else"), 421),
                (None, 421),
            ] {
                let mut req = client
                    .post(format!("http://{raft}{path}"))
                    .header("content-type", "application/msgpack");
                if let Some(to) = to {
                    req = req.header(dcache::raft::rpc::TO_HEADER, to);
                }
                let r = send(req.body(body.to_vec())).await;
                assert_eq!(
                    r.status,
                    want,
                    "{path} to {to:?}: {:?}",
                    String::from_utf8_lossy(&r.body)
                );
            }
        }
    }
    let before = c.node(0).cluster.status().term;
    assert_serving(&c).await;
    let r = c.req(0, "PUT", "/v1/kv/still", "works").await;
    assert_eq!(r.status, 200);
    assert!(c.node(0).cluster.is_leader());
    assert_eq!(
        c.node(0).cluster.status().term,
        before,
        "garbage RPC changed the term"
    );
    c.shutdown_all().await;
}

/// A request header that a slow client sends one byte every `SLOW_EVERY`:
/// 440 bytes, 44 s, far longer than any bound here.
fn slow_header() -> Vec<u8> {
    let mut h = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    h.extend(std::iter::repeat_n(b'a', 400));
    h
}
const SLOW_EVERY: Duration = Duration::from_millis(100);

/// What a slow client saw, checked: cut off by the header timeout (not
/// before it, unless `may_make_room`: closed early, idle, to make room for
/// a new connection at the cap), with no answer, while it still had most
/// of its header to send. Returns when it was cut off, and whether that
/// was by the header timeout.
async fn assert_cut_off(
    addr: std::net::SocketAddr,
    t: tokio::task::JoinHandle<raw::Slow>,
    header_timeout: Duration,
    may_make_room: bool,
) -> (Instant, bool) {
    let s = tokio::time::timeout(WAIT, t)
        .await
        .unwrap_or_else(|_| panic!("a slow client on {addr} was not cut off within {WAIT:?}"))
        .unwrap();
    let lived = s.lived().unwrap_or_else(|| {
        panic!(
            "a slow client on {addr} sent its whole header ({} bytes) and was never cut off",
            s.sent
        )
    });
    let timed_out = lived >= header_timeout;
    assert!(
        timed_out || may_make_room,
        "{addr}: cut off after {lived:?}"
    );
    assert!(
        s.received.is_empty(),
        "{addr}: answered {:?}",
        String::from_utf8_lossy(&s.received)
    );
    assert!(s.sent < slow_header().len(), "{addr}: sent everything");
    (s.closed.unwrap(), timed_out)
}

/// The slowloris defence, end to end, with the header timeout shortened
/// to 3 s (through `dcache::node::Tuning`: a built-in bound, not a config
/// key) and `http.max_connections` = 4:
/// - slow clients on both listeners are disconnected, without an answer,
///   once the header timeout has passed, although still sending;
/// - meanwhile a normal client is served;
/// - with every slot taken by slow clients, one more client is served at
///   once: the slow client idle the longest is closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_clients_do_not_block_others() {
    const CAP: usize = 4;
    let header_timeout = Duration::from_secs(3);
    let c = TestCluster::start_tuned(1, Tuning { header_timeout }, |cfg| {
        cfg.http.max_connections = CAP;
    })
    .await;
    let http = c.nodes[0].http;
    let raft = c.nodes[0].raft;
    // One connection per request, so no idle pooled connection holds one
    // of the CAP slots.
    let client = dcache_testkit::http::client_with(HttpClientOptions {
        pool_max_idle_per_host: Some(0),
        ..HttpClientOptions::default()
    });

    // 1. CAP - 1 slow clients on the client listener (one slot stays free)
    //    and two on the Raft listener.
    let mut slow = Vec::new();
    for addr in [http, http, http, raft, raft] {
        slow.push((
            addr,
            raw::slow_client(addr, slow_header(), SLOW_EVERY).await,
        ));
    }
    // Meanwhile, a normal client is served through the free slot.
    let mut first_served = None;
    for i in 0..5 {
        let r = send(client.get(c.url(0, "/livez"))).await;
        assert_eq!(r.status, 200);
        first_served.get_or_insert_with(Instant::now);
        let r = send(client.put(c.url(0, &format!("/v1/kv/s{i}"))).body("v")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The Raft listener's slow clients are cut by the header timeout; the
    // client listener's too, unless one was closed early to make room for
    // a normal request while a closed connection's slot was not yet back.
    let mut first_cut = None::<Instant>;
    for (addr, t) in slow {
        let (cut, timed_out) = assert_cut_off(addr, t, header_timeout, addr == http).await;
        if timed_out {
            first_cut = Some(first_cut.map_or(cut, |f| f.min(cut)));
        }
    }
    assert!(
        first_served.unwrap() < first_cut.unwrap(),
        "the normal client was served only after the slow clients were cut off"
    );

    // 2. Every slot taken by slow clients, then one more client: slow
    //    clients have not sent a whole request (they are idle), so the new
    //    client takes the place of the one idle the longest and is answered
    //    at once, not after a header timeout.
    let before_slow = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..CAP {
        slow.push(raw::slow_client(http, slow_header(), SLOW_EVERY).await);
    }
    let r = send(client.get(c.url(0, "/v1/kv/s0"))).await;
    let answered = before_slow.elapsed();
    assert_eq!((r.status, r.text()), (200, "v".to_string()));
    assert!(
        answered < header_timeout,
        "served after {answered:?}: an idle slow client should have made room"
    );
    let mut early = 0;
    for t in slow {
        let s = tokio::time::timeout(WAIT, t)
            .await
            .expect("every slow client is cut off")
            .unwrap();
        let lived = s.lived().expect("cut off before sending everything");
        assert!(s.received.is_empty(), "answered a slow client");
        if lived < header_timeout {
            early += 1;
        }
    }
    assert!(early >= 1, "no slow client was closed to make room");
    assert_serving(&c).await;
    assert!(c.node(0).cluster.is_leader());
    c.shutdown_all().await;
}

/// Connections opened and dropped (idle or mid-request) give their slot
/// back: with a cap of 8, 200 of them would otherwise leave none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_opened_and_dropped_do_not_leak() {
    let c = TestCluster::start(1, |cfg| cfg.http.max_connections = 8).await;
    let http = c.nodes[0].http;
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
