//! Leader-decided eviction: which keys a write that would go past
//! `cache.max_memory` evicts, by the configured policy.
//!
//! Only the leader serves linearizable reads, so only it knows what is
//! being used; its choice travels in the write's log entry
//! (`kv::Request::evict`), so every replica evicts exactly the same keys.
//! The state machine applies the victims only if the write then fits, and
//! refuses it otherwise (`out_of_memory`), so the bound holds whatever the
//! leader chose.
//!
//! Invariants:
//! - Recency and frequency come from each item's node-local access word
//!   (`kv::Access`): set on apply (every replica), bumped by reads served
//!   here. A new leader starts from what it applied and served; nothing
//!   else needs rebuilding.
//! - Sampling, as Redis does: LRU and LFU compare [`SAMPLES`] keys found
//!   by random probes of the key space (interpolated between the first and
//!   the last key), so the victim is an approximation of the least recently
//!   (frequently) used key, not the exact one. `volatile-ttl` is exact (the
//!   expiry index is ordered by deadline).
//! - Keys chosen for writes still in flight are not chosen again
//!   ([`Reservation`]), and the bytes those writes will add are counted.
//!   A write whose victims free more than it adds counts as adding 0, not
//!   as a credit: the log may order it after a write planned later, which
//!   must then fit on its own victims. Plans are serialized, so each one
//!   sees what the plans before it reserved.
//! - A write larger than the whole budget gets no victims: it is refused,
//!   never allowed to evict everything.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::EvictionPolicy;
use crate::kv::Access;
use crate::kv::Cache;
use crate::kv::Command;
use crate::kv::Item;
use crate::kv::Ttl;
use crate::kv::cache::entry_cost;

/// Keys compared per victim by the sampled policies (Redis's default is 5;
/// more samples are closer to exact LRU for a little more CPU).
pub const SAMPLES: usize = 16;
/// Victims one write may name at most (a bound on the entry's size).
pub const MAX_VICTIMS: usize = 1024;

pub struct Evictor {
    policy: EvictionPolicy,
    max_memory: u64,
    /// Bytes that proposed, not yet applied, writes will add (each one's
    /// growth minus what its victims free, at least 0).
    pending: AtomicI64,
    /// Keys named as victims by writes still in flight.
    doomed: Mutex<HashSet<Box<[u8]>>>,
    rng: Mutex<StdRng>,
}

/// What a write reserved; released when the write finishes (dropped).
pub struct Reservation<'a> {
    evictor: &'a Evictor,
    /// Net bytes added to `pending`.
    bytes: i64,
    victims: Vec<String>,
}

impl Reservation<'_> {
    pub fn victims(&self) -> &[String] {
        &self.victims
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.evictor
            .pending
            .fetch_sub(self.bytes, Ordering::Relaxed);
        if !self.victims.is_empty() {
            let mut doomed = self.evictor.doomed.lock().expect("evictor lock");
            for v in &self.victims {
                doomed.remove(v.as_bytes());
            }
        }
    }
}

/// One sampled candidate: its key, accounted cost and eviction score
/// (higher = better victim).
struct Candidate {
    key: Box<[u8]>,
    cost: u64,
    score: u64,
}

impl Evictor {
    pub fn new(policy: EvictionPolicy, max_memory: u64) -> Self {
        Self::with_rng(policy, max_memory, StdRng::from_entropy())
    }

    /// With a seeded RNG: the same sampling every run (tests).
    pub fn seeded(policy: EvictionPolicy, max_memory: u64, seed: u64) -> Self {
        Self::with_rng(policy, max_memory, StdRng::seed_from_u64(seed))
    }

    fn with_rng(policy: EvictionPolicy, max_memory: u64, rng: StdRng) -> Self {
        Self {
            policy,
            max_memory,
            pending: AtomicI64::new(0),
            doomed: Mutex::new(HashSet::new()),
            rng: Mutex::new(rng),
        }
    }

    pub fn max_memory(&self) -> u64 {
        self.max_memory
    }

    pub fn policy(&self) -> EvictionPolicy {
        self.policy
    }

