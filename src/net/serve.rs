//! The accept loop shared by the client API, Raft peer and Redis listeners
//! ([`serve`] for HTTP, [`serve_with`] for any protocol), and one HTTP
//! connection's serving ([`serve_http`]) for a listener that tells
//! protocols apart by a connection's first bytes ([`Rewind`] gives them
//! back).
//!
//! Invariants:
//! - At most `max_connections` connections are served at once. Past that,
//!   a new connection takes the place of the one idle the longest (see
//!   `conns`: waiting for headers, or kept alive between requests), which
//!   is closed; only when every connection is busy does the new one wait
//!   (in the kernel's backlog: the loop holds one accepted connection at
//!   most), so idle connections can never lock clients out and a flood
//!   cannot exhaust memory or file descriptors.
//! - At most `max_connections_per_ip` connections per client IP: past it,
//!   that IP's longest-idle connection is closed for the new one, or, if
//!   all of them are busy, the new one is closed at once.
//! - An HTTP client must finish sending request headers within
//!   `header_timeout` (slowloris defence); bodies are bounded by the
//!   handlers. Another protocol's handler bounds its own reads.
//! - A connection is idle unless its handler holds a [`Busy`] guard
//!   (HTTP: a request or its response body in flight); an idle connection
//!   chosen to make room is closed by dropping its handler.
//! - Every request carries the client's address as an
//!   `axum::extract::ConnectInfo<SocketAddr>` extension (per-IP limits),
//!   and, on TLS with a client certificate, a [`PeerCertificates`]
//!   extension.
//! - With `tls` set, every connection is TLS: the handshake (bounded by
//!   `header_timeout`) runs in the connection's task, not in the accept
//!   loop, and a connection that does not complete it (plain HTTP, a wrong
//!   or missing certificate) is closed without an answer.
//! - On shutdown the listener closes at once, idle connections are closed,
//!   in-flight requests finish, and the function returns when all
//!   connections are gone or `drain_timeout` has passed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use super::conns::Activity;
pub use super::conns::Busy;
use super::conns::Table;
use super::tls::Acceptor;
use super::tls::Stream;

/// The client's verified certificate chain (leaf first), on requests that
/// came over TLS with a client certificate.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<[rustls_pki_types::CertificateDer<'static>]>);

/// How long the loop waits for an evicted connection to free its slot
/// before closing the next idle one.
const EVICT_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub name: &'static str,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub drain_timeout: Duration,
    /// Serve TLS with this acceptor (None: plain TCP).
    pub tls: Option<Acceptor>,
}

/// Serve HTTP/1.1 with `router` (see the module's invariants).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    opts: ServeOptions,
) -> io::Result<()> {
    let header_timeout = opts.header_timeout;
    serve_with(
        listener,
        shutdown,
        opts,
        move |stream, peer, activity, shutdown| {
            let certs = stream.peer_certificates().map(PeerCertificates);
            serve_http(
                stream,
                HttpConn {
                    peer,
                    certs,
                    router: router.clone(),
                    activity,
                    shutdown,
                    header_timeout,
                },
            )
        },
    )
    .await
}

/// What [`serve_http`] needs to know about one connection.
pub struct HttpConn {
    /// The client's address (the `ConnectInfo` of every request).
    pub peer: SocketAddr,
    /// The client's verified certificate chain, when TLS had one.
    pub certs: Option<PeerCertificates>,
    pub router: Router,
    pub activity: Arc<Activity>,
    pub shutdown: CancellationToken,
    /// Bound on receiving each request's headers.
    pub header_timeout: Duration,
}

/// Serve HTTP/1.1 on one connection that [`serve_with`] accepted (the
/// handler [`serve`] uses; a listener that speaks another protocol too
/// hands it the connections that turn out to be HTTP).
pub async fn serve_http<S>(stream: S, c: HttpConn)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let HttpConn {
        peer,
        certs,
        router,
        activity,
        shutdown,
        header_timeout,
    } = c;
    let svc = tower::service_fn(move |mut req: axum::http::Request<Incoming>| {
        let busy = activity.busy();
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(c) = &certs {
            req.extensions_mut().insert(c.clone());
        }
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await?;
            // Busy until the body is sent, too (streams).
            Ok::<_, std::convert::Infallible>(
                resp.map(|body| Body::new(Tracked { body, _busy: busy })),
            )
        }
    });
    let svc = TowerToHyperService::new(svc);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A client may shut down its write side after sending the
        // request and wait for the answer; without this hyper would
        // drop the request in flight on that EOF.
        .half_close(true)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A stream whose first bytes were already read (to tell protocols
/// apart): reads give back `prefix` first, then the rest of `inner`.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The accept loop with any protocol: `handle(stream, peer, activity,
/// shutdown)` serves one connection. It holds `activity.busy()` while a
/// request is in flight (an idle connection may be closed, by dropping the
/// handler, to make room) and must finish promptly once `shutdown` is
/// cancelled (the request in flight, then close). Caps, eviction and the
/// drain (`opts.drain_timeout`, then the rest are dropped) as for
/// [`serve`]; `opts.header_timeout` bounds the TLS handshake, and after it
/// is the handler's business.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    shutdown: CancellationToken,
    opts: ServeOptions,
    handle: H,
) -> io::Result<()>
where
    H: Fn(Stream, SocketAddr, Arc<Activity>, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    // A JoinSet, not detached tasks: dropping it (deadline passed, or this
    // future aborted) aborts every connection, so nothing outlives the
    // server.
    let mut conns = JoinSet::new();
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let table = Table::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = opts.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip();
        if table.count(ip) >= opts.max_connections_per_ip && !table.evict_oldest_idle(Some(ip)) {
            tracing::debug!(listener = opts.name, %ip, "per-IP connection cap: refused");
            drop(stream);
            continue;
        }
        // At the cap: make room by closing the longest-idle connection(s);
        // with none idle, wait for a slot.
        let permit = loop {
            if let Ok(p) = permits.clone().try_acquire_owned() {
                break Some(p);
            }
            let evicted = table.evict_oldest_idle(None);
            let wait = permits.clone().acquire_owned();
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                p = wait => break Some(p.expect("semaphore never closed")),
                _ = tokio::time::sleep(EVICT_RETRY), if evicted => {}
            }
        };
        let Some(permit) = permit else { break };
        let _ = stream.set_nodelay(true);
        let slot = table.insert(ip);
        let (handle, activity, stop) = (handle.clone(), slot.activity.clone(), shutdown.clone());
        let (tls, handshake_timeout) = (opts.tls.clone(), opts.header_timeout);
        let name = opts.name;
        let conn = async move {
            let stream = match tls {
                None => Stream::Plain(stream),
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            handle(stream, peer, activity, stop).await
        };
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = conn => {}
                // Idle (nothing in flight): dropping it loses nothing.
                _ = slot.evict.cancelled() => {
                    tracing::debug!(listener = name, %peer, "closed an idle connection to make room");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            listener = opts.name,
            remaining = conns.len(),
            "drain deadline passed; dropping remaining connections"
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// A response body that keeps its connection busy until it is sent (or
/// dropped).
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
