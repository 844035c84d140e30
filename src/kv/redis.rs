//! Redis string semantics in the state machine: the read-modify-write
//! commands ([`Rmw`], applied in the log so they are atomic), the reads
//! ([`Query`], evaluated on a linearized local state or inside a
//! transaction), `MULTI`/`EXEC` batches ([`MultiOp`]) and the protocol-neutral
//! [`Reply`] they produce.
//!
//! Invariants:
//! - Deterministic like all of `kv`: no clock (TTLs come from the entry's
//!   stamped time, `Ttl::In` is relative to the replicated clock), no
//!   randomness (where Redis picks at random, the first key in key order is
//!   taken), numbers parsed and formatted by fixed rules.
//! - Error texts are Redis's (`ERR value is not an integer or out of
//!   range`, ...): they are applied responses, the same on every replica.
//! - A key whose deadline has passed on the replicated clock is absent for
//!   every command here.
//!
//! Not here: the wire protocol (see `resp`), which node runs what
//! (`cluster`), the size caps the proposer checks (`max_len` is carried in
//! the command so apply enforces the proposer's cap deterministically).

use serde::Deserialize;
use serde::Serialize;

use super::ChangeKind;
use super::Command;
use super::Response;
use super::Ttl;
use super::cache::Cache;
use super::cache::Room;
use super::item::Item;

pub const ERR_NOT_INT: &str = "ERR value is not an integer or out of range";
pub const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";
pub const ERR_NAN: &str = "ERR increment would produce NaN or Infinity";
pub const ERR_TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// A protocol-neutral reply (the RESP layer encodes it as RESP2 or RESP3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A simple status string (`+string` for TYPE).
    Status(String),
    /// A null bulk string.
    Nil,
    Int(i64),
    Bulk(#[serde(with = "serde_bytes")] Vec<u8>),
    Array(Vec<Reply>),
    /// An error, its text starting with the Redis error prefix (`ERR ...`).
    Error(String),
}

impl Reply {
    pub fn err(s: impl Into<String>) -> Reply {
        Reply::Error(s.into())
    }

    fn bulk_opt(v: Option<&[u8]>) -> Reply {
        v.map_or(Reply::Nil, |v| Reply::Bulk(v.to_vec()))
    }
}

/// SET's NX / XX.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCond {
    #[default]
    Always,
    /// Only if the key is absent.
    Nx,
    /// Only if the key is present.
    Xx,
}

/// EXPIRE's NX / XX / GT / LT (a key without a deadline counts as an
/// infinite one for GT / LT, as in Redis).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireCond {
    #[default]
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// A key and a value (MSET).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A command that reads and writes in one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rmw {
    /// SET with its options (SETNX, SETEX, PSETEX, GETSET are spellings of
    /// it). `get`: reply with the old value (nil when absent) instead of OK.
    Set {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        cond: SetCond,
        get: bool,
        ttl: Ttl,
    },
    GetDel {
        key: String,
    },
    /// GETEX: `ttl` `None` leaves the deadline, `Some(Clear)` is PERSIST.
    GetEx {
        key: String,
        ttl: Option<Ttl>,
    },
    Incr {
        key: String,
        by: i64,
    },
    /// INCRBYFLOAT; `by` is the client's text (parsed in apply).
    IncrFloat {
        key: String,
        by: String,
    },
    Append {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        max_len: u64,
    },
    SetRange {
        key: String,
        offset: u64,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        max_len: u64,
    },
    /// DEL / UNLINK: replies the number removed.
    Del {
        keys: Vec<String>,
    },
    /// MSET (`nx`: MSETNX, all or nothing).
    MSet {
        pairs: Vec<Pair>,
        nx: bool,
    },
    /// EXPIRE family and PERSIST (`ttl` `Clear` with `Xx`): replies 1 if
    /// the deadline was changed.
    Expire {
        key: String,
        ttl: Ttl,
        cond: ExpireCond,
    },
    /// FLUSHDB / FLUSHALL: remove every key.
    FlushAll,
}

