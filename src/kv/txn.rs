//! Multi-key transactions and key ranges: the vocabulary ([`Compare`],
//! [`KeyRange`], [`Kv`]), the bounds, the validation a proposer runs before
//! proposing (and apply runs again), and their application to the
//! [`Cache`].
//!
//! A transaction (`Command::Txn`, etcd style) is one log entry: its
//! compares are evaluated against the state at its index, then either the
//! `success` or the `failure` ops run, in order, each seeing the ones
//! before it. Nothing else is applied in between, so it is atomic and
//! isolated (serializable: it happens at one point of the log).
//!
//! Invariants:
//! - Deterministic, like all of `kv`: compares read only the replicated
//!   state (an expired key is absent), results are sized by the data
//!   (never by time or memory figures of the process).
//! - Bounded: at most [`MAX_TXN_OPS`] compares and ops together; a range
//!   returns at most [`MAX_RANGE_LIMIT`] keys; the values a transaction
//!   returns share one budget of [`MAX_RESULT_BYTES`] (a range stops early,
//!   with `more`, when it runs out, but always returns at least one key so
//!   a cursor advances); a prefix delete removes at most
//!   [`MAX_DELETE_PREFIX`] keys per entry (`more` says some are left).
//! - No nested transactions; no `Expire`, `Tick` or `cas` inside one
//!   (compares say it better). [`validate`] refuses them before proposing,
//!   and apply refuses them again (an applied `Response::Invalid`) so a
//!   malformed entry can never half-apply.
//! - All or nothing under a memory limit: the growth of the chosen branch is
//!   bounded from above before any op runs ([`Cache::txn_growth`]); if it
//!   does not fit once the leader's victims are gone, nothing is applied
//!   (`OutOfMemory`).
//!
//! Not here: JSON encoding (see `api`), which keys to evict (`cluster`).

use std::collections::HashMap;
use std::ops::Bound;

use serde::Deserialize;
use serde::Serialize;

use super::Command;
use super::EntryMeta;
use super::Response;
use super::cache::Cache;
use super::cache::Room;
use super::cache::entry_cost;
use super::item::Item;
pub use super::result::Kv;
pub use super::result::MAX_RANGE_LIMIT;
pub use super::result::MAX_RESULT_BYTES;

/// Compares and ops of one transaction together, at most (etcd's default
/// is 128 ops per branch, Consul's 64 in all).
pub const MAX_TXN_OPS: usize = 128;
/// Keys one `DeletePrefix` entry removes at most; the rest are left for
/// the next one (`more: true`).
pub const MAX_DELETE_PREFIX: u32 = 10_000;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
}

impl CmpOp {
    fn holds<T: Ord + ?Sized>(self, left: &T, right: &T) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Lt => left < right,
            CmpOp::Gt => left > right,
        }
    }
}

/// What a compare looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The value, compared as bytes (`<`, `>`: lexicographic). False for an
    /// absent key, whatever the operator.
    Value {
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Writes since creation (0 for an absent key).
    Version { n: u64 },
    /// Index that created the key (0 for an absent key).
    CreateIndex { n: u64 },
    /// Index of the key's last change (0 for an absent key).
    ModifyIndex { n: u64 },
    /// The key is present (operator `Eq` only).
    Exists,
    /// The key is absent (operator `Eq` only).
    Absent,
}

/// One precondition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: String,
    pub op: CmpOp,
    pub target: Target,
}

/// Which keys a range covers, in key (byte) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRange {
    /// Keys starting with `prefix` (every key for "").
    Prefix { prefix: String },
    /// Keys from `start` (inclusive) up to `end` (exclusive; `None`: to the
    /// last key).
    Between { start: String, end: Option<String> },
}

impl KeyRange {
    /// The first key the range may hold.
    pub fn start(&self) -> &str {
        match self {
            KeyRange::Prefix { prefix } => prefix,
            KeyRange::Between { start, .. } => start,
        }
    }

    /// Whether `key` (at or after [`KeyRange::start`]) is still inside.
    pub fn holds(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Prefix { prefix } => key.starts_with(prefix.as_bytes()),
            KeyRange::Between { start, end } => {
                key >= start.as_bytes() && end.as_ref().is_none_or(|e| key < e.as_bytes())
            }
        }
    }
}

/// One page of a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub kvs: Vec<Kv>,
    /// More keys in the range after the last one returned.
    pub more: bool,
}

/// Why a transaction (or one of its ops) is refused. `op` names it:
/// `compare[i]`, `success[i]`, `failure[i]`, or `txn` for the whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    pub op: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.reason)
    }
}

fn invalid(op: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        op: op.into(),
        reason: reason.into(),
    }
}

