//! The data commands: parse a command's arguments (with Redis's arity,
//! option and number rules and error texts) into a `kv::redis` write or
//! read, or an immediate reply.
//!
//! Invariant: parsing is pure (no I/O): the same arguments give the same
//! plan, so a command queued in MULTI is checked exactly as one run alone.
//!
//! Not here: running the plan (`conn`, `route`), server commands (`admin`).

use super::RedisLimits;
use super::reply::Frame;
use crate::kv::Ttl;
use crate::kv::redis::ERR_NOT_FLOAT;
use crate::kv::redis::ERR_NOT_INT;
use crate::kv::redis::ExpireCond;
use crate::kv::redis::Pair;
use crate::kv::redis::Query;
use crate::kv::redis::Rmw;
use crate::kv::redis::SetCond;
use crate::kv::redis::parse_f64;
use crate::kv::redis::parse_i64;

/// What a data command becomes.
#[derive(Debug)]
pub enum Plan {
    /// Answered without the cluster (PING, ECHO, errors).
    Reply(Frame),
    Write(Rmw),
    Read(Query),
    /// Not a data command.
    NotData,
}

/// The data commands, for COMMAND COUNT / DOCS and README.
pub const DATA_COMMANDS: &[&str] = &[
    "append",
    "dbsize",
    "decr",
    "decrby",
    "del",
    "echo",
    "exists",
    "expire",
    "expireat",
    "expiretime",
    "flushall",
    "flushdb",
    "get",
    "getdel",
    "getex",
    "getrange",
    "getset",
    "incr",
    "incrby",
    "incrbyfloat",
    "keys",
    "mget",
    "mset",
    "msetnx",
    "persist",
    "pexpire",
    "pexpireat",
    "pexpiretime",
    "ping",
    "psetex",
    "pttl",
    "randomkey",
    "scan",
    "set",
    "setex",
    "setnx",
    "setrange",
    "strlen",
    "ttl",
    "type",
    "unlink",
];

pub fn err(s: impl Into<String>) -> Plan {
    Plan::Reply(Frame::err(s))
}

pub fn wrong_args(name: &str) -> String {
    format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    )
}

const SYNTAX: &str = "ERR syntax error";

fn int(a: &[u8]) -> Result<i64, Plan> {
    parse_i64(a).ok_or_else(|| err(ERR_NOT_INT))
}

struct Ctx<'a> {
    lim: &'a RedisLimits,
}

impl Ctx<'_> {
    fn key(&self, a: &[u8]) -> Result<String, Plan> {
        if a.len() > self.lim.max_key_bytes {
            return Err(err(format!(
                "ERR key is {} bytes, over the limit of {} bytes",
                a.len(),
                self.lim.max_key_bytes
            )));
        }
        String::from_utf8(a.to_vec()).map_err(|_| err("ERR keys must be UTF-8 in dcache"))
    }

    fn keys(&self, a: &[Vec<u8>]) -> Result<Vec<String>, Plan> {
        a.iter().map(|k| self.key(k)).collect()
    }

    fn value(&self, a: &[u8]) -> Result<Vec<u8>, Plan> {
        if a.len() > self.lim.max_value_bytes {
            return Err(err(format!(
                "ERR value is {} bytes, over the limit of {} bytes",
                a.len(),
                self.lim.max_value_bytes
            )));
        }
        Ok(a.to_vec())
    }
}

/// A relative or absolute expiry in `unit_ms` units as a [`Ttl`]; `None`
/// when it overflows (Redis: "invalid expire time"). A relative time that
/// is not positive, or an absolute one in the past, expires the key at once
/// (`At(1)`).
fn ttl_of(n: i64, unit_ms: i64, absolute: bool) -> Option<Ttl> {
    let ms = n.checked_mul(unit_ms)?;
    if absolute {
        Some(Ttl::At(u64::try_from(ms).unwrap_or(0).max(1)))
    } else if ms <= 0 {
        Some(Ttl::At(1))
    } else {
        // Redis also refuses a deadline that overflows when added to now.
        ms.checked_add(crate::kv::MAX_TTL_MS as i64 * 100)?;
        Some(Ttl::In(ms as u64))
    }
}

