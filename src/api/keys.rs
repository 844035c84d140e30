//! Keys in URLs and query strings: strict percent-decoding, done once.
//!
//! `decode` rejects malformed escapes (`%zz`, a truncated `%4`) and
//! sequences that do not decode to UTF-8, rather than passing them through
//! as `percent-encoding`'s lenient decoder would: a key must mean one thing.
//! `+` is a literal plus in paths. `/` in a key is allowed, raw or as `%2F`.

use super::error::ApiError;
use crate::cluster::Consistency;
use crate::wire::Code;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode `s` strictly into UTF-8.
pub fn decode(s: &str, what: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h * 16 + l),
                _ => {
                    let end = (i + 3).min(bytes.len());
                    return Err(ApiError::invalid(format!(
                        "invalid percent-encoding {:?} in {what}",
                        String::from_utf8_lossy(&bytes[i..end])
                    )));
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::invalid(format!("{what} is not valid UTF-8 after percent-decoding")))
}

/// Check a decoded key against the rules and the size limit.
pub fn validate(key: &str, max_key_bytes: usize) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid("key must not be empty"));
    }
    if key.len() > max_key_bytes {
        return Err(too_large("key", key.len(), max_key_bytes));
    }
    Ok(())
}

/// The key after `prefix` in a raw request path, strictly percent-decoded
/// once and checked against the rules and the size limit.
pub fn path_key(path: &str, prefix: &str, max_key_bytes: usize) -> Result<String, ApiError> {
    let rest = path.strip_prefix(prefix).unwrap_or_default();
    let key = decode(rest, "key")?;
    validate(&key, max_key_bytes)?;
    Ok(key)
}

/// A TTL: an integer number of seconds, or a duration with units
/// (`500ms`, `30s`, `10m`, `1h`, `2h 30m`), from 1 ms to ten years.
/// Returns milliseconds. `what` names the parameter in errors.
pub fn parse_ttl(what: &str, v: &str) -> Result<u64, ApiError> {
    let v = v.trim();
    let ms = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<u64>().ok().and_then(|s| s.checked_mul(1000))
    } else {
        humantime::parse_duration(v)
            .ok()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    match ms {
        Some(ms) if (1..=crate::kv::MAX_TTL_MS).contains(&ms) => Ok(ms),
        Some(_) => Err(ApiError::invalid(format!(
            "invalid {what} {v:?}: must be from 1ms to 10 years"
        ))),
        None => Err(ApiError::invalid(format!(
            "invalid {what} {v:?}: expected seconds or a duration such as 500ms, 30s, 10m, 1h"
        ))),
    }
}

/// An absolute deadline: milliseconds since the Unix epoch, or an RFC 3339
/// time (`2026-12-02T15:00:00Z`, `...00.250+01:00`); at most ten years from
/// now. A deadline already passed is accepted: the key expires at once
/// (Redis `PXAT` in the past).
pub fn parse_deadline(what: &str, v: &str) -> Result<u64, ApiError> {
    let v = v.trim();
    let ms = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<u64>().ok()
    } else {
        chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match ms {
        Some(ms) if ms >= 1 && ms <= now.saturating_add(crate::kv::MAX_TTL_MS) => Ok(ms),
        Some(_) => Err(ApiError::invalid(format!(
            "invalid {what} {v:?}: must be after the epoch and at most 10 years from now"
        ))),
        None => Err(ApiError::invalid(format!(
            "invalid {what} {v:?}: expected milliseconds since the Unix epoch or an RFC 3339 time"
        ))),
    }
}

/// The 413 for an input over its cap.
pub fn too_large(what: &str, size: usize, limit: usize) -> ApiError {
    ApiError::new(
        Code::TooLarge,
        format!("{what} is {size} bytes, over the limit of {limit} bytes"),
    )
}

/// The value of a `consistency` query parameter.
pub fn parse_consistency(v: &str) -> Result<Consistency, ApiError> {
    match v {
        "" | "linearizable" | "strong" => Ok(Consistency::Linearizable),
        "stale" => Ok(Consistency::Stale),
        other => Err(ApiError::invalid(format!(
            "invalid consistency {other:?}: expected linearizable or stale"
        ))),
    }
}

