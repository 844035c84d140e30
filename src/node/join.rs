//! The join loop: a node started with `cluster.join_addr` asks that member
//! (any member; it forwards to the leader) to add it, with capped
//! exponential backoff, until it is added, finds itself already a voter,
//! is told no for good, or the node stops.
//!
//! The request carries the cluster secret when one is configured.
//!
//! Refusals that retrying cannot fix (bad input, a conflicting id or
//! address, a wrong cluster secret, a `join_addr` that is not a dcache node) end the loop with an
//! error naming the reason, and the node exits non-zero; anything else
//! (no leader yet, the leader cannot reach us yet, a member not up yet) is
//! retried.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::net::Backoff;
use crate::raft;
use crate::wire::Code;
use crate::wire::header;

/// First retry delay.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Bound on one join request: the leader may wait for this node to catch
/// up (a snapshot) before it answers.
const JOIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether a refusal with this code is final.
fn is_permanent(code: Option<Code>) -> bool {
    matches!(
        code,
        Some(
            Code::InvalidInput
                | Code::Conflict
                | Code::NoRoute
                | Code::MethodNotAllowed
                | Code::Unauthorized
        )
    )
}

/// Run until joined (`Ok`), refused for good (`Err`), or `stop`.
pub async fn run(
    cluster: Arc<Cluster>,
    join_addr: String,
    me: raft::Node,
    max_backoff: Duration,
    secret: Option<crate::net::ClusterSecret>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let client = crate::net::http_client(cluster.node_http_options().timeout(JOIN_REQUEST_TIMEOUT));
    let id = cluster.id().clone();
    let url = format!("{}://{join_addr}/join", cluster.scheme());
    let mut backoff = Backoff::new(FIRST_RETRY, max_backoff);
    loop {
        if cluster.is_voter_at(&me.raft_addr, &me.http_addr) {
            tracing::info!(node_id = %id, "already a voter; not joining");
            return Ok(());
        }
        let mut attempt = client.post(&url).header("content-type", "application/json");
        if let Some(s) = &secret {
            attempt = attempt.header(header::CLUSTER_SECRET, s.header_value());
        }
        let attempt = attempt
            .body(json!({ "id": id.0, "addr": me.raft_addr }).to_string())
            .send();
        let outcome = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = attempt => r,
        };
        let delay = backoff.next_delay();
        match outcome {
            Ok(r) if r.status().is_success() => {
                tracing::info!(node_id = %id, via = %join_addr, "joined the cluster");
                return Ok(());
            }
            Ok(r) => {
                let status = r.status();
                let code =
                    Code::from_header(r.headers().get(header::ERROR).and_then(|v| v.to_str().ok()));
                let body = r.text().await.unwrap_or_default();
                if is_permanent(code) {
                    return Err(Error::Startup(format!(
                        "joining through {join_addr} was refused ({status}, {}): {}",
                        code.map_or("no code", Code::as_str),
                        body.trim()
                    )));
                }
                tracing::warn!(via = %join_addr, %status, body = %body.trim(), retry_in = ?delay, "join refused");
            }
            Err(e) => {
                tracing::warn!(via = %join_addr, error = %e, retry_in = ?delay, "join request failed")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unfixable_refusals_are_final() {
        assert!(is_permanent(Some(Code::Conflict)));
        assert!(is_permanent(Some(Code::InvalidInput)));
        assert!(is_permanent(Some(Code::Unauthorized)));
        assert!(!is_permanent(Some(Code::NoLeader)));
        assert!(!is_permanent(Some(Code::MemberUnreachable)));
        assert!(!is_permanent(None));
    }
}