fn invalid_expire(cmd: &str) -> Plan {
    err(format!("ERR invalid expire time in '{cmd}' command"))
}

/// Plan the data command `args` (`args[0]` is the name, any case).
pub fn plan(args: &[Vec<u8>], lim: &RedisLimits) -> Plan {
    match plan_inner(args, &Ctx { lim }) {
        Ok(p) | Err(p) => p,
    }
}

fn plan_inner(args: &[Vec<u8>], cx: &Ctx<'_>) -> Result<Plan, Plan> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let n = args.len();
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(err(wrong_args(&name)))
        }
    };
    let a = args;
    Ok(match name.as_str() {
        "ping" => {
            arity(n <= 2)?;
            Plan::Reply(match a.get(1) {
                None => Frame::Simple("PONG".into()),
                Some(m) => Frame::bulk(m.clone()),
            })
        }
        "echo" => {
            arity(n == 2)?;
            Plan::Reply(Frame::bulk(a[1].clone()))
        }
        "get" => {
            arity(n == 2)?;
            Plan::Read(Query::Get {
                key: cx.key(&a[1])?,
            })
        }
        "set" => {
            arity(n >= 3)?;
            set(cx, &a[1], &a[2], &a[3..])?
        }
        "setnx" => {
            arity(n == 3)?;
            let (key, value) = (cx.key(&a[1])?, cx.value(&a[2])?);
            // SETNX answers 1/0: MSETNX of one key has that shape.
            Plan::Write(Rmw::MSet {
                pairs: vec![Pair { key, value }],
                nx: true,
            })
        }
        "setex" | "psetex" => {
            arity(n == 4)?;
            let unit = if name == "setex" { 1000 } else { 1 };
            let t = int(&a[2])?;
            if t <= 0 {
                return Err(invalid_expire(&name));
            }
            let ttl = ttl_of(t, unit, false).ok_or_else(|| invalid_expire(&name))?;
            Plan::Write(Rmw::Set {
                key: cx.key(&a[1])?,
                value: cx.value(&a[3])?,
                cond: SetCond::Always,
                get: false,
                ttl,
            })
        }
        "getset" => {
            arity(n == 3)?;
            Plan::Write(Rmw::Set {
                key: cx.key(&a[1])?,
                value: cx.value(&a[2])?,
                cond: SetCond::Always,
                get: true,
                ttl: Ttl::Clear,
            })
        }
        "getdel" => {
            arity(n == 2)?;
            Plan::Write(Rmw::GetDel {
                key: cx.key(&a[1])?,
            })
        }
        "getex" => {
            arity(n >= 2)?;
            getex(cx, &a[1], &a[2..])?
        }
        "del" | "unlink" => {
            arity(n >= 2)?;
            Plan::Write(Rmw::Del {
                keys: cx.keys(&a[1..])?,
            })
        }
        "exists" => {
            arity(n >= 2)?;
            Plan::Read(Query::Exists {
                keys: cx.keys(&a[1..])?,
            })
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => {
            arity(n >= 3)?;
            let unit = if name.starts_with('p') { 1 } else { 1000 };
            let t = int(&a[2])?;
            let ttl = ttl_of(t, unit, name.ends_with("at")).ok_or_else(|| invalid_expire(&name))?;
            let cond = expire_cond(&a[3..])?;
            Plan::Write(Rmw::Expire {
                key: cx.key(&a[1])?,
                ttl,
                cond,
            })
        }
        "persist" => {
            arity(n == 2)?;
            Plan::Write(Rmw::Expire {
                key: cx.key(&a[1])?,
                ttl: Ttl::Clear,
                cond: ExpireCond::Xx,
            })
        }
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => {
            arity(n == 2)?;
            Plan::Read(Query::Ttl {
                key: cx.key(&a[1])?,
                ms: name.starts_with('p'),
                absolute: name.ends_with("time"),
            })
        }
        "type" => {
            arity(n == 2)?;
            Plan::Read(Query::Type {
                key: cx.key(&a[1])?,
            })
        }
        "incr" | "decr" => {
            arity(n == 2)?;
            Plan::Write(Rmw::Incr {
                key: cx.key(&a[1])?,
                by: if name == "incr" { 1 } else { -1 },
            })
        }
        "incrby" | "decrby" => {
            arity(n == 3)?;
            let mut by = int(&a[2])?;
            if name == "decrby" {
                by = by
                    .checked_neg()
                    .ok_or_else(|| err("ERR decrement would overflow"))?;
            }
            Plan::Write(Rmw::Incr {
                key: cx.key(&a[1])?,
                by,
            })
        }
        "incrbyfloat" => {
            arity(n == 3)?;
            if parse_f64(&a[2]).is_none() {
                return Err(err(ERR_NOT_FLOAT));
            }
            Plan::Write(Rmw::IncrFloat {
                key: cx.key(&a[1])?,
                by: String::from_utf8_lossy(&a[2]).into_owned(),
            })
        }
        "append" => {
            arity(n == 3)?;
            Plan::Write(Rmw::Append {
                key: cx.key(&a[1])?,
                value: cx.value(&a[2])?,
                max_len: cx.lim.max_value_bytes as u64,
            })
        }
        "strlen" => {
            arity(n == 2)?;
            Plan::Read(Query::StrLen {
                key: cx.key(&a[1])?,
            })
        }
        "getrange" | "substr" => {
            arity(n == 4)?;
            let (start, end) = (int(&a[2])?, int(&a[3])?);
            Plan::Read(Query::GetRange {
                key: cx.key(&a[1])?,
                start,
                end,
            })
        }
        "setrange" => {
            arity(n == 4)?;
            let offset = int(&a[2])?;
            if offset < 0 {
                return Err(err("ERR offset is out of range"));
            }
            Plan::Write(Rmw::SetRange {
                key: cx.key(&a[1])?,
                offset: offset as u64,
                value: cx.value(&a[3])?,
                max_len: cx.lim.max_value_bytes as u64,
            })
        }
        "mget" => {
            arity(n >= 2)?;
            Plan::Read(Query::MGet {
                keys: cx.keys(&a[1..])?,
            })
        }
        "mset" | "msetnx" => {
            arity(n >= 3 && n % 2 == 1)?;
            let pairs = a[1..]
                .chunks(2)
                .map(|kv| {
                    Ok(Pair {
                        key: cx.key(&kv[0])?,
                        value: cx.value(&kv[1])?,
                    })
                })
                .collect::<Result<Vec<_>, Plan>>()?;
            Plan::Write(Rmw::MSet {
                pairs,
                nx: name == "msetnx",
            })
        }
        "scan" => {
            arity(n >= 2)?;
            scan(&a[1..])?
        }
        "keys" => {
            arity(n == 2)?;
            Plan::Read(Query::Keys {
                pattern: String::from_utf8_lossy(&a[1]).into_owned(),
            })
        }
        "dbsize" => {
            arity(n == 1)?;
            Plan::Read(Query::DbSize)
        }
        "randomkey" => {
            arity(n == 1)?;
            Plan::Read(Query::RandomKey)
        }
        "flushdb" | "flushall" => {
            arity(n <= 2)?;
            if let Some(mode) = a.get(1)
                && !mode.eq_ignore_ascii_case(b"sync")
                && !mode.eq_ignore_ascii_case(b"async")
            {
                return Err(err(SYNTAX));
            }
            Plan::Write(Rmw::FlushAll)
        }
        _ => Plan::NotData,
    })
}

fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

fn set(cx: &Ctx<'_>, key: &[u8], value: &[u8], opts: &[Vec<u8>]) -> Result<Plan, Plan> {
    let (mut cond, mut get, mut ttl) = (SetCond::Always, false, None::<Ttl>);
    let mut keep = false;
    let mut i = 0;
    while i < opts.len() {
        let o = upper(&opts[i]);
        let next = opts.get(i + 1);
        match o.as_str() {
            "NX" if cond != SetCond::Xx => cond = SetCond::Nx,
            "XX" if cond != SetCond::Nx => cond = SetCond::Xx,
            "GET" => get = true,
            "KEEPTTL" if ttl.is_none() => keep = true,
            "EX" | "PX" | "EXAT" | "PXAT" if ttl.is_none() && !keep && next.is_some() => {
                let t = int(next.expect("checked"))?;
                if t <= 0 {
                    return Err(invalid_expire("set"));
                }
                let unit = if o.starts_with('P') { 1 } else { 1000 };
                ttl =
                    Some(ttl_of(t, unit, o.ends_with("AT")).ok_or_else(|| invalid_expire("set"))?);
                i += 1;
            }
            _ => return Err(err(SYNTAX)),
        }
        i += 1;
    }
    Ok(Plan::Write(Rmw::Set {
        key: cx.key(key)?,
        value: cx.value(value)?,
        cond,
        get,
        ttl: match (ttl, keep) {
            (Some(t), _) => t,
            (None, true) => Ttl::Keep,
            (None, false) => Ttl::Clear,
        },
    }))
}

