//! storage-bench: durable Raft-log append throughput/latency for dcache.
//!
//! Engines:
//! - `raw`            : one append-only file, `write_all` + `sync_data()` per batch.
//! - `raft-log`       : raft-log 0.4.6 with its default config (flush worker
//!                      waits up to `flush_batch_wait` = 1 ms to group requests).
//! - `raft-log-wait0` : raft-log with `flush_batch_wait = 0`.
//! - `redb`           : redb 4, table u64 -> &[u8], one write txn per batch,
//!                      `Durability::Immediate` (the default), 2-phase commit off
//!                      (the default), quick-repair off (the default).
//!
//! For every engine and batch size B the bench appends B entries, makes them
//! durable, waits for the acknowledgement, and repeats until N entries were
//! written or the time budget for the case is used up.
//!
//! Group-commit cases (raft-log only): K "clients" each submit one entry
//! (`append` + `flush(true, cb)`) without waiting in between; the round ends
//! when all K callbacks have fired. The flush worker's own counter of fsyncs
//! (`FlushMetrics::sync_batch_count`) shows whether requests were merged.

use std::error::Error;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::sync::mpsc::SyncSender;
use std::sync::mpsc::sync_channel;
use std::time::Duration;
use std::time::Instant;

use raft_log::RaftLog;
use raft_log::Types;
use raft_log::api::raft_log_writer::RaftLogWriter;
use redb::Database;
use redb::Durability;
use redb::TableDefinition;

type Res<T> = Result<T, Box<dyn Error>>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct BenchTypes;

impl Types for BenchTypes {
    type LogId = (u64, u64); // (term, index)
    type LogPayload = Vec<u8>;
    type Vote = (u64, u64);
    type Callback = SyncSender<io::Result<()>>;
    type UserData = String;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        payload.len() as u64
    }
}

const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

struct Opts {
    dir: PathBuf,
    payload: usize,
    batches: Vec<usize>,
    n_single: usize,
    n_bulk: usize,
    max_secs: f64,
    group: usize,
    engines: Vec<String>,
    repeat: usize,
}

impl Opts {
    fn parse() -> Res<Self> {
        let mut o = Opts {
            dir: PathBuf::from("."),
            payload: 256,
            batches: vec![1, 64, 256],
            n_single: 20_000,
            n_bulk: 200_000,
            max_secs: 10.0,
            group: 16,
            engines: vec![
                "raw".into(),
                "raft-log".into(),
                "raft-log-wait0".into(),
                "redb".into(),
            ],
            repeat: 1,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let key = args[i].as_str();
            if key == "-h" || key == "--help" {
                println!(
                    "storage-bench [--dir DIR] [--payload BYTES] [--batches 1,64,256] \
                     [--n-single 20000] [--n-bulk 200000] [--max-secs 10] [--group 16] \
                     [--engines raw,raft-log,raft-log-wait0,redb] [--repeat 1]\n\
                     Cases are interleaved (engine order rotates per run) and repeated R times.\n\
                     A fresh temp dir is created inside DIR (default: current dir) for every case."
                );
                std::process::exit(0);
            }
            let val = args.get(i + 1).ok_or_else(|| format!("missing value for {key}"))?;
            match key {
                "--dir" => o.dir = PathBuf::from(val),
                "--payload" => o.payload = val.parse()?,
                "--batches" => {
                    o.batches = val.split(',').map(str::parse).collect::<Result<_, _>>()?
                }
                "--n-single" => o.n_single = val.parse()?,
                "--n-bulk" => o.n_bulk = val.parse()?,
                "--max-secs" => o.max_secs = val.parse()?,
                "--group" => o.group = val.parse()?,
                "--repeat" => o.repeat = val.parse()?,
                "--engines" => o.engines = val.split(',').map(String::from).collect(),
                _ => return Err(format!("unknown argument {key}").into()),
            }
            i += 2;
        }
        Ok(o)
    }

    fn target(&self, batch: usize) -> usize {
        if batch <= 1 { self.n_single } else { self.n_bulk }
    }
}

struct Row {
    engine: String,
    batch: String,
    entries: u64,
    elapsed: Duration,
    fsyncs: u64,
    lat: Vec<Duration>,
}