/// Check a transaction against the rules and bounds. `max_bytes` (the
/// proposer's limit on the key and value bytes it carries) is checked only
/// when given: apply re-validates without it, since the limit is
/// configuration, not replicated state.
pub fn validate(
    compare: &[Compare],
    success: &[Command],
    failure: &[Command],
    max_bytes: Option<u64>,
) -> Result<(), Invalid> {
    let ops = compare.len() + success.len() + failure.len();
    if ops > MAX_TXN_OPS {
        return Err(invalid(
            "txn",
            format!("{ops} compares and ops, over the limit of {MAX_TXN_OPS}"),
        ));
    }
    let mut bytes = 0u64;
    for (i, c) in compare.iter().enumerate() {
        let name = || format!("compare[{i}]");
        if c.key.is_empty() {
            return Err(invalid(name(), "key must not be empty"));
        }
        if matches!(c.target, Target::Exists | Target::Absent) && c.op != CmpOp::Eq {
            return Err(invalid(name(), "exists and absent take no operator"));
        }
        bytes += c.key.len() as u64;
        if let Target::Value { value } = &c.target {
            bytes += value.len() as u64;
        }
    }
    for (branch, cmds) in [("success", success), ("failure", failure)] {
        for (i, cmd) in cmds.iter().enumerate() {
            bytes += check_op(cmd).map_err(|r| invalid(format!("{branch}[{i}]"), r))?;
        }
    }
    if let Some(max) = max_bytes
        && bytes > max
    {
        return Err(invalid(
            "txn",
            format!("carries {bytes} key and value bytes, over the limit of {max}"),
        ));
    }
    Ok(())
}

/// One op of a transaction: its key and value bytes, or why it is refused.
fn check_op(cmd: &Command) -> Result<u64, String> {
    let key_ok = |k: &str| {
        if k.is_empty() {
            Err("key must not be empty".to_string())
        } else {
            Ok(k.len() as u64)
        }
    };
    match cmd {
        Command::Set {
            key, value, cas, ..
        } => {
            if cas.is_some() {
                return Err("cas is not allowed inside a txn: use a compare".into());
            }
            Ok(key_ok(key)? + value.len() as u64)
        }
        Command::Delete { key, cas } => {
            if cas.is_some() {
                return Err("cas is not allowed inside a txn: use a compare".into());
            }
            key_ok(key)
        }
        Command::Get { key } => key_ok(key),
        Command::Range { limit, .. } => {
            check_limit(*limit)?;
            Ok(cmd.payload_bytes() as u64)
        }
        Command::DeletePrefix { prefix } => Ok(prefix.len() as u64),
        Command::Txn { .. } => Err("a txn cannot contain a txn".into()),
        Command::Expire { .. } | Command::Tick { .. } | Command::Rmw(_) | Command::Multi { .. } => {
            Err("only put, delete, delete_prefix, get and range are allowed in a txn".into())
        }
    }
}

/// A range's page size: from 1 to [`MAX_RANGE_LIMIT`].
pub fn check_limit(limit: u32) -> Result<(), String> {
    if limit == 0 || limit > MAX_RANGE_LIMIT {
        Err(format!(
            "limit {limit} is out of bounds: from 1 to {MAX_RANGE_LIMIT}"
        ))
    } else {
        Ok(())
    }
}

impl Cache {
    /// Whether `c` holds now.
    pub fn compare(&self, c: &Compare) -> bool {
        let it = self.get_item(&c.key);
        let meta = it.map(Item::meta);
        let n = |f: fn(&EntryMeta) -> u64| meta.as_ref().map_or(0, f);
        match &c.target {
            Target::Value { value } => {
                it.is_some_and(|it| c.op.holds(it.value(), value.as_slice()))
            }
            Target::Version { n: want } => c.op.holds(&n(|m| m.version), want),
            Target::CreateIndex { n: want } => c.op.holds(&n(|m| m.create_index), want),
            Target::ModifyIndex { n: want } => c.op.holds(&n(|m| m.modify_index), want),
            Target::Exists => it.is_some(),
            Target::Absent => it.is_none(),
        }
    }

    /// Up to `limit` live keys of `range` after `after` (from its start
    /// when `None`), in key order, stopping early once the keys and values
    /// returned reach `budget` bytes (but never before the first key).
    /// The bytes taken are subtracted from `budget`.
    pub fn range(
        &self,
        range: &KeyRange,
        after: Option<&[u8]>,
        limit: usize,
        keys_only: bool,
        budget: &mut u64,
    ) -> Page {
        let start = range.start().as_bytes();
        let lower = match after {
            Some(a) if a >= start => Bound::Excluded(a),
            _ => Bound::Included(start),
        };
        let iter = self.items_from_bound(lower);
        let mut page = Page::default();
        for it in iter.take_while(|it| range.holds(it.key())) {
            if !self.is_live(it) {
                continue;
            }
            let kv = Kv::of(it, keys_only);
            if page.kvs.len() >= limit || (!page.kvs.is_empty() && kv.size() > *budget) {
                page.more = true;
                break;
            }
            *budget = budget.saturating_sub(kv.size());
            page.kvs.push(kv);
        }
        page
    }

