//! How one request is built and judged, per target system.
//!
//! Owns the per-key request material, built once before the measured phase
//! and shared by all workers ([`Requests`]), and the rule that turns an
//! answer into an [`Outcome`].
//!
//! * **dcache**: `PUT /v1/kv/{key}[?put-query]` with the raw value as body;
//!   `GET /v1/kv/{key}[?consistency=stale]`. 2xx is a success, 404 on a GET
//!   a miss, anything else an error.
//! * **etcd** (v3 JSON gateway, checked against etcd 3.4): `POST /v3/kv/put`
//!   `{"key": b64, "value": b64}`; `POST /v3/kv/range` `{"key": b64}`, with
//!   `"serializable": true` for `--stale` (etcd's local, possibly stale
//!   read). 2xx is a success; a range answer without `"kvs"` is a miss;
//!   anything else an error.
//!
//! # Invariants
//!
//! * The measured phase allocates per request at most one exactly-sized
//!   body (etcd put); paths, base64 keys, range bodies and the value are
//!   built once in [`Requests::new`] and lent to each request (not even a
//!   reference count is touched: 64 workers incrementing one shared count
//!   cost the generator 7 % of its CPU).
//! * Only the material the run needs is built (put URLs only when a PUT can
//!   be sent, and so on); memory is O(keys).
//!
//! # Not here
//!
//! The run loop, timing and counting (`mod.rs`); the report (`report.rs`).
//! No check of the values read back.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::conn::Req;

/// The system under test.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Dcache,
    Etcd,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Dcache => "dcache",
            Target::Etcd => "etcd",
        }
    }
}

/// The kind of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Put,
    Get,
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Miss,
    Error,
}

/// What to build: the run's shape, independent of the connections.
pub struct Spec<'a> {
    pub target: Target,
    pub keys: u64,
    pub key_prefix: &'a str,
    /// `?...` added to dcache PUT paths, or empty.
    pub put_query: &'a str,
    pub stale: bool,
    pub value: Bytes,
    pub need_put: bool,
    pub need_get: bool,
}

/// Per-key request material shared by all workers: paths (the same on
/// every node) and bodies.
pub enum Requests {
    Dcache {
        /// The PUT path and query of key n (empty when no PUT is sent).
        put: Vec<String>,
        /// Likewise for GETs.
        get: Vec<String>,
        value: Bytes,
    },
    Etcd {
        /// Base64 of key n (for put bodies; empty when no PUT is sent).
        key_b64: Vec<String>,
        /// The range body of key n (empty when no GET is sent).
        range_body: Vec<String>,
        value_b64: String,
    },
}

impl Requests {
    pub fn new(spec: &Spec<'_>) -> anyhow::Result<Requests> {
        let key = |n: u64| format!("{}{n}", spec.key_prefix);
        Ok(match spec.target {
            Target::Dcache => {
                let paths = |need: bool, suffix: &str| -> anyhow::Result<Vec<String>> {
                    if !need {
                        return Ok(Vec::new());
                    }
                    (0..spec.keys)
                        .map(|n| {
                            let k = dcache::client::encode_key(&key(n));
                            let s = format!("/v1/kv/{k}{suffix}");
                            // What a request line can carry (no space or
                            // control byte; the key is percent-encoded).
                            match s.bytes().find(|b| !b.is_ascii_graphic()) {
                                Some(b) => Err(anyhow::anyhow!("bad path {s:?}: byte {b:#x}")),
                                None => Ok(s),
                            }
                        })
                        .collect()
                };
                let get_suffix = if spec.stale { "?consistency=stale" } else { "" };
                Requests::Dcache {
                    put: paths(spec.need_put, spec.put_query)?,
                    get: paths(spec.need_get, get_suffix)?,
                    value: spec.value.clone(),
                }
            }
            Target::Etcd => {
                let key_b64: Vec<String> = (0..spec.keys).map(|n| B64.encode(key(n))).collect();
                let range_body = if spec.need_get {
                    key_b64.iter().map(|k| range_body(k, spec.stale)).collect()
                } else {
                    Vec::new()
                };
                Requests::Etcd {
                    key_b64: if spec.need_put { key_b64 } else { Vec::new() },
                    range_body,
                    value_b64: B64.encode(&spec.value),
                }
            }
        })
    }

    /// The request of `kind` for key `n`.
    pub fn build(&self, kind: Kind, n: usize) -> Req<'_> {
        match (self, kind) {
            (Requests::Dcache { put, value, .. }, Kind::Put) => Req {
                method: Method::PUT,
                path: &put[n],
                body: Cow::Borrowed(value),
            },
            (Requests::Dcache { get, .. }, Kind::Get) => Req {
                method: Method::GET,
                path: &get[n],
                body: Cow::Borrowed(&[]),
            },
            (
                Requests::Etcd {
                    key_b64, value_b64, ..
                },
                Kind::Put,
            ) => Req {
                method: Method::POST,
                path: "/v3/kv/put",
                body: Cow::Owned(put_body(&key_b64[n], value_b64)),
            },
            (Requests::Etcd { range_body, .. }, Kind::Get) => Req {
                method: Method::POST,
                path: "/v3/kv/range",
                body: Cow::Borrowed(range_body[n].as_bytes()),
            },
        }
    }

    pub fn target(&self) -> Target {
        match self {
            Requests::Dcache { .. } => Target::Dcache,
            Requests::Etcd { .. } => Target::Etcd,
        }
    }
}

