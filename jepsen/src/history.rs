//! Operation histories recorded by the fault-injection harness.
//!
//! A [`History`] is a flat list of [`Event`]s, one per client operation, each
//! carrying its invocation and completion times taken from *one* monotonic
//! clock (nanoseconds; the origin does not matter, only the order). Every key
//! of the cache is an independent register, so the checker splits a history
//! with [`History::by_key`] and checks each key on its own.
//!
//! How the harness should record outcomes (the checker relies on this):
//!
//! | what happened                                   | record as                          |
//! |-------------------------------------------------|------------------------------------|
//! | 2xx                                             | `Ok(ret)`                          |
//! | CAS answered 412 (current value != expected)    | `Ok(Ret::Cas(false))` — it *is* information |
//! | expire/persist answered 404 `key_not_found`     | `Ok(Ret::Found(false))` — information too |
//! | known not applied (503 not_leader, 4xx, refused before sending) | `Fail` (dropped by the checker) |
//! | timeout, cut connection, 5xx "outcome unknown"  | `Indeterminate`, `complete_ns: None` |
//!
//! A failed or indeterminate *read* carries no information and is dropped.
//! Values are unique strings: the harness never writes the same value twice
//! (the checker's model and its explanations rely on it only for readability;
//! soundness does not depend on it).
//!
//! TTL operations ([`Op::WriteTtl`], [`Op::WriteKeepTtl`], [`Op::Expire`],
//! [`Op::Persist`]) carry a [`TtlMeta`] with the harness's wall clock and
//! the deadlines dcache reported, for the wall-clock checks; histories
//! without it (and older ones) read as before.
//!
//! Serialisation: [`History::to_jsonl`] / [`History::from_jsonl`] write and read
//! one JSON object per line, so a harness can append events as they complete
//! and a crashed run still leaves a readable prefix.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

/// A register value. Values are unique strings chosen by the harness.
pub type Value = String;

/// The operation a client invoked on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// GET: returns the value or absent.
    Read,
    /// PUT of a (unique) value.
    Write(Value),
    /// Compare-and-set on *values*: set `new` iff the current value equals
    /// `expected` (`None` = the key is absent). The harness maps its
    /// modify-index CAS onto this.
    Cas { expected: Option<Value>, new: Value },
    /// DELETE: the key becomes absent.
    Delete,
    /// PUT of a (unique) value with a time to live (`?ttl=`).
    WriteTtl { value: Value, ttl_ms: u64 },
    /// PUT of a (unique) value keeping the key's deadline (`?keepttl=true`;
    /// none if the key was absent).
    WriteKeepTtl(Value),
    /// POST `?expire=`: set or refresh the TTL of an existing key.
    Expire { ttl_ms: u64 },
    /// POST `?persist=true`: remove the TTL of an existing key.
    Persist,
}

/// What a successful (`Outcome::Ok`) operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    /// A read's result: the value, or `None` for absent.
    Read(Option<Value>),
    /// A write was acknowledged.
    Written,
    /// A CAS result: `true` = applied, `false` = mismatch (HTTP 412).
    Cas(bool),
    /// A delete was acknowledged.
    Deleted,
    /// An expire or persist: `true` = the key existed (200) and its TTL was
    /// set, `false` = it did not (404 `key_not_found`), nothing changed.
    Found(bool),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Completed with a definite result.
    Ok(Ret),
    /// Known *not* to have been applied: no effect, dropped by the checker.
    Fail,
    /// Unknown whether it was applied: it may take effect at any time after
    /// its invocation, or never.
    Indeterminate,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Client (process) id; informational, the checker does not use it.
    pub client: u64,
    /// The key operated on; each key is checked independently.
    pub key: String,
    pub op: Op,
    /// Invocation time (ns, monotonic clock shared by all clients).
    pub invoke_ns: u64,
    /// Completion time; `None` for [`Outcome::Indeterminate`] (= +infinity).
    /// The checker ignores a value given for an indeterminate op: a request
    /// whose outcome is unknown can still be applied after the client gave up.
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
    /// Clock and deadline facts for the TTL checks (see [`TtlMeta`]); absent
    /// in histories without TTL operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<TtlMeta>,
}

