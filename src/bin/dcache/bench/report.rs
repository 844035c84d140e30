//! The report of a bench run: counts, throughput, nearest-rank latency
//! percentiles, the generator's own CPU time, and the optional latency CDF.
//!
//! # Invariants
//!
//! * Percentiles use the nearest-rank method over the latencies of requests
//!   that got a valid answer (successes and misses); all are 0 when there
//!   were none.
//! * `client_cpu_s` is user + system CPU of the whole bench process
//!   (`getrusage(RUSAGE_SELF)`, all threads) over the measured phase only:
//!   the preload is excluded.
//!
//! # Not here
//!
//! Sending requests (`target.rs`) and the run loop (`mod.rs`).

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Number of points in the latency CDF file.
pub const CDF_POINTS: usize = 1000;

/// Result of a bench run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// "dcache" or "etcd".
    pub target: String,
    /// "put", "get" or "mix".
    pub op: String,
    pub connections: usize,
    pub value_size: usize,
    /// Measured wall time, in seconds, from the start of the load until the
    /// last worker finished (excludes preload).
    pub duration_s: f64,
    /// Requests that completed, whatever their outcome (successes + misses + errors).
    pub requests: u64,
    /// Of which GETs (the rest are PUTs).
    pub gets: u64,
    /// Requests that failed: connection errors, timeouts, non-2xx (other than 404 on a dcache GET).
    pub errors: u64,
    /// GETs that found no value (dcache 404, etcd range without kvs).
    pub misses: u64,
    /// (requests - errors) / duration_s.
    pub ops_per_sec: f64,
    /// Latency percentiles (nearest rank) over requests that got a valid
    /// answer (successes and misses); 0 when there were none.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU seconds (user + system) the bench process itself used during the
    /// measured phase.
    pub client_cpu_s: f64,
    /// The seed of the run's random choices (`--seed` to repeat them).
    pub seed: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} x{} conn, value {} B: {} requests in {:.2} s, {} errors, {} misses, {:.1} ops/s",
            self.target,
            self.op,
            self.connections,
            self.value_size,
            self.requests,
            self.duration_s,
            self.errors,
            self.misses,
            self.ops_per_sec,
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )?;
        write!(
            f,
            "generator CPU: {:.2} s; seed {}",
            self.client_cpu_s, self.seed
        )
    }
}

/// Nearest-rank percentile of a sorted slice, in milliseconds; 0 when empty.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let n = sorted_us.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    f64::from(sorted_us[idx]) / 1000.0
}

/// Writes `percentile,latency_ms` rows for percentiles 0.1, 0.2 .. 100
/// ([`CDF_POINTS`] rows) of the sorted latencies; no rows when empty.
pub fn write_cdf(path: &Path, sorted_us: &[u32]) -> anyhow::Result<()> {
    let mut out = String::from("percentile,latency_ms\n");
    if !sorted_us.is_empty() {
        for i in 1..=CDF_POINTS {
            let p = 100.0 * i as f64 / CDF_POINTS as f64;
            out.push_str(&format!("{p:.1},{:.3}\n", percentile_ms(sorted_us, p)));
        }
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(out.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// User + system CPU seconds of this process so far (all threads).
pub fn process_cpu_s() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 90.0), 90.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[7000], 50.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
        let v = [1000, 2000, 3000];
        assert_eq!(percentile_ms(&v, 50.0), 2.0);
        assert_eq!(percentile_ms(&v, 99.0), 3.0);
    }

    #[test]
    fn cdf_has_one_row_per_point_and_is_monotonic() {
        let dir = std::env::temp_dir().join(format!("bench-cdf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cdf.csv");
        let v: Vec<u32> = (1..=5000).collect();
        write_cdf(&path, &v).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<(f64, f64)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let (p, ms) = l.split_once(',').unwrap();
                (p.parse().unwrap(), ms.parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), CDF_POINTS);
        assert_eq!(rows[0], (0.1, 0.005));
        assert_eq!(*rows.last().unwrap(), (100.0, 5.0));
        assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1));
        write_cdf(&path, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "percentile,latency_ms\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let t0 = process_cpu_s();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(process_cpu_s() > t0);
    }
}