impl Rmw {
    /// The keys the command writes.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Rmw::Set { key, .. }
            | Rmw::GetDel { key }
            | Rmw::GetEx { key, .. }
            | Rmw::Incr { key, .. }
            | Rmw::IncrFloat { key, .. }
            | Rmw::Append { key, .. }
            | Rmw::SetRange { key, .. }
            | Rmw::Expire { key, .. } => vec![key],
            Rmw::Del { keys } => keys.iter().map(String::as_str).collect(),
            Rmw::MSet { pairs, .. } => pairs.iter().map(|p| p.key.as_str()).collect(),
            Rmw::FlushAll => Vec::new(),
        }
    }

    /// Key and value bytes carried.
    pub fn payload_bytes(&self) -> usize {
        let keys: usize = self.keys().iter().map(|k| k.len()).sum();
        keys + match self {
            Rmw::Set { value, .. } | Rmw::Append { value, .. } | Rmw::SetRange { value, .. } => {
                value.len()
            }
            Rmw::MSet { pairs, .. } => pairs.iter().map(|p| p.value.len()).sum(),
            Rmw::IncrFloat { by, .. } => by.len(),
            _ => 8,
        }
    }

    /// An upper bound of the bytes the command adds to the accounting, on
    /// top of the keys' current costs (for the leader's eviction plan).
    pub fn growth_bound(&self, cache: &Cache) -> u64 {
        let cost = |k: &str| cache.get_item(k).map_or(0, super::cache::item_cost);
        let len = |k: &str| cache.get_item(k).map_or(0, |it| it.value().len() as u64);
        let fresh = |k: &str, v: u64| super::cache::entry_cost(k.len(), v as usize, true);
        match self {
            Rmw::Set { key, value, .. } => fresh(key, value.len() as u64).saturating_sub(cost(key)),
            Rmw::Incr { key, .. } | Rmw::IncrFloat { key, .. } => {
                fresh(key, len(key) + 32).saturating_sub(cost(key))
            }
            Rmw::Append { key, value, .. } => {
                fresh(key, len(key) + value.len() as u64).saturating_sub(cost(key))
            }
            Rmw::SetRange {
                key, offset, value, ..
            } => fresh(key, len(key).max(offset + value.len() as u64)).saturating_sub(cost(key)),
            Rmw::MSet { pairs, .. } => pairs
                .iter()
                .map(|p| fresh(&p.key, p.value.len() as u64).saturating_sub(cost(&p.key)))
                .sum(),
            Rmw::Expire { key, .. } | Rmw::GetEx { key, .. } => {
                key.len() as u64 + super::cache::TTL_OVERHEAD_BYTES
            }
            Rmw::GetDel { .. } | Rmw::Del { .. } | Rmw::FlushAll => 0,
        }
    }
}

/// A read: evaluated on a state the reader linearized (or inside a
/// transaction at its index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Get {
        key: String,
    },
    MGet {
        keys: Vec<String>,
    },
    /// The number of the keys present (a key named twice counts twice).
    Exists {
        keys: Vec<String>,
    },
    Type {
        key: String,
    },
    /// TTL / PTTL (`absolute`: EXPIRETIME / PEXPIRETIME; `ms`: in ms).
    Ttl {
        key: String,
        ms: bool,
        absolute: bool,
    },
    StrLen {
        key: String,
    },
    GetRange {
        key: String,
        start: i64,
        end: i64,
    },
    /// Up to `count` live keys after `after` in key order matching
    /// `pattern`; replies `[next (nil at the end), [keys]]`. At most
    /// `count` keys are examined, as Redis's COUNT hint.
    Scan {
        after: Option<String>,
        pattern: Option<String>,
        count: u32,
        /// Only keys of this type ("string" is the only one).
        kind: Option<String>,
    },
    Keys {
        pattern: String,
    },
    DbSize,
    /// The first live key in key order (deterministic where Redis is
    /// random).
    RandomKey,
    /// Each key's modify index (0 when absent), for WATCH.
    ModIndex {
        keys: Vec<String>,
    },
}

impl Query {
    /// The keys a read looks up by name (for access tracking and hit
    /// counts; scans and KEYS name none).
    pub fn keys(&self) -> &[String] {
        match self {
            Query::Get { key }
            | Query::Type { key }
            | Query::Ttl { key, .. }
            | Query::StrLen { key }
            | Query::GetRange { key, .. } => std::slice::from_ref(key),
            Query::MGet { keys } | Query::Exists { keys } | Query::ModIndex { keys } => keys,
            Query::Scan { .. } | Query::Keys { .. } | Query::DbSize | Query::RandomKey => &[],
        }
    }
}

/// One command of a MULTI/EXEC batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MultiOp {
    Write(Rmw),
    Read(Query),
    /// A reply known when queued (PING, ECHO, ...).
    Local(Reply),
}

