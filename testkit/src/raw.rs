//! Raw HTTP/1.1 over TCP: what a client library will not send (garbage,
//! truncated requests, huge headers, slow clients).
//!
//! [`request`] writes from one task while reading from another, the way a
//! careful client does: a server that answers early and closes (413, 431,
//! 400) is seen answering even though the client had more to send.

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Send `head`, then `body_len` bytes of `z`, while reading the answer.
/// Returns the bytes read until the answer is complete (by its
/// Content-Length), the server closes, the connection breaks, or
/// `timeout` passes; possibly empty. The write side stays open (hyper
/// drops a request whose client half-closes).
pub async fn request(addr: SocketAddr, head: &[u8], body_len: usize, timeout: Duration) -> Vec<u8> {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let head = head.to_vec();
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return wr;
        }
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let n = chunk.len().min(body_len - sent);
            if wr.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            sent += n;
        }
        wr
    });
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        while !complete(&out) {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    writer.abort();
    out
}

/// Whether `resp` holds a whole response with a Content-Length body.
pub fn complete(resp: &[u8]) -> bool {
    let Some(at) = find(resp, b"\r\n\r\n") else {
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
pub fn status(resp: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(resp.get(..12)?).ok()?;
    s.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// The value of header `name` (case-insensitive) in a raw response.
pub fn header(resp: &[u8], name: &str) -> Option<String> {
    let at = find(resp, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..at]).to_string();
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The body of a raw HTTP/1.1 response (after the blank line).
pub fn body(resp: &[u8]) -> &[u8] {
    let at = find(resp, b"\r\n\r\n").expect("end of headers");
    &resp[at + 4..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What happened to a [`slow_client`].
#[derive(Debug)]
pub struct Slow {
    /// When the connection was made.
    pub connected: Instant,
    /// When the server closed it (or broke it), if it did before the
    /// client ran out of bytes.
    pub closed: Option<Instant>,
    /// Bytes sent before that.
    pub sent: usize,
    /// What the server sent back.
    pub received: Vec<u8>,
}

impl Slow {
    /// How long the connection lived, if the server closed it.
    pub fn lived(&self) -> Option<Duration> {
        self.closed.map(|c| c - self.connected)
    }
}

/// Connect to `addr` (returns once connected: queued in the listener's
/// backlog or accepted), then, in a task, send `bytes` one at a time,
/// `every` apart, while watching for the server to close the connection;
/// the task ends when it does or when every byte is sent. A slowloris
/// client.
pub async fn slow_client(
    addr: SocketAddr,
    bytes: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<Slow> {
    let s = TcpStream::connect(addr).await.expect("connect");
    let connected = Instant::now();
    tokio::spawn(drip(s, connected, bytes, every))
}

async fn drip(s: TcpStream, connected: Instant, bytes: Vec<u8>, every: Duration) -> Slow {
    let (mut rd, mut wr) = s.into_split();
    let mut received = Vec::new();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    for b in bytes {
        if wr.write_all(&[b]).await.is_err() {
            return Slow {
                connected,
                closed: Some(Instant::now()),
                sent,
                received,
            };
        }
        sent += 1;
        let pause = tokio::time::sleep(every);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        return Slow { connected, closed: Some(Instant::now()), sent, received };
                    }
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                },
            }
        }
    }
    Slow {
        connected,
        closed: None,
        sent,
        received,
    }
}
