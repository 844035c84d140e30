//! Fault schedule: a seeded RNG picks fault after fault from the enabled
//! kinds, holds each for a random time, then heals it. Every action is
//! logged with its time so a failing seed can be replayed and read.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::sync::Mutex;

use crate::client::Api;
use crate::db::Db;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Isolate the leader from every other node.
    PartitionLeader,
    /// Random majority/minority halves.
    PartitionHalves,
    /// Two sides that cannot talk, and one node that sees both.
    PartitionBridge,
    /// Drop packets in one direction between two nodes.
    OneWay,
    KillFollower,
    KillLeader,
    KillMajority,
    KillAll,
    /// SIGSTOP the leader, SIGCONT later.
    PauseLeader,
    /// Remove a follower, wipe it, add it back.
    Membership,
    /// Restart a node with its wall clock skewed (libfaketime).
    ClockSkew,
}

impl Fault {
    pub fn all() -> Vec<Fault> {
        use Fault::*;
        vec![
            PartitionLeader,
            PartitionHalves,
            PartitionBridge,
            OneWay,
            KillFollower,
            KillLeader,
            KillMajority,
            KillAll,
            PauseLeader,
            Membership,
            ClockSkew,
        ]
    }
}

pub struct Nemesis {
    pub db: Arc<Mutex<Db>>,
    pub api: Api,
    pub rng: StdRng,
    pub faults: Vec<Fault>,
    pub start: Instant,
    pub has_faketime: bool,
    pub log: Vec<String>,
}

/// The leader most running nodes report (by index, 1-based).
pub async fn find_leader(api: &Api, db: &Arc<Mutex<Db>>) -> Option<usize> {
    let n = db.lock().await.n();
    let mut votes = std::collections::HashMap::new();
    for i in 1..=n {
        if !db.lock().await.is_running(i) {
            continue;
        }
        if let Some(v) = api.json(&Db::http(i), "/v1/cluster").await
            && let Some(l) = v["leader_id"].as_str()
        {
            *votes.entry(l.to_string()).or_insert(0) += 1;
        }
    }
    let (id, _) = votes.into_iter().max_by_key(|(_, c)| *c)?;
    id.strip_prefix('n')?.parse().ok()
}

impl Nemesis {
    pub fn new(
        db: Arc<Mutex<Db>>,
        api: Api,
        seed: u64,
        faults: Vec<Fault>,
        start: Instant,
    ) -> Nemesis {
        let has_faketime = std::path::Path::new(crate::db::LIBFAKETIME).exists();
        Nemesis {
            db,
            api,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            faults,
            start,
            has_faketime,
            log: Vec::new(),
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

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(lo..=hi))
    }

    /// Run faults until `until`.
    pub async fn run(&mut self, until: Instant) -> anyhow::Result<()> {
        if self.faults.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            return Ok(());
        }
        while Instant::now() + Duration::from_secs(2) < until {
            let quiet = self.ms(500, 1500);
            tokio::time::sleep(quiet).await;
            let f = *self.faults.choose(&mut self.rng).expect("non-empty");
            let hold = self
                .ms(1500, 5000)
                .min(until.saturating_duration_since(Instant::now()));
            self.inject(f, hold).await?;
        }
        Ok(())
    }

    async fn others(&self, except: &[usize]) -> Vec<usize> {
        let n = self.db.lock().await.n();
        (1..=n).filter(|i| !except.contains(i)).collect()
    }

    async fn inject(&mut self, f: Fault, hold: Duration) -> anyhow::Result<()> {
        let n = self.db.lock().await.n();
        let leader = find_leader(&self.api, &self.db).await;
        match f {
            Fault::PartitionLeader => {
                let Some(l) = leader else { return Ok(()) };
                self.note(format!("isolate leader n{l} for {hold:?}"));
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
                self.note(format!("partition {minority:?} from the rest for {hold:?}"));
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
                    "bridge: {a:?} | {b:?}, n{bridge} sees both, for {hold:?}"
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
                self.note(format!("drop n{from} -> n{to} (one way) for {hold:?}"));
                self.db.lock().await.topo.drop_from(to, from)?;
                tokio::time::sleep(hold).await;
                self.heal().await;
            }
            Fault::KillFollower | Fault::KillLeader | Fault::KillMajority | Fault::KillAll => {
                let Some(l) = leader else { return Ok(()) };
                let victims: Vec<usize> = match f {
                    Fault::KillLeader => vec![l],
                    Fault::KillFollower => {
                        let o = self.others(&[l]).await;
                        vec![*o.choose(&mut self.rng).expect("followers")]
                    }
                    Fault::KillMajority => {
                        let mut ids: Vec<usize> = (1..=n).collect();
                        ids.shuffle(&mut self.rng);
                        ids[..n / 2 + 1].to_vec()
                    }
                    _ => (1..=n).collect(),
                };
                self.note(format!("kill -9 {victims:?} (leader n{l}) for {hold:?}"));
                for &v in &victims {
                    self.db.lock().await.kill(v);
                }
                tokio::time::sleep(hold).await;
                for &v in &victims {
                    self.restart(v, None).await?;
                }
            }
            Fault::PauseLeader => {
                let Some(l) = leader else { return Ok(()) };
                self.note(format!("SIGSTOP leader n{l} for {hold:?}"));
                self.db.lock().await.pause(l);
                tokio::time::sleep(hold).await;
                self.note(format!("SIGCONT n{l}"));
                self.db.lock().await.resume(l);
            }
            Fault::Membership => {
                let Some(l) = leader else { return Ok(()) };
                let o = self.others(&[l]).await;
                let victim = *o.choose(&mut self.rng).expect("followers");
                self.note(format!("remove n{victim}, wipe it, add it back"));
                if !self.api.delete_member(&Db::http(l), &Db::id(victim)).await {
                    self.note(format!(
                        "remove n{victim} refused (leader changed?); skipping"
                    ));
                    return Ok(());
                }
                let dir = {
                    let mut db = self.db.lock().await;
                    db.kill(victim);
                    db.data_dir(victim)
                };
                let _ = std::fs::remove_dir_all(&dir);
                tokio::time::sleep(hold / 2).await;
                self.restart(victim, None).await?;
            }
            Fault::ClockSkew => {
                if !self.has_faketime {
                    return Ok(());
                }
                let victim = self.rng.gen_range(1..=n);
                let secs: i64 = if self.rng.gen_bool(0.5) { 90 } else { -90 };
                let skew = format!("{secs:+}s");
                self.note(format!("restart n{victim} with wall clock {skew}"));
                self.db.lock().await.kill(victim);
                self.restart(victim, Some(skew)).await?;
                tokio::time::sleep(hold).await;
            }
        }
        Ok(())
    }

    /// Start a stopped node again, joining through any other node (a node
    /// already in the membership skips the join; a wiped one joins anew).
    pub async fn restart(&mut self, i: usize, skew: Option<String>) -> anyhow::Result<()> {
        let n = self.db.lock().await.n();
        let via = (1..=n).find(|&o| o != i).map(Db::http);
        let mut db = self.db.lock().await;
        if !db.is_running(i) {
            let fresh = !db.data_dir(i).join("node.json").exists();
            // n1 bootstrapped the cluster; every other start joins. A wiped
            // n1 must join too, or it would bootstrap a second cluster.
            let join = if i == 1 && !fresh { None } else { via };
            db.start(i, join, skew)?;
        }
        Ok(())
    }

    pub async fn heal(&mut self) {
        self.note("heal network".into());
        self.db.lock().await.topo.heal();
    }
}
