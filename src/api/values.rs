//! Values inside JSON bodies (transactions, scans, watch events): one
//! encoding rule for every JSON route.
//!
//! `encoding=utf8` (the default): a request's `value` is text, used as its
//! UTF-8 bytes; an answer carries `value` as text when the stored bytes are
//! UTF-8, and `value_base64` (standard alphabet, padded) otherwise, so a
//! value is never altered. `encoding=base64`: every `value`, in requests and
//! answers, is base64.
//!
//! Not here: raw values (`GET /v1/kv/{key}` returns the bytes as they are).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Map;
use serde_json::Value;

use super::error::ApiError;
use crate::kv::Kv;

/// How values are written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

/// The `encoding` query parameter.
pub fn parse_encoding(v: &str) -> Result<Encoding, ApiError> {
    match v {
        "" | "utf8" | "utf-8" => Ok(Encoding::Utf8),
        "base64" => Ok(Encoding::Base64),
        other => Err(ApiError::invalid(format!(
            "invalid encoding {other:?}: expected utf8 or base64"
        ))),
    }
}

impl Encoding {
    /// A value from a request, `what` naming it in errors.
    pub fn decode(self, v: &str, what: &str) -> Result<Vec<u8>, ApiError> {
        match self {
            Encoding::Utf8 => Ok(v.as_bytes().to_vec()),
            Encoding::Base64 => STANDARD
                .decode(v)
                .map_err(|e| ApiError::invalid(format!("{what}: value is not valid base64: {e}"))),
        }
    }

    /// Put `value` into `obj` as `value` or `value_base64` (see the module
    /// doc).
    pub fn insert(self, obj: &mut Map<String, Value>, value: &[u8]) {
        match (self, std::str::from_utf8(value)) {
            (Encoding::Utf8, Ok(s)) => {
                obj.insert("value".into(), s.into());
            }
            (Encoding::Utf8, Err(_)) => {
                obj.insert("value_base64".into(), STANDARD.encode(value).into());
            }
            (Encoding::Base64, _) => {
                obj.insert("value".into(), STANDARD.encode(value).into());
            }
        }
    }

    /// One key as JSON: key, value (unless `keys_only`), indexes, version,
    /// deadline and the TTL left at `now_ms`.
    pub fn kv(self, kv: &Kv, keys_only: bool, now_ms: u64) -> Value {
        let mut o = Map::new();
        o.insert("key".into(), kv.key.clone().into());
        if !keys_only {
            self.insert(&mut o, &kv.value);
        }
        o.insert("create_index".into(), kv.meta.create_index.into());
        o.insert("modify_index".into(), kv.meta.modify_index.into());
        o.insert("version".into(), kv.meta.version.into());
        o.insert("expires_at".into(), expires_json(kv.expires_at));
        if kv.expires_at != 0 {
            o.insert("ttl_ms".into(), kv.expires_at.saturating_sub(now_ms).into());
        }
        Value::Object(o)
    }
}

/// A deadline (ms since the epoch) as RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A deadline in a JSON answer: RFC 3339, or null for none.
pub fn expires_json(expires_at: u64) -> Value {
    if expires_at == 0 {
        Value::Null
    } else {
        rfc3339_ms(expires_at).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_bytes_are_never_altered() {
        let mut o = Map::new();
        Encoding::Utf8.insert(&mut o, "héllo".as_bytes());
        assert_eq!(o["value"], "héllo");
        let mut o = Map::new();
        Encoding::Utf8.insert(&mut o, &[0xff, 0]);
        assert_eq!(o["value_base64"], "/wA=");
        let mut o = Map::new();
        Encoding::Base64.insert(&mut o, b"hi");
        assert_eq!(o["value"], "aGk=");
        assert_eq!(Encoding::Base64.decode("/wA=", "x").unwrap(), [0xff, 0]);
        assert!(
            Encoding::Base64
                .decode("%%", "success[0]")
                .unwrap_err()
                .message
                .contains("success[0]")
        );
        assert_eq!(Encoding::Utf8.decode("ok", "x").unwrap(), b"ok");
        assert!(parse_encoding("hex").is_err());
    }
}