/// What the harness knows about an operation's clocks and deadlines, for
/// the wall-clock TTL checks (`checker::ttl`). The linearizability check
/// does not use it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TtlMeta {
    /// The harness's wall clock at invocation, ms since the Unix epoch (the
    /// nodes run on the same machine, so this is their clock minus their
    /// skew).
    pub wall_ms: u64,
    /// The deadline dcache reported (ms since the epoch; `None` = no
    /// deadline): a write's or expire's `expires_at`, a read's
    /// `X-Dcache-Expires-At`. Meaningful only for `Ok` outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Reads: the node that served it (`X-Dcache-Served-By`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// Reads: the lowest clock skew (ms) the serving node's process had
    /// while the read was in flight, per the nemesis's record; `None` when
    /// the serving node is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_skew_ms: Option<i64>,
    /// The answer carried no deadline (a read through the seed API):
    /// `expires_at_ms` says nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unreported: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Event {
    /// An operation that completed with result `ret`.
    pub fn ok(
        client: u64,
        key: impl Into<String>,
        op: Op,
        invoke_ns: u64,
        complete_ns: u64,
        ret: Ret,
    ) -> Self {
        Self::completed(client, key, op, invoke_ns, complete_ns, Outcome::Ok(ret))
    }

    /// An operation known not to have been applied.
    pub fn fail(
        client: u64,
        key: impl Into<String>,
        op: Op,
        invoke_ns: u64,
        complete_ns: u64,
    ) -> Self {
        Self::completed(client, key, op, invoke_ns, complete_ns, Outcome::Fail)
    }

    fn completed(
        client: u64,
        key: impl Into<String>,
        op: Op,
        invoke_ns: u64,
        complete_ns: u64,
        outcome: Outcome,
    ) -> Self {
        Event {
            client,
            key: key.into(),
            op,
            invoke_ns,
            complete_ns: Some(complete_ns),
            outcome,
            ttl: None,
        }
    }

    /// An operation whose outcome is unknown (completion time +infinity).
    pub fn indeterminate(client: u64, key: impl Into<String>, op: Op, invoke_ns: u64) -> Self {
        Event {
            client,
            key: key.into(),
            op,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Indeterminate,
            ttl: None,
        }
    }

    /// Checks internal consistency: an `Ok` needs a completion time not
    /// before its invocation, and a result of the kind matching the op.
    pub fn validate(&self) -> Result<(), String> {
        if let Outcome::Ok(ret) = &self.outcome {
            match self.complete_ns {
                None => return Err(format!("{self}: Ok outcome without complete_ns")),
                Some(c) if c < self.invoke_ns => {
                    return Err(format!("{self}: completes before it is invoked"));
                }
                Some(_) => {}
            }
            let matches = matches!(
                (&self.op, ret),
                (Op::Read, Ret::Read(_))
                    | (Op::Write(_), Ret::Written)
                    | (Op::Cas { .. }, Ret::Cas(_))
                    | (Op::Delete, Ret::Deleted)
                    | (Op::WriteTtl { .. } | Op::WriteKeepTtl(_), Ret::Written)
                    | (Op::Expire { .. } | Op::Persist, Ret::Found(_))
            );
            if !matches {
                return Err(format!("{self}: result does not match the operation"));
            }
        }
        if let (Outcome::Fail, Some(c)) = (&self.outcome, self.complete_ns)
            && c < self.invoke_ns
        {
            return Err(format!("{self}: completes before it is invoked"));
        }
        Ok(())
    }
}

