//! The client side of the peer stream: [`Peer`] (whom to dial and what to
//! say), [`Link`] (one stream's state: closed, open, or not spoken by the
//! peer) and the exchange of one request for its answer, bounded by the
//! caller's deadline (see the parent module).

use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;

use super::Hello;
use super::MAGIC;
use super::MAX_SMALL_RPC_BODY;
use super::Purpose;
use super::RETRY_STREAM_AFTER;
use super::Welcome;
use super::decode;
use super::frame;
use super::read_frame;
use super::read_magic;
use super::within;
use crate::net::tls::ClientTls;

/// Whom a node dials for its streams to one peer, and what its hellos say
/// (each [`Link`] puts its own purpose in).
pub struct Peer {
    pub hello: Hello,
    /// The peer's Raft address, host:port.
    pub addr: String,
    /// Bind the connection to this local address (None: the kernel's choice).
    pub local_ip: Option<IpAddr>,
    pub connect_timeout: Duration,
    /// TLS to a server whose certificate must name the peer (None:
    /// plain); Err: TLS is on and no certificate can name the peer, so it
    /// cannot be reached.
    pub tls: Result<Option<ClientTls>, String>,
}

/// One stream to a peer, for one [`Purpose`].
pub struct Link {
    purpose: Purpose,
    state: State,
}

enum State {
    /// Not open: the next call opens it.
    Closed,
    Open(Conn),
    /// The peer did not speak the stream at this moment: calls go over
    /// HTTP until [`RETRY_STREAM_AFTER`] has passed.
    Unsupported(Instant),
}

/// What one call on a [`Link`] came to.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The peer answered (Err: its Raft refused, as HTTP's 503).
    Answered(Result<T, String>),
    /// No answer: no connection, a broken one, or none in time.
    Unreachable(String),
    /// The peer refused the stream's hello (secret, certificate, addressee).
    Refused(String),
    /// The peer does not speak the stream: send this call over HTTP, with
    /// what is left of its deadline.
    UseHttp(Duration),
}

impl Link {
    /// A link that opens its stream on the first call.
    pub fn new(purpose: Purpose) -> Self {
        Self {
            purpose,
            state: State::Closed,
        }
    }

    /// Whether a stream is open now.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Whether calls go over HTTP for now (the peer did not speak the
    /// stream less than [`RETRY_STREAM_AFTER`] ago).
    pub fn use_http(&mut self) -> bool {
        if let State::Unsupported(since) = self.state {
            if since.elapsed() < RETRY_STREAM_AFTER {
                return true;
            }
            self.state = State::Closed;
        }
        false
    }

    /// Send `req` to `peer` on this stream, opening it first if needed, and
    /// read its answer, all within `ttl`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        peer: &Peer,
        req: &Req,
        ttl: Duration,
    ) -> Outcome<Resp> {
        let started = Instant::now();
        let addr = &peer.addr;
        match tokio::time::timeout(ttl, self.exchange(peer, req)).await {
            Ok(Ok(answer)) => Outcome::Answered(answer),
            Ok(Err(OpenError::Unsupported)) => {
                tracing::info!(peer = %peer.hello.to, purpose = ?self.purpose,
                    "peer does not speak the Raft stream: HTTP instead");
                self.state = State::Unsupported(Instant::now());
                Outcome::UseHttp(ttl.saturating_sub(started.elapsed()))
            }
            Ok(Err(OpenError::Refused(why))) => {
                self.state = State::Closed;
                Outcome::Refused(format!("{addr} refused the stream: {why}"))
            }
            Ok(Err(OpenError::Io(e))) => {
                self.state = State::Closed;
                Outcome::Unreachable(format!("{addr} (stream): {e}"))
            }
            Err(_) => {
                // A frame may be half written or its answer still coming.
                self.state = State::Closed;
                Outcome::Unreachable(format!(
                    "{addr} (stream): no answer from {} within {ttl:?}",
                    peer.hello.to
                ))
            }
        }
    }

    async fn exchange<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        peer: &Peer,
        req: &Req,
    ) -> Result<Result<Resp, String>, OpenError> {
        if let State::Open(conn) = &self.state
            && conn.abandoned
        {
            self.state = State::Closed;
        }
        if !self.is_open() {
            let hello = Hello {
                purpose: self.purpose,
                ..peer.hello.clone()
            };
            self.state = State::Open(Conn::open(peer, &hello).await?);
        }
        let State::Open(conn) = &mut self.state else {
            unreachable!("opened above")
        };
        match conn.call(req).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.state = State::Closed;
                Err(OpenError::Io(e))
            }
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// How a stream could not be had.
#[derive(Debug)]
enum OpenError {
    /// No connection, or it failed: openraft's `Unreachable`.
    Io(io::Error),
    /// The server does not speak the stream (an older version): use HTTP.
    Unsupported,
    /// The server refused the hello (secret, certificate, addressee).
    Refused(String),
}

/// One open, admitted stream to a peer.
struct Conn {
    io: tokio::io::BufStream<Box<dyn Io>>,
    buf: Vec<u8>,
    /// An exchange began and did not end: its future was dropped (openraft
    /// drops a replication stream's call when it cancels it), so a frame
    /// may be half written or its answer still coming. Never used again.
    abandoned: bool,
}

impl Conn {
    /// Connect, say the peer's hello, and wait for the server's welcome.
    async fn open(peer: &Peer, hello: &Hello) -> Result<Conn, OpenError> {
        let tls = peer
            .tls
            .as_ref()
            .map_err(|e| OpenError::Io(io::Error::other(e.clone())))?;
        let tcp = connect(&peer.addr, peer.local_ip, peer.connect_timeout)
            .await
            .map_err(OpenError::Io)?;
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = crate::net::tls::host_of(&peer.addr);
                let s = within(peer.connect_timeout, tls.connect(tcp, host))
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
        let n = read_magic(&mut io, &mut head).await.unwrap_or(0);
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

    /// Send one request and read its answer. An Err means the connection
    /// is broken (drop it); the inner Err is the peer Raft's refusal.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
    ) -> io::Result<Result<Resp, String>> {
        let frame = frame(req)?;
        self.abandoned = true;
        self.io.write_all(&frame).await?;
        self.io.flush().await?;
        read_frame(&mut self.io, MAX_SMALL_RPC_BODY, &mut self.buf).await?;
        self.abandoned = false;
        decode(&self.buf)
    }
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
