//! Run a command on the leader, from any node: here if this node leads,
//! else forwarded once to the leader, so every command is linearizable on
//! every node and clients never see MOVED: a write with the other writes
//! waiting on this node (`Cluster::forward_write`, the leader's Raft
//! listener), a read to the leader's `POST /internal/kv` (HTTP port,
//! MessagePack). Failures become Redis errors by the error contract's
//! class.
//!
//! Invariants:
//! - One hop: the forwarded copy carries `X-Dcache-Forwarded-By`, and the
//!   leader runs it or answers `not_leader` (then we wait for the leadership
//!   to move and try again, here or at the new leader), within the
//!   command's deadline.
//! - Not applied → `-TRYAGAIN ...` (safe to retry); outcome unknown →
//!   `-ERR ... the outcome is unknown`; a full cache under `noeviction` →
//!   `-OOM ...` (README "Redis protocol" has the table).

use tokio::time::Instant;

use super::Server;
use crate::cluster::Forward;
use crate::error::Error;
use crate::error::Leader;
use crate::kv::Response;
use crate::kv::redis::Op;
use crate::wire::Class;
use crate::wire::Code;
use crate::wire::header;

/// Local attempts and forwards before giving up while leadership moves.
const MAX_ATTEMPTS: usize = 5;

/// Redis's out-of-memory error, word for word.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// A failure, already in Redis's words (the text after `-`).
pub type Failure = String;

/// The Redis error for an error of the contract.
pub fn redis_error(code: Code, msg: &str) -> Failure {
    match (code, code.class()) {
        (Code::OutOfMemory, _) => OOM.to_string(),
        (Code::InvalidInput | Code::TooLarge, _) => format!("ERR {msg}"),
        (_, Class::NotApplied) => format!("TRYAGAIN {msg} (not applied; retry)"),
        (_, Class::OutcomeUnknown) => {
            if msg.contains("outcome is unknown") {
                format!("ERR {msg}")
            } else {
                format!("ERR {msg}; the outcome is unknown")
            }
        }
        (_, Class::Answer) => format!("ERR {msg}"),
    }
}

fn local_error(e: &Error) -> Failure {
    redis_error(e.code(), &e.to_string())
}

/// What one forward produced.
enum Forwarded {
    Done(Result<Response, Failure>),
    /// Not applied (leader unreachable or no longer leader): try again.
    Retry(Failure),
}

impl Server {
    /// Run `op` on the leader by `deadline`.
    pub async fn run(&self, op: &Op, deadline: Instant) -> Result<Response, Failure> {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let res = self.cluster.run_op(op, deadline).await;
            let leader = match res {
                Ok(r) => return Ok(r),
                Err(Error::NotLeader(l)) => l,
                Err(e) => return Err(local_error(&e)),
            };
            let forwarded = match op {
                // A write goes to the leader with the follower's other
                // waiting writes (`Cluster::forward_write`), as HTTP
                // writes do; reads (and writes to an older leader) go to
                // its `/internal/kv`.
                Op::Write(cmd) => match self
                    .cluster
                    .forward_write(cmd.clone(), &leader, deadline)
                    .await
                {
                    Ok(out) => Forwarded::Done(Ok(out.response)),
                    Err(Forward::Retry(code, msg)) => Forwarded::Retry(redis_error(code, &msg)),
                    Err(Forward::Failed(code, msg)) => {
                        Forwarded::Done(Err(redis_error(code, &msg)))
                    }
                    Err(Forward::Unsupported) => self.forward(op, &leader, deadline).await,
                },
                _ => self.forward(op, &leader, deadline).await,
            };
            match forwarded {
                Forwarded::Done(r) => return r,
                Forwarded::Retry(e) => last = Some(e),
            }
            if Instant::now() >= deadline {
                break;
            }
            self.cluster.wait_leader_change(&leader.id, deadline).await;
        }
        Err(last.unwrap_or_else(|| local_error(&Error::NoLeader)))
    }

    async fn forward(&self, op: &Op, leader: &Leader, deadline: Instant) -> Forwarded {
        let body = match rmp_serde::to_vec_named(op) {
            Ok(b) => b,
            Err(e) => return Forwarded::Done(Err(format!("ERR cannot encode the command: {e}"))),
        };
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(std::time::Duration::from_millis(100));
        let mut req = self
            .forwarder
            .post(format!(
                "{}://{}/internal/kv",
                self.cluster.scheme(),
                leader.http_addr
            ))
            .header(header::FORWARDED_BY, self.cluster.id().0.as_str())
            .header(header::BUDGET_MS, budget.as_millis().to_string())
            .header("content-type", crate::wire::MSGPACK)
            .timeout(budget + std::time::Duration::from_millis(50))
            .body(body);
        // The leader's /internal/kv takes members' ops on the secret's
        // word (this node checked the command's token already).
        if let Some(s) = self.cluster.secret() {
            req = req.header(header::CLUSTER_SECRET, s.header_value());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Forwarded::Retry(redis_error(
                    Code::LeaderUnreachable,
                    &format!("leader {} could not be reached", leader.id),
                ));
            }
            Err(e) => {
                let code = if e.is_timeout() {
                    Code::Timeout
                } else {
                    Code::ForwardOutcomeUnknown
                };
                let msg = format!("forwarding to leader {} failed: {e}", leader.id);
                return Forwarded::Done(Err(redis_error(code, &msg)));
            }
        };
        let code = Code::from_header(
            resp.headers()
                .get(header::ERROR)
                .and_then(|v| v.to_str().ok()),
        );
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("reading the leader's answer failed: {e}");
                return Forwarded::Done(Err(redis_error(Code::ForwardOutcomeUnknown, &msg)));
            }
        };
        if let Some(code) = code {
            let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| code.as_str().to_string());
            if matches!(code, Code::Unauthorized | Code::Forbidden) {
                // The leader refused this node, not the client (whose token
                // this node checked): a configuration error, not a retry.
                return Forwarded::Done(Err(format!(
                    "ERR the leader {} refused the forwarded command ({msg}); with auth.enabled, forwarding needs cluster.secret on every node",
                    leader.id
                )));
            }
            let failure = redis_error(code, &msg);
            return match code {
                Code::NotLeader | Code::NoLeader | Code::Unavailable => Forwarded::Retry(failure),
                _ => Forwarded::Done(Err(failure)),
            };
        }
        if !status.is_success() {
            let msg = format!("the leader answered HTTP {status}");
            return Forwarded::Done(Err(redis_error(Code::Internal, &msg)));
        }
        Forwarded::Done(rmp_serde::from_slice(&bytes).map_err(|e| {
            redis_error(
                Code::Internal,
                &format!("cannot decode the leader's answer: {e}"),
            )
        }))
    }
}
