//! One worker's HTTP/1.1 keep-alive connection, on hyper's connection API.
//!
//! The generator's client: cheaper per request than `reqwest` (no pool, no
//! URL parsing, no redirect or proxy logic), so that on a small machine the
//! generator takes as little CPU as possible from the servers it measures.
//!
//! # Invariants
//!
//! * At most one connection per [`Conn`], and at most one request in flight
//!   on it (the workers are closed loop).
//! * Any failure (connect, send, body, timeout) drops the connection; the
//!   next request opens a new one. Nothing is retried: a failed request is
//!   reported as failed.
//! * A request, from connecting (when needed) until its body has been read
//!   completely, is bounded by the timeout given to [`Conn::new`].
//!
//! # Not here
//!
//! TLS, HTTP/2, redirects, proxies, DNS caching (a reconnect resolves again).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

/// A request to send: method, path-and-query (cheap to clone: shared
/// bytes) and body.
pub struct Req {
    pub method: Method,
    pub path: Uri,
    pub body: Bytes,
}

/// One keep-alive connection to `host:port`, opened on first use.
pub struct Conn {
    addr: String,
    host: HeaderValue,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// `addr` is `host:port` (no scheme).
    pub fn new(addr: &str, timeout: Duration) -> anyhow::Result<Conn> {
        Ok(Conn {
            addr: addr.to_string(),
            host: HeaderValue::from_str(addr)
                .map_err(|e| anyhow::anyhow!("bad address {addr}: {e}"))?,
            timeout,
            sender: None,
        })
    }

    /// The `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` and reads the whole answer: its status and body.
    pub async fn send(&mut self, req: Req) -> Result<(StatusCode, Bytes), String> {
        match tokio::time::timeout(self.timeout, self.send_inner(req)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("timed out after {:?}", self.timeout))
            }
        }
    }

    async fn send_inner(&mut self, req: Req) -> Result<(StatusCode, Bytes), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            unreachable!("set just above");
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = Request::new(Full::new(req.body));
        *request.method_mut() = req.method;
        *request.uri_mut() = req.path;
        request.headers_mut().insert(HOST, self.host.clone());
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        // The connection task ends when the sender is dropped or the peer
        // closes; its error is the next request's error.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}
