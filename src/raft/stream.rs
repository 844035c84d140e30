//! Peer stream: AppendEntries (heartbeats included) on one long-lived
//! connection per leader and follower, as length-prefixed MessagePack
//! frames, on the same Raft listener as the HTTP peer RPCs ([`super::rpc`]).
//!
//! Why: a put pays for each message's fixed cost, and HTTP's (a request
//! line, headers, four middleware layers, a pool checkout) was the part of
//! it a transport can remove. Identity, secret and addressee are checked
//! once per connection, not once per message (docs/BENCHMARKS.md item 19).
//!
//! Wire format (both directions start with [`MAGIC`]):
//! - client: `MAGIC`, a frame holding [`Hello`];
//! - server: `MAGIC`, a frame holding [`Welcome`]; after a refusal it closes;
//! - then, one at a time: the client sends a frame holding an
//!   AppendEntries request, the server answers a frame holding
//!   `Result<AppendEntriesResponse, String>` (Err: Raft refused or is
//!   stopped, as the HTTP route's 503).
//!
//! A frame is a `u32` little-endian length, then that many bytes.
//!
//! Invariants:
//! - The listener tells the protocols apart by the first 8 bytes (an HTTP
//!   request line is longer); anything but [`MAGIC`] is served as HTTP
//!   with those bytes given back ([`crate::net::serve::Rewind`]). The 8
//!   bytes must arrive within the header timeout.
//! - Before any AppendEntries reaches Raft, the [`Hello`] passed the same
//!   checks as an HTTP peer RPC: the cluster secret (constant time), with
//!   TLS a client certificate naming the sender, and the addressee and its
//!   incarnation. With TLS, an AppendEntries whose vote names another node
//!   than the proven sender is refused and the connection closed.
//! - Frames are bounded: the hello and answers by [`MAX_SMALL_RPC_BODY`],
//!   an AppendEntries by `max_append_bytes` (as the HTTP route); a longer
//!   declared length closes the connection unread. A frame's body must
//!   arrive within the body timeout once its length has; an idle
//!   connection between frames is idle for the listener's caps (it may be
//!   closed to make room) and closes at shutdown.
//! - A frame that does not decode closes the connection; it never reaches
//!   Raft and never panics.
//! - Client side: any failure of the connection (connect, TLS, a read or
//!   write, an answer that does not decode, the call's deadline) drops it
//!   and reports openraft's `Unreachable`; the next call reconnects. So
//!   does a call whose future was dropped half way (openraft cancelling a
//!   replication stream): an answer is only ever read by the call whose
//!   request it answers. A
//!   server that does not answer [`MAGIC`] (an older version) is spoken to
//!   over HTTP for [`RETRY_STREAM_AFTER`] before the stream is tried again.

use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use super::NodeId;
use super::Raft;
use super::rpc;
use super::rpc::MAX_SMALL_RPC_BODY;
use super::typ;
use crate::net::ClusterSecret;
use crate::net::PeerCertificates;
use crate::net::serve::Activity;
use crate::net::serve::HttpConn;
use crate::net::tls::ClientTls;
use crate::net::tls::Stream;

/// The first bytes of a peer stream, in both directions.
pub const MAGIC: &[u8; 8] = b"DCRAFT1\n";

/// How long a client speaks HTTP to a server that did not answer the
/// stream's [`MAGIC`] before it tries the stream again.
pub const RETRY_STREAM_AFTER: Duration = Duration::from_secs(60);

/// The client's first frame: who it is, whom it means, the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub from: NodeId,
    pub to: NodeId,
    /// The addressee's incarnation as the sender's membership records it
    /// (0: unknown, not checked).
    pub incarnation: u64,
    /// The cluster secret, when one is configured.
    pub secret: Option<String>,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    Accepted,
    /// Why not; the server closes the connection.
    Refused(String),
}

/// What one AppendEntries gets back on the stream.
pub type Answer = Result<typ::AppendEntriesResponse, String>;

/// `body` MessagePack-encoded as one frame (length, then bytes).
pub fn frame<T: Serialize>(body: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; 4];
    rmp_serde::encode::write_named(&mut out, body).map_err(io::Error::other)?;
    let len = u32::try_from(out.len() - 4).map_err(io::Error::other)?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Read one frame's body of at most `max` bytes into `buf` (a longer
/// declared length is an error, unread).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let len = r.read_u32_le().await? as usize;
    read_body(r, len, max, buf).await
}

async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    max: usize,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the bound of {max}"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(())
}

