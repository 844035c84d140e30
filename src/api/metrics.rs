//! Prometheus metrics: HTTP request counters and latency histograms (updated
//! by the request middleware) and Raft/state gauges (sampled at scrape time).
//!
//! Invariants:
//! - Gauges are sampled from [`Cluster::stats`] when `/metrics` is scraped,
//!   so they never go stale between scrapes and cost nothing on the request
//!   path.
//! - Every label value comes from a bounded set (routes, known methods,
//!   statuses, Raft roles, member ids).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use crate::cluster::Cluster;
use crate::cluster::Role;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaderLabels {
    pub leader_id: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    forwarded: Counter,
    term: Gauge,
    is_leader: Gauge,
    leader_known: Gauge,
    leader: Family<LeaderLabels, Gauge>,
    state: Family<StateLabels, Gauge>,
    last_log_index: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    purged_index: Gauge,
    log_entries: Gauge,
    log_bytes_since_snapshot: Gauge,
    members: Gauge,
    runtime_workers: Gauge,
    refused_rpcs: Counter,
    keys: Gauge,
    mem_bytes: Gauge,
    max_memory: Gauge,
    ttl_keys: Gauge,
    hits: Counter,
    misses: Counter,
    expired: Counter,
    evicted: Family<PolicyLabels, Counter>,
    oom: Counter,
    expiry_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("dcache");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 0.1 ms .. ~3.3 s
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            latency.clone(),
        );
        let forwarded = Counter::default();
        r.register(
            "http_forwarded_requests",
            "Requests this node forwarded to the leader",
            forwarded.clone(),
        );
        macro_rules! gauge {
            ($name:expr, $help:expr) => {{
                let g = Gauge::default();
                r.register($name, $help, g.clone());
                g
            }};
        }
        let term = gauge!("raft_term", "Current Raft term");
        let is_leader = gauge!("raft_is_leader", "1 if this node is the leader");
        let leader_known = gauge!("raft_leader_known", "1 if this node knows a leader");
        let leader = Family::<LeaderLabels, Gauge>::default();
        r.register(
            "raft_leader",
            "1 for the leader this node currently knows (label leader_id)",
            leader.clone(),
        );
        let state = Family::<StateLabels, Gauge>::default();
        r.register(
            "raft_state",
            "1 for this node's current Raft server state",
            state.clone(),
        );
        let last_log_index = gauge!("raft_last_log_index", "Last log index on this node");
        let commit_index = gauge!("raft_commit_index", "Highest log index known committed");
        let applied_index = gauge!(
            "raft_applied_index",
            "Last log index applied to the state machine"
        );
        let snapshot_index = gauge!(
            "raft_snapshot_index",
            "Last log index in the latest snapshot (-1: none)"
        );
        let purged_index = gauge!("raft_purged_index", "Last purged log index (-1: none)");
        let log_entries = gauge!("raft_log_entries", "Log entries stored on disk");
        let log_bytes_since_snapshot = gauge!(
            "raft_log_bytes_since_snapshot",
            "Log bytes applied since the latest snapshot's capture (a snapshot is due once they reach half the accounted memory and raft.snapshot_threshold entries have passed)"
        );
        let members = gauge!("raft_members", "Members in the current configuration");
        let runtime_workers = gauge!(
            "runtime_worker_threads",
            "Worker threads of the node's async runtime (node.worker_threads; 0 there = one per core)"
        );
        let keys = gauge!("cache_keys", "Keys in the state machine");
        let mem_bytes = gauge!(
            "cache_memory_bytes",
            "Accounted bytes of keys, values and overhead"
        );
        let max_memory = gauge!("cache_max_memory_bytes", "cache.max_memory (0 = unlimited)");
        let ttl_keys = gauge!("cache_ttl_keys", "Keys with an expiry deadline");
        macro_rules! counter {
            ($name:expr, $help:expr) => {{
                let c = Counter::default();
                r.register($name, $help, c.clone());
                c
            }};
        }
        let hits = counter!("cache_hits", "Reads served here that found the key");
        let misses = counter!(
            "cache_misses",
            "Reads served here that did not find the key"
        );
        let expired = counter!(
            "cache_expired_keys",
            "Keys removed because their deadline passed"
        );
        let evicted = Family::<PolicyLabels, Counter>::default();
        r.register(
            "cache_evicted_keys",
            "Keys evicted to make room, by eviction policy",
            evicted.clone(),
        );
        let oom = counter!(
            "cache_out_of_memory_writes",
            "Writes refused because the cache was full"
        );
        let refused_rpcs = counter!(
            "raft_refused_rpcs",
            "Raft RPCs refused because they named an earlier incarnation of this node"
        );
        let expiry_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register(
            "cache_expiry_lag_seconds",
            "Now minus the earliest passed deadline not yet removed (0: none)",
            expiry_lag.clone(),
        );
        Self {
            registry: Mutex::new(r),
            requests,
            latency,
            forwarded,
            term,
            is_leader,
            leader_known,
            leader,
            state,
            last_log_index,
            commit_index,
            applied_index,
            snapshot_index,
            purged_index,
            log_entries,
            log_bytes_since_snapshot,
            members,
            runtime_workers,
            refused_rpcs,
            keys,
            mem_bytes,
            max_memory,
            ttl_keys,
            hits,
            misses,
            expired,
            evicted,
            oom,
            expiry_lag,
        }
    }

    pub fn observe_request(&self, labels: RequestLabels, seconds: f64) {
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    pub fn inc_forwarded(&self) {
        self.forwarded.inc();
    }

    /// Sample Raft and state gauges, then encode everything.
    pub async fn render(&self, cluster: &Cluster) -> String {
        let stats = cluster.stats().await;
        let st = &stats.status;
        let c = &stats.cache;
        let (log_entries, keys, mem) = (stats.log_entries, c.keys, c.memory_bytes);
        // Counters mirror totals kept elsewhere: advance them to the total.
        let advance = |counter: &Counter, total: u64| {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        };
        advance(&self.hits, c.hits);
        advance(&self.misses, c.misses);
        advance(&self.expired, c.expired_keys);
        advance(&self.oom, c.out_of_memory_writes);
        advance(
            &self.evicted.get_or_create(&PolicyLabels {
                policy: c.eviction_policy.to_string(),
            }),
            c.evicted_keys,
        );
        self.max_memory
            .set(i64::try_from(c.max_memory_bytes).unwrap_or(i64::MAX));
        self.ttl_keys
            .set(i64::try_from(c.ttl_keys).unwrap_or(i64::MAX));
        self.expiry_lag.set(c.expiry_lag_ms as f64 / 1000.0);
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.term.set(as_i64(st.term));
        self.is_leader.set(i64::from(st.is_leader));
        self.leader_known.set(i64::from(st.leader_id.is_some()));
        self.leader.clear();
        if let Some(l) = &st.leader_id {
            self.leader
                .get_or_create(&LeaderLabels {
                    leader_id: l.clone(),
                })
                .set(1);
        }
        for role in Role::ALL {
            let v = i64::from(st.raft_state == role);
            self.state
                .get_or_create(&StateLabels {
                    state: role.as_str().into(),
                })
                .set(v);
        }
        self.last_log_index.set(as_i64(st.last_log_index));
        self.commit_index.set(as_i64(st.commit_index));
        self.applied_index.set(as_i64(st.applied_index));
        self.snapshot_index
            .set(st.snapshot_index.map_or(-1, as_i64));
        self.purged_index.set(st.purged_index.map_or(-1, as_i64));
        self.log_entries.set(as_i64(log_entries));
        self.log_bytes_since_snapshot
            .set(as_i64(stats.log_bytes_since_snapshot));
        self.members.set(st.members.len() as i64);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_workers.set(rt.metrics().num_workers() as i64);
        }
        advance(&self.refused_rpcs, st.refused_rpcs);
        self.keys.set(as_i64(keys));
        self.mem_bytes.set(as_i64(mem));
        let mut out = String::new();
        let reg = self.registry.lock().expect("metrics registry lock");
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}
