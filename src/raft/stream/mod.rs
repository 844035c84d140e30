//! Peer stream: the hot peer RPCs on long-lived connections, as
//! length-prefixed MessagePack frames, on the same Raft listener as the
//! HTTP peer RPCs ([`super::rpc`]). A stream carries one kind of request
//! ([`Purpose`]): AppendEntries (heartbeats included; one stream per leader
//! and follower) or read-index requests (a follower asking the leader; one
//! stream per follower and leader).
//!
//! Why: a put pays for each message's fixed cost, and HTTP's (a request
//! line, headers, four middleware layers, a pool checkout) was the part of
//! it a transport can remove. Identity, secret and addressee are checked
//! once per connection, not once per message (docs/BENCHMARKS.md item 19).
//!
//! Wire format (both directions start with [`MAGIC`]):
//! - client: `MAGIC`, a frame holding [`Hello`];
//! - server: `MAGIC`, a frame holding [`Welcome`]; after a refusal it closes;
//! - then, one at a time: the client sends a frame holding a request, the
//!   server answers a frame holding `Result<answer, String>` (Err: Raft
//!   refused or is stopped, as the HTTP route's 503): for
//!   [`Purpose::Append`] an AppendEntries request and its response, for
//!   [`Purpose::ReadIndex`] `()` and a [`rpc::ReadIndex`].
//!
//! A frame is a `u32` little-endian length, then that many bytes.
//!
//! Invariants:
//! - The listener tells the protocols apart by a connection's first bytes:
//!   [`MAGIC`] whole, or read up to the first byte that departs from it
//!   (never waiting for more); anything but the magic is served as HTTP
//!   with those bytes given back ([`crate::net::serve::Rewind`]). They
//!   must arrive within the header timeout.
//! - Before any request reaches Raft, the [`Hello`] passed the same
//!   checks as an HTTP peer RPC: the cluster secret (constant time), with
//!   TLS a client certificate naming the sender, and the addressee and its
//!   incarnation. With TLS, an AppendEntries whose vote names another node
//!   than the proven sender is refused and the connection closed.
//! - Frames are bounded: the hello, read-index requests and answers by
//!   [`MAX_SMALL_RPC_BODY`], an AppendEntries by `max_append_bytes` (as the
//!   HTTP route); a longer declared length closes the connection unread. A
//!   frame's body must arrive within the body timeout once its length has;
//!   an idle connection between frames is idle for the listener's caps (it
//!   may be closed to make room) and closes at shutdown.
//! - A frame that does not decode closes the connection; it never reaches
//!   Raft and never panics.
//! - Client side ([`Link`]): any failure of the connection (connect, TLS, a
//!   read or write, an answer that does not decode, the call's deadline)
//!   drops it and the call reports the peer unreachable; the next call
//!   reconnects. So does a call whose future was dropped half way
//!   (openraft cancelling a replication stream): an answer is only ever
//!   read by the call whose request it answers. A server that does not
//!   answer [`MAGIC`] (an older version) is spoken to over HTTP for
//!   [`RETRY_STREAM_AFTER`] before the stream is tried again.

mod client;
mod server;

use std::io;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;

pub use self::client::Link;
pub use self::client::Outcome;
pub use self::client::Peer;
pub use self::server::Server;
use super::NodeId;
use super::rpc;
use super::rpc::MAX_SMALL_RPC_BODY;
use super::typ;

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
    /// What the stream carries.
    pub purpose: Purpose,
}

/// The one kind of request a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// AppendEntries from the leader (heartbeats included).
    Append,
    /// Read-index requests from a follower ([`rpc::READ_INDEX`]'s).
    ReadIndex,
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

/// What one read-index request gets back on the stream.
pub type ReadIndexAnswer = Result<rpc::ReadIndex, String>;

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

/// Read the first bytes of a connection into `head` until they are
/// [`MAGIC`], or stop being its beginning, or the peer stops sending (EOF);
/// the count read. Never waits for more bytes once they cannot be the
/// magic: an HTTP request shorter than it ("GET\r\n\r\n") is answered
/// at once.
async fn read_magic<R: AsyncRead + Unpin>(
    r: &mut R,
    head: &mut [u8; MAGIC.len()],
) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() && head[..n] == MAGIC[..n] {
        match r.read(&mut head[n..n + 1]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// The magic is read byte by byte until it is complete or cannot be
    /// it any more; a short HTTP request gets no wait for bytes that will
    /// not come.
    #[tokio::test]
    async fn the_magic_is_told_from_anything_else_at_the_first_differing_byte() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut head = [0u8; MAGIC.len()];
        client.write_all(b"GET\r\n\r\n").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), read_magic(&mut server, &mut head))
            .await
            .expect("no wait for more bytes once they cannot be the magic")
            .unwrap();
        assert_eq!(&head[..n], b"G");
        // The rest is still unread, for the HTTP parser.
        let mut rest = [0u8; 6];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"ET\r\n\r\n");

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"DCRAFT1\nmore").await.unwrap();
        let n = read_magic(&mut server, &mut head).await.unwrap();
        assert_eq!((n, &head), (8, MAGIC));
        // "DELETE": it departs from the magic at its second byte.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"DELETE / HTTP/1.1\r\n").await.unwrap();
        let n = read_magic(&mut server, &mut head).await.unwrap();
        assert_eq!(&head[..n], b"DE");
        // A peer that closes early.
        let n = read_magic(&mut &b"DCR"[..], &mut head).await.unwrap();
        assert_eq!(&head[..n], b"DCR");
    }

    #[tokio::test]
    async fn a_frame_reads_back_and_an_oversized_one_is_refused_unread() {
        let hello = Hello {
            from: NodeId::from("a".to_string()),
            to: NodeId::from("b".to_string()),
            incarnation: 7,
            secret: None,
            purpose: Purpose::Append,
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