/// `{"key":"<k>","value":"<v>"}` in one exactly-sized allocation.
fn put_body(key_b64: &str, value_b64: &str) -> Vec<u8> {
    const A: &[u8] = b"{\"key\":\"";
    const B: &[u8] = b"\",\"value\":\"";
    const C: &[u8] = b"\"}";
    let mut v = Vec::with_capacity(A.len() + key_b64.len() + B.len() + value_b64.len() + C.len());
    v.extend_from_slice(A);
    v.extend_from_slice(key_b64.as_bytes());
    v.extend_from_slice(B);
    v.extend_from_slice(value_b64.as_bytes());
    v.extend_from_slice(C);
    v
}

fn range_body(key_b64: &str, serializable: bool) -> String {
    if serializable {
        format!("{{\"key\":\"{key_b64}\",\"serializable\":true}}")
    } else {
        format!("{{\"key\":\"{key_b64}\"}}")
    }
}

/// Judges an answer: `status` and the complete `body`.
pub fn judge(target: Target, kind: Kind, status: StatusCode, body: &[u8]) -> Outcome {
    match (target, kind) {
        _ if !status.is_success() => {
            if target == Target::Dcache && kind == Kind::Get && status == StatusCode::NOT_FOUND {
                Outcome::Miss
            } else {
                Outcome::Error
            }
        }
        (Target::Etcd, Kind::Get) if !contains(body, b"\"kvs\"") => Outcome::Miss,
        _ => Outcome::Ok,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: Target) -> Spec<'static> {
        Spec {
            target,
            keys: 3,
            key_prefix: "bench-",
            put_query: "?ttl=5s",
            stale: true,
            value: Bytes::from_static(b"xyz"),
            need_put: true,
            need_get: true,
        }
    }

    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn dcache_paths_are_encoded_and_stale_only_on_get() {
        let r = Requests::new(&Spec {
            key_prefix: "a b/",
            ..spec(Target::Dcache)
        })
        .unwrap();
        let g = r.build(Kind::Get, 2);
        assert_eq!(g.path, "/v1/kv/a%20b/2?consistency=stale");
        assert_eq!(g.method, Method::GET);
        assert!(g.body.is_empty());
        let p = r.build(Kind::Put, 0);
        assert_eq!(p.path, "/v1/kv/a%20b/0?ttl=5s");
        assert_eq!(p.method, Method::PUT);
        assert_eq!(&p.body[..], b"xyz");
    }

    #[test]
    fn etcd_bodies_are_base64_json() {
        let r = Requests::new(&spec(Target::Etcd)).unwrap();
        let p = r.build(Kind::Put, 1);
        assert_eq!((p.method, p.path), (Method::POST, "/v3/kv/put"));
        let body = json(&p.body);
        assert_eq!(body["key"], B64.encode("bench-1"));
        assert_eq!(body["value"], B64.encode("xyz"));
        let g = r.build(Kind::Get, 2);
        assert_eq!(g.path, "/v3/kv/range");
        let body = json(&g.body);
        assert_eq!(body["key"], B64.encode("bench-2"));
        assert_eq!(body["serializable"], true);
        let r = Requests::new(&Spec {
            stale: false,
            ..spec(Target::Etcd)
        })
        .unwrap();
        assert!(
            json(&r.build(Kind::Get, 0).body)
                .get("serializable")
                .is_none()
        );
    }

    #[test]
    fn judging() {
        use Kind::*;
        use Target::*;
        assert_eq!(judge(Dcache, Get, StatusCode::OK, b"v"), Outcome::Ok);
        assert_eq!(
            judge(Dcache, Get, StatusCode::NOT_FOUND, b""),
            Outcome::Miss
        );
        assert_eq!(
            judge(Dcache, Put, StatusCode::NOT_FOUND, b""),
            Outcome::Error
        );
        assert_eq!(
            judge(Dcache, Put, StatusCode::SERVICE_UNAVAILABLE, b""),
            Outcome::Error
        );
        assert_eq!(
            judge(Etcd, Get, StatusCode::OK, br#"{"header":{},"kvs":[]}"#),
            Outcome::Ok
        );
        assert_eq!(
            judge(Etcd, Get, StatusCode::OK, br#"{"header":{}}"#),
            Outcome::Miss
        );
        assert_eq!(judge(Etcd, Get, StatusCode::NOT_FOUND, b""), Outcome::Error);
        assert_eq!(judge(Etcd, Put, StatusCode::OK, b"{}"), Outcome::Ok);
        assert_eq!(
            judge(Etcd, Put, StatusCode::BAD_REQUEST, b"{}"),
            Outcome::Error
        );
    }
}