    /// How a read should touch the key's access word: `None` when nothing
    /// is tracked (no memory limit: the read path stays lock-free), else a
    /// coin for the LFU counter's logarithmic growth (1.0, never counting,
    /// when the policy does not use frequency).
    pub fn touch_coin(&self) -> Option<f64> {
        if !self.tracks_access() {
            return None;
        }
        match self.policy {
            EvictionPolicy::AllkeysLfu => Some(self.rng.lock().expect("evictor lock").r#gen()),
            _ => Some(1.0),
        }
    }

    /// Reads are recorded as accesses (a memory limit with a policy that
    /// evicts): the leader must see every read, so followers forward them.
    pub fn tracks_access(&self) -> bool {
        self.max_memory != 0 && self.policy != EvictionPolicy::NoEviction
    }

    /// Plan `cmd`: reserve the bytes it adds and choose victims if it would
    /// go past the budget. `now_ms` is the leader's stamp (for idle times).
    pub fn plan(&self, cache: &Cache, cmd: &Command, now_ms: u64) -> Reservation<'_> {
        if self.max_memory == 0 {
            // Unlimited (the default): nothing to count, no lock taken.
            return Reservation {
                evictor: self,
                bytes: 0,
                victims: Vec::new(),
            };
        }
        // One plan at a time: each sees the bytes reserved by every plan
        // before it (concurrent plans would each count the same room).
        let mut doomed = self.doomed.lock().expect("evictor lock");
        let (bytes, victims) = self.choose_victims(cache, cmd, now_ms, &mut doomed);
        self.pending.fetch_add(bytes, Ordering::Relaxed);
        drop(doomed);
        Reservation {
            evictor: self,
            bytes,
            victims,
        }
    }

    /// The bytes `cmd` will add (growth minus what its victims free, at
    /// least 0: see the module doc), and the victims.
    fn choose_victims(
        &self,
        cache: &Cache,
        cmd: &Command,
        now_ms: u64,
        doomed: &mut HashSet<Box<[u8]>>,
    ) -> (i64, Vec<String>) {
        let mut victims = Vec::new();
        if self.max_memory == 0 {
            return (0, victims);
        }
        // The keys the write changes (never victims), the largest cost it
        // may need on its own, and the bytes it adds.
        let (keys, new_cost, delta): (Vec<&str>, u64, u64) = match cmd {
            Command::Set {
                key, value, ttl, ..
            } => {
                let keeps =
                    *ttl == Ttl::Keep && cache.get_item(key).is_some_and(|it| it.expires_at() != 0);
                let has_ttl = matches!(ttl, Ttl::In(_) | Ttl::At(_)) || keeps;
                let new_cost = entry_cost(key.len(), value.len(), has_ttl);
                (
                    vec![key],
                    new_cost,
                    new_cost.saturating_sub(cost_of(cache, key)),
                )
            }
            Command::Expire { key, ttl } => match cache.get_item(key) {
                Some(it) => {
                    let new_cost = entry_cost(key.len(), it.value().len(), *ttl != Ttl::Clear);
                    (
                        vec![key],
                        new_cost,
                        new_cost.saturating_sub(cost_of(cache, key)),
                    )
                }
                None => return (0, victims),
            },
            // Either branch may run: plan for the larger.
            Command::Txn {
                success, failure, ..
            } => {
                let growth = cache.txn_growth(success).max(cache.txn_growth(failure));
                let keys = success.iter().chain(failure).filter_map(Command::key);
                (keys.collect(), growth, growth)
            }
            Command::Rmw(op) => {
                let growth = op.growth_bound(cache);
                (op.keys(), growth, growth)
            }
            Command::Multi { ops, .. } => {
                let writes = ops.iter().filter_map(|op| match op {
                    crate::kv::redis::MultiOp::Write(w) => Some(w),
                    _ => None,
                });
                let growth = writes.clone().map(|w| w.growth_bound(cache)).sum();
                (
                    writes.flat_map(crate::kv::redis::Rmw::keys).collect(),
                    growth,
                    growth,
                )
            }
            Command::Delete { .. }
            | Command::Tick { .. }
            | Command::Get { .. }
            | Command::Range { .. }
            | Command::DeletePrefix { .. } => return (0, victims),
        };
        let net = i64::try_from(delta).unwrap_or(i64::MAX);
        let pending = self.pending.load(Ordering::Relaxed);
        let used = (cache.mem_bytes() + delta).saturating_add_signed(pending);
        if used <= self.max_memory
            || self.policy == EvictionPolicy::NoEviction
            || new_cost > self.max_memory
        {
            return (net, victims);
        }
        let need = used - self.max_memory;
        let mut rng = self.rng.lock().expect("evictor lock");
        let mut freed = 0;
        let mut misses = 0;
        while freed < need && victims.len() < MAX_VICTIMS && misses < 8 {
            let exclude = |k: &[u8]| keys.iter().any(|w| w.as_bytes() == k) || doomed.contains(k);
            match self.choose(cache, now_ms, &mut rng, &exclude) {
                Some(c) => {
                    freed += c.cost;
                    doomed.insert(c.key.clone());
                    victims.push(String::from_utf8(c.key.into_vec()).expect("keys are UTF-8"));
                }
                None => misses += 1,
            }
        }
        let net = net - i64::try_from(freed).unwrap_or(i64::MAX);
        (net.max(0), victims)
    }

