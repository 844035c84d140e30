//! The bank workload: a multi-key invariant through transactions and scans.
//!
//! `--accounts` keys `bank/0`.. start with [`INITIAL`] each (one txn,
//! before the faults). Clients then, on random nodes, either read every
//! account at one Raft index (a txn of `get`s, a linearizable prefix scan,
//! or a stale prefix scan of the node's own state) or transfer a random
//! amount between two accounts: a txn whose compares pin both accounts'
//! modify indexes to what the client just read, and whose puts debit one
//! and credit the other. Whatever a transfer's outcome, the total is
//! conserved; [`dcache_jepsen::checker::bank`] checks every read.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::bail;
use dcache_jepsen::checker::bank::BankRead;
use dcache_jepsen::history::Outcome;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use serde_json::json;

use crate::client::Api;
use crate::db::Db;

/// Each account's starting balance.
pub(crate) const INITIAL: i64 = 100;
/// The accounts' common prefix.
const PREFIX: &str = "bank/";

fn account(i: usize) -> String {
    format!("{PREFIX}{i}")
}

/// What the bank clients did.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) transfers_ok: AtomicU64,
    pub(crate) compare_failed: AtomicU64,
    pub(crate) not_applied: AtomicU64,
    pub(crate) unknown: AtomicU64,
    pub(crate) reads_failed: AtomicU64,
}

impl Tally {
    pub(crate) fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "transfers: {} applied, {} refused by their compares, {} not applied, {} unknown; {} failed reads",
            g(&self.transfers_ok),
            g(&self.compare_failed),
            g(&self.not_applied),
            g(&self.unknown),
            g(&self.reads_failed)
        )
    }
}

pub(crate) struct Bank {
    pub(crate) api: Api,
    pub(crate) n: usize,
    pub(crate) accounts: usize,
    pub(crate) reads: std::sync::Mutex<Vec<BankRead>>,
    pub(crate) tally: Tally,
    /// The index of the entry that created the accounts (set by `setup`).
    pub(crate) created_at: AtomicU64,
}

/// A read of every account and each one's modify index.
struct Snapshot {
    read: BankRead,
    modify_index: Vec<u64>,
    /// The lowest create index among the accounts found (0: none found).
    created_at: u64,
}

impl Bank {
    /// The accounts' keys.
    pub(crate) fn keys(&self) -> impl Iterator<Item = String> {
        (0..self.accounts).map(account)
    }

    pub(crate) fn total(&self) -> i64 {
        INITIAL * self.accounts as i64
    }

