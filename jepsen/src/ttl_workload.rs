//! The TTL workload: writes with short and long TTLs, expire/persist and
//! linearizable reads on their own keys, recorded with the deadlines the
//! server answered; and the after-run check that expired values are gone
//! on every replica.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::client::Api;
use crate::client::PutTtl;
use crate::db::Db;
use crate::db::SkewLog;
use dcache_jepsen::checker::TtlParams;
use dcache_jepsen::checker::ttl;
use dcache_jepsen::history::Event;
use dcache_jepsen::history::History;
use dcache_jepsen::history::Op;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;
use dcache_jepsen::history::TtlMeta;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Mutex;

use crate::register::Recorder;
use crate::register::completed;
use crate::register::wall_ms;

/// A long TTL: far beyond any run and any skew the nemesis injects.
pub(crate) const LONG_TTL_MS: u64 = 3_600_000;

/// The keys of the TTL workload: `t<slot>`, renamed `t<slot>.<gen>` after
/// an expire or persist with an unknown outcome (it may take effect at any
/// later time, which would leave every later deadline on that key unknown
/// to the TTL checks).
pub(crate) struct TtlKeys {
    pub(crate) gens: Vec<std::sync::atomic::AtomicU64>,
}

impl TtlKeys {
    pub(crate) fn new(n: usize) -> TtlKeys {
        TtlKeys {
            gens: (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    pub(crate) fn name(slot: usize, generation: u64) -> String {
        if generation == 0 {
            format!("t{slot}")
        } else {
            format!("t{slot}.{generation}")
        }
    }

    /// The current key of `slot` and its generation.
    pub(crate) fn key(&self, slot: usize) -> (String, u64) {
        let g = self.gens[slot].load(std::sync::atomic::Ordering::Relaxed);
        (Self::name(slot, g), g)
    }

    /// Move `slot` on from generation `g` (once, however many clients ask).
    pub(crate) fn retire(&self, slot: usize, g: u64) {
        let _ = self.gens[slot].compare_exchange(
            g,
            g + 1,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Every key used so far.
    pub(crate) fn all(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (slot, g) in self.gens.iter().enumerate() {
            for generation in 0..=g.load(std::sync::atomic::Ordering::Relaxed) {
                out.push(Self::name(slot, generation));
            }
        }
        out
    }
}

/// A short TTL: half 10-200 ms (most expire before the key is written
/// again), half 200 ms - 2 s.
pub(crate) fn short_ttl(rng: &mut StdRng) -> u64 {
    if rng.gen_bool(0.5) {
        rng.gen_range(10..200)
    } else {
        rng.gen_range(200..2_000)
    }
}

/// Everything the TTL clients share.
pub(crate) struct TtlCtx {
    pub(crate) rec: Arc<Recorder>,
    pub(crate) api: Api,
    pub(crate) n: usize,
    pub(crate) keys: Arc<TtlKeys>,
    pub(crate) skews: SkewLog,
}

impl TtlCtx {
    /// The TTL facts of a read: its wall time, the deadline it reported,
    /// and the lowest skew the node that served it had meanwhile.
    pub(crate) fn read_meta(
        &self,
        wall: u64,
        t0: Instant,
        a: &crate::client::TtlAnswer,
    ) -> TtlMeta {
        let node = a
            .served_by
            .as_deref()
            .and_then(|s| s.strip_prefix('n'))
            .and_then(|s| s.parse::<usize>().ok());
        TtlMeta {
            wall_ms: wall,
            expires_at_ms: a.expires_at_ms,
            served_by: a.served_by.clone(),
            node_skew_ms: node.and_then(|i| self.skews.lowest(i, t0, Instant::now())),
            unreported: false,
        }
    }
}

/// The TTL facts of a write, expire or persist.
pub(crate) fn write_meta(wall: u64, expires_at_ms: Option<u64>) -> TtlMeta {
    TtlMeta {
        wall_ms: wall,
        expires_at_ms,
        ..TtlMeta::default()
    }
}

/// One TTL client: on the TTL keys, 80% linearizable reads (15% of them
/// through the seed API), 20% writes: with a short TTL, a long TTL (1 h),
/// none (clears it), keepttl, expire (short or long), persist, CAS. It
/// paces itself (10-60 ms between ops) so that keys live long enough to
/// expire between writes. Its last op is a write with a short TTL.
pub(crate) async fn ttl_loop(ctx: Arc<TtlCtx>, index: usize, seed: u64, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rec = &ctx.rec;
    let api = &ctx.api;
    let mut client = rec.new_client();
    let mut counter = 0u64;
    while Instant::now() < until {
        let addr = Db::http(rng.gen_range(1..=ctx.n));
        let slot = rng.gen_range(0..ctx.keys.gens.len());
        let (key, generation) = ctx.keys.key(slot);
        let choice = rng.gen_range(0..100);
        let (t0, mut invoke, mut wall) = (Instant::now(), rec.now(), wall_ms());
        let ok;
        if choice < 80 {
            let (outcome, meta) = if rng.gen_bool(0.15) {
                // The seed API: no deadline header, serving node unknown.
                let r = api.read(&addr, &key, true).await;
                let meta = TtlMeta {
                    unreported: true,
                    ..write_meta(wall, None)
                };
                (r.outcome, meta)
            } else {
                let a = api.read_ttl(&addr, &key, false).await;
                let meta = ctx.read_meta(wall, t0, &a);
                (a.outcome, meta)
            };
            ok = matches!(outcome, Outcome::Ok(_));
            if ok {
                rec.record(Event {
                    client,
                    key,
                    op: Op::Read,
                    invoke_ns: invoke,
                    complete_ns: Some(rec.now()),
                    outcome,
                    ttl: Some(meta),
                });
            }
        } else {
            counter += 1;
            let value = format!("t{client}-{counter}");
            let (op, a) = match choice {
                80..84 => {
                    let ms = short_ttl(&mut rng);
                    let a = api.put_ttl(&addr, &key, &value, PutTtl::In(ms), None).await;
                    (Op::WriteTtl { value, ttl_ms: ms }, a)
                }
                84..86 => {
                    let a = api
                        .put_ttl(&addr, &key, &value, PutTtl::In(LONG_TTL_MS), None)
                        .await;
                    (
                        Op::WriteTtl {
                            value,
                            ttl_ms: LONG_TTL_MS,
                        },
                        a,
                    )
                }
                86..89 => {
                    let a = api.put_ttl(&addr, &key, &value, PutTtl::Clear, None).await;
                    (Op::Write(value), a)
                }
                89..90 => {
                    let a = api.put_ttl(&addr, &key, &value, PutTtl::Keep, None).await;
                    (Op::WriteKeepTtl(value), a)
                }
                90..94 => {
                    let ms = short_ttl(&mut rng);
                    let a = api.expire(&addr, &key, Some(ms)).await;
                    (Op::Expire { ttl_ms: ms }, a)
                }
                94..95 => {
                    let a = api.expire(&addr, &key, Some(LONG_TTL_MS)).await;
                    (
                        Op::Expire {
                            ttl_ms: LONG_TTL_MS,
                        },
                        a,
                    )
                }
                95..97 => {
                    let a = api.expire(&addr, &key, None).await;
                    (Op::Persist, a)
                }
                _ => {
                    // CAS: a read (recorded), then a PUT on its modify index.
                    let r = api.read_ttl(&addr, &key, false).await;
                    let Outcome::Ok(Ret::Read(expected)) = r.outcome.clone() else {
                        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
                        continue;
                    };
                    let meta = ctx.read_meta(wall, t0, &r);
                    rec.record(Event {
                        client,
                        key: key.clone(),
                        op: Op::Read,
                        invoke_ns: invoke,
                        complete_ns: Some(rec.now()),
                        outcome: r.outcome,
                        ttl: Some(meta),
                    });
                    (invoke, wall) = (rec.now(), wall_ms());
                    let a = api
                        .put_ttl(&addr, &key, &value, PutTtl::Clear, Some(r.index))
                        .await;
                    let op = Op::Cas {
                        expected,
                        new: value,
                    };
                    (op, a)
                }
            };
            ok = matches!(a.outcome, Outcome::Ok(_));
            let indeterminate = a.outcome == Outcome::Indeterminate;
            let ttl_op = matches!(op, Op::Expire { .. } | Op::Persist);
            rec.record(Event {
                client,
                key,
                op,
                invoke_ns: invoke,
                complete_ns: completed(&a.outcome, rec.now()),
                outcome: a.outcome,
                ttl: Some(write_meta(wall, a.expires_at_ms)),
            });
            if indeterminate {
                client = rec.new_client();
                if ttl_op {
                    ctx.keys.retire(slot, generation);
                }
            }
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..60))).await;
    }
    // End on a short TTL (on this client's key; retried while refused, for
    // a few seconds), so that the check after the run has expired values
    // to look for, written while the last faults were still in place.
    let slot = index % ctx.keys.gens.len();
    let give_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < give_up {
        let (key, _) = ctx.keys.key(slot);
        counter += 1;
        let value = format!("t{client}-{counter}");
        let ms = rng.gen_range(10..200);
        let (invoke, wall) = (rec.now(), wall_ms());
        let addr = Db::http(rng.gen_range(1..=ctx.n));
        let a = api.put_ttl(&addr, &key, &value, PutTtl::In(ms), None).await;
        let refused = a.outcome == Outcome::Fail;
        rec.record(Event {
            client,
            key,
            op: Op::WriteTtl { value, ttl_ms: ms },
            invoke_ns: invoke,
            complete_ns: completed(&a.outcome, rec.now()),
            outcome: a.outcome,
            ttl: Some(write_meta(wall, a.expires_at_ms)),
        });
        if !refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the check after the run found (see [`ttl_after_run`]).
#[derive(Default)]
pub(crate) struct TtlAfter {
    /// Values past their deadline still on a replica, or with a deadline
    /// they cannot have.
    pub(crate) violations: Vec<ttl::TtlViolation>,
    /// Replicas whose state holds more keys than their reads show: expired
    /// entries the leader never ticked away.
    pub(crate) unremoved: Vec<String>,
    /// Stale reads of the TTL keys in the last round, and how many found a
    /// value: without a deadline, with a long one, with a short one still
    /// ahead on the leader's clock (all legitimately there).
    pub(crate) reads: usize,
    pub(crate) present: usize,
    pub(crate) no_deadline: usize,
    pub(crate) long_deadline: usize,
    pub(crate) deadline_ahead: usize,
    /// The skew of the leader at the end, if known (ms).
    pub(crate) leader_skew_ms: Option<i64>,
    /// Problems at the first look (the leader may still have been ticking),
    /// and how long after it they were gone (if they were).
    pub(crate) first_look: Vec<String>,
    pub(crate) settled_after: Option<Duration>,
    /// The replicated clock minus the harness's clock, on the leader (ms).
    pub(crate) clock_ahead_ms: Option<i64>,
}

/// After healing: every replica must have dropped the values whose
/// deadline passed on the leader's clock (stale reads of the TTL keys on
/// every node, `ttl::check_final`), and must hold no more keys than it
/// shows (`/v1/status/digest` `keys` against stale reads of every key the
/// run wrote, the count stable around the reads): an expired key is
/// invisible to reads at once, but only the leader's expiry tick removes it
/// from the state. Starts once the last short TTLs (2 s at most) and a tick
/// have passed; polled for up to 15 s.
pub(crate) async fn ttl_after_run(
    api: &Api,
    db: &Arc<Mutex<Db>>,
    history: &History,
    ttl_keys: &[String],
    other_keys: &[String],
    params: &TtlParams,
) -> TtlAfter {
    let n = db.lock().await.n();
    let skews = db.lock().await.skews.clone();
    // Let the short TTLs of the last writes (at most 2 s) pass, and the
    // leader tick: problems at the first look are then real delays.
    tokio::time::sleep(
        Duration::from_millis(2_000) + Duration::from_millis(params.late_margin_ms()),
    )
    .await;
    let start = Instant::now();
    let give_up = start + Duration::from_secs(15);
    let mut first_look: Option<Vec<String>> = None;
    loop {
        let mut out = TtlAfter::default();
        let leader = crate::nemesis::find_leader(api, db).await;
        let leader_skew = leader.and_then(|l| skews.current(l));
        let floor = wall_ms() as i64 + leader_skew.unwrap_or(-(params.max_skew_ms as i64));
        if let Some(l) = leader
            && let Some(v) = api.json(&Db::http(l), "/v1/status").await
            && let Some(clock) = v["clock_ms"].as_u64()
        {
            out.clock_ahead_ms = Some(clock as i64 - wall_ms() as i64);
        }
        let mut reads = Vec::new();
        for i in 1..=n {
            let addr = Db::http(i);
            let count = |v: Option<serde_json::Value>| v.and_then(|v| v["keys"].as_u64());
            let before = count(api.json(&addr, "/v1/status/digest").await);
            let mut visible = 0u64;
            let mut complete = true;
            for key in ttl_keys.iter().chain(other_keys) {
                let a = api.read_ttl(&addr, key, true).await;
                let Outcome::Ok(Ret::Read(value)) = a.outcome else {
                    complete = false;
                    continue;
                };
                visible += value.is_some() as u64;
                if ttl_keys.contains(key) {
                    reads.push(ttl::FinalRead {
                        node: Db::id(i),
                        key: key.clone(),
                        value,
                        expires_at_ms: a.expires_at_ms,
                    });
                }
            }
            let after = count(api.json(&addr, "/v1/status/digest").await);
            if complete
                && let (Some(b), Some(a)) = (before, after)
                && a == b
                && a != visible
            {
                out.unremoved.push(format!(
                    "n{i} holds {a} keys but only {visible} of the keys the run wrote are readable on it: expired entries were not removed"
                ));
            }
        }
        out.reads = reads.len();
        out.present = reads.iter().filter(|r| r.value.is_some()).count();
        let present = || reads.iter().filter(|r| r.value.is_some());
        out.no_deadline = present().filter(|r| r.expires_at_ms.is_none()).count();
        let long = floor + LONG_TTL_MS as i64 / 2;
        out.long_deadline = present()
            .filter(|r| r.expires_at_ms.is_some_and(|d| d as i64 > long))
            .count();
        out.deadline_ahead = present()
            .filter(|r| {
                r.expires_at_ms
                    .is_some_and(|d| d as i64 > floor && d as i64 <= long)
            })
            .count();
        out.leader_skew_ms = leader_skew;
        out.violations = ttl::check_final(history, &reads, floor, params);
        let problems = out.violations.len() + out.unremoved.len();
        out.first_look = first_look
            .get_or_insert_with(|| {
                let v = out.violations.iter().map(|v| v.to_string());
                v.chain(out.unremoved.iter().cloned()).collect()
            })
            .clone();
        if problems == 0 {
            out.settled_after = Some(start.elapsed());
            return out;
        }
        if Instant::now() >= give_up {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
