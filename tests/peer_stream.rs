//! The peer stream on the Raft listener (`raft::stream`): AppendEntries as
//! frames on one long-lived connection, next to HTTP on the same port.
//! A hello without the secret, to another node, or (TLS) from a node the
//! client certificate does not name is refused before any AppendEntries
//! reaches Raft; garbage and oversized frames close the connection; HTTP
//! keeps working on the same port.

use std::path::Path;
use std::time::Duration;

use dcache::config::Secret;
use dcache::raft::NodeId;
use dcache::raft::stream;
use dcache::raft::stream::Hello;
use dcache::raft::stream::MAGIC;
use dcache::raft::stream::Welcome;
use dcache::raft::typ;
use dcache::wire::header;
use dcache_testkit::certs;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::send;
use dcache_testkit::tools;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SECRET: &str = "peer-stream-test-secret-0123456789";
/// Bound on every read of a test: a server that neither answers nor
/// closes fails the test instead of hanging it.
const READ: Duration = Duration::from_secs(10);

fn hello(from: &str, to: &str, secret: Option<&str>) -> Hello {
    Hello {
        from: NodeId::from(from),
        to: NodeId::from(to),
        incarnation: 0,
        secret: secret.map(str::to_string),
        purpose: stream::Purpose::Append,
    }
}

/// Say `hello`; the server's welcome, or None if it closed without one.
async fn say<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, hello: &Hello) -> Option<Welcome> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&stream::frame(hello).unwrap());
    s.write_all(&out).await.unwrap();
    let mut head = [0u8; 8];
    match tokio::time::timeout(READ, s.read_exact(&mut head)).await {
        Ok(Ok(_)) => assert_eq!(&head, MAGIC, "the server answers the stream's magic"),
        Ok(Err(_)) => return None,
        Err(_) => panic!("no welcome and no close within {READ:?}"),
    }
    let mut buf = Vec::new();
    stream::read_frame(s, 64 * 1024, &mut buf).await.ok()?;
    Some(rmp_serde::from_slice(&buf).unwrap())
}

/// Send `frame` (already framed); the answer, or None if the server
/// closed instead.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin, T: serde::de::DeserializeOwned>(
    s: &mut S,
    frame: &[u8],
) -> Option<T> {
    s.write_all(frame).await.ok()?;
    let mut buf = Vec::new();
    match tokio::time::timeout(READ, stream::read_frame(s, 64 * 1024, &mut buf)).await {
        Ok(Ok(())) => Some(rmp_serde::from_slice(&buf).unwrap()),
        Ok(Err(_)) => None,
        Err(_) => panic!("no answer and no close within {READ:?}"),
    }
}