fn fmt_value(v: &Option<Value>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "absent".to_string(),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read => write!(f, "read"),
            Op::Write(v) => write!(f, "write({v:?})"),
            Op::Cas { expected, new } => write!(f, "cas({} -> {new:?})", fmt_value(expected)),
            Op::Delete => write!(f, "delete"),
            Op::WriteTtl { value, ttl_ms } => write!(f, "write({value:?}, ttl {ttl_ms} ms)"),
            Op::WriteKeepTtl(v) => write!(f, "write({v:?}, keepttl)"),
            Op::Expire { ttl_ms } => write!(f, "expire({ttl_ms} ms)"),
            Op::Persist => write!(f, "persist"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(Ret::Read(v)) => write!(f, "ok -> {}", fmt_value(v)),
            Outcome::Ok(Ret::Written) | Outcome::Ok(Ret::Deleted) => write!(f, "ok"),
            Outcome::Ok(Ret::Cas(true)) => write!(f, "ok (applied)"),
            Outcome::Ok(Ret::Cas(false)) => write!(f, "ok (mismatch)"),
            Outcome::Ok(Ret::Found(true)) => write!(f, "ok (found)"),
            Outcome::Ok(Ret::Found(false)) => write!(f, "ok (not found)"),
            Outcome::Fail => write!(f, "fail"),
            Outcome::Indeterminate => write!(f, "indeterminate"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let complete = match self.complete_ns {
            Some(c) if self.outcome != Outcome::Indeterminate => c.to_string(),
            _ => "inf".to_string(),
        };
        write!(
            f,
            "client {} key {:?} {} [{}..{} ns] {}",
            self.client, self.key, self.op, self.invoke_ns, complete, self.outcome
        )
    }
}

/// A recorded history: every operation of a test run, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub events: Vec<Event>,
}

/// Error reading a JSON-lines history.
#[derive(Debug)]
pub enum HistoryError {
    Io(io::Error),
    /// A line (1-based) that is not a valid [`Event`].
    Json {
        line: usize,
        source: serde_json::Error,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io(e) => write!(f, "reading history: {e}"),
            HistoryError::Json { line, source } => write!(f, "history line {line}: {source}"),
        }
    }
}

impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Io(e) => Some(e),
            HistoryError::Json { source, .. } => Some(source),
        }
    }
}

impl From<io::Error> for HistoryError {
    fn from(e: io::Error) -> Self {
        HistoryError::Io(e)
    }
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Indices into `events`, grouped by key (keys sorted, indices ascending).
    pub fn by_key(&self) -> BTreeMap<&str, Vec<usize>> {
        let mut map: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, e) in self.events.iter().enumerate() {
            map.entry(e.key.as_str()).or_default().push(i);
        }
        map
    }

    /// Writes one JSON object per event, one per line.
    pub fn to_jsonl<W: Write>(&self, mut w: W) -> io::Result<()> {
        for e in &self.events {
            serde_json::to_writer(&mut w, e)?;
            w.write_all(b"\n")?;
        }
        w.flush()
    }

    pub fn to_jsonl_string(&self) -> String {
        let mut buf = Vec::new();
        self.to_jsonl(&mut buf)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }

    /// Reads a JSON-lines history; blank lines are skipped.
    pub fn from_jsonl<R: BufRead>(r: R) -> Result<Self, HistoryError> {
        let mut events = Vec::new();
        for (i, line) in r.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let e = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
                line: i + 1,
                source,
            })?;
            events.push(e);
        }
        Ok(History { events })
    }

    pub fn from_jsonl_str(s: &str) -> Result<Self, HistoryError> {
        Self::from_jsonl(s.as_bytes())
    }

    /// Same as [`History::to_jsonl_string`].
    pub fn to_json_lines(&self) -> String {
        self.to_jsonl_string()
    }

    /// Same as [`History::from_jsonl_str`].
    pub fn from_json_lines(s: &str) -> Result<Self, HistoryError> {
        Self::from_jsonl_str(s)
    }
}

impl FromIterator<Event> for History {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Self {
        History {
            events: iter.into_iter().collect(),
        }
    }
}