/// The `consistency` parameter of a query (default: linearizable).
pub fn consistency(query: &[(String, String)]) -> Result<Consistency, ApiError> {
    match query.iter().find(|(k, _)| k == "consistency") {
        Some((_, v)) => parse_consistency(v),
        None => Ok(Consistency::Linearizable),
    }
}

/// A boolean query flag's value: empty (present without a value), true,
/// 1 or yes mean true; false, 0 or no mean false.
pub fn parse_flag(name: &str, v: &str) -> Result<bool, ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::invalid(format!(
            "invalid value {v:?} for query parameter {name}: expected true or false"
        ))),
    }
}

/// Parse a raw query string into decoded (name, value) pairs. `+` means a
/// space here, as in HTML forms.
pub fn parse_query(q: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(q) = q else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = decode(&k.replace('+', " "), "query parameter name")?;
        let v = decode(&v.replace('+', " "), "query parameter value")?;
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_and_keeps_slashes_and_plus() {
        assert_eq!(decode("a%2Fb/c", "key").unwrap(), "a/b/c");
        assert_eq!(decode("a+b", "key").unwrap(), "a+b");
        assert_eq!(decode("%2541", "key").unwrap(), "%41");
        assert_eq!(decode("%E2%9C%93", "key").unwrap(), "✓");
        assert_eq!(decode("caf%C3%A9", "key").unwrap(), "café");
    }

    #[test]
    fn rejects_malformed_escapes_and_bad_utf8() {
        for bad in ["%zz", "%4", "%", "a%g1", "%C3", "%FF"] {
            assert!(decode(bad, "key").is_err(), "{bad} accepted");
        }
        let e = decode("x%zzy", "key").unwrap_err().message;
        assert!(e.contains("%zz"), "{e}");
    }

    #[test]
    fn validates_empty_and_size() {
        assert!(validate("", 10).is_err());
        assert!(validate("abc", 3).is_ok());
        let e = validate("abcd", 3).unwrap_err().message;
        assert!(e.contains("4 bytes") && e.contains("limit of 3"), "{e}");
    }

    #[test]
    fn ttls_in_seconds_or_with_units_within_bounds() {
        assert_eq!(parse_ttl("ttl", "30").unwrap(), 30_000);
        assert_eq!(parse_ttl("ttl", "500ms").unwrap(), 500);
        assert_eq!(parse_ttl("ttl", "10m").unwrap(), 600_000);
        assert_eq!(parse_ttl("ttl", "1h 30m").unwrap(), 5_400_000);
        assert_eq!(parse_ttl("ttl", "3650d").unwrap(), 3650 * 86_400_000);
        // humantime's year is 365.25 days: "10y" is the longest TTL.
        assert_eq!(parse_ttl("ttl", "10y").unwrap(), crate::kv::MAX_TTL_MS);
        assert!(parse_ttl("ttl", "10y 1ms").is_err());
        for bad in [
            "",
            "0",
            "0s",
            "-5",
            "1.5",
            "abc",
            "11y",
            "99999999999999999999",
        ] {
            let e = parse_ttl("ttl", bad).unwrap_err();
            assert!(
                e.message.contains(&format!("{bad:?}")),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn deadlines_in_ms_or_rfc3339() {
        assert_eq!(
            parse_deadline("expire_at", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_deadline("expire_at", "2023-11-14T22:13:20.250Z").unwrap(),
            1_700_000_000_250
        );
        for bad in [
            "",
            "0",
            "soon",
            "-5",
            "2023-13-01T00:00:00Z",
            "99999999999999999",
        ] {
            let e = parse_deadline("expire_at", bad).unwrap_err();
            assert!(
                e.message.contains(&format!("{bad:?}")),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn query_pairs() {
        let q = parse_query(Some("cas=3&consistency=stale&redirect&x=a+b%21")).unwrap();
        assert_eq!(
            q,
            vec![
                ("cas".into(), "3".into()),
                ("consistency".into(), "stale".into()),
                ("redirect".into(), "".into()),
                ("x".into(), "a b!".into()),
            ]
        );
        assert!(parse_query(Some("a=%zz")).is_err());
    }
}