/// Whether the server closed the connection (EOF or a reset) in time.
async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(READ, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A heartbeat-shaped AppendEntries from `leader` at `term`.
fn heartbeat(term: u64, leader: &str) -> typ::AppendEntriesRequest {
    typ::AppendEntriesRequest {
        vote: typ::Vote::new_committed(term, NodeId::from(leader)),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    }
}

/// Secret, addressee, garbage and bounds, on a one-node cluster with a
/// secret: what gets past the hello reaches Raft (a stale leader's
/// heartbeat is answered HigherVote), and nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_needs_the_secret_and_the_right_addressee() {
    let c = TestCluster::start(1, |cfg| cfg.cluster.secret = Secret::new(SECRET)).await;
    let raft = c.nodes[0].raft;
    c.leader().await;

    for (secret, to, why) in [
        (None, "n0", "requires the cluster secret"),
        (
            Some("wrong-secret-of-enough-length"),
            "n0",
            "requires the cluster secret",
        ),
        (Some(SECRET), "n9", "this is node n0, not n9"),
    ] {
        let mut s = TcpStream::connect(raft).await.unwrap();
        match say(&mut s, &hello("n1", to, secret)).await {
            Some(Welcome::Refused(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("secret {secret:?} to {to}: {other:?}"),
        }
        assert!(closed(&mut s).await, "a refused stream is closed");
    }

    // Admitted: a heartbeat of a term older than the node's reaches Raft
    // and gets its HigherVote; the stream stays open for the next one.
    let mut s = TcpStream::connect(raft).await.unwrap();
    assert_eq!(
        say(&mut s, &hello("n1", "n0", Some(SECRET))).await,
        Some(Welcome::Accepted)
    );
    for _ in 0..2 {
        let answer: Option<stream::Answer> =
            exchange(&mut s, &stream::frame(&heartbeat(0, "n1")).unwrap()).await;
        match answer {
            Some(Ok(openraft::raft::AppendEntriesResponse::HigherVote(_))) => {}
            other => panic!("a stale heartbeat: {other:?}"),
        }
    }
    // A frame that is not an AppendEntries closes the stream, unanswered.
    let mut garbage = 5u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(b"\xc1\xc1\xc1\xc1\xc1");
    assert_eq!(exchange::<_, stream::Answer>(&mut s, &garbage).await, None);

    // A declared length over the AppendEntries bound closes the stream
    // before its body is read (none is sent).
    let mut s = TcpStream::connect(raft).await.unwrap();
    assert_eq!(
        say(&mut s, &hello("n1", "n0", Some(SECRET))).await,
        Some(Welcome::Accepted)
    );
    assert_eq!(
        exchange::<_, stream::Answer>(&mut s, &u32::MAX.to_le_bytes()).await,
        None
    );

    // A hello longer than its bound: closed, no welcome.
    let mut s = TcpStream::connect(raft).await.unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(1u32 << 30).to_le_bytes());
    s.write_all(&out).await.unwrap();
    assert!(closed(&mut s).await);

    // A read-index stream: after a write, each request is answered with
    // an index that covers it (this node is the leader), one at a time on
    // one connection; a stream with another purpose takes no AppendEntries.
    c.put_ok(0, "k", "v").await;
    let mut s = TcpStream::connect(raft).await.unwrap();
    let reads = Hello {
        purpose: stream::Purpose::ReadIndex,
        ..hello("n1", "n0", Some(SECRET))
    };
    assert_eq!(say(&mut s, &reads).await, Some(Welcome::Accepted));
    let applied = c.get_json(0, "/health").await["applied_index"]
        .as_u64()
        .unwrap();
    for _ in 0..2 {
        match exchange::<_, stream::ReadIndexAnswer>(&mut s, &stream::frame(&()).unwrap()).await {
            Some(Ok(ri)) => assert!(ri.index >= applied, "{} < {applied}", ri.index),
            other => panic!("a read index: {other:?}"),
        }
    }
    let hb = stream::frame(&heartbeat(0, "n1")).unwrap();
    assert_eq!(
        exchange::<_, stream::ReadIndexAnswer>(&mut s, &hb).await,
        None
    );

    // HTTP on the same port still answers, the node is still the leader.
    let r = send(
        c.client
            .get(format!("http://{raft}/raft/info"))
            .header(header::CLUSTER_SECRET, SECRET),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.put_ok(0, "k2", "v2").await;
    c.shutdown_all().await;
}

fn have_openssl(test: &str) -> bool {
    tools::require(test, &["openssl"], "apt-get install openssl")
}

async fn tls_to(
    dir: &Path,
    cert: &str,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    certs::client_tls(dir, Some(cert))
        .connect(tcp, "n0")
        .await
        .expect("TLS handshake with a CA-signed client certificate")
}

/// With mutual TLS the hello's sender must be the node the client
/// certificate names, and an AppendEntries must speak for that sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_stream_speaks_only_for_its_certificate() {
    if !have_openssl("a_tls_stream_speaks_only_for_its_certificate") {
        return;
    }
    let certdir = tempfile::tempdir().unwrap();
    let dir = certdir.path();
    certs::make(dir, 825, &["n0", "n1", "n2", "client"]);
    let c = TestCluster::start(1, |cfg| {
        let id = cfg.node.id.clone();
        certs::configure(cfg, dir, &id);
        cfg.tls.client_auth = dcache::config::ClientAuth::Required;
        cfg.cluster.secret = Secret::new(SECRET);
    })
    .await;
    let raft = c.nodes[0].raft;
    c.leader().await;

    // n2's certificate claiming to be n1, and a client's: refused.
    for cert in ["n2", "client"] {
        let mut s = tls_to(dir, cert, raft).await;
        match say(&mut s, &hello("n1", "n0", Some(SECRET))).await {
            Some(Welcome::Refused(m)) => {
                assert!(m.contains("does not name the sending node n1"), "{m}")
            }
            other => panic!("{cert} as n1: {other:?}"),
        }
        assert!(closed(&mut s).await);
    }
    // n1 as n1: admitted; its own (stale) heartbeat reaches Raft, one
    // that speaks for n2 is refused and the stream closed.
    let mut s = tls_to(dir, "n1", raft).await;
    assert_eq!(
        say(&mut s, &hello("n1", "n0", Some(SECRET))).await,
        Some(Welcome::Accepted)
    );
    match exchange::<_, stream::Answer>(&mut s, &stream::frame(&heartbeat(0, "n1")).unwrap()).await
    {
        Some(Ok(openraft::raft::AppendEntriesResponse::HigherVote(_))) => {}
        other => panic!("n1's stale heartbeat: {other:?}"),
    }
    match exchange::<_, stream::Answer>(&mut s, &stream::frame(&heartbeat(0, "n2")).unwrap()).await
    {
        Some(Err(m)) => assert!(
            m.contains("node n1 sent a message on behalf of node n2"),
            "{m}"
        ),
        other => panic!("n1 speaking for n2: {other:?}"),
    }
    assert!(closed(&mut s).await);
    c.put_ok(0, "k", "v").await;
    c.shutdown_all().await;
}
