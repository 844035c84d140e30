//! The register workload: clients doing reads, writes and CAS on a few keys
//! through the native and the seed API, and the [`Recorder`] every workload
//! records its history with.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::client::Api;
use crate::db::Db;
use dcache_jepsen::history::Event;
use dcache_jepsen::history::Op;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub(crate) struct Recorder {
    pub(crate) start: Instant,
    pub(crate) events: std::sync::Mutex<Vec<Event>>,
    pub(crate) next_client: std::sync::atomic::AtomicU64,
}

impl Recorder {
    pub(crate) fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    pub(crate) fn record(&self, e: Event) {
        self.events.lock().expect("events").push(e);
    }
    pub(crate) fn new_client(&self) -> u64 {
        self.next_client
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Record a read that completed now, unless it failed (a failed read
    /// carries no information).
    pub(crate) fn record_read(&self, client: u64, key: String, invoke: u64, outcome: Outcome) {
        if !matches!(outcome, Outcome::Fail) {
            self.record(Event {
                client,
                key,
                op: Op::Read,
                invoke_ns: invoke,
                complete_ns: Some(self.now()),
                outcome,
                ttl: None,
            });
        }
    }

    /// Record a write-like op that completed now, and return the client id
    /// to go on with: a client whose op has an unknown outcome may still
    /// have it in flight, so it continues as a new client.
    pub(crate) fn record_write(
        &self,
        client: u64,
        key: String,
        op: Op,
        invoke: u64,
        outcome: Outcome,
    ) -> u64 {
        let now = self.now();
        let indeterminate = matches!(outcome, Outcome::Indeterminate);
        self.record(Event {
            client,
            key,
            op,
            invoke_ns: invoke,
            complete_ns: completed(&outcome, now),
            outcome,
            ttl: None,
        });
        if indeterminate {
            self.new_client()
        } else {
            client
        }
    }
}

/// The harness's wall clock, ms since the Unix epoch.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn completed(outcome: &Outcome, now: u64) -> Option<u64> {
    match outcome {
        Outcome::Indeterminate => None,
        _ => Some(now),
    }
}

/// One client: random ops on random nodes until `until`. After an
/// indeterminate outcome it continues under a new client id, as Jepsen's
/// process model requires.
pub(crate) async fn client_loop(
    rec: Arc<Recorder>,
    api: Api,
    n: usize,
    keys: usize,
    seed: u64,
    until: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = rec.new_client();
    let mut counter = 0u64;
    while Instant::now() < until {
        let node = rng.gen_range(1..=n);
        let addr = Db::http(node);
        let key = format!("k{}", rng.gen_range(0..keys));
        let seed_api = rng.gen_bool(0.2);
        let choice = rng.gen_range(0..10);
        let invoke = rec.now();
        // Set when the operation did not succeed (refused, failed, unknown).
        let backoff;
        if choice < 5 {
            let r = api.read(&addr, &key, seed_api).await;
            backoff = !matches!(r.outcome, Outcome::Ok(_));
            rec.record_read(client, key, invoke, r.outcome);
        } else if choice < 8 {
            counter += 1;
            let value = format!("c{client}-{counter}");
            let outcome = api.write(&addr, &key, &value, seed_api).await;
            backoff = !matches!(outcome, Outcome::Ok(_));
            client = rec.record_write(client, key, Op::Write(value), invoke, outcome);
        } else {
            // CAS: read (recorded as a read), then cas on its modify index.
            let r = api.read(&addr, &key, false).await;
            let now = rec.now();
            let expected = match &r.outcome {
                Outcome::Ok(Ret::Read(v)) => v.clone(),
                // The read failed: no CAS, and back off like any failure.
                _ => {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
                    continue;
                }
            };
            rec.record(Event {
                client,
                key: key.clone(),
                op: Op::Read,
                invoke_ns: invoke,
                complete_ns: Some(now),
                outcome: r.outcome,
                ttl: None,
            });
            counter += 1;
            let value = format!("c{client}-{counter}");
            let invoke = rec.now();
            let outcome = api.cas(&addr, &key, r.index, &value).await;
            backoff = !matches!(outcome, Outcome::Ok(_));
            let op = Op::Cas {
                expected,
                new: value,
            };
            client = rec.record_write(client, key, op, invoke, outcome);
        }
        // After a refused or failed request, back off a little instead of
        // spinning on a dead node.
        if backoff {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..50))).await;
        }
    }
}

/// Final linearizable reads of `keys` from every node, added to the
/// history (after healing).
pub(crate) async fn final_reads(rec: &Recorder, api: &Api, n: usize, keys: &[String]) {
    for i in 1..=n {
        for key in keys.iter().cloned() {
            let invoke = rec.now();
            let r = api.read(&Db::http(i), &key, false).await;
            rec.record_read(u64::MAX - i as u64, key, invoke, r.outcome);
        }
    }
}
