//! The accept loop shared by the client API, Raft peer and Redis listeners
//! ([`serve`] for HTTP, [`serve_with`] for any protocol).
//!
//! Invariants:
//! - At most `max_connections` connections are served at once; further
//!   clients wait in the kernel's backlog, so a flood cannot exhaust memory
//!   or file descriptors.
//! - A client must finish sending request headers within `header_timeout`
//!   (slowloris defence); bodies are bounded by the handlers.
//! - On shutdown the listener closes at once, idle connections are closed,
//!   in-flight requests finish, and the function returns when all
//!   connections are gone or `drain_timeout` has passed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub name: &'static str,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub drain_timeout: Duration,
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    opts: ServeOptions,
) -> io::Result<()> {
    let header_timeout = opts.header_timeout;
    serve_with(listener, shutdown, opts, move |stream, shutdown| {
        let svc = TowerToHyperService::new(router.clone());
        async move {
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
    })
    .await
}

/// The accept loop with any protocol: `handle` serves one connection and
/// must finish promptly once the token it gets is cancelled (finish the
/// request in flight, then close). The connection cap and the drain
/// (`opts.drain_timeout`, then the rest are dropped) are as for [`serve`];
/// `opts.header_timeout` is the handler's business.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    shutdown: CancellationToken,
    opts: ServeOptions,
    handle: H,
) -> io::Result<()>
where
    H: Fn(TcpStream, CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    // A JoinSet, not detached tasks: dropping it (deadline passed, or this
    // future aborted) aborts every connection, so nothing outlives the
    // server.
    let mut conns = JoinSet::new();
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
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
        let _ = stream.set_nodelay(true);
        let conn = handle(stream, shutdown.clone());
        conns.spawn(async move {
            let _permit = permit;
            conn.await;
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
