//! libfaketime for the clock-skew fault: finding the library, the
//! environment that preloads it into a node, and checking that the node
//! really runs with a skewed clock.
//!
//! [`find`] (through the package's file list, `dpkg -L libfaketime`, then
//! the usual library directories, multiarch ones included, preferring this
//! machine's architecture) and [`env`] (the variables a skewed node is
//! started with) are `dcache_testkit::faketime`'s, which the tests share.
//! Owns: [`environ_preloads`] (the check of a process's
//! environment) and [`offset_secs`] / [`skew_observed`] (the node's
//! `/health` `time`, RFC 3339 wall time, against the harness's clock).
//!
//! Invariants: [`find`] returns only a path to an existing file; a missing
//! library is an error naming the package to install, never a silent
//! no-op; only the wall clock is skewed (`FAKETIME_DONT_FAKE_MONOTONIC`),
//! so timeouts inside the node keep real time.
//!
//! Does not: start, signal or query processes (see `db.rs` and
//! `nemesis.rs`), or decide what a failed check means for the run.

use std::path::Path;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

pub use dcache_testkit::faketime::{env, find, spec};

/// How far a skewed node's observed clock may be from the requested skew:
/// `/health` has whole seconds, and the request takes a moment.
pub const SKEW_TOLERANCE_SECS: f64 = 5.0;

/// Whether a process environment (`/proc/<pid>/environ`: NUL-separated
/// `NAME=value`) preloads `lib` and sets `FAKETIME`.
pub fn environ_preloads(environ: &[u8], lib: &Path) -> bool {
    let lib = lib.display().to_string();
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    let preloads = vars.iter().any(|v| {
        v.strip_prefix(b"LD_PRELOAD=").is_some_and(|value| {
            String::from_utf8_lossy(value)
                .split([':', ' '])
                .any(|p| p == lib)
        })
    });
    preloads && vars.iter().any(|v| v.starts_with(b"FAKETIME="))
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp such as
/// `2026-11-27T12:00:00Z` or `2026-11-27T13:00:00.25+01:00`.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = format!("0.{}", &s[start..i]).parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    Some(secs as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// How far ahead (positive) or behind the harness a node's clock is, from
/// its `/health` `time` (whole seconds, truncated) read by a request sent
/// at `sent` and answered at `received` (harness wall clock).
pub fn offset_secs(node_time: &str, sent: SystemTime, received: SystemTime) -> Option<f64> {
    let node = parse_rfc3339(node_time)?;
    let mid = (unix(sent) + unix(received)) / 2.0;
    // The node's seconds were truncated: its clock was in [t, t + 1).
    Some(node + 0.5 - mid)
}

/// Whether an observed offset shows the requested skew.
pub fn skew_observed(offset: f64, expected_secs: i64) -> bool {
    (offset - expected_secs as f64).abs() <= SKEW_TOLERANCE_SECS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    #[test]
    fn environment_of_a_skewed_node() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
        let env = env(lib, -90);
        assert!(env.contains(&("FAKETIME", "-90".into())));
        assert!(env.contains(&("FAKETIME_DONT_FAKE_MONOTONIC", "1".into())));
        let mut environ = Vec::new();
        for (k, v) in &env {
            environ.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        environ.extend_from_slice(b"PATH=/usr/bin\0");
        assert!(environ_preloads(&environ, lib));
        assert!(!environ_preloads(b"PATH=/usr/bin\0FAKETIME=+90\0", lib));
        assert!(!environ_preloads(
            b"LD_PRELOAD=/other/libfaketime.so.1\0FAKETIME=+90\0",
            lib
        ));
        assert_eq!(spec(90), "+90");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56Z"), Some(1_709_210_096.0));
        assert_eq!(
            parse_rfc3339("2024-02-29T13:34:56.25+01:00"),
            Some(1_709_210_096.25)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T10:34:56-02:00"),
            Some(1_709_210_096.0)
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-02-29T12:34:56",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56Zx",
            "2024-02-29T12:34:56.Z",
            "2024-02-29T12:34:56+0100",
            "20x4-02-29T12:34:56Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn observed_skew() {
        let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        let later = at + Duration::from_millis(30);
        // The node says 90 s later (whole seconds).
        let off = offset_secs("2024-02-29T12:36:26Z", at, later).unwrap();
        assert!(skew_observed(off, 90), "{off}");
        assert!(!skew_observed(off, -90), "{off}");
        assert!(!skew_observed(off, 0), "{off}");
        // An unskewed node (libfaketime not in effect).
        let off = offset_secs("2024-02-29T12:34:56Z", at, later).unwrap();
        assert!(skew_observed(off, 0) && !skew_observed(off, 90), "{off}");
        assert_eq!(offset_secs("garbage", at, later), None);
    }
}