fn decode<T: DeserializeOwned>(buf: &[u8]) -> io::Result<T> {
    rmp_serde::from_slice(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The server side: what the Raft listener needs to serve a stream.
pub struct Server {
    pub(super) raft: Raft,
    pub(super) target: rpc::Target,
    pub(super) secret: Option<ClusterSecret>,
    /// The listener serves mutual TLS: the hello's sender must be named by
    /// the client certificate.
    pub(super) tls: bool,
    pub(super) limits: rpc::PeerLimits,
}

impl Server {
    /// `raft`, `contact`, `secret`, `limits` and `tls` as for
    /// [`rpc::router`]; `me` and `incarnation`: who this node is.
    pub fn new(
        raft: Raft,
        info: &rpc::NodeInfo,
        contact: Arc<super::LeaderContact>,
        secret: Option<ClusterSecret>,
        limits: rpc::PeerLimits,
        tls: bool,
    ) -> Self {
        Self {
            raft,
            target: rpc::Target {
                id: info.id.clone(),
                incarnation: info.incarnation,
                contact,
            },
            secret,
            tls,
            limits,
        }
    }

    /// Serve one accepted connection of the Raft listener: a peer stream
    /// if it starts with [`MAGIC`], else HTTP with `router`.
    pub async fn serve_connection(
        self: Arc<Self>,
        router: Router,
        mut stream: Stream,
        peer: SocketAddr,
        activity: Arc<Activity>,
        shutdown: CancellationToken,
    ) {
        let certs = stream.peer_certificates().map(PeerCertificates);
        let bound = self.limits.body_timeout;
        let mut head = [0u8; MAGIC.len()];
        let n = match tokio::time::timeout(bound, read_up_to(&mut stream, &mut head)).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if head == *MAGIC {
            if let Err(e) = self.serve_stream(stream, certs, activity, shutdown).await {
                tracing::debug!(%peer, error = %e, "peer stream ended");
            }
            return;
        }
        let stream = crate::net::serve::Rewind::new(Bytes::copy_from_slice(&head[..n]), stream);
        crate::net::serve::serve_http(
            stream,
            HttpConn {
                peer,
                certs,
                router,
                activity,
                shutdown,
                header_timeout: bound,
            },
        )
        .await;
    }

    /// Why `hello` may not use this stream; Ok: the sender TLS proved
    /// (None without TLS).
    fn admit(
        &self,
        hello: &Hello,
        certs: Option<&PeerCertificates>,
    ) -> Result<Option<NodeId>, String> {
        if let Some(s) = &self.secret
            && !s.matches(hello.secret.as_deref().map(str::as_bytes))
        {
            return Err("this Raft listener requires the cluster secret (cluster.secret)".into());
        }
        let proven = if self.tls {
            let named = certs
                .and_then(|c| c.0.first())
                .is_some_and(|leaf| crate::net::tls::names_node(leaf, hello.from.as_str()));
            if !named {
                return Err(format!(
                    "the client certificate does not name the sending node {}",
                    hello.from
                ));
            }
            Some(hello.from.clone())
        } else {
            None
        };
        match self
            .target
            .misaddressed(Some(hello.to.as_str()), hello.incarnation)
        {
            Some(why) => Err(why),
            None => Ok(proven),
        }
    }

    async fn serve_stream(
        &self,
        stream: Stream,
        certs: Option<PeerCertificates>,
        activity: Arc<Activity>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let bound = self.limits.body_timeout;
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut buf = Vec::new();
        within(bound, read_frame(&mut r, MAX_SMALL_RPC_BODY, &mut buf)).await?;
        let hello: Hello = decode(&buf)?;
        let admitted = self.admit(&hello, certs.as_ref());
        let welcome = match &admitted {
            Ok(_) => Welcome::Accepted,
            Err(why) => Welcome::Refused(why.clone()),
        };
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&frame(&welcome)?);
        within(bound, w.write_all(&out)).await?;
        let proven = match admitted {
            Ok(p) => p,
            Err(why) => return Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
        };
        loop {
            let len = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                len = r.read_u32_le() => len? as usize,
            };
            let _busy = activity.busy();
            within(
                bound,
                read_body(&mut r, len, self.limits.max_append_bytes, &mut buf),
            )
            .await?;
            let req: typ::AppendEntriesRequest = decode(&buf)?;
            if let Some(p) = &proven {
                let claimed = rpc::voter(&req.vote);
                if p != claimed {
                    let why = format!("node {p} sent a message on behalf of node {claimed}");
                    let answer: Answer = Err(why.clone());
                    within(bound, w.write_all(&frame(&answer)?)).await?;
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
                }
            }
            let answer: Answer = match self.raft.append_entries(req).await {
                Ok(resp) => {
                    // Any answer but HigherVote means the sender is the
                    // current leader.
                    if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                        self.target.contact.touch();
                    }
                    Ok(resp)
                }
                Err(e) => Err(format!("raft unavailable: {e}")),
            };
            within(bound, w.write_all(&frame(&answer)?)).await?;
        }
    }
}

/// `fut`, or a TimedOut error after `bound`.
async fn within<T>(bound: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no progress within {bound:?}"),
        )),
    }
}

