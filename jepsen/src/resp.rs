//! The RESP workload: Redis-protocol clients on every node's Redis port.
//!
//! Register keys `rk0..` take `GET` (alone, or two in one pipeline),
//! `SET`, `SET .. NX`, `SET .. GET` and `DEL` and join the main history, so
//! the linearizability checker checks them with the HTTP workloads' keys (the key spaces do not overlap; the
//! final linearizable reads over HTTP see the same store). Counter keys
//! `ck0..` take only `INCR` and `GET`, checked by [`checker::counter`]
//! (an `INCR` of unknown outcome has no result the register model could
//! use).
//!
//! How a reply maps onto the history (the error contract, as the RESP
//! listener states it in README "Redis protocol"):
//!
//! | reply | write | read |
//! |---|---|---|
//! | the command's normal answer | `Ok(..)` | `Ok(Read(..))` |
//! | `-TRYAGAIN`, `-READONLY`, `-OOM` (not applied) | `Fail` | dropped |
//! | any other error, timeout, cut connection after sending | `Indeterminate` | dropped |
//! | no connection (nothing sent) | `Fail` | dropped |
//!
//! [`checker::counter`]: dcache_jepsen::checker::counter

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use dcache_jepsen::checker::counter::CounterEvent;
use dcache_jepsen::checker::counter::CounterOp;
use dcache_jepsen::history::Op;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;
use dcache_testkit::redis::Bounds;
use dcache_testkit::redis::Value;
use dcache_testkit::redis::encode;
use dcache_testkit::redis::read_value;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::client::Access;
use crate::db::Db;
use crate::register::Recorder;

/// How long one command may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(4);
/// How large a reply the client accepts (the workload's values are
/// short, its replies flat).
const BOUNDS: Bounds = Bounds {
    bulk: 1 << 20,
    items: 1024,
    depth: 4,
};

/// Why a command got no reply.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No connection: the command was not sent.
    NotSent,
    /// Sent, then the connection failed or the time ran out.
    Lost,
}

/// A connection's byte stream: TCP, or TLS over it (`--secure`).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
type Stream = BufReader<Box<dyn Io>>;

/// One RESP connection (RESP2, no `HELLO`).
pub(crate) struct Conn {
    stream: Stream,
}

impl Conn {
    /// Connect (TLS and `AUTH <token>` when `access` has them); None if
    /// any step fails (nothing was sent).
    pub(crate) async fn connect(addr: &str, access: &Access) -> Option<Conn> {
        let setup = async {
            let s = TcpStream::connect(addr).await.ok()?;
            s.set_nodelay(true).ok()?;
            let io: Box<dyn Io> = match &access.tls {
                Some(tls) => {
                    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                    Box::new(tls.connect(s, host).await.ok()?)
                }
                None => Box::new(s),
            };
            let mut conn = Conn {
                stream: BufReader::new(io),
            };
            if let Some(token) = &access.token {
                match conn.call(&["AUTH", token]).await {
                    Ok(Value::Simple(ok)) if ok == "OK" => {}
                    _ => return None,
                }
            }
            Some(conn)
        };
        tokio::time::timeout(TIMEOUT, setup).await.ok()?
    }

    /// Send one command and read its reply, within [`TIMEOUT`].
    pub(crate) async fn call(&mut self, args: &[&str]) -> Result<Value, CallError> {
        let mut r = self.pipeline(&[args]).await?;
        Ok(r.remove(0))
    }

    /// Send commands in one write (a pipeline: the server reads them
    /// together) and read their replies, within [`TIMEOUT`].
    pub(crate) async fn pipeline(&mut self, cmds: &[&[&str]]) -> Result<Vec<Value>, CallError> {
        let mut out = Vec::new();
        for args in cmds {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            out.extend_from_slice(&encode(&args));
        }
        let exchange = async {
            self.stream.get_mut().write_all(&out).await?;
            let mut replies = Vec::with_capacity(cmds.len());
            for _ in cmds {
                replies.push(read_value(&mut self.stream, BOUNDS).await?);
            }
            Ok::<_, std::io::Error>(replies)
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(r)) => Ok(r),
            _ => Err(CallError::Lost),
        }
    }
}

/// Whether an error reply says the command was not applied.
pub(crate) fn not_applied(err: &str) -> bool {
    ["TRYAGAIN", "READONLY", "OOM"]
        .iter()
        .any(|p| err.starts_with(p))
}