/// Drive `op(first_index, count)` until `target` entries are written or the
/// time budget runs out. Returns (entries, batches, elapsed, per-batch latencies).
fn drive(
    batch: usize,
    target: usize,
    max: Duration,
    mut op: impl FnMut(u64, usize) -> Res<()>,
) -> Res<(u64, u64, Duration, Vec<Duration>)> {
    let mut lat = Vec::with_capacity(target / batch + 1);
    let mut next: u64 = 1;
    let start = Instant::now();
    while (next - 1) < target as u64 && start.elapsed() < max {
        let t = Instant::now();
        op(next, batch)?;
        lat.push(t.elapsed());
        next += batch as u64;
    }
    let elapsed = start.elapsed();
    let n = lat.len() as u64;
    Ok((next - 1, n, elapsed, lat))
}

fn bench_raw(o: &Opts, batch: usize, payload: &[u8]) -> Res<Row> {
    let tmp = tempfile::tempdir_in(&o.dir)?;
    let mut f: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(tmp.path().join("raw.log"))?;
    let mut buf = Vec::with_capacity(batch * (payload.len() + 12));
    let (entries, batches, elapsed, lat) =
        drive(batch, o.target(batch), Duration::from_secs_f64(o.max_secs), |first, n| {
            buf.clear();
            for i in first..first + n as u64 {
                buf.extend_from_slice(&i.to_le_bytes());
                buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                buf.extend_from_slice(payload);
            }
            f.write_all(&buf)?;
            f.sync_data()?;
            Ok(())
        })?;
    Ok(Row {
        engine: "raw file".into(),
        batch: batch.to_string(),
        entries,
        elapsed,
        fsyncs: batches,
        lat,
    })
}

fn open_raft_log(dir: &Path, wait: Option<Duration>) -> Res<RaftLog<BenchTypes>> {
    let mut config = raft_log::Config::new(dir.to_string_lossy());
    config.wal.flush_batch_wait = wait;
    Ok(RaftLog::<BenchTypes>::open(Arc::new(config))?)
}

fn recv_ack(rx: &Receiver<io::Result<()>>) -> Res<()> {
    rx.recv().map_err(|_| "flush callback dropped")??;
    Ok(())
}

fn raft_log_label(wait: Option<Duration>) -> String {
    match wait {
        None => "raft-log (default, batch wait 1ms)".into(),
        Some(w) => format!("raft-log (batch wait {}us)", w.as_micros()),
    }
}

fn bench_raft_log(o: &Opts, batch: usize, payload: &[u8], wait: Option<Duration>) -> Res<Row> {
    let tmp = tempfile::tempdir_in(&o.dir)?;
    let mut log = open_raft_log(tmp.path(), wait)?;
    let (tx, rx) = sync_channel::<io::Result<()>>(1);
    let before = log.stat().flush_metrics.sync_batch_count;
    let (entries, _batches, elapsed, lat) =
        drive(batch, o.target(batch), Duration::from_secs_f64(o.max_secs), |first, n| {
            let p = payload.to_vec();
            log.append((first..first + n as u64).map(|i| ((1u64, i), p.clone())))?;
            log.flush(true, Some(tx.clone()))?;
            recv_ack(&rx)
        })?;
    log.wait_worker_idle()?;
    let fsyncs = log.stat().flush_metrics.sync_batch_count - before;
    Ok(Row {
        engine: raft_log_label(wait),
        batch: batch.to_string(),
        entries,
        elapsed,
        fsyncs,
        lat,
    })
}

/// K clients x 1 entry each, submitted back to back, then wait for all K acks.
fn bench_raft_log_group(o: &Opts, payload: &[u8], wait: Option<Duration>) -> Res<Row> {
    let k = o.group;
    let tmp = tempfile::tempdir_in(&o.dir)?;
    let mut log = open_raft_log(tmp.path(), wait)?;
    let (tx, rx) = sync_channel::<io::Result<()>>(k);
    let before = log.stat().flush_metrics.sync_batch_count;
    let (entries, _rounds, elapsed, lat) =
        drive(k, o.n_bulk, Duration::from_secs_f64(o.max_secs), |first, n| {
            for i in first..first + n as u64 {
                log.append([((1u64, i), payload.to_vec())])?;
                log.flush(true, Some(tx.clone()))?;
            }
            for _ in 0..n {
                recv_ack(&rx)?;
            }
            Ok(())
        })?;
    log.wait_worker_idle()?;
    let fsyncs = log.stat().flush_metrics.sync_batch_count - before;
    Ok(Row {
        engine: raft_log_label(wait),
        batch: format!("{k} clients x 1 (group)"),
        entries,
        elapsed,
        fsyncs,
        lat,
    })
}