fn getex(cx: &Ctx<'_>, key: &[u8], opts: &[Vec<u8>]) -> Result<Plan, Plan> {
    let mut ttl = None;
    let mut i = 0;
    while i < opts.len() {
        let o = upper(&opts[i]);
        match o.as_str() {
            "PERSIST" if ttl.is_none() => ttl = Some(Ttl::Clear),
            "EX" | "PX" | "EXAT" | "PXAT" if ttl.is_none() && i + 1 < opts.len() => {
                let t = int(&opts[i + 1])?;
                if t <= 0 {
                    return Err(invalid_expire("getex"));
                }
                let unit = if o.starts_with('P') { 1 } else { 1000 };
                ttl = Some(
                    ttl_of(t, unit, o.ends_with("AT")).ok_or_else(|| invalid_expire("getex"))?,
                );
                i += 1;
            }
            _ => return Err(err(SYNTAX)),
        }
        i += 1;
    }
    Ok(Plan::Write(Rmw::GetEx {
        key: cx.key(key)?,
        ttl,
    }))
}

fn expire_cond(opts: &[Vec<u8>]) -> Result<ExpireCond, Plan> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in opts {
        match upper(o).as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            other => return Err(err(format!("ERR Unsupported option {other}"))),
        }
    }
    if nx && (xx || gt || lt) {
        return Err(err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireCond::Nx,
        (_, _, true, _) => ExpireCond::Gt,
        (_, _, _, true) => ExpireCond::Lt,
        (_, true, ..) => ExpireCond::Xx,
        _ => ExpireCond::Always,
    })
}

/// SCAN's arguments; `after` is filled in by the connection from the
/// cursor (cursor text in `pattern`'s place is checked there).
fn scan(a: &[Vec<u8>]) -> Result<Plan, Plan> {
    let cursor = std::str::from_utf8(&a[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| err("ERR invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10u32, None);
    let mut i = 1;
    while i < a.len() {
        let o = upper(&a[i]);
        let Some(v) = a.get(i + 1) else {
            return Err(err(SYNTAX));
        };
        match o.as_str() {
            "MATCH" => pattern = Some(String::from_utf8_lossy(v).into_owned()),
            "COUNT" => {
                let c = int(v)?;
                if c < 1 {
                    return Err(err(SYNTAX));
                }
                count = c.min(i64::from(u32::MAX)) as u32;
            }
            "TYPE" => kind = Some(String::from_utf8_lossy(v).into_owned()),
            _ => return Err(err(SYNTAX)),
        }
        i += 2;
    }
    Ok(Plan::Read(Query::Scan {
        // The cursor number travels in `after` until the connection maps it.
        after: Some(cursor.to_string()),
        pattern,
        count,
        kind,
    }))
}