/// A write's outcome from its reply, given how the normal answer maps.
fn write_outcome(r: Result<Value, CallError>, ok: impl FnOnce(Value) -> Option<Ret>) -> Outcome {
    match r {
        Err(CallError::NotSent) => Outcome::Fail,
        Err(CallError::Lost) => Outcome::Indeterminate,
        Ok(Value::Error(e)) if not_applied(&e) => Outcome::Fail,
        Ok(Value::Error(_)) => Outcome::Indeterminate,
        // An answer the command cannot give: record it as unknown, and the
        // checker will find any effect it had.
        Ok(reply) => ok(reply).map_or(Outcome::Indeterminate, Outcome::Ok),
    }
}

fn bulk_string(r: &Value) -> Option<Option<String>> {
    match r {
        Value::Nil => Some(None),
        Value::Bulk(b) => String::from_utf8(b.clone()).ok().map(Some),
        _ => None,
    }
}

/// A GET's reply as a read's outcome (anything but a value or nil: failed,
/// and dropped from the history).
fn read_outcome(r: Option<&Value>) -> Outcome {
    match r.and_then(bulk_string) {
        Some(v) => Outcome::Ok(Ret::Read(v)),
        None => Outcome::Fail,
    }
}

/// The counter events the RESP clients recorded.
pub(crate) type Counters = std::sync::Mutex<Vec<CounterEvent>>;

/// What a RESP client needs.
pub(crate) struct RespCtx {
    pub(crate) rec: Arc<Recorder>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) n: usize,
    pub(crate) keys: usize,
    pub(crate) counter_keys: usize,
    /// TLS and token (`--secure`).
    pub(crate) access: Access,
}

/// A client's connections, one per node, opened on first use and dropped
/// after any failure.
struct Conns(Vec<Option<Conn>>, Access);

impl Conns {
    fn new(ctx: &RespCtx) -> Conns {
        Conns((0..ctx.n).map(|_| None).collect(), ctx.access.clone())
    }

    async fn call(&mut self, node: usize, args: &[&str]) -> Result<Value, CallError> {
        let mut r = self.pipeline(node, &[args]).await?;
        Ok(r.remove(0))
    }

    async fn pipeline(&mut self, node: usize, cmds: &[&[&str]]) -> Result<Vec<Value>, CallError> {
        let slot = &mut self.0[node - 1];
        if slot.is_none() {
            *slot = Conn::connect(&Db::redis(node), &self.1).await;
        }
        let Some(conn) = slot.as_mut() else {
            return Err(CallError::NotSent);
        };
        let r = conn.pipeline(cmds).await;
        if r.is_err() {
            *slot = None;
        }
        r
    }
}

