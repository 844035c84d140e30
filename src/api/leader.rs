//! [`on_leader`]: run a leader-only operation here, or forward it, once.
//!
//! The one forwarding decision of the API: the operation (a `Cluster`
//! method) runs on this node; if it answers [`Error::NotLeader`] (it was not
//! proposed), the request is forwarded to that leader. If forwarding did not
//! deliver it (leader unreachable, or no longer leader), wait for the
//! leadership to change and run the operation again (this node may have
//! become the leader meanwhile), so a failover costs clients latency rather
//! than errors. Every attempt and wait shares the request's deadline.
//!
//! Invariant: a request that a follower forwarded is never forwarded again
//! (no loops, no chains): such a request that finds this node no longer
//! leader answers `not_leader`, and the follower retries.

use tokio::time::Instant;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use super::forward;
use super::forward::Forwarded;
use crate::cluster::Consistency;
use crate::cluster::Forward;
use crate::cluster::ReadOutcome;
use crate::cluster::WriteOutcome;
use crate::error::Error;
use crate::error::Leader;
use crate::kv::Command;

/// Where a leader-only request was answered.
pub enum Routed<T> {
    /// This node is the leader: the operation's outcome.
    Here(T),
    /// The leader's answer (or a redirect), to return as it is.
    Forwarded(axum::response::Response),
}

/// Attempts (local or forwarded) before giving up while leadership moves;
/// the deadline usually ends the loop first.
const MAX_ATTEMPTS: usize = 5;

pub async fn on_leader<T, F, Fut>(state: &AppState, raw: &Raw, op: F) -> Result<Routed<T>, ApiError>
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    on_leader_via(state, raw, op, |leader| async move {
        forward::to_leader(state, raw, &leader)
            .await
            .map(Routed::Forwarded)
    })
    .await
}

/// [`on_leader`] with the way to reach the leader as a parameter: `fwd`
/// gets the leader each time `op` answers `NotLeader`.
async fn on_leader_via<T, F, Fut, G, GFut>(
    state: &AppState,
    raw: &Raw,
    mut op: F,
    mut fwd: G,
) -> Result<Routed<T>, ApiError>
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
    G: FnMut(Leader) -> GFut,
    GFut: Future<Output = Forwarded<Routed<T>>>,
{
    let mut last = None;
    for _ in 0..MAX_ATTEMPTS {
        let leader = match op(raw.deadline).await {
            Ok(v) => return Ok(Routed::Here(v)),
            Err(Error::NotLeader(l)) if !raw.is_forwarded() => l,
            Err(e) => return Err(e.into()),
        };
        match fwd(leader.clone()).await {
            Forwarded::Done(r) => return r,
            Forwarded::Retry(e) => last = Some(e),
        }
        if Instant::now() >= raw.deadline {
            break;
        }
        state
            .cluster()
            .wait_leader_change(&leader.id, raw.deadline)
            .await;
    }
    Err(last.unwrap_or_else(|| Error::NoLeader.into()))
}

/// Propose `cmd` on the leader. A follower hands the command to the leader
/// (batched with its other waiting writes, `Cluster::forward_write`) and
/// answers the client itself; it forwards the request as it came only to
/// redirect it (`?redirect=true`) or to a leader that does not take
/// forwarded writes.
pub async fn write(
    state: &AppState,
    raw: &Raw,
    cmd: Command,
) -> Result<Routed<WriteOutcome>, ApiError> {
    let (c, cmd) = (state.cluster(), &cmd);
    let propose = |d| c.write(cmd.clone(), d);
    if !matches!(raw.flag("redirect"), Ok(false)) {
        return on_leader(state, raw, propose).await;
    }
    on_leader_via(state, raw, propose, |leader| async move {
        let res = c.forward_write(cmd.clone(), &leader, raw.deadline).await;
        if !matches!(res, Err(Forward::Unsupported)) {
            state.metrics().inc_forwarded();
        }
        match res {
            Ok(out) => Forwarded::Done(Ok(Routed::Here(out))),
            Err(Forward::Retry(code, msg)) => Forwarded::Retry(ApiError::new(code, msg)),
            Err(Forward::Failed(code, msg)) => Forwarded::Done(Err(ApiError::new(code, msg))),
            Err(Forward::Unsupported) => forward::to_leader(state, raw, &leader)
                .await
                .map(Routed::Forwarded),
        }
    })
    .await
}

/// Read `key` at `level`: locally for stale reads, on the leader otherwise.
pub async fn read(
    state: &AppState,
    raw: &Raw,
    key: &str,
    level: Consistency,
) -> Result<Routed<ReadOutcome>, ApiError> {
    let read = |d| state.cluster().read(key, level, d);
    match level {
        Consistency::Stale => Ok(Routed::Here(read(raw.deadline).await?)),
        Consistency::Linearizable => on_leader(state, raw, read).await,
    }
}