    /// One victim under the policy, or `None` if no eligible key was found.
    fn choose(
        &self,
        cache: &Cache,
        now_ms: u64,
        rng: &mut StdRng,
        exclude: &dyn Fn(&[u8]) -> bool,
    ) -> Option<Candidate> {
        let candidate = |it: &Item, score: u64| Candidate {
            key: it.key().into(),
            cost: entry_cost(it.key().len(), it.value().len(), it.expires_at() != 0),
            score,
        };
        match self.policy {
            EvictionPolicy::NoEviction => None,
            EvictionPolicy::VolatileTtl => cache
                .deadlines()
                .find(|(_, k)| !exclude(k))
                .and_then(|(_, k)| cache.get_item_bytes(k))
                .map(|it| candidate(it, 0)),
            EvictionPolicy::AllkeysRandom => sample(cache, rng, 1, false, exclude)
                .map(|it| candidate(it, 0))
                .next(),
            EvictionPolicy::AllkeysLru | EvictionPolicy::VolatileLru => {
                let volatile = self.policy == EvictionPolicy::VolatileLru;
                sample(cache, rng, SAMPLES, volatile, exclude)
                    .map(|it| candidate(it, u64::from(Access(it.access()).idle_secs(now_ms))))
                    .max_by_key(|c| c.score)
            }
            EvictionPolicy::AllkeysLfu => sample(cache, rng, SAMPLES, false, exclude)
                .map(|it| {
                    let a = Access(it.access());
                    // Least frequent first; among equals, the longest idle.
                    let score = (u64::from(255 - a.frequency(now_ms)) << 32)
                        | u64::from(a.idle_secs(now_ms));
                    candidate(it, score)
                })
                .max_by_key(|c| c.score),
        }
    }
}

/// The accounted cost of `key` now (0 when absent).
fn cost_of(cache: &Cache, key: &str) -> u64 {
    cache.get_item(key).map_or(0, |it| {
        entry_cost(it.key().len(), it.value().len(), it.expires_at() != 0)
    })
}

/// Up to `n` distinct eligible items found by random probes: of the key
/// space, or (`volatile`) of the deadlines of keys with a TTL.
fn sample<'a>(
    cache: &'a Cache,
    rng: &mut StdRng,
    n: usize,
    volatile: bool,
    exclude: &dyn Fn(&[u8]) -> bool,
) -> impl Iterator<Item = &'a Item> {
    let mut out: Vec<&Item> = Vec::with_capacity(n);
    let eligible = |it: &&Item| !exclude(it.key());
    for _ in 0..n * 4 {
        if out.len() >= n {
            break;
        }
        let found: Option<&Item> = if volatile {
            let Some((lo, hi)) = cache.deadline_range() else {
                break;
            };
            let at = rng.gen_range(lo..=hi);
            cache
                .deadlines_from(at)
                .chain(cache.deadlines())
                .take(4)
                .filter_map(|(_, k)| cache.get_item_bytes(k))
                .find(eligible)
        } else {
            let (Some(first), Some(last)) = (cache.items().next(), cache.items().next_back())
            else {
                break;
            };
            let probe = probe_between(first.key(), last.key(), rng);
            cache
                .items_from(&probe)
                .chain(cache.items())
                .take(4)
                .find(eligible)
        };
        if let Some(it) = found
            && !out.iter().any(|o| o.key() == it.key())
        {
            out.push(it);
        }
    }
    out.into_iter()
}

/// A random key between `first` and `last`: their common prefix, a byte
/// drawn between theirs at the first difference, then bytes drawn from the
/// range of bytes the two keys use after it (for `user-0` … `user-9999`:
/// digits), so probes spread over the keys rather than over all bytes.
fn probe_between(first: &[u8], last: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let common = first.iter().zip(last).take_while(|(a, b)| a == b).count();
    let mut probe = first[..common].to_vec();
    let lo = first.get(common).copied().unwrap_or(0);
    let hi = last.get(common).copied().unwrap_or(255).max(lo);
    probe.push(rng.gen_range(lo..=hi));
    let tail = first.iter().chain(last).skip(common);
    let (a, b) = tail.fold((u8::MAX, u8::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (a, b) = if a <= b { (a, b) } else { (0, 255) };
    let len = first.len().max(last.len()).saturating_sub(common + 1);
    for _ in 0..len {
        probe.push(rng.gen_range(a..=b));
    }
    probe
}

#[cfg(test)]
mod tests;
