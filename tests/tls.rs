//! TLS on the three listeners (`tls.*`): https and Redis over TLS with the
//! test CA; what is refused (plain HTTP, no client certificate, an expired
//! one, another CA's, a peer certificate naming another node); reloading
//! the certificate without dropping the cluster.
//!
//! Certificates come from scripts/make-certs.sh (openssl), as compose and
//! README use them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dcache::config::ClientAuth;
use dcache::config::Secret;
use dcache::net::HttpClientOptions;
use dcache::net::tls::ClientTls;
use dcache_testkit::WAIT;
use dcache_testkit::certs;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::cluster::test_config;
use dcache_testkit::http::client_with;
use dcache_testkit::raw;
use dcache_testkit::tools;
use dcache_testkit::wait_for;

const SECRET: &str = "tls-test-cluster-secret-0123456789";

fn have_openssl(test: &str) -> bool {
    tools::require(test, &["openssl"], "apt-get install openssl")
}

/// Certificates for n0..n2, a client, an expired client, and another CA's
/// client, under `dir` (`dir/other` holds the other CA).
fn make_certs(dir: &Path) {
    certs::make(dir, 825, &["n0", "n1", "n2", "n3", "client"]);
    certs::make(dir, -1, &["expired"]);
    certs::make(&dir.join("other"), 825, &["client", "n0"]);
}

async fn tls_cluster(n: usize, certdir: &Path, reload_check_ms: u64) -> TestCluster {
    let certdir = certdir.to_path_buf();
    TestCluster::start(n, move |cfg| {
        let id = cfg.node.id.clone();
        certs::configure(cfg, &certdir, &id);
        cfg.tls.client_auth = ClientAuth::Required;
        cfg.tls.reload_check_ms = reload_check_ms;
        cfg.cluster.secret = Secret::new(SECRET);
    })
    .await
}

fn https(tls: ClientTls) -> reqwest::Client {
    client_with(HttpClientOptions {
        tls: Some(tls),
        ..Default::default()
    })
}

