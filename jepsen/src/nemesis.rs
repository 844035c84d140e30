//! The nemesis: injects the faults of the schedule into the running cluster
//! and records, per kind, whether each was really injected.
//!
//! Owns: carrying out each [`Fault`] (nft cuts, kills and restarts,
//! SIGSTOP/SIGCONT, membership removal, a restart with a skewed clock),
//! waiting (bounded) for a leader when a fault needs one, checking that a
//! skewed node really runs with its skew, and the [`Tally`] of injections
//! and skips. Every action is logged with its time so a failing seed can be
//! replayed and read.
//!
//! Invariants: a fault counts as injected only once it took effect (the
//! rules were installed, a live process was signalled, the removal was
//! confirmed, the skewed clock was observed); a fault that could not be
//! injected is recorded as skipped with the reason, never dropped silently,
//! and gets one retry at the end of its cycle while its kind has no
//! injection yet; a node is wiped only after its removal from the
//! membership is confirmed, and every restart carries a join address, so
//! the harness never makes a node bootstrap a second cluster; every random
//! choice comes from the run seed.
//!
//! Does not: decide the order of kinds or the step lengths (see
//! `schedule.rs`), or judge the run (see `main.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::sync::Mutex;

use crate::client::Api;
use crate::db::Db;
use crate::faketime;
use crate::schedule;
pub use crate::schedule::Fault;
use crate::schedule::Schedule;
use crate::schedule::Tally;
use crate::schedule::step_times;

/// How long a leader-dependent fault waits for a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a membership change that is still in flight after
/// [`LEADER_WAIT`] gets to settle.
const MEMBERSHIP_SETTLE: Duration = Duration::from_secs(5);
/// How long a skewed node gets to answer `/health` after its restart.
const SKEW_CHECK_WAIT: Duration = Duration::from_secs(10);
/// The skew of the clock-skew fault, either way (seconds).
pub const SKEW_SECS: i64 = 90;

/// What became of one scheduled fault.
enum Injection {
    Done,
    Skipped(String),
}

pub struct Nemesis {
    pub db: Arc<Mutex<Db>>,
    pub api: Api,
    rng: StdRng,
    schedule: Schedule,
    pub faults: Vec<Fault>,
    start: Instant,
    pub log: Vec<String>,
    pub tally: Tally,
    /// Nodes whose removal was requested but not confirmed: a removal
    /// answered with an error (e.g. a timeout) can still take effect,
    /// seconds later.
    unresolved_removals: BTreeSet<usize>,
}

/// The leader most running nodes report (by index, 1-based), if that node
/// is running and not paused.
pub async fn find_leader(api: &Api, db: &Arc<Mutex<Db>>) -> Option<usize> {
    let n = db.lock().await.n();
    let mut votes = std::collections::BTreeMap::new();
    for i in 1..=n {
        {
            let mut db = db.lock().await;
            if !db.is_running(i) || db.procs.is_paused(i) {
                continue;
            }
        }
        if let Some(v) = api.json(&Db::http(i), "/v1/cluster").await
            && let Some(l) = v["leader_id"].as_str()
        {
            *votes.entry(l.to_string()).or_insert(0) += 1;
        }
    }
    let (id, _) = votes.into_iter().max_by_key(|(_, c)| *c)?;
    let l: usize = id.strip_prefix('n')?.parse().ok()?;
    let mut db = db.lock().await;
    let live = (1..=n).contains(&l) && db.is_running(l) && !db.procs.is_paused(l);
    live.then_some(l)
}

impl Nemesis {
    pub fn new(
        db: Arc<Mutex<Db>>,
        api: Api,
        seed: u64,
        faults: Vec<Fault>,
        start: Instant,
    ) -> Nemesis {
        Nemesis {
            db,
            api,
            // Victims, holds, skew direction.
            rng: StdRng::seed_from_u64(schedule::stream_seed(seed, schedule::PARAM_STREAM)),
            schedule: Schedule::new(&faults, seed),
            faults,
            start,
            log: Vec::new(),
            tally: Tally::default(),
            unresolved_removals: BTreeSet::new(),
        }
    }

    fn note(&mut self, what: String) {
        let line = format!(
            "[{:>7.2}s] nemesis: {what}",
            self.start.elapsed().as_secs_f64()
        );
        println!("{line}");
        self.log.push(line);
    }

