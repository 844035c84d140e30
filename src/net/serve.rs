//! The accept loop shared by the client API and Raft peer listeners.
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
        let svc = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        let header_timeout = opts.header_timeout;
        conns.spawn(async move {
            let _permit = permit;
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