/// One RESP client: random commands on random nodes until `until`.
pub(crate) async fn resp_loop(ctx: Arc<RespCtx>, seed: u64, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conns = Conns::new(&ctx);
    let rec = &ctx.rec;
    let mut client = rec.new_client();
    let mut counter = 0u64;
    while Instant::now() < until {
        let node = rng.gen_range(1..=ctx.n);
        let choice = rng.gen_range(0..10);
        let invoke = rec.now();
        let failed = if choice < 3 && ctx.counter_keys > 0 {
            // A counter: INCR (2 in 3) or GET.
            let key = format!("ck{}", rng.gen_range(0..ctx.counter_keys));
            let incr = rng.gen_bool(2.0 / 3.0);
            let r = conns
                .call(node, &[if incr { "INCR" } else { "GET" }, &key])
                .await;
            let complete = rec.now();
            let op = match (&r, incr) {
                (Ok(Value::Int(v)), true) => Some(CounterOp::IncrOk(*v)),
                (Ok(Value::Error(e)), true) if not_applied(e) => Some(CounterOp::IncrFailed),
                (Err(CallError::NotSent), true) => Some(CounterOp::IncrFailed),
                (_, true) => Some(CounterOp::IncrUnknown),
                (Ok(Value::Nil), false) => Some(CounterOp::Read(0)),
                (Ok(reply), false) => bulk_string(reply)
                    .flatten()
                    .and_then(|s| s.parse().ok())
                    .map(CounterOp::Read),
                (Err(_), false) => None,
            };
            let failed = !matches!(op, Some(CounterOp::IncrOk(_) | CounterOp::Read(_)));
            if let Some(op) = op {
                let unknown = op == CounterOp::IncrUnknown;
                ctx.counters.lock().expect("counters").push(CounterEvent {
                    key,
                    client,
                    op,
                    invoke_ns: invoke,
                    complete_ns: (!unknown).then_some(complete),
                });
                if unknown {
                    client = rec.new_client();
                }
            }
            failed
        } else {
            let key = format!("rk{}", rng.gen_range(0..ctx.keys));
            counter += 1;
            let value = format!("r{client}-{counter}");
            let (op, outcome) = match choice {
                5 if ctx.keys > 1 => {
                    // Two GETs in one write: the server answers them with
                    // one read index (README "Redis protocol"). Each is a
                    // read over the same interval; the second is recorded
                    // as another client's (a client's ops are sequential).
                    let other = format!("rk{}", rng.gen_range(0..ctx.keys));
                    let r = conns
                        .pipeline(node, &[&["GET", &key], &["GET", &other]])
                        .await;
                    let (first, second) = match &r {
                        Ok(v) => (read_outcome(v.first()), read_outcome(v.get(1))),
                        Err(_) => (Outcome::Fail, Outcome::Fail),
                    };
                    let c2 = rec.new_client();
                    rec.record_read(c2, other, invoke, second);
                    (Op::Read, first)
                }
                3..=5 => {
                    let r = conns.call(node, &["GET", &key]).await;
                    (Op::Read, read_outcome(r.as_ref().ok()))
                }
                6 => {
                    let r = conns.call(node, &["SET", &key, &value]).await;
                    let o = write_outcome(r, |r| {
                        (r == Value::Simple("OK".into())).then_some(Ret::Written)
                    });
                    (Op::Write(value), o)
                }
                7 => {
                    // SET NX: a CAS from absent.
                    let r = conns.call(node, &["SET", &key, &value, "NX"]).await;
                    let o = write_outcome(r, |r| match r {
                        Value::Simple(s) if s == "OK" => Some(Ret::Cas(true)),
                        Value::Nil => Some(Ret::Cas(false)),
                        _ => None,
                    });
                    (
                        Op::Cas {
                            expected: None,
                            new: value,
                        },
                        o,
                    )
                }
                8 => {
                    // SET .. GET: a write that reads the value it replaced,
                    // so a CAS from that value when it answers; a blind
                    // write when its outcome is unknown.
                    let r = conns.call(node, &["SET", &key, &value, "GET"]).await;
                    match r {
                        Ok(ref reply @ (Value::Bulk(_) | Value::Nil)) => {
                            let old = bulk_string(reply).flatten();
                            let op = Op::Cas {
                                expected: old,
                                new: value,
                            };
                            (op, Outcome::Ok(Ret::Cas(true)))
                        }
                        r => (Op::Write(value), write_outcome(r, |_| None)),
                    }
                }
                _ => {
                    let r = conns.call(node, &["DEL", &key]).await;
                    let o = write_outcome(r, |r| {
                        matches!(r, Value::Int(0 | 1)).then_some(Ret::Deleted)
                    });
                    (Op::Delete, o)
                }
            };
            let failed = !matches!(outcome, Outcome::Ok(_));
            if op == Op::Read {
                rec.record_read(client, key, invoke, outcome);
            } else {
                client = rec.record_write(client, key, op, invoke, outcome);
            }
            failed
        };
        if failed {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
        }
    }
}

/// Final linearizable `GET`s of every counter key through every node's
/// Redis port (after healing), added to the counter events.
pub(crate) async fn final_counter_reads(ctx: &RespCtx) {
    for node in 1..=ctx.n {
        let mut conns = Conns::new(ctx);
        for k in 0..ctx.counter_keys {
            let key = format!("ck{k}");
            let invoke = ctx.rec.now();
            let r = conns.call(node, &["GET", &key]).await;
            let value = match r {
                Ok(Value::Nil) => Some(0),
                Ok(reply) => bulk_string(&reply).flatten().and_then(|s| s.parse().ok()),
                Err(_) => None,
            };
            if let Some(v) = value {
                ctx.counters.lock().expect("counters").push(CounterEvent {
                    key,
                    client: u64::MAX - node as u64,
                    op: CounterOp::Read(v),
                    invoke_ns: invoke,
                    complete_ns: Some(ctx.rec.now()),
                });
            }
        }
    }
}

/// The keys the RESP workload writes (for the after-run checks that must
/// know every key).
pub(crate) fn keys(keys: usize, counter_keys: usize) -> Vec<String> {
    (0..keys)
        .map(|k| format!("rk{k}"))
        .chain((0..counter_keys).map(|k| format!("ck{k}")))
        .collect()
}
