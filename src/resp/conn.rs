//! One Redis connection: read, parse every complete command in the buffer,
//! answer each in order, flush once per read (pipelining); MULTI/EXEC/WATCH
//! on the connection's state (`session`).
//!
//! Invariants:
//! - Replies are written in command order; a command's reply is sent only
//!   after it ran (writes: committed and applied).
//! - A protocol error answers `-ERR Protocol error: ...` and closes.
//! - On shutdown the connection finishes the commands already read, sends
//!   their replies and closes.
//! - MULTI/EXEC is one log entry (`kv::Command::Multi`): all or nothing as
//!   to the log, and with the WATCHed keys' modify indexes checked at that
//!   entry (a changed key: a null reply, nothing ran).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Server;
use super::cmd;
use super::cmd::Plan;
use super::parse;
use super::reply::Frame;
use super::session::Session;
use crate::kv::Command;
use crate::kv::Response;
use crate::kv::redis::MultiOp;
use crate::kv::redis::Op;
use crate::kv::redis::Query;
use crate::kv::redis::Reply;
use crate::kv::redis::Watched;

/// Commands taken from the buffer at once (a pipeline is answered in
/// batches of at most this many).
const MAX_BATCH: usize = 1024;
/// Key and value bytes of consecutive data commands proposed as one log
/// entry at most.
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Commands proposed as one log entry at most (bounds the entry's reply
/// too).
const MAX_BATCH_OPS: usize = 256;
/// Commands one MULTI may queue.
const MAX_QUEUED: usize = 10_000;

/// What handling one command asks of the loop.
pub struct Handled {
    pub frame: Frame,
    pub close: bool,
}

impl From<Frame> for Handled {
    fn from(frame: Frame) -> Handled {
        Handled {
            frame,
            close: false,
        }
    }
}

/// Serve one connection. It is busy (`activity`) from the moment bytes
/// arrive until their answers are written, and idle while it waits for the
/// next command: only then may the listener close it to make room.
pub async fn run(
    server: Arc<Server>,
    mut stream: crate::net::tls::Stream,
    peer: std::net::SocketAddr,
    activity: Arc<crate::net::serve::Activity>,
    stop: CancellationToken,
) {
    let id = server.register(peer.to_string());
    let mut s = Session::new(server.clone(), id);
    let lim = parse::Limits {
        max_bulk: server
            .limits
            .max_value_bytes
            .max(server.limits.max_key_bytes),
        max_args: parse::MAX_ARGS,
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut partial_since: Option<Instant> = None;
    'conn: loop {
        let busy = activity.busy();
        // Every complete command in the buffer (bounded), answered in
        // order, flushed once.
        let mut cmds = Vec::new();
        let mut failed = None;
        while cmds.len() < MAX_BATCH {
            match parse::parse(&mut buf, lim) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => cmds.push(args),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let full = cmds.len() == MAX_BATCH;
        let close = s.run_batch(cmds, &mut out).await;
        if let Some(e) = &failed {
            Frame::err(format!("ERR Protocol error: {}", e.0)).encode(s.proto, &mut out);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if close || failed.is_some() {
            break 'conn;
        }
        if full {
            // Maybe more complete commands buffered: go on without reading.
            continue;
        }
        if stop.is_cancelled() {
            break;
        }
        drop(busy);
        // Bytes of an incomplete command are waiting: the rest must arrive
        // within the command timeout, counted from when the command began
        // (a slow trickle does not restart it). Nothing pending: no bound.
        if buf.is_empty() {
            partial_since = None;
        } else if partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        let bound = partial_since.map(|t| t + server.limits.command_timeout);
        tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = sleep_until_or_forever(bound) => {
                tracing::debug!(%peer, "closing a Redis connection: a command did not arrive in full within the command timeout");
                break;
            }
            _ = stop.cancelled() => break,
        }
    }
    server.unregister(id);
}

/// Resolves at `bound`, or never without one.
async fn sleep_until_or_forever(bound: Option<Instant>) {
    match bound {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Run the commands of one read, in order, appending the replies to
    /// `out`; true when the connection must close (QUIT). Consecutive data
    /// commands outside MULTI are proposed together as one log entry (a
    /// `Command::Multi` without watched keys): one Raft round for a
    /// pipeline, still in order, each with its own reply. A batch of reads
    /// only is one `Op::Reads` (one read index for all, no log entry).
    async fn run_batch(&mut self, cmds: Vec<Vec<Vec<u8>>>, out: &mut BytesMut) -> bool {
        let mut batch: Vec<MultiOp> = Vec::new();
        let mut bytes = 0;
        for args in cmds {
            if let Some(op) = self.batchable(&args) {
                bytes += args.iter().map(Vec::len).sum::<usize>();
                batch.push(op);
                if bytes >= MAX_BATCH_BYTES || batch.len() >= MAX_BATCH_OPS {
                    self.flush_batch(std::mem::take(&mut batch), out).await;
                    bytes = 0;
                }
                continue;
            }
            self.flush_batch(std::mem::take(&mut batch), out).await;
            bytes = 0;
            let h = self.handle(args).await;
            h.frame.encode(self.proto, out);
            if h.close {
                return true;
            }
        }
        self.flush_batch(batch, out).await;
        false
    }

    /// A data command that may join a batch (outside MULTI; its checks
    /// passed), as the op it becomes.
    fn batchable(&mut self, args: &[Vec<u8>]) -> Option<MultiOp> {
        if self.multi.is_some() || self.check(args).is_err() {
            return None;
        }
        match cmd::plan(args, &self.server.limits) {
            Plan::Write(w) => Some(MultiOp::Write(w)),
            Plan::Read(q) => self.scan_start(q).ok().map(MultiOp::Read),
            Plan::Reply(_) | Plan::NotData => None,
        }
    }

    async fn flush_batch(&mut self, batch: Vec<MultiOp>, out: &mut BytesMut) {
        let n = batch.len() as u64;
        if n == 0 {
            return;
        }
        self.server.commands.fetch_add(n, Ordering::Relaxed);
        if n == 1 {
            let op = match batch.into_iter().next().expect("one") {
                MultiOp::Write(w) => Op::Write(Command::Rmw(w)),
                MultiOp::Read(q) => Op::Read(q),
                MultiOp::Local(r) => {
                    Frame::from(r).encode(self.proto, out);
                    return;
                }
            };
            self.run(op).await.encode(self.proto, out);
            return;
        }
        let queries: Vec<Option<Query>> = batch
            .iter()
            .map(|op| match op {
                MultiOp::Read(q) => Some(q.clone()),
                _ => None,
            })
            .collect();
        // Reads only (a pipeline of GETs): one read index for all, no log
        // entry. Anything else: one log entry.
        let op = if queries.iter().all(Option::is_some) {
            Op::Reads(queries.iter().flatten().cloned().collect())
        } else {
            Op::Write(Command::Multi {
                watch: Vec::new(),
                ops: batch,
            })
        };
        let frames = match self.server.run(&op, self.deadline()).await {
            Ok(Response::Multi {
                results: Some(results),
            }) => results
                .into_iter()
                .zip(&queries)
                .map(|(r, q)| self.response(q.as_ref(), r))
                .collect(),
            Ok(other) => vec![self.response(None, other); queries.len()],
            Err(e) => vec![Frame::Error(e); queries.len()],
        };
        for f in frames {
            f.encode(self.proto, out);
        }
    }

    /// Whether this connection may run `args` (the refusal otherwise).
    fn check(&self, args: &[Vec<u8>]) -> Result<(), Frame> {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        super::auth::check(self.server.tokens.is_some(), &self.login, &name, args)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.server.limits.request_timeout
    }

    /// Handle one command.
    pub async fn handle(&mut self, args: Vec<Vec<u8>>) -> Handled {
        self.server.commands.fetch_add(1, Ordering::Relaxed);
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        self.server
            .update_client(self.id, |c| c.last_cmd.clone_from(&name));
        if let Err(refused) = self.check(&args) {
            // As any command refused while queueing: EXEC will abort.
            if self.multi.is_some() {
                self.multi_failed = true;
            }
            return refused.into();
        }
        let tokens = self.server.tokens.clone();
        match name.as_str() {
            "auth" => {
                return super::auth::auth(tokens.as_deref(), &mut self.login, &args)
                    .await
                    .into();
            }
            "hello" => {
                // Authenticate first: a wrong token changes nothing.
                if let Some((user, token)) = super::auth::hello_auth(&args)
                    && let Err(refused) =
                        super::auth::login(tokens.as_deref(), &mut self.login, Some(user), token)
                            .await
                {
                    return refused.into();
                }
            }
            "multi" => {
                if args.len() != 1 {
                    return Frame::err(cmd::wrong_args(&name)).into();
                }
                if self.multi.is_some() {
                    return Frame::err("ERR MULTI calls can not be nested").into();
                }
                self.multi = Some(Vec::new());
                self.multi_failed = false;
                return Frame::ok().into();
            }
            "exec" => return self.exec().await.into(),
            "discard" => {
                if self.multi.take().is_none() {
                    return Frame::err("ERR DISCARD without MULTI").into();
                }
                self.watch.clear();
                return Frame::ok().into();
            }
            "watch" => {
                if self.multi.is_some() {
                    return Frame::err("ERR WATCH inside MULTI is not allowed").into();
                }
                if args.len() < 2 {
                    return Frame::err(cmd::wrong_args(&name)).into();
                }
                return self.watch(&args[1..]).await.into();
            }
            "unwatch" => {
                self.watch.clear();
                return Frame::ok().into();
            }
            "quit" => {
                return Handled {
                    frame: Frame::ok(),
                    close: true,
                };
            }
            "reset" => {
                // As Redis: back to the default user, which (with tokens)
                // is not authenticated.
                self.login = super::auth::Login::default();
                self.multi = None;
                self.watch.clear();
                self.proto = 2;
                self.name.clear();
                self.server.update_client(self.id, |c| {
                    c.name.clear();
                    c.proto = 2;
                });
                return Frame::Simple("RESET".into()).into();
            }
            _ => {}
        }
        let plan = cmd::plan(&args, &self.server.limits);
        if self.multi.is_some() {
            return self.queue(&name, &args, plan).into();
        }
        match plan {
            Plan::Reply(f) => f.into(),
            Plan::Write(rmw) => self.run(Op::Write(Command::Rmw(rmw))).await.into(),
            Plan::Read(q) => match self.scan_start(q) {
                Ok(q) => self.run(Op::Read(q)).await.into(),
                Err(f) => f.into(),
            },
            Plan::NotData => super::admin::handle(self, &name, &args).await.into(),
        }
    }

    fn queue(&mut self, name: &str, args: &[Vec<u8>], plan: Plan) -> Frame {
        let op = match plan {
            Plan::Reply(f) if f.is_error() => {
                self.multi_failed = true;
                return f;
            }
            Plan::Reply(f) => MultiOp::Local(frame_reply(f)),
            Plan::Write(w) => MultiOp::Write(w),
            Plan::Read(q) => match self.scan_start(q) {
                Ok(q) => MultiOp::Read(q),
                Err(f) => {
                    self.multi_failed = true;
                    return f;
                }
            },
            Plan::NotData => match super::admin::local(self, name, args) {
                Some(f) if f.is_error() => {
                    self.multi_failed = true;
                    return f;
                }
                Some(f) => MultiOp::Local(frame_reply(f)),
                None => {
                    self.multi_failed = true;
                    return Frame::err(format!(
                        "ERR Command not allowed inside a transaction: '{name}'"
                    ));
                }
            },
        };
        let q = self.multi.as_mut().expect("in MULTI");
        if q.len() >= MAX_QUEUED {
            self.multi_failed = true;
            return Frame::err(format!(
                "ERR a transaction holds at most {MAX_QUEUED} commands in dcache"
            ));
        }
        q.push(op);
        Frame::Simple("QUEUED".into())
    }

    /// SCAN's cursor number → the key to continue after.
    fn scan_start(&self, q: Query) -> Result<Query, Frame> {
        match q {
            Query::Scan {
                after,
                pattern,
                count,
                kind,
            } => {
                let cursor: u64 = after.as_deref().unwrap_or("0").parse().unwrap_or(0);
                let after = self
                    .server
                    .cursor_key(cursor)
                    .map_err(|()| Frame::err("ERR invalid cursor"))?;
                Ok(Query::Scan {
                    after,
                    pattern,
                    count,
                    kind,
                })
            }
            q => Ok(q),
        }
    }

    /// A reply as sent: SCAN's next key becomes a cursor number.
    fn render(&self, q: Option<&Query>, r: Reply) -> Frame {
        if let (Some(Query::Scan { .. }), Reply::Array(mut parts)) = (q, r.clone())
            && parts.len() == 2
        {
            let keys = parts.pop().expect("two parts");
            let cursor = match parts.pop().expect("two parts") {
                Reply::Bulk(k) => self
                    .server
                    .cursor_for(String::from_utf8_lossy(&k).into_owned()),
                _ => 0,
            };
            return Frame::Array(vec![Frame::bulk(cursor.to_string()), Frame::from(keys)]);
        }
        Frame::from(r)
    }

    fn response(&self, q: Option<&Query>, r: Response) -> Frame {
        match r {
            Response::Reply(r) => self.render(q, r),
            Response::OutOfMemory { .. } => Frame::err(super::route::OOM),
            Response::Invalid { op, reason } => Frame::err(format!("ERR {op}: {reason}")),
            other => Frame::err(format!("ERR unexpected response {other:?}")),
        }
    }

    async fn run(&self, op: Op) -> Frame {
        match self.server.run(&op, self.deadline()).await {
            Ok(r) => {
                let q = match &op {
                    Op::Read(q) => Some(q),
                    Op::Write(_) | Op::Reads(_) => None,
                };
                self.response(q, r)
            }
            Err(e) => Frame::Error(e),
        }
    }

    async fn watch(&mut self, keys: &[Vec<u8>]) -> Frame {
        let mut names = Vec::new();
        for k in keys {
            match String::from_utf8(k.clone()) {
                Ok(k) => names.push(k),
                Err(_) => return Frame::err("ERR keys must be UTF-8 in dcache"),
            }
        }
        let q = Query::ModIndex {
            keys: names.clone(),
        };
        match self.server.run(&Op::Read(q), self.deadline()).await {
            Ok(Response::Reply(Reply::Array(idx))) => {
                for (key, i) in names.into_iter().zip(idx) {
                    let index = match i {
                        Reply::Int(n) => n as u64,
                        _ => 0,
                    };
                    self.watch.push(Watched { key, index });
                }
                Frame::ok()
            }
            Ok(other) => self.response(None, other),
            Err(e) => Frame::Error(e),
        }
    }

    async fn exec(&mut self) -> Frame {
        let Some(ops) = self.multi.take() else {
            return Frame::err("ERR EXEC without MULTI");
        };
        let watch = std::mem::take(&mut self.watch);
        if self.multi_failed {
            return Frame::err("EXECABORT Transaction discarded because of previous errors.");
        }
        let queries: Vec<Option<Query>> = ops
            .iter()
            .map(|op| match op {
                MultiOp::Read(q) => Some(q.clone()),
                _ => None,
            })
            .collect();
        let cmd = Command::Multi { watch, ops };
        match self.server.run(&Op::Write(cmd), self.deadline()).await {
            Ok(Response::Multi { results: None }) => Frame::NilArray,
            Ok(Response::Multi {
                results: Some(results),
            }) => Frame::Array(
                results
                    .into_iter()
                    .zip(queries)
                    .map(|(r, q)| self.response(q.as_ref(), r))
                    .collect(),
            ),
            Ok(other) => self.response(None, other),
            Err(e) => Frame::Error(e),
        }
    }
}

/// A locally computed frame as a reply a MULTI can carry.
fn frame_reply(f: Frame) -> Reply {
    match f {
        Frame::Simple(s) if s == "OK" => Reply::Ok,
        Frame::Simple(s) => Reply::Status(s),
        Frame::Error(e) => Reply::Error(e),
        Frame::Int(n) => Reply::Int(n),
        Frame::Bulk(b) => Reply::Bulk(b),
        Frame::Nil | Frame::NilArray => Reply::Nil,
        Frame::Array(items) => Reply::Array(items.into_iter().map(frame_reply).collect()),
        Frame::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [frame_reply(k), frame_reply(v)])
                .collect(),
        ),
    }
}
