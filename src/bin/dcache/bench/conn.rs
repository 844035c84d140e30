//! One worker's HTTP/1.1 keep-alive connection: a `TcpStream` the worker
//! task drives itself, with the answer parsed by `httparse`.
//!
//! The generator's client. On a small machine it shares the cores with the
//! servers it measures, so it does as little per request as it can: the
//! request is one buffer written with one `write`, the answer is read into
//! a buffer kept across requests, and no other task is involved (hyper's
//! client runs each connection as a task of its own, so every request was
//! two hand-offs between tasks; docs/BENCHMARKS.md item 20 has the
//! measurement).
//!
//! # Invariants
//!
//! * At most one connection per [`Conn`], and at most one request in flight
//!   on it (the workers are closed loop).
//! * Any failure (connect, write, read, a malformed or oversized answer,
//!   bytes after the answer, timeout) drops the connection; the next request
//!   opens a new one. Nothing is retried: a failed request is reported as
//!   failed. An answer saying `Connection: close`, or whose body ends with
//!   the connection, drops it too, after the answer is returned.
//! * A request, from connecting (when needed) until its body has been read
//!   completely, is bounded by the timeout given to [`Conn::new`]; headers
//!   by [`MAX_HEAD`], bodies by [`MAX_BODY`].
//! * Bodies framed by `Content-Length`, by chunked transfer coding, or by
//!   the end of the connection are all read whole; 1xx, 204 and 304
//!   answers and answers to HEAD have none.
//!
//! # Not here
//!
//! TLS, HTTP/2, redirects, proxies, DNS caching (a reconnect resolves again).

use std::borrow::Cow;
use std::io::Write as _;
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest status line plus headers accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted: the largest value a dcache node can be
/// configured to take (`config::bounds::MAX_VALUE_BYTES`), and room.
const MAX_BODY: usize = dcache::config::bounds::MAX_VALUE_BYTES + 1024 * 1024;
/// Headers parsed per answer at most.
const MAX_HEADERS: usize = 32;

/// A request to send: method, path and query (a valid request target), and
/// body, lent by the run's shared request material.
pub struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub body: Cow<'a, [u8]>,
}

/// One keep-alive connection to `host:port`, opened on first use.
pub struct Conn {
    addr: String,
    timeout: Duration,
    stream: Option<TcpStream>,
    /// The request being written: head and body, reused.
    out: Vec<u8>,
    /// Bytes read and not yet consumed, reused.
    input: Vec<u8>,
    /// The answer's body, reused.
    body: Vec<u8>,
}

/// How the answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    /// `addr` is `host:port` (no scheme).
    pub fn new(addr: &str, timeout: Duration) -> anyhow::Result<Conn> {
        if addr
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            anyhow::bail!("bad address {addr:?}");
        }
        Ok(Conn {
            addr: addr.to_string(),
            timeout,
            stream: None,
            out: Vec::with_capacity(512),
            input: Vec::with_capacity(4096),
            body: Vec::with_capacity(1024),
        })
    }

    /// The `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` and reads the whole answer: its status and body.
    pub async fn send(&mut self, req: &Req<'_>) -> Result<(StatusCode, &[u8]), String> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(Ok((status, keep))) => {
                if !keep {
                    self.stream = None;
                }
                Ok((status, &self.body))
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(format!("timed out after {timeout:?}"))
            }
        }
    }

    /// One request and its answer, into `self.body`; the status and whether
    /// the connection may carry another request.
    async fn exchange(&mut self, req: &Req<'_>) -> Result<(StatusCode, bool), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(s);
            self.input.clear();
        }
        self.out.clear();
        write_request(&mut self.out, &self.addr, req);
        let Some(stream) = self.stream.as_mut() else {
            unreachable!("connected just above");
        };
        stream
            .write_all(&self.out)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let (status, framing, mut keep, head_len) = loop {
            if let Some(head) = parse_head(&self.input)? {
                break head;
            }
            if self.input.len() >= MAX_HEAD {
                return Err(format!("answer head over {MAX_HEAD} bytes"));
            }
            read_more(stream, &mut self.input).await?;
        };
        let no_body = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || req.method == Method::HEAD;
        self.input.drain(..head_len);
        self.body.clear();
        match framing {
            _ if no_body => {}
            Framing::Length(n) => {
                if n > MAX_BODY {
                    return Err(format!("body of {n} bytes is over {MAX_BODY}"));
                }
                while self.input.len() < n {
                    read_more(stream, &mut self.input).await?;
                }
                self.body.extend_from_slice(&self.input[..n]);
                self.input.drain(..n);
            }
            Framing::Chunked => loop {
                match dechunk(&self.input, &mut self.body)? {
                    Some(used) => {
                        self.input.drain(..used);
                        break;
                    }
                    None => read_more(stream, &mut self.input).await?,
                }
            },
            Framing::UntilClose => {
                keep = false;
                loop {
                    if self.input.len() > MAX_BODY {
                        return Err(format!("body over {MAX_BODY} bytes"));
                    }
                    self.input.reserve(4096);
                    match stream.read_buf(&mut self.input).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
                std::mem::swap(&mut self.body, &mut self.input);
                self.input.clear();
            }
        }
        if !self.input.is_empty() {
            return Err(format!(
                "{} bytes after the answer (none was asked for)",
                self.input.len()
            ));
        }
        Ok((status, keep))
    }
}

/// `req` as HTTP/1.1 bytes: request line, `Host`, `Content-Length`, body.
fn write_request(out: &mut Vec<u8>, host: &str, req: &Req<'_>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    // Into the buffer itself: no string allocated per request.
    let _ = write!(out, "\r\ncontent-length: {}\r\n\r\n", req.body.len());
    out.extend_from_slice(&req.body);
}