    /// How many live keys `range` holds (a walk over them).
    pub fn count(&self, range: &KeyRange) -> u64 {
        self.items_from(range.start().as_bytes())
            .take_while(|it| range.holds(it.key()))
            .filter(|it| self.is_live(it))
            .count() as u64
    }

    /// An upper bound of the bytes `ops` add to the accounted memory when
    /// run in order from the current state: each put counts its cost minus
    /// the cost the key has at that point (deletes set a key's cost to 0
    /// but are not credited).
    pub fn txn_growth(&self, ops: &[Command]) -> u64 {
        // key -> (cost, has a deadline) after the ops so far.
        let mut now: HashMap<&str, (u64, bool)> = HashMap::new();
        let mut cleared: Vec<&str> = Vec::new();
        let mut growth: i128 = 0;
        for op in ops {
            match op {
                Command::Set {
                    key, value, ttl, ..
                } => {
                    let (old, had_ttl) = match now.get(key.as_str()) {
                        Some(v) => *v,
                        None if cleared.iter().any(|p| key.starts_with(p)) => (0, false),
                        None => self.get_item(key).map_or((0, false), |it| {
                            let ttl = it.expires_at() != 0;
                            (entry_cost(it.key().len(), it.value().len(), ttl), ttl)
                        }),
                    };
                    let has_ttl = match ttl {
                        super::Ttl::Clear => false,
                        super::Ttl::Keep => had_ttl,
                        super::Ttl::In(_) | super::Ttl::At(_) => true,
                    };
                    let new = entry_cost(key.len(), value.len(), has_ttl);
                    growth += i128::from(new) - i128::from(old);
                    now.insert(key, (new, has_ttl));
                }
                Command::Delete { key, .. } => {
                    now.insert(key, (0, false));
                }
                Command::DeletePrefix { prefix } => {
                    now.retain(|k, _| !k.starts_with(prefix.as_str()));
                    cleared.push(prefix);
                }
                _ => {}
            }
        }
        u64::try_from(growth.max(0)).unwrap_or(u64::MAX)
    }

    /// Apply a transaction at `index` (see the module doc).
    pub(super) fn apply_txn(
        &mut self,
        index: u64,
        compare: &[Compare],
        success: &[Command],
        failure: &[Command],
        room: Room<'_>,
    ) -> Response {
        if let Err(e) = validate(compare, success, failure, None) {
            return Response::Invalid {
                op: e.op,
                reason: e.reason,
            };
        }
        for c in compare {
            self.expire_if_due(c.key.as_bytes());
        }
        let succeeded = compare.iter().all(|c| self.compare(c));
        let ops = if succeeded { success } else { failure };
        let touched: Vec<&str> = ops.iter().filter_map(Command::key).collect();
        let growth = self.txn_growth(ops);
        if let Err(full) = self.make_room_for(room, &touched, growth, growth) {
            return full;
        }
        let mut budget = MAX_RESULT_BYTES;
        let results = ops
            .iter()
            .map(|op| self.exec(index, op, Room::UNLIMITED, &mut budget))
            .collect();
        Response::Txn { succeeded, results }
    }

    /// Remove up to [`MAX_DELETE_PREFIX`] keys starting with `prefix`.
    pub(super) fn delete_prefix(&mut self, prefix: &str) -> Response {
        let range = KeyRange::Prefix {
            prefix: prefix.to_string(),
        };
        let keys: Vec<Box<[u8]>> = self
            .items_from(prefix.as_bytes())
            .take_while(|it| range.holds(it.key()))
            .take(MAX_DELETE_PREFIX as usize + 1)
            .map(|it| it.key().into())
            .collect();
        let more = keys.len() > MAX_DELETE_PREFIX as usize;
        let mut deleted = 0;
        for k in keys.iter().take(MAX_DELETE_PREFIX as usize) {
            // An expired key not yet ticked away is removed too, but as an
            // expiry: it was already absent.
            if self.expire_if_due(k) {
                continue;
            }
            if self.remove(k, super::ChangeKind::Delete).is_some() {
                deleted += 1;
            }
        }
        Response::DeletedPrefix { deleted, more }
    }
}

#[cfg(test)]
mod tests;