/// Read until `buf` is full or the peer stops sending (EOF); the count read.
async fn read_up_to<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// How a stream could not be had.
#[derive(Debug)]
pub enum OpenError {
    /// No connection, or it failed: openraft's `Unreachable`.
    Io(io::Error),
    /// The server does not speak the stream (an older version): use HTTP.
    Unsupported,
    /// The server refused the hello (secret, certificate, addressee).
    Refused(String),
}

/// The client side: one open, admitted stream to a peer.
pub struct Conn {
    io: tokio::io::BufStream<Box<dyn Io>>,
    buf: Vec<u8>,
    /// An exchange began and did not end: its future was dropped (openraft
    /// drops a replication stream's call when it cancels it), so a frame
    /// may be half written or its answer still coming. Never used again.
    abandoned: bool,
}

/// Where and how to open a [`Conn`].
pub struct Dial<'a> {
    /// The peer's Raft address, host:port.
    pub addr: &'a str,
    /// Bind the connection to this local address (None: the kernel's choice).
    pub local_ip: Option<IpAddr>,
    pub connect_timeout: Duration,
    /// TLS to a server whose certificate must name the peer (None: plain).
    pub tls: Option<&'a ClientTls>,
}

impl Conn {
    /// Connect, say `hello`, and wait for the server's welcome.
    pub async fn open(dial: Dial<'_>, hello: &Hello) -> Result<Conn, OpenError> {
        let tcp = connect(dial.addr, dial.local_ip, dial.connect_timeout)
            .await
            .map_err(OpenError::Io)?;
        let io: Box<dyn Io> = match dial.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = host_of(dial.addr);
                let s = within(dial.connect_timeout, tls.connect(tcp, host))
                    .await
                    .map_err(OpenError::Io)?;
                Box::new(s)
            }
        };
        let mut io = tokio::io::BufStream::with_capacity(64 * 1024, 64 * 1024, io);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&frame(hello).map_err(OpenError::Io)?);
        io.write_all(&out).await.map_err(OpenError::Io)?;
        io.flush().await.map_err(OpenError::Io)?;
        // An older server answers HTTP's 400 and closes (the close may
        // reach us as a reset before the answer does): not the magic.
        let mut head = [0u8; MAGIC.len()];
        let n = read_up_to(&mut io, &mut head).await.unwrap_or(0);
        if n < head.len() || head != *MAGIC {
            return Err(OpenError::Unsupported);
        }
        let mut buf = Vec::new();
        read_frame(&mut io, MAX_SMALL_RPC_BODY, &mut buf)
            .await
            .map_err(OpenError::Io)?;
        match decode(&buf).map_err(OpenError::Io)? {
            Welcome::Accepted => Ok(Conn {
                io,
                buf,
                abandoned: false,
            }),
            Welcome::Refused(why) => Err(OpenError::Refused(why)),
        }
    }

    /// Send one AppendEntries and read its answer. An Err means the
    /// connection is broken (drop it); the inner Err is Raft's refusal.
    pub async fn append(&mut self, req: &typ::AppendEntriesRequest) -> io::Result<Answer> {
        let frame = frame(req)?;
        self.abandoned = true;
        self.io.write_all(&frame).await?;
        self.io.flush().await?;
        read_frame(&mut self.io, MAX_SMALL_RPC_BODY, &mut self.buf).await?;
        self.abandoned = false;
        decode(&self.buf)
    }

    /// Whether an exchange on it was cancelled half way (see `abandoned`):
    /// the connection must be dropped, not reused.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }
}

/// The host of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// TCP to `addr` (each resolved address in turn), bound to `local_ip`
/// when given, each attempt bounded by `timeout`.
async fn connect(
    addr: &str,
    local_ip: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let mut last = None;
    for sa in within(timeout, tokio::net::lookup_host(addr)).await? {
        let sock = match sa {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if let Some(ip) = local_ip
            && ip.is_ipv4() == sa.is_ipv4()
        {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        match within(timeout, sock.connect(sa)).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(host_of("node1.example:12000"), "node1.example");
        assert_eq!(host_of("127.0.0.1:12000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:12000"), "::1");
        assert_eq!(host_of("n1"), "n1");
    }

    #[tokio::test]
    async fn a_frame_reads_back_and_an_oversized_one_is_refused_unread() {
        let hello = Hello {
            from: NodeId::from("a".to_string()),
            to: NodeId::from("b".to_string()),
            incarnation: 7,
            secret: None,
        };
        let bytes = frame(&hello).unwrap();
        let mut buf = Vec::new();
        read_frame(&mut &bytes[..], 1024, &mut buf).await.unwrap();
        let back: Hello = decode(&buf).unwrap();
        assert_eq!((back.from.as_str(), back.incarnation), ("a", 7));
        let err = read_frame(&mut &bytes[..], 3, &mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // A truncated frame is an error, not a short body.
        let err = read_frame(&mut &bytes[..bytes.len() - 1], 1024, &mut buf)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }
}