/// Whether `client` can GET `url` at all (any HTTP answer).
async fn reaches(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// The SHA-256 fingerprint of the certificate served at `addr`, as
/// `openssl s_client` sees it (presenting `dir`'s client certificate).
fn served_fingerprint(addr: std::net::SocketAddr, dir: &Path, client: &str) -> String {
    let (cert, key) = certs::pair(dir, client);
    let cmd = format!(
        "openssl s_client -connect {addr} -CAfile {ca} -cert {cert} -key {key} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        ca = dir.join("ca.crt").display(),
        cert = cert.display(),
        key = key.display(),
    );
    let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Three nodes join, replicate and forward over mutual TLS (HTTP and
/// Raft); clients reach HTTP and Redis over TLS with the CA and a client
/// certificate; plain HTTP, no client certificate, an expired one, another
/// CA's, and a client that trusts another CA are all refused, on the
/// client port and on the Raft port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_serves_https_and_redis_and_refuses_the_rest() {
    if !have_openssl("a_tls_cluster_serves_https_and_redis_and_refuses_the_rest") {
        return;
    }
    let certdir = tempfile::tempdir().unwrap();
    let dir = certdir.path();
    make_certs(dir);
    let c = tls_cluster(3, dir, 0).await;
    let l = c.leader().await;
    let f = (l + 1) % 3;
    c.put_ok(l, "k", "v").await;
    // A follower forwards the linearizable read to the leader over https.
    assert_eq!(c.get(f, "k").await, (200, "v".to_string()));
    c.put_ok(f, "k2", "v2").await;
    assert_eq!(c.get(l, "k2").await, (200, "v2".to_string()));

    let url = c.url(l, "/v1/kv/k");
    let good = https(certs::client_tls(dir, Some("client")));
    assert_eq!(reaches(&good, &url).await, Ok(200));
    // The Raft listener completes the handshake with a CA-signed
    // certificate (then answers 401: no cluster secret), and refuses the
    // same bad certificates as the client port at the handshake.
    let raft_url = format!("https://{}/raft/info", c.nodes[l].raft);
    assert_eq!(reaches(&good, &raft_url).await, Ok(401));
    for (what, client) in [
        ("no client certificate", https(certs::client_tls(dir, None))),
        (
            "an expired client certificate",
            https(certs::client_tls(dir, Some("expired"))),
        ),
        (
            "another CA's client certificate",
            https(
                ClientTls::from_files(
                    &dir.join("ca.crt"),
                    Some((&dir.join("other/client.crt"), &dir.join("other/client.key"))),
                )
                .unwrap(),
            ),
        ),
        (
            "a client trusting another CA",
            https(certs::client_tls(&dir.join("other"), Some("client"))),
        ),
    ] {
        let r = reaches(&client, &url).await;
        assert!(r.is_err(), "{what}: {r:?}");
        let r = reaches(&client, &raft_url).await;
        assert!(r.is_err(), "Raft port, {what}: {r:?}");
    }
    // Plain HTTP to the TLS port: no HTTP answer, the connection closes.
    let resp = raw::request(
        c.nodes[l].http,
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        raw::status(&resp),
        None,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );

    // Redis over TLS, on a follower (which forwards to the leader over https).
    if tools::require(
        "a_tls_cluster_serves_https_and_redis_and_refuses_the_rest (redis-cli --tls)",
        &["redis-cli"],
        "apt-get install redis-tools",
    ) {
        let port = c.node(f).redis_addr.unwrap().port().to_string();
        let (cert, key) = certs::pair(dir, "client");
        let ca = dir.join("ca.crt");
        let cli = |extra: &[&str], args: &[&str]| {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port, "--tls"])
                .arg("--cacert")
                .arg(&ca)
                .args(extra)
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let with_cert = [
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        assert_eq!(cli(&with_cert, &["SET", "r", "1"]), "OK");
        assert_eq!(cli(&with_cert, &["GET", "k"]), "v");
        // Without a client certificate the handshake fails: no reply.
        assert_eq!(cli(&[], &["GET", "k"]), "");
    }
    c.shutdown_all().await;
}

/// The Raft listener wants a CA-signed certificate naming the node the
/// request says it comes from; a node's own certificate must name its id;
/// and a node calling a peer wants the peer's certificate to name that
/// peer, whatever address answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_must_present_a_certificate_naming_themselves() {
    if !have_openssl("peers_must_present_a_certificate_naming_themselves") {
        return;
    }
    let certdir = tempfile::tempdir().unwrap();
    let dir = certdir.path();
    make_certs(dir);
    let mut c = tls_cluster(2, dir, 0).await;
    let raft = |path: &str| format!("https://{}{path}", c.nodes[0].raft);
    let secret = dcache::wire::header::CLUSTER_SECRET;
    let call = |client: reqwest::Client, from: &'static str, path: &str| {
        let req = client
            .post(raft(path))
            .header(secret, SECRET)
            .header("x-dcache-raft-from", from)
            .header("x-dcache-raft-to", "n0")
            .body(vec![0x80u8]);
        async move { dcache_testkit::http::send(req).await }
    };
    // No client certificate: the handshake fails, nothing is answered.
    let anon = https(certs::client_tls(dir, None));
    for path in ["/raft/append", "/raft/vote", "/raft/info"] {
        let r = anon.post(raft(path)).header(secret, SECRET).send().await;
        assert!(r.is_err(), "{path} without a client certificate: {r:?}");
    }
    // A valid certificate that names another node than the sender: 403
    // before the body is read.
    for path in ["/raft/append", "/raft/vote"] {
        let r = call(https(certs::client_tls(dir, Some("client"))), "n1", path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(
            r.text().contains("does not name the sending node n1"),
            "{}",
            r.text()
        );
        let r = call(https(certs::client_tls(dir, Some("n2"))), "n1", path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    // The sender's own certificate gets past the check (to the body's
    // decoding: this one-byte body is malformed).
    let r = call(
        https(certs::client_tls(dir, Some("n1"))),
        "n1",
        "/raft/vote",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // A node whose certificate does not name its id refuses to start.
    let mut cfg = test_config(c.dir.path(), 3);
    certs::configure(&mut cfg, dir, "n2");
    cfg.cluster.secret = Secret::new(SECRET);
    let (h, r) = (
        dcache_testkit::ports::free_listener().await,
        dcache_testkit::ports::free_listener().await,
    );
    let err = dcache::node::Node::start(cfg, h, r)
        .await
        .err()
        .expect("a node with another node's certificate does not start");
    assert!(
        err.to_string().contains("does not name node id \"n3\""),
        "{err}"
    );

    // Client side: a node dialing n1 refuses a server presenting n2's
    // certificate on n1's address, and accepts n1's.
    let me = dcache::net::tls::Tls::load(dcache::net::tls::TlsFiles {
        cert: dir.join("n0.crt"),
        key: dir.join("n0.key"),
        ca: dir.join("ca.crt"),
        client_auth: dcache::net::tls::ClientAuth::None,
    })
    .unwrap();
    let to_n1 = https(me.node_client(Some("n1")).unwrap());
    let info = |i: usize| format!("https://{}/raft/info", c.nodes[i].raft);
    // n1 really is n1 (positive control).
    let ok = to_n1
        .get(info(1))
        .header(secret, SECRET)
        .header("x-dcache-raft-from", "n0")
        .send()
        .await;
    assert_eq!(ok.map(|r| r.status().as_u16()).ok(), Some(200));
    // Node 0's listener (certificate n0) on the address dialed for n1.
    let wrong = to_n1
        .get(info(0))
        .header(secret, SECRET)
        .header("x-dcache-raft-from", "n0")
        .send()
        .await;
    assert!(
        wrong.is_err(),
        "n0's certificate accepted for n1: {wrong:?}"
    );

    // A node without a client certificate cannot join: the HTTP listener
    // (client_auth: required) refuses it before /join is read.
    let r = anon
        .post(c.url(0, "/join"))
        .header(secret, SECRET)
        .body(r#"{"id":"n3","addr":"127.0.0.1:1"}"#)
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(c.voters(0).len(), 2);
    c.stop(1, true).await;
    c.shutdown_all().await;
}

/// A certificate file replaced under a running cluster is picked up
/// (`tls.reload_check_ms`): new connections get the new certificate, the
/// cluster keeps its leader and every write before, during and after
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_certificate_is_served_without_dropping_the_cluster() {
    if !have_openssl("a_replaced_certificate_is_served_without_dropping_the_cluster") {
        return;
    }
    let certdir = tempfile::tempdir().unwrap();
    let dir = certdir.path();
    make_certs(dir);
    let c = tls_cluster(3, dir, 100).await;
    let before_http = served_fingerprint(c.nodes[0].http, dir, "client");
    let before_raft = served_fingerprint(c.nodes[0].raft, dir, "n1");
    assert!(before_http.contains("Fingerprint"), "{before_http:?}");
    assert_eq!(before_http, before_raft);
    let l = c.leader().await;
    let writes = async {
        for i in 0..60 {
            let r = c.put(0, &format!("w{i}"), "x").await;
            assert_eq!(r.status, 200, "write {i} via node 0: {}", r.text());
        }
    };
    let replace = async {
        // A new key and certificate for n0, same file names.
        certs::make(dir, 825, &["n0"]);
        wait_for("node 0 serves the new certificate", WAIT, || async {
            let now = tokio::task::spawn_blocking({
                let (a, d) = (c.nodes[0].http, dir.to_path_buf());
                move || served_fingerprint(a, &d, "client")
            })
            .await
            .unwrap();
            (now.contains("Fingerprint") && now != before_http).then_some(())
        })
        .await;
    };
    tokio::join!(writes, replace);
    let after_raft = served_fingerprint(c.nodes[0].raft, dir, "n1");
    assert_ne!(
        after_raft, before_raft,
        "the Raft listener's certificate too"
    );
    // Peers still talk to node 0 with its new certificate.
    c.put_ok(l, "after", "reload").await;
    c.wait_converged().await;
    assert_eq!(c.leader().await, l, "the reload did not cost the leader");
    c.shutdown_all().await;
}

/// SIGHUP makes the binary reload its certificate (file checks off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    if !have_openssl("sighup_reloads_the_certificate") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("certs");
    certs::make(&dir, 825, &["n0", "client"]);
    let s = |k: &str| dir.join(k).display().to_string();
    let spec =
        dcache_testkit::proc::Spec::new(dcache_testkit::dcache_bin!(), work.path(), "n0", "")
            .with_envs(&[
                ("DCACHE_TLS_CERT_FILE", &s("n0.crt")),
                ("DCACHE_TLS_KEY_FILE", &s("n0.key")),
                ("DCACHE_TLS_CA_FILE", &s("ca.crt")),
                ("DCACHE_TLS_RELOAD_CHECK_MS", "0"),
                ("DCACHE_REDIS_BIND_ADDR", ""),
            ]);
    let mut p = spec.spawn();
    let client = https(certs::client_tls(&dir, None));
    let ready = format!("https://{}/readyz", spec.http);
    wait_for("the node is ready over https", WAIT, || async {
        (reaches(&client, &ready).await == Ok(200)).then_some(())
    })
    .await;
    let addr = spec.http.parse().unwrap();
    let before = served_fingerprint(addr, &dir, "client");
    certs::make(&dir, 825, &["n0"]);
    // Files changed, no SIGHUP yet, checks off: still the old certificate.
    assert_eq!(served_fingerprint(addr, &dir, "client"), before);
    p.signal("HUP");
    wait_for("SIGHUP reloads the certificate", WAIT, || async {
        let now = served_fingerprint(addr, &dir, "client");
        (now.contains("Fingerprint") && now != before).then_some(())
    })
    .await;
    assert_eq!(reaches(&client, &ready).await, Ok(200));
    p.stop_gracefully(WAIT).await;
}