    /// Run faults until `until`.
    pub async fn run(&mut self, until: Instant) -> anyhow::Result<()> {
        if self.faults.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            return Ok(());
        }
        while Instant::now() + crate::schedule::TAIL < until {
            let pending = self.tally.pending(&self.faults);
            let left = until.saturating_duration_since(Instant::now());
            let (quiet, hold) = step_times(&mut self.rng, left, pending);
            tokio::time::sleep(quiet).await;
            let Some(f) = self.schedule.next_fault() else {
                break;
            };
            let hold = hold.min(until.saturating_duration_since(Instant::now()));
            self.db.lock().await.procs.poll();
            self.resolve_removals().await?;
            match self.inject(f, hold).await? {
                Injection::Done => self.tally.injected(f),
                Injection::Skipped(reason) => {
                    let retry = self.tally.count(f) == 0 && self.schedule.retry(f);
                    self.note(format!(
                        "SKIPPED {f}: {reason}{}",
                        if retry { " (retried later)" } else { "" }
                    ));
                    self.tally.skipped(f, reason);
                }
            }
        }
        Ok(())
    }

    /// Waits up to [`LEADER_WAIT`] for a leader.
    async fn wait_leader(&mut self) -> Option<usize> {
        let every = Duration::from_millis(200);
        dcache_testkit::wait::until_every(LEADER_WAIT, every, || async {
            find_leader(&self.api, &self.db).await.ok_or(())
        })
        .await
        .ok()
    }

    /// Running nodes other than `except`.
    async fn running_others(&self, except: &[usize]) -> Vec<usize> {
        let mut db = self.db.lock().await;
        (1..=db.n())
            .filter(|i| !except.contains(i))
            .filter(|&i| db.is_running(i))
            .collect()
    }

    async fn inject(&mut self, f: Fault, hold: Duration) -> anyhow::Result<Injection> {
        let n = self.db.lock().await.n();
        let leader = if f.needs_leader() {
            match self.wait_leader().await {
                Some(l) => Some(l),
                None => {
                    return Ok(Injection::Skipped(format!(
                        "no leader within {} s",
                        LEADER_WAIT.as_secs()
                    )));
                }
            }
        } else {
            None
        };
        let leader_or_none = |what: &str| match leader {
            Some(l) => format!("{what} n{l}"),
            None => String::new(),
        };
        match f {
            Fault::PartitionLeader => {
                let l = leader.expect("needs_leader");
                self.note(format!("{f}: isolate leader n{l} for {hold:?}"));
                {
                    let db = self.db.lock().await;
                    for o in (1..=n).filter(|&o| o != l) {
                        db.topo.cut(l, o)?;
                    }
                }
                tokio::time::sleep(hold).await;
                self.heal().await;
            }
            Fault::PartitionHalves => {
                let mut ids: Vec<usize> = (1..=n).collect();
                ids.shuffle(&mut self.rng);
                let minority: Vec<usize> = ids[..(n - 1) / 2].to_vec();
                self.note(format!(
                    "{f}: partition {minority:?} from the rest for {hold:?}"
                ));
                {
                    let db = self.db.lock().await;
                    for &a in &minority {
                        for b in (1..=n).filter(|b| !minority.contains(b)) {
                            db.topo.cut(a, b)?;
                        }
                    }
                }
                tokio::time::sleep(hold).await;
                self.heal().await;
            }
            Fault::PartitionBridge => {
                let mut ids: Vec<usize> = (1..=n).collect();
                ids.shuffle(&mut self.rng);
                let bridge = ids[0];
                let rest = &ids[1..];
                let (a, b) = rest.split_at(rest.len() / 2);
                self.note(format!(
                    "{f}: {a:?} | {b:?}, n{bridge} sees both, for {hold:?}"
                ));
                {
                    let db = self.db.lock().await;
                    for &x in a {
                        for &y in b {
                            db.topo.cut(x, y)?;
                        }
                    }
                }
                tokio::time::sleep(hold).await;
                self.heal().await;
            }
            Fault::OneWay => {
                let from = self.rng.gen_range(1..=n);
                let mut to = self.rng.gen_range(1..=n);
                if to == from {
                    to = to % n + 1;
                }
                self.note(format!("{f}: drop n{from} -> n{to} for {hold:?}"));
                self.db.lock().await.topo.drop_from(to, from)?;
                tokio::time::sleep(hold).await;
                self.heal().await;
            }
            Fault::KillFollower | Fault::KillLeader | Fault::KillMajority | Fault::KillAll => {
                let mut victims: Vec<usize> = match f {
                    Fault::KillLeader => vec![leader.expect("needs_leader")],
                    Fault::KillFollower => {
                        let l = leader.expect("needs_leader");
                        let o = self.running_others(&[l]).await;
                        let Some(&v) = o.choose(&mut self.rng) else {
                            return Ok(Injection::Skipped("no running follower".into()));
                        };
                        vec![v]
                    }
                    Fault::KillMajority => {
                        let mut ids: Vec<usize> = (1..=n).collect();
                        ids.shuffle(&mut self.rng);
                        ids[..n / 2 + 1].to_vec()
                    }
                    _ => (1..=n).collect(),
                };
                victims.sort_unstable();
                let mut killed = Vec::new();
                {
                    let mut db = self.db.lock().await;
                    for &v in &victims {
                        if db.procs.kill(v) {
                            killed.push(v);
                        }
                    }
                }
                if killed.is_empty() {
                    for &v in &victims {
                        self.restart(v, None).await?;
                    }
                    return Ok(Injection::Skipped(format!(
                        "none of {victims:?} was running"
                    )));
                }
                self.note(format!(
                    "{f}: kill -9 {killed:?}{} for {hold:?}",
                    leader_or_none(", leader")
                ));
                tokio::time::sleep(hold).await;
                for &v in &victims {
                    self.restart(v, None).await?;
                }
            }
            Fault::PauseLeader => {
                let l = leader.expect("needs_leader");
                if !self.db.lock().await.procs.pause(l) {
                    return Ok(Injection::Skipped(format!("leader n{l} is not running")));
                }
                self.note(format!("{f}: SIGSTOP leader n{l} for {hold:?}"));
                tokio::time::sleep(hold).await;
                self.note(format!("SIGCONT n{l}"));
                self.db.lock().await.procs.resume(l);
            }
            Fault::Membership => return self.membership(leader, hold).await,
            Fault::ClockSkew => return self.clock_skew(hold).await,
        }
        Ok(Injection::Done)
    }

    /// Remove a follower, wipe its data, start it again (it joins anew).
    ///
    /// A removal answered with an error may still take effect (the request
    /// timed out while the change went on), so after a failed request the
    /// membership is read back, and the removal of the same node is retried
    /// until [`LEADER_WAIT`] has passed, then given [`MEMBERSHIP_SETTLE`]
    /// more. A node is wiped only once its removal is confirmed: wiping a
    /// voter would throw away a replica's durable state, which Raft does not
    /// survive (and the run would blame dcache). A removal still unconfirmed
    /// stays *unresolved*: the next membership fault retries that node
    /// rather than removing a second one, and [`Nemesis::resolve_removals`]
    /// completes it (wipe, rejoin) if it lands later.
    async fn membership(
        &mut self,
        leader: Option<usize>,
        hold: Duration,
    ) -> anyhow::Result<Injection> {
        let l0 = leader.expect("needs_leader");
        let victim = match self.unresolved_removals.first() {
            Some(&v) => v,
            None => {
                let o = self.running_others(&[l0]).await;
                let Some(&v) = o.choose(&mut self.rng) else {
                    return Ok(Injection::Skipped("no running follower".into()));
                };
                v
            }
        };
        self.unresolved_removals.insert(victim);
        let deadline = Instant::now() + LEADER_WAIT;
        let mut leader = Some(l0);
        let mut removed = false;
        loop {
            if let Some(l) = leader
                && (self.api.delete_member(&Db::http(l), &Db::id(victim)).await
                    || self.member_status(l, victim).await == Some(false))
            {
                removed = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            leader = find_leader(&self.api, &self.db).await;
        }
        if !removed {
            // A change may still be in flight: let it settle, look again.
            let settle = Instant::now() + MEMBERSHIP_SETTLE;
            while Instant::now() < settle {
                if let Some(l) = find_leader(&self.api, &self.db).await
                    && let Some(member) = self.member_status(l, victim).await
                {
                    removed = !member;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if !removed {
            return Ok(Injection::Skipped(format!(
                "removal of n{victim} not confirmed within {} s (left unresolved; n{victim} is not wiped)",
                (LEADER_WAIT + MEMBERSHIP_SETTLE).as_secs()
            )));
        }
        self.note(format!(
            "membership: removed n{victim}, wipe it, add it back"
        ));
        self.rejoin_removed(victim, hold / 2).await?;
        Ok(Injection::Done)
    }

    /// Kill a node whose removal is confirmed, wipe its data, and after
    /// `down` start it again: it joins as a new member.
    async fn rejoin_removed(&mut self, victim: usize, down: Duration) -> anyhow::Result<()> {
        self.unresolved_removals.remove(&victim);
        let dir = {
            let mut db = self.db.lock().await;
            db.procs.kill(victim);
            db.data_dir(victim)
        };
        let _ = std::fs::remove_dir_all(&dir);
        tokio::time::sleep(down).await;
        self.restart(victim, None).await
    }

    /// Completes unresolved removals that took effect after all: such a
    /// node is wiped and rejoins, and the membership fault counts as
    /// injected. Returns the nodes still unresolved.
    pub async fn resolve_removals(&mut self) -> anyhow::Result<Vec<usize>> {
        let pending: Vec<usize> = self.unresolved_removals.iter().copied().collect();
        if pending.is_empty() {
            return Ok(pending);
        }
        let Some(l) = find_leader(&self.api, &self.db).await else {
            return Ok(pending);
        };
        for victim in pending {
            if self.member_status(l, victim).await == Some(false) {
                self.note(format!(
                    "membership: the earlier removal of n{victim} took effect late; wipe it, add it back"
                ));
                self.rejoin_removed(victim, Duration::ZERO).await?;
                self.tally.injected(Fault::Membership);
            }
        }
        Ok(self.unresolved_removals.iter().copied().collect())
    }

    /// At the end of a run: waits up to `timeout` for unresolved removals
    /// to land or settle, completing those that land. Returns the nodes
    /// still unresolved (members, as far as the cluster says).
    pub async fn settle_removals(&mut self, timeout: Duration) -> anyhow::Result<Vec<usize>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.resolve_removals().await?;
            if left.is_empty() || Instant::now() >= deadline {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Whether node `victim` is in the membership as node `l` sees it:
    /// `None` if `l` does not answer or a membership change is in flight.
    async fn member_status(&self, l: usize, victim: usize) -> Option<bool> {
        let v = self.api.json(&Db::http(l), "/v1/cluster").await?;
        is_member(&v, &Db::id(victim))
    }

    /// Restart a node with its wall clock off by ±[`SKEW_SECS`], then check
    /// that it is: its environment preloads libfaketime, and its `/health`
    /// time is off by the skew. Then hand it the leadership (best effort,
    /// logged): a skewed clock matters most on the leader, whose clock
    /// stamps every entry and so drives TTL expiry.
    async fn clock_skew(&mut self, hold: Duration) -> anyhow::Result<Injection> {
        let t0 = Instant::now();
        let n = self.db.lock().await.n();
        let victim = self.rng.gen_range(1..=n);
        let secs = if self.rng.gen_bool(0.5) {
            SKEW_SECS
        } else {
            -SKEW_SECS
        };
        self.note(format!(
            "clock-skew: restart n{victim} with wall clock {}s",
            faketime::spec(secs)
        ));
        self.db.lock().await.procs.kill(victim);
        self.restart(victim, Some(secs)).await?;
        let verdict = match self.check_skew(victim, secs).await {
            Ok(seen) => {
                self.note(format!(
                    "clock-skew: n{victim} clock observed {seen:+.1} s off"
                ));
                self.lead_with(victim).await;
                Injection::Done
            }
            Err(why) => Injection::Skipped(why),
        };
        tokio::time::sleep(hold.saturating_sub(t0.elapsed())).await;
        Ok(verdict)
    }

    /// Ask the leader to hand leadership to node `v` (a few tries while it
    /// catches up); logs what happened, never fails the fault.
    async fn lead_with(&mut self, v: usize) {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            match find_leader(&self.api, &self.db).await {
                Some(l) if l == v => {
                    self.note(format!("clock-skew: n{v} leads"));
                    return;
                }
                Some(l) => match self.api.transfer_leader(&Db::http(l), &Db::id(v)).await {
                    Ok(new) => last = format!("n{l} handed over, new leader {new:?}"),
                    Err(e) => last = format!("n{l} refused: {e}"),
                },
                None => last = "no leader".into(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.note(format!(
            "clock-skew: leadership not moved to n{v} within {} s ({last})",
            LEADER_WAIT.as_secs()
        ));
    }

    /// The observed offset of node `i`'s clock if it shows `secs`.
    async fn check_skew(&mut self, i: usize, secs: i64) -> Result<f64, String> {
        let (pid, lib) = {
            let mut db = self.db.lock().await;
            if !db.is_running(i) {
                return Err(format!("n{i} is not running after its restart"));
            }
            (db.procs.pid(i), db.libfaketime.clone())
        };
        let (Some(pid), Some(lib)) = (pid, lib) else {
            return Err("no libfaketime".into());
        };
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .map_err(|e| format!("reading /proc/{pid}/environ: {e}"))?;
        if !faketime::environ_preloads(&environ, &lib) {
            return Err(format!(
                "n{i} (pid {pid}) does not preload {}",
                lib.display()
            ));
        }
        let deadline = Instant::now() + SKEW_CHECK_WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            let sent = SystemTime::now();
            if let Some(v) = self.api.json(&Db::http(i), "/health").await {
                let received = SystemTime::now();
                if let Some(off) = v["time"]
                    .as_str()
                    .and_then(|t| faketime::offset_secs(t, sent, received))
                {
                    if faketime::skew_observed(off, secs) {
                        return Ok(off);
                    }
                    last = Some(off);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(match last {
            Some(off) => format!(
                "n{i} preloads libfaketime but its clock is {off:+.1} s off, not {}",
                faketime::spec(secs)
            ),
            None => format!(
                "n{i} did not answer /health within {} s",
                SKEW_CHECK_WAIT.as_secs()
            ),
        })
    }

    /// Start a stopped node again. Every restart gets a join address (the
    /// leader if known, else another running node): a node that is already
    /// a voter skips the join, and one without Raft state (wiped, or killed
    /// before its rejoin completed) joins anew. Only the first start of n1
    /// bootstraps; a restart without a join address would let a node with
    /// no Raft state bootstrap a second cluster of its own.
    pub async fn restart(&mut self, i: usize, skew: Option<i64>) -> anyhow::Result<()> {
        if self.db.lock().await.is_running(i) {
            return Ok(());
        }
        let leader = find_leader(&self.api, &self.db).await.filter(|&l| l != i);
        let via = {
            let mut db = self.db.lock().await;
            let n = db.n();
            let running = (1..=n).find(|&o| o != i && db.is_running(o));
            leader
                .or(running)
                .or((1..=n).find(|&o| o != i))
                .expect("at least 3 nodes")
        };
        self.db.lock().await.start(i, Some(Db::http(via)), skew)
    }

    pub async fn heal(&mut self) {
        self.note("heal network".into());
        self.db.lock().await.topo.heal();
    }
}

/// Whether `id` is in the membership of a `/v1/cluster` document: `None`
/// while a membership change is in flight (or the document is not one).
fn is_member(cluster: &serde_json::Value, id: &str) -> Option<bool> {
    if cluster["membership_settled"] != true {
        return None;
    }
    let members = cluster["members"].as_array()?;
    Some(members.iter().any(|m| m["id"] == id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn membership_read_back() {
        let doc = |settled: bool, ids: &[&str]| {
            json!({
                "membership_settled": settled,
                "members": ids.iter().map(|i| json!({"id": i, "role": "voter"})).collect::<Vec<_>>(),
            })
        };
        assert_eq!(is_member(&doc(true, &["n1", "n2", "n3"]), "n2"), Some(true));
        assert_eq!(is_member(&doc(true, &["n1", "n3"]), "n2"), Some(false));
        // A joint configuration still lists the node: not settled.
        assert_eq!(is_member(&doc(false, &["n1", "n3"]), "n2"), None);
        assert_eq!(is_member(&json!({"error": "x"}), "n2"), None);
    }
}