/// What a front end asks the leader for: a write through the log, or a
/// linearizable read (the body of a follower's forwarded request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Write(Command),
    Read(Query),
    /// Consecutive reads of a pipeline, with one read index for all; the
    /// answer is a `Response::Multi` with one reply each, in order.
    Reads(Vec<Query>),
}

/// A WATCHed key and the modify index it had (0: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watched {
    pub key: String,
    pub index: u64,
}

/// Keys one SCAN step examines at most, whatever COUNT says.
pub const MAX_SCAN_COUNT: u32 = 10_000;

/// Parse an integer as Redis's `string2ll` does: optional `-`, no `+`, no
/// spaces, no leading zeros, within i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    text.parse().ok()
}

/// Parse a float as Redis's `string2ld` accepts it: no spaces, not NaN.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Format a float as INCRBYFLOAT stores it: fixed notation, no exponent, no
/// trailing zeros, rounded to 15 significant digits (Redis computes in
/// `long double` and prints 17 decimals; rounding the `f64` to 15 digits
/// gives the same text for sums of short decimals).
pub fn format_f64(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let rounded: f64 = format!("{v:.14e}").parse().unwrap_or(v);
    let s = format!("{rounded}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl Cache {
    /// The live item under `key` (an expired one is removed first).
    fn live(&mut self, key: &str) -> Option<&Item> {
        self.expire_if_due(key.as_bytes());
        self.get_item(key)
    }

    /// Store `value` under `key` at `index`; `Err` is an out-of-memory
    /// refusal.
    fn put(
        &mut self,
        index: u64,
        room: Room<'_>,
        key: &str,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<(), Response> {
        match self.set(index, room, key, value, None, ttl) {
            Response::Set { .. } => Ok(()),
            other => Err(other),
        }
    }

    /// Apply one read-modify-write command at `index`.
    pub(super) fn apply_rmw(&mut self, index: u64, op: &Rmw, room: Room<'_>) -> Response {
        let reply = match self.rmw(index, op, room) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        Response::Reply(reply)
    }

    fn rmw(&mut self, index: u64, op: &Rmw, room: Room<'_>) -> Result<Reply, Response> {
        Ok(match op {
            Rmw::Set {
                key,
                value,
                cond,
                get,
                ttl,
            } => {
                let old = self.live(key).map(|it| it.value().to_vec());
                let go = match cond {
                    SetCond::Always => true,
                    SetCond::Nx => old.is_none(),
                    SetCond::Xx => old.is_some(),
                };
                if go {
                    self.put(index, room, key, value, *ttl)?;
                }
                match (get, go) {
                    (true, _) => Reply::bulk_opt(old.as_deref()),
                    (false, true) => Reply::Ok,
                    (false, false) => Reply::Nil,
                }
            }
            Rmw::GetDel { key } => {
                let old = self.live(key).map(|it| it.value().to_vec());
                if old.is_some() {
                    self.remove(key.as_bytes(), ChangeKind::Delete);
                }
                Reply::bulk_opt(old.as_deref())
            }
            Rmw::GetEx { key, ttl } => {
                let Some(old) = self.live(key).map(|it| it.value().to_vec()) else {
                    return Ok(Reply::Nil);
                };
                if let Some(ttl) = ttl {
                    self.set_deadline(index, room, key, *ttl)?;
                }
                Reply::Bulk(old)
            }
            Rmw::Incr { key, by } => {
                let cur = match self.live(key) {
                    None => 0,
                    Some(it) => match parse_i64(it.value()) {
                        Some(n) => n,
                        None => return Ok(Reply::err(ERR_NOT_INT)),
                    },
                };
                let Some(n) = cur.checked_add(*by) else {
                    return Ok(Reply::err(ERR_OVERFLOW));
                };
                self.put(index, room, key, n.to_string().as_bytes(), Ttl::Keep)?;
                Reply::Int(n)
            }
            Rmw::IncrFloat { key, by } => {
                let Some(by) = parse_f64(by.as_bytes()) else {
                    return Ok(Reply::err(ERR_NOT_FLOAT));
                };
                let cur = match self.live(key) {
                    None => 0.0,
                    Some(it) => match parse_f64(it.value()) {
                        Some(n) => n,
                        None => return Ok(Reply::err(ERR_NOT_FLOAT)),
                    },
                };
                let n = cur + by;
                if !n.is_finite() {
                    return Ok(Reply::err(ERR_NAN));
                }
                let text = format_f64(n);
                self.put(index, room, key, text.as_bytes(), Ttl::Keep)?;
                Reply::Bulk(text.into_bytes())
            }
            Rmw::Append {
                key,
                value,
                max_len,
            } => {
                let mut v = self
                    .live(key)
                    .map_or_else(Vec::new, |it| it.value().to_vec());
                if (v.len() + value.len()) as u64 > *max_len {
                    return Ok(Reply::err(ERR_TOO_BIG));
                }
                v.extend_from_slice(value);
                self.put(index, room, key, &v, Ttl::Keep)?;
                Reply::Int(v.len() as i64)
            }
            Rmw::SetRange {
                key,
                offset,
                value,
                max_len,
            } => {
                let cur = self.live(key).map(|it| it.value().to_vec());
                let len = cur.as_ref().map_or(0, Vec::len);
                if value.is_empty() {
                    return Ok(Reply::Int(len as i64));
                }
                let end = offset.saturating_add(value.len() as u64);
                if end > *max_len {
                    return Ok(Reply::err(ERR_TOO_BIG));
                }
                let mut v = cur.unwrap_or_default();
                if v.len() < end as usize {
                    v.resize(end as usize, 0);
                }
                v[*offset as usize..end as usize].copy_from_slice(value);
                self.put(index, room, key, &v, Ttl::Keep)?;
                Reply::Int(v.len() as i64)
            }
            Rmw::Del { keys } => {
                let mut n = 0;
                for k in keys {
                    if self.live(k).is_some() {
                        self.remove(k.as_bytes(), ChangeKind::Delete);
                        n += 1;
                    }
                }
                Reply::Int(n)
            }
            Rmw::MSet { pairs, nx } => {
                if *nx {
                    for p in pairs {
                        if self.live(&p.key).is_some() {
                            return Ok(Reply::Int(0));
                        }
                    }
                }
                // All or nothing under a memory limit: check the growth of
                // the whole batch first.
                let growth: u64 = pairs
                    .iter()
                    .map(|p| {
                        let new = super::cache::entry_cost(p.key.len(), p.value.len(), false);
                        let old = self.get_item(&p.key).map_or(0, super::cache::item_cost);
                        new.saturating_sub(old)
                    })
                    .sum();
                let keys: Vec<&str> = pairs.iter().map(|p| p.key.as_str()).collect();
                self.make_room_for(room, &keys, growth, growth)?;
                for p in pairs {
                    self.put(index, Room::UNLIMITED, &p.key, &p.value, Ttl::Clear)?;
                }
                if *nx { Reply::Int(1) } else { Reply::Ok }
            }
            Rmw::Expire { key, ttl, cond } => {
                let Some(cur) = self.live(key).map(Item::expires_at) else {
                    return Ok(Reply::Int(0));
                };
                let new = self.deadline(*ttl, cur);
                let go = match cond {
                    ExpireCond::Always => true,
                    ExpireCond::Nx => cur == 0,
                    ExpireCond::Xx => cur != 0,
                    ExpireCond::Gt => cur != 0 && new != 0 && new > cur,
                    ExpireCond::Lt => new != 0 && (cur == 0 || new < cur),
                };
                if !go {
                    return Ok(Reply::Int(0));
                }
                if new != 0 && new <= self.clock_ms() {
                    // A deadline already passed deletes the key (Redis).
                    self.remove(key.as_bytes(), ChangeKind::Delete);
                } else {
                    self.set_deadline(index, room, key, *ttl)?;
                }
                Reply::Int(1)
            }
            Rmw::FlushAll => {
                let keys: Vec<Box<[u8]>> = self.items().map(|it| it.key().into()).collect();
                for k in &keys {
                    self.remove(k, ChangeKind::Delete);
                }
                Reply::Ok
            }
        })
    }

    fn set_deadline(
        &mut self,
        index: u64,
        room: Room<'_>,
        key: &str,
        ttl: Ttl,
    ) -> Result<(), Response> {
        let mut budget = 0;
        let cmd = Command::Expire {
            key: key.to_string(),
            ttl,
        };
        match self.exec(index, &cmd, room, &mut budget) {
            Response::Expired { .. } => Ok(()),
            other => Err(other),
        }
    }

    /// Apply a MULTI/EXEC batch at `index`: nothing if a watched key's
    /// modify index changed (`results: None`), else every op in order.
    pub(super) fn apply_multi(
        &mut self,
        index: u64,
        watch: &[Watched],
        ops: &[MultiOp],
        room: Room<'_>,
    ) -> Response {
        for w in watch {
            let now = self.live(&w.key).map_or(0, |it| it.meta().modify_index);
            if now != w.index {
                return Response::Multi { results: None };
            }
        }
        let results = ops
            .iter()
            .map(|op| match op {
                MultiOp::Write(rmw) => self.apply_rmw(index, rmw, room),
                MultiOp::Read(q) => {
                    let now = self.clock_ms();
                    Response::Reply(self.query(q, now))
                }
                MultiOp::Local(r) => Response::Reply(r.clone()),
            })
            .collect();
        Response::Multi {
            results: Some(results),
        }
    }

    /// Evaluate a read at `now_ms` (the reader's time, at or after the
    /// replicated clock: a key past its deadline at `now_ms` is absent).
    pub fn query(&self, q: &Query, now_ms: u64) -> Reply {
        let live = |k: &str| {
            self.get_item(k)
                .filter(|it| it.expires_at() == 0 || it.expires_at() > now_ms)
        };
        match q {
            Query::Get { key } => Reply::bulk_opt(live(key).map(Item::value)),
            Query::MGet { keys } => Reply::Array(
                keys.iter()
                    .map(|k| Reply::bulk_opt(live(k).map(Item::value)))
                    .collect(),
            ),
            Query::Exists { keys } => {
                Reply::Int(keys.iter().filter(|k| live(k).is_some()).count() as i64)
            }
            Query::Type { key } => Reply::Status(
                if live(key).is_some() {
                    "string"
                } else {
                    "none"
                }
                .into(),
            ),
            Query::Ttl { key, ms, absolute } => match live(key) {
                None => Reply::Int(-2),
                Some(it) if it.expires_at() == 0 => Reply::Int(-1),
                Some(it) => {
                    let at = it.expires_at();
                    let v = match (absolute, ms) {
                        (true, true) => at,
                        (true, false) => at / 1000,
                        (false, true) => at - now_ms,
                        (false, false) => (at - now_ms + 500) / 1000,
                    };
                    Reply::Int(i64::try_from(v).unwrap_or(i64::MAX))
                }
            },
            Query::StrLen { key } => Reply::Int(live(key).map_or(0, |it| it.value().len() as i64)),
            Query::GetRange { key, start, end } => {
                let v = live(key).map_or(&[][..], Item::value);
                Reply::Bulk(get_range(v, *start, *end).to_vec())
            }
            Query::Scan {
                after,
                pattern,
                count,
                kind,
            } => {
                let count = (*count).clamp(1, MAX_SCAN_COUNT) as usize;
                let mut keys = Vec::new();
                let mut last = None;
                let mut it = self
                    .items_after(after.as_deref().map(str::as_bytes))
                    .peekable();
                for item in it.by_ref().take(count) {
                    last = Some(item.key());
                    let alive = item.expires_at() == 0 || item.expires_at() > now_ms;
                    let typed = kind
                        .as_deref()
                        .is_none_or(|k| k.eq_ignore_ascii_case("string"));
                    if alive
                        && typed
                        && pattern
                            .as_deref()
                            .is_none_or(|p| super::glob::matches(p.as_bytes(), item.key()))
                    {
                        keys.push(Reply::Bulk(item.key().to_vec()));
                    }
                }
                let next = match (it.peek(), last) {
                    (Some(_), Some(k)) => Reply::Bulk(k.to_vec()),
                    _ => Reply::Nil,
                };
                Reply::Array(vec![next, Reply::Array(keys)])
            }
            Query::Keys { pattern } => Reply::Array(
                self.items()
                    .filter(|it| it.expires_at() == 0 || it.expires_at() > now_ms)
                    .filter(|it| super::glob::matches(pattern.as_bytes(), it.key()))
                    .map(|it| Reply::Bulk(it.key().to_vec()))
                    .collect(),
            ),
            Query::DbSize => Reply::Int(
                self.items()
                    .filter(|it| it.expires_at() == 0 || it.expires_at() > now_ms)
                    .count() as i64,
            ),
            Query::RandomKey => Reply::bulk_opt(
                self.items()
                    .find(|it| it.expires_at() == 0 || it.expires_at() > now_ms)
                    .map(Item::key),
            ),
            Query::ModIndex { keys } => Reply::Array(
                keys.iter()
                    .map(|k| Reply::Int(live(k).map_or(0, |it| it.meta().modify_index as i64)))
                    .collect(),
            ),
        }
    }
}

/// GETRANGE's index rules (Redis 7).
pub fn get_range(v: &[u8], start: i64, end: i64) -> &[u8] {
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if len == 0 || start > end {
        return &[];
    }
    &v[start as usize..=end as usize]
}

#[cfg(test)]
mod tests;
