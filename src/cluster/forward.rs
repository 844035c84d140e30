//! Client writes a follower received, handed to the leader in batches: one
//! `raft::rpc::WRITES` request on the leader's Raft listener carries every
//! write waiting on this follower at that moment, and the leader proposes
//! each as if its client had sent it there ([`Proposer`], below).
//!
//! Why: forwarding each HTTP request to the leader's HTTP port cost a second
//! HTTP exchange per write, parsed and answered on both nodes: about a third
//! of a put's server CPU when clients spread over the nodes (docs/
//! BENCHMARKS.md). A batch costs one small RPC for many writes, and the
//! follower builds each client's answer itself from the write's outcome.
//!
//! Invariants:
//! - A write is reported not applied ([`Forward::Retry`]) only when the
//!   leader never proposed it: the request did not reach it, was refused
//!   before its handler ran (the handler answers 200 whenever it runs), or
//!   the leader answered `not_leader`/`no_leader`/`unavailable` for it.
//!   A lost or late answer after sending is outcome-unknown.
//! - The leader never forwards a forwarded write again: it proposes it or
//!   refuses it (one hop, as for forwarded HTTP requests).
//! - At most [`MAX_SENDERS`] batches are in flight from one follower; a
//!   write that arrives when fewer are in flight goes out at once (no
//!   waiting window), so batching costs no latency at low load.
//! - Each write keeps its own deadline: the leader gets what is left of it
//!   minus [`SLACK`], so the leader's own `timeout` answer arrives in time.
//!
//! Not here: the decision to forward (callers get `NotLeader` from
//! [`Cluster::write`]), or redirects (the API layer).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Cluster;
use super::WriteOutcome;
use super::until;
use crate::error::Leader;
use crate::kv;
use crate::raft::network::PeerClient;
use crate::raft::network::WritesFailed;
use crate::raft::rpc::Applied;
use crate::raft::rpc::ForwardedWrite;
use crate::raft::rpc::Proposer;
use crate::raft::rpc::Refused;
use crate::raft::rpc::Writes;
use crate::raft::rpc::Written;
use crate::wire::Code;

/// Batches in flight from one follower at most.
const MAX_SENDERS: usize = 4;
/// Writes in one batch at most (the leader's body bound,
/// `max_append_bytes`, holds 300 of the largest).
const MAX_BATCH: usize = 128;
/// Time kept back from a write's budget for the answer to travel back.
const SLACK: Duration = Duration::from_millis(100);

/// Why a forwarded write has no outcome.
#[derive(Debug, Clone)]
pub enum Forward {
    /// Not applied (the leader did not propose it): retry once leadership
    /// moved.
    Retry(Code, String),
    /// The leader's refusal, or a failure after which the outcome is
    /// unknown (the code's class says which).
    Failed(Code, String),
    /// The leader does not take forwarded writes (an older version, or a
    /// leader this node has no address for): forward the request as it is.
    Unsupported,
}

type Outcome = Result<WriteOutcome, Forward>;

struct Item {
    client: Arc<PeerClient>,
    cmd: kv::Command,
    deadline: Instant,
    tx: oneshot::Sender<Outcome>,
}

/// Writes waiting to be sent, and how many senders run.
#[derive(Default)]
pub(super) struct WriteQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Item>,
    senders: usize,
}

impl WriteQueue {
    /// Queue `item`; start a sender if fewer than [`MAX_SENDERS`] run.
    fn push(self: &Arc<Self>, item: Item) {
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.pending.push_back(item);
            let start = s.senders < MAX_SENDERS;
            if start {
                s.senders += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().send_batches());
        }
    }

    /// The next batch: waiting writes bound for the first one's leader.
    fn take(&self) -> Option<Vec<Item>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(first) = s.pending.front() else {
            s.senders -= 1;
            return None;
        };
        let target = first.client.target().clone();
        let mut batch = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(item) = s.pending.pop_front() {
            if batch.len() < MAX_BATCH && item.client.target() == &target {
                batch.push(item);
            } else {
                rest.push_back(item);
            }
        }
        s.pending = rest;
        Some(batch)
    }

    /// Send batches until no write waits.
    async fn send_batches(self: Arc<Self>) {
        while let Some(batch) = self.take() {
            send(batch).await;
        }
    }
}