/// Reads what the socket has into `input`; the end of the connection
/// before the answer is complete is an error.
async fn read_more(stream: &mut TcpStream, input: &mut Vec<u8>) -> Result<(), String> {
    input.reserve(4096);
    match stream.read_buf(input).await {
        Ok(0) => Err("connection closed before the answer was complete".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// The answer's head, once `input` holds all of it: status, body framing,
/// whether the connection stays open, and the head's length.
fn parse_head(input: &[u8]) -> Result<Option<(StatusCode, Framing, bool, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed answer: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| format!("malformed answer: status {code}"))?;
    let mut keep = resp.version == Some(1);
    let mut framing = Framing::UntilClose;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| format!("malformed content-length {value:?}"))?;
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.to_ascii_lowercase().ends_with("chunked") {
                return Err(format!("transfer-encoding {value:?} is not chunked"));
            }
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                keep = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                keep = true;
            }
        }
    }
    Ok(Some((status, framing, keep, head_len)))
}

/// Decodes a chunked body from `input` into `body` once `input` holds all
/// of it (through the last chunk and the trailers); the bytes used.
/// `None`: more input is needed (`body` is left empty).
fn dechunk(input: &[u8], body: &mut Vec<u8>) -> Result<Option<usize>, String> {
    body.clear();
    let mut at = 0;
    loop {
        let (skip, size) = match httparse::parse_chunk_size(&input[at..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("malformed chunk size".into()),
        };
        at += skip;
        let size = usize::try_from(size).map_err(|_| "chunk too large".to_string())?;
        if size == 0 {
            // Trailers (ignored), then the empty line.
            loop {
                let Some(end) = find_crlf(&input[at..]) else {
                    if input.len() - at > MAX_HEAD {
                        return Err(format!("trailers over {MAX_HEAD} bytes"));
                    }
                    body.clear();
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(format!("body over {MAX_BODY} bytes"));
        }
        if input.len() < at + size + 2 {
            body.clear();
            return Ok(None);
        }
        body.extend_from_slice(&input[at..at + size]);
        if &input[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        at += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request it reads with the next of
    /// `answers`, written in pieces of `piece` bytes; after the last answer
    /// it closes. Returns its address and the requests it read.
    async fn server(
        answers: Vec<&'static [u8]>,
        piece: usize,
    ) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for a in answers {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                seen.push(buf[..n].to_vec());
                for p in a.chunks(piece) {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            seen
        });
        (addr, task)
    }

    fn get(path: &'static str) -> Req<'static> {
        Req {
            method: Method::GET,
            path,
            body: Cow::Borrowed(&[]),
        }
    }

    #[tokio::test]
    async fn length_chunked_and_empty_answers_on_one_connection() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ];
        for piece in [1, 7, 4096] {
            let (addr, srv) = server(answers.clone(), piece).await;
            let mut c = Conn::new(&addr, Duration::from_secs(5)).unwrap();
            let (st, body) = c.send(&get("/a?b=c")).await.unwrap();
            assert_eq!((st, body), (StatusCode::OK, &b"hello"[..]), "piece {piece}");
            let (st, body) = c.send(&get("/b")).await.unwrap();
            assert_eq!((st, body), (StatusCode::NOT_FOUND, &b"abcde"[..]));
            let (st, body) = c.send(&get("/c")).await.unwrap();
            assert_eq!((st, body.len()), (StatusCode::NO_CONTENT, 0));
            let put = Req {
                method: Method::PUT,
                path: "/v1/kv/k",
                body: Cow::Borrowed(b"value"),
            };
            let (st, body) = c.send(&put).await.unwrap();
            assert_eq!((st, body.len()), (StatusCode::OK, 0));
            let seen = srv.await.unwrap();
            assert_eq!(seen.len(), 4, "all four on one connection");
            let first = String::from_utf8(seen[0].clone()).unwrap();
            assert_eq!(
                first,
                format!("GET /a?b=c HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n\r\n")
            );
            assert!(seen[3].ends_with(b"content-length: 5\r\n\r\nvalue"));
        }
    }

    #[tokio::test]
    async fn a_body_until_close_or_connection_close_reconnects() {
        let (addr, srv) = server(vec![b"HTTP/1.1 200 OK\r\n\r\nto the end"], 3).await;
        let mut c = Conn::new(&addr, Duration::from_secs(5)).unwrap();
        let (st, body) = c.send(&get("/")).await.unwrap();
        assert_eq!((st, body), (StatusCode::OK, &b"to the end"[..]));
        assert!(c.stream.is_none());
        srv.await.unwrap();
        let (addr, _srv) = server(
            vec![b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok"],
            4096,
        )
        .await;
        let mut c = Conn::new(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(c.send(&get("/")).await.unwrap().1, b"ok");
        assert!(c.stream.is_none(), "Connection: close is honoured");
    }

    #[tokio::test]
    async fn cut_malformed_or_extra_answers_are_errors_that_drop_the_connection() {
        let cases: [(&'static [u8], &str); 5] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
                "closed before",
            ),
            (b"HTTP/1.1 200 OK\r\ncontent-le", "closed before"),
            (b"NOT HTTP AT ALL\r\n\r\n", "malformed"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab",
                "after the answer",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "chunk",
            ),
        ];
        for (answer, want) in cases {
            let (addr, _srv) = server(vec![answer], 4096).await;
            let mut c = Conn::new(&addr, Duration::from_secs(5)).unwrap();
            let e = c.send(&get("/")).await.unwrap_err();
            assert!(e.contains(want), "{answer:?}: {e}");
            assert!(c.stream.is_none());
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut c = Conn::new(&addr, Duration::from_millis(200)).unwrap();
        let e = c.send(&get("/")).await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        drop(l);
    }
}