    /// Create the accounts (once: the txn's compare makes a retry after an
    /// unknown outcome harmless) and wait until a read shows all of them.
    pub(crate) async fn setup(&self) -> anyhow::Result<()> {
        let body = json!({
            "compare": [{"key": account(0), "target": "absent"}],
            "success": (0..self.accounts)
                .map(|i| json!({"op": "put", "key": account(i), "value": INITIAL.to_string()}))
                .collect::<Vec<_>>(),
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let _ = self.api.txn(&Db::http(1), &body).await;
            if let Some(s) = self.read_txn(&Db::http(1)).await
                && s.read.balances.iter().all(Option::is_some)
            {
                self.created_at.store(s.created_at, Ordering::Relaxed);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("the bank accounts could not be created within 30 s")
    }

    /// Every account in one txn of `get`s (linearizable, at one index).
    async fn read_txn(&self, addr: &str) -> Option<Snapshot> {
        let body = json!({
            "success": (0..self.accounts)
                .map(|i| json!({"op": "get", "key": account(i)}))
                .collect::<Vec<_>>(),
        });
        let v = self.api.txn(addr, &body).await.ok()?;
        let results = v["results"].as_array()?;
        let balances = results
            .iter()
            .map(|r| match r["found"].as_bool() {
                Some(true) => r["value"].as_str().and_then(|s| s.parse().ok()),
                _ => None,
            })
            .collect();
        let modify_index = results
            .iter()
            .map(|r| r["modify_index"].as_u64().unwrap_or(0))
            .collect();
        let created_at = results
            .iter()
            .filter_map(|r| r["create_index"].as_u64())
            .min()
            .unwrap_or(0);
        Some(Snapshot {
            read: BankRead {
                how: format!("txn via {addr}"),
                index: v["index"].as_u64()?,
                balances,
            },
            modify_index,
            created_at,
        })
    }

    /// Every account in one scan page (`stale`: this node's own state).
    async fn read_scan(&self, addr: &str, stale: bool) -> Option<BankRead> {
        let consistency = if stale { "&consistency=stale" } else { "" };
        let path = format!("/v1/kv?prefix={PREFIX}&limit=1000{consistency}");
        let v = self.api.json(addr, &path).await?;
        let mut balances = vec![None; self.accounts];
        for kv in v["kvs"].as_array()? {
            let i = kv["key"]
                .as_str()
                .and_then(|k| k.strip_prefix(PREFIX))
                .and_then(|i| i.parse::<usize>().ok());
            match i {
                Some(i) if i < self.accounts => {
                    balances[i] = kv["value"].as_str().and_then(|s| s.parse().ok())
                }
                // A key the workload never writes is a violation too.
                _ => balances.push(None),
            }
        }
        Some(BankRead {
            how: format!("{}scan via {addr}", if stale { "stale " } else { "" }),
            index: v["index"].as_u64()?,
            balances,
        })
    }

    fn record(&self, r: BankRead) {
        self.reads.lock().expect("bank reads").push(r);
    }

    /// One transfer: read both accounts, then move a random amount if the
    /// debited one holds it, pinned by compares on both modify indexes.
    /// False if a request failed.
    async fn transfer(&self, addr: &str, rng: &mut StdRng) -> bool {
        let Some(s) = self.read_txn(addr).await else {
            self.tally.reads_failed.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let from = rng.gen_range(0..self.accounts);
        let to = (from + rng.gen_range(1..self.accounts)) % self.accounts;
        let (Some(b_from), Some(b_to)) = (s.read.balances[from], s.read.balances[to]) else {
            self.record(s.read);
            return true;
        };
        let amount = rng.gen_range(1..=20);
        let body = json!({
            "compare": [
                {"key": account(from), "target": "modify_index", "op": "=", "value": s.modify_index[from]},
                {"key": account(to), "target": "modify_index", "op": "=", "value": s.modify_index[to]},
            ],
            "success": [
                {"op": "put", "key": account(from), "value": (b_from - amount).to_string()},
                {"op": "put", "key": account(to), "value": (b_to + amount).to_string()},
            ],
        });
        self.record(s.read);
        if b_from < amount {
            return true;
        }
        let t = &self.tally;
        let answer = self.api.txn(addr, &body).await;
        match &answer {
            Ok(v) if v["succeeded"] == Value::Bool(true) => &t.transfers_ok,
            Ok(_) => &t.compare_failed,
            Err(Outcome::Fail) => &t.not_applied,
            Err(_) => &t.unknown,
        }
        .fetch_add(1, Ordering::Relaxed);
        answer.is_ok()
    }

    /// Read every account (a txn, a scan or a stale scan) and record it;
    /// false if the read failed.
    async fn read(&self, addr: &str, how: u32) -> bool {
        let read = match how {
            0 => self.read_txn(addr).await.map(|s| s.read),
            h => self.read_scan(addr, h == 2).await,
        };
        let Some(r) = read else {
            self.tally.reads_failed.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        self.record(r);
        true
    }

    /// Read every account from every node: linearizably, then (after the
    /// replicas converged) from each node's own state.
    pub(crate) async fn final_reads(&self) {
        for i in 1..=self.n {
            let addr = Db::http(i);
            match self.read_txn(&addr).await {
                Some(s) => self.record(s.read),
                None => self.record(BankRead {
                    how: format!("final txn via n{i}: failed"),
                    index: 0,
                    balances: Vec::new(),
                }),
            }
            if let Some(r) = self.read_scan(&addr, true).await {
                self.record(r);
            }
        }
    }
}

/// A bank client: until `until`, transfers (60%) and reads of all accounts
/// (txn 20%, linearizable scan 10%, stale scan 10%), each on a random node.
pub(crate) async fn bank_loop(bank: Arc<Bank>, seed: u64, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < until {
        let addr = Db::http(rng.gen_range(1..=bank.n));
        let ok = match rng.gen_range(0..10) {
            0..6 => bank.transfer(&addr, &mut rng).await,
            6..8 => bank.read(&addr, 0).await,
            8 => bank.read(&addr, 1).await,
            _ => bank.read(&addr, 2).await,
        };
        // After a failed request, back off a little instead of spinning on
        // a dead node (as the register clients do).
        if !ok {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
        }
    }
}