fn bench_redb(o: &Opts, batch: usize, payload: &[u8]) -> Res<Row> {
    let tmp = tempfile::tempdir_in(&o.dir)?;
    let db = Database::create(tmp.path().join("log.redb"))?;
    let (entries, batches, elapsed, lat) =
        drive(batch, o.target(batch), Duration::from_secs_f64(o.max_secs), |first, n| {
            let mut txn = db.begin_write()?;
            // Immediate is redb's default: commit() returns after fsync.
            txn.set_durability(Durability::Immediate)?;
            {
                let mut t = txn.open_table(LOG_TABLE)?;
                for i in first..first + n as u64 {
                    t.insert(i, payload)?;
                }
            }
            txn.commit()?;
            Ok(())
        })?;
    Ok(Row {
        engine: "redb (Durability::Immediate)".into(),
        batch: batch.to_string(),
        entries,
        elapsed,
        // 1-phase commit (default): one data fsync per commit.
        fsyncs: batches,
        lat,
    })
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("? ({e})"))
}

fn main() -> Res<()> {
    let o = Opts::parse()?;
    std::fs::create_dir_all(&o.dir)?;
    let dir = std::fs::canonicalize(&o.dir)?;
    let dir_s = dir.to_string_lossy().to_string();
    eprintln!(
        "dir={} fs={} nproc={} kernel={} payload={}B",
        dir_s,
        cmd_out("stat", &["-f", "-c", "%T", &dir_s]),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cmd_out("uname", &["-r"]),
        o.payload
    );
    eprintln!("mount: {}", cmd_out("df", &["-T", &dir_s]).lines().last().unwrap_or(""));

    let payload = vec![0xA5u8; o.payload];
    let mut rows = Vec::new();
    for run in 0..o.repeat {
        for &b in &o.batches {
            // Rotate the engine order per run so no engine always goes first.
            let n = o.engines.len();
            for j in 0..n {
                let e = &o.engines[(j + run) % n];
                eprintln!("run {} : {e} batch={b} ...", run + 1);
                let row = match e.as_str() {
                    "raw" => bench_raw(&o, b, &payload)?,
                    "raft-log" => bench_raft_log(&o, b, &payload, None)?,
                    "raft-log-wait0" => bench_raft_log(&o, b, &payload, Some(Duration::ZERO))?,
                    "redb" => bench_redb(&o, b, &payload)?,
                    _ => return Err(format!("unknown engine {e}").into()),
                };
                rows.push(row);
            }
        }
        if o.group > 0 {
            for e in &o.engines {
                let wait = match e.as_str() {
                    "raft-log" => None,
                    "raft-log-wait0" => Some(Duration::ZERO),
                    _ => continue,
                };
                eprintln!("run {} : {e} group={} ...", run + 1, o.group);
                rows.push(bench_raft_log_group(&o, &payload, wait)?);
            }
        }
    }

    // Merge the runs of one case: keep per-run entries/s, pool the latencies.
    struct Merged {
        engine: String,
        batch: String,
        eps: Vec<f64>,
        fps: Vec<f64>,
        lat: Vec<Duration>,
    }
    let mut merged: Vec<Merged> = Vec::new();
    for r in rows {
        let s = r.elapsed.as_secs_f64();
        let eps = r.entries as f64 / s;
        let fps = r.fsyncs as f64 / s;
        match merged.iter_mut().find(|m| m.engine == r.engine && m.batch == r.batch) {
            Some(m) => {
                m.eps.push(eps);
                m.fps.push(fps);
                m.lat.extend(r.lat);
            }
            None => merged.push(Merged {
                engine: r.engine,
                batch: r.batch,
                eps: vec![eps],
                fps: vec![fps],
                lat: r.lat,
            }),
        }
    }
    let engine_rank = |e: &str| ["raw", "raft-log (def", "raft-log (batch", "redb"]
        .iter()
        .position(|p| e.starts_with(p))
        .unwrap_or(9);
    merged.sort_by_key(|m| {
        let b = m.batch.split(' ').next().unwrap().parse::<usize>().unwrap_or(0);
        (m.batch.contains("group"), b, engine_rank(&m.engine))
    });

    println!(
        "\npayload {} B, {} run(s) per case; latency = one batch (append + fsync + ack), pooled over runs; \
         group rows: one round = {} single-entry submissions, waited until all acks\n",
        o.payload, o.repeat, o.group
    );
    println!(
        "| engine | entries per fsync request | entries/s per run | median entries/s | median fsyncs/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for mut m in merged {
        let runs = m.eps.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(" / ");
        m.lat.sort_unstable();
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.3} |",
            m.engine,
            m.batch,
            runs,
            median(&mut m.eps),
            median(&mut m.fps),
            pct(&m.lat, 50.0),
            pct(&m.lat, 99.0),
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