/// Send one batch (all to the same leader) and answer each write.
async fn send(batch: Vec<Item>) {
    let now = Instant::now();
    let (ready, late): (Vec<Item>, Vec<Item>) = batch
        .into_iter()
        .partition(|i| i.deadline.saturating_duration_since(now) > SLACK);
    for item in late {
        let _ = item.tx.send(Err(Forward::Retry(
            Code::Unavailable,
            "the request timeout ran out before the write could be forwarded; it was not applied"
                .into(),
        )));
    }
    let Some(client) = ready.first().map(|i| i.client.clone()) else {
        return;
    };
    let ttl = ready
        .iter()
        .map(|i| i.deadline.saturating_duration_since(now))
        .max()
        .unwrap_or_default();
    let (writes, answers): (Vec<_>, Vec<_>) = ready
        .into_iter()
        .map(|i| {
            let budget = i.deadline.saturating_duration_since(now) - SLACK;
            let w = ForwardedWrite {
                budget_ms: budget.as_millis() as u64,
                cmd: i.cmd,
            };
            (w, i.tx)
        })
        .unzip();
    let leader = client.target().clone();
    match client.writes(&Writes { writes }, ttl).await {
        Ok(written) => {
            for (tx, w) in answers.into_iter().zip(written) {
                let _ = tx.send(outcome(w));
            }
        }
        Err(e) => {
            let failed = match e {
                WritesFailed::NotSent(m) => Forward::Retry(
                    Code::LeaderUnreachable,
                    format!("the leader {leader} could not be reached: {m}"),
                ),
                WritesFailed::Unsupported => Forward::Unsupported,
                WritesFailed::TimedOut(m) => Forward::Failed(
                    Code::Timeout,
                    format!("forwarding to the leader {leader} timed out: {m}"),
                ),
                WritesFailed::Unknown(m) => Forward::Failed(
                    Code::ForwardOutcomeUnknown,
                    format!("forwarding to the leader {leader} failed: {m}"),
                ),
            };
            for tx in answers {
                let _ = tx.send(Err(failed.clone()));
            }
        }
    }
}

/// One write's outcome as the leader answered it.
fn outcome(w: Written) -> Outcome {
    match w {
        Ok(Applied {
            response,
            raft_index,
        }) => Ok(WriteOutcome {
            response,
            raft_index,
        }),
        Err(Refused { code, message }) => Err(match code {
            Code::NotLeader | Code::NoLeader | Code::Unavailable => Forward::Retry(code, message),
            _ => Forward::Failed(code, message),
        }),
    }
}

impl Cluster {
    /// On a follower: have `leader` propose `cmd` (batched with the other
    /// writes waiting here, see the module doc) and wait for its outcome.
    pub async fn forward_write(
        &self,
        cmd: kv::Command,
        leader: &Leader,
        deadline: Instant,
    ) -> Outcome {
        let Some(client) = self.leader_client(leader) else {
            return Err(Forward::Unsupported);
        };
        let (tx, rx) = oneshot::channel();
        self.forwarded_writes.push(Item {
            client,
            cmd,
            deadline,
            tx,
        });
        match until(deadline, rx).await {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(Forward::Failed(
                Code::ForwardOutcomeUnknown,
                "the forwarding task stopped".into(),
            )),
            None => Err(Forward::Failed(
                Code::Timeout,
                format!("no answer from the leader {} in time", leader.id),
            )),
        }
    }
}

/// The leader's end: propose each forwarded write by its own budget.
impl Proposer for Cluster {
    fn propose(&self, w: Writes) -> BoxFuture<'_, Vec<Written>> {
        let now = Instant::now();
        let each = w.writes.into_iter().map(move |fw| async move {
            let deadline = now + Duration::from_millis(fw.budget_ms);
            self.write(fw.cmd, deadline)
                .await
                .map(|o| Applied {
                    response: o.response,
                    raft_index: o.raft_index,
                })
                .map_err(|e| Refused {
                    code: e.code(),
                    message: e.to_string(),
                })
        });
        Box::pin(futures_util::future::join_all(each))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: Code) -> Written {
        Err(Refused {
            code,
            message: code.as_str().into(),
        })
    }

    /// Only a leader that did not propose the write makes it a retry; its
    /// other refusals (an answer, or an unknown outcome) reach the client.
    #[test]
    fn only_unproposed_writes_are_retried() {
        for code in [Code::NotLeader, Code::NoLeader, Code::Unavailable] {
            assert!(
                matches!(outcome(refused(code)), Err(Forward::Retry(c, _)) if c == code),
                "{code}"
            );
        }
        for code in [
            Code::Timeout,
            Code::OutcomeUnknown,
            Code::OutOfMemory,
            Code::InvalidInput,
            Code::TooLarge,
            Code::Internal,
        ] {
            assert!(
                matches!(outcome(refused(code)), Err(Forward::Failed(c, _)) if c == code),
                "{code}"
            );
        }
        let applied = outcome(Ok(Applied {
            response: kv::Response::Deleted { existed: true },
            raft_index: 7,
        }))
        .unwrap();
        assert_eq!(applied.raft_index, 7);
    }
}
