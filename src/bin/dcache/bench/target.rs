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
//! * The measured phase allocates per request at most one URL clone
//!   (dcache) or one exactly-sized body (etcd put); keys, URLs, base64
//!   keys, range bodies and the value are built once in [`Requests::new`].
//! * Only the material the run needs is built (put URLs only when a PUT can
//!   be sent, and so on), so memory is O(keys x addresses) for dcache and
//!   O(keys) for etcd.
//!
//! # Not here
//!
//! The run loop, timing and counting (`mod.rs`); the report (`report.rs`).
//! No check of the values read back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use reqwest::Url;

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

/// What to build: the run's shape, independent of the HTTP client.
pub struct Spec<'a> {
    pub target: Target,
    /// Base URLs (`http://host:port`, no trailing '/').
    pub bases: &'a [String],
    pub keys: u64,
    pub key_prefix: &'a str,
    /// `?...` added to dcache PUT URLs, or empty.
    pub put_query: &'a str,
    pub stale: bool,
    pub value: Bytes,
    pub need_put: bool,
    pub need_get: bool,
}

/// Per-key request material shared by all workers.
pub enum Requests {
    Dcache {
        /// `put[base][n]`: the PUT URL of key n on base `base` (empty when
        /// no PUT is sent).
        put: Vec<Vec<Url>>,
        /// Likewise for GETs.
        get: Vec<Vec<Url>>,
        value: Bytes,
    },
    Etcd {
        put_url: Vec<Url>,
        range_url: Vec<Url>,
        /// Base64 of key n (for put bodies; empty when no PUT is sent).
        key_b64: Vec<String>,
        /// The range body of key n (empty when no GET is sent).
        range_body: Vec<Bytes>,
        value_b64: String,
    },
}

impl Requests {
    pub fn new(spec: &Spec<'_>) -> anyhow::Result<Requests> {
        let key = |n: u64| format!("{}{n}", spec.key_prefix);
        let parse = |s: String| Url::parse(&s).map_err(|e| anyhow::anyhow!("bad URL {s}: {e}"));
        Ok(match spec.target {
            Target::Dcache => {
                let urls = |need: bool, suffix: &str| -> anyhow::Result<Vec<Vec<Url>>> {
                    if !need {
                        return Ok(vec![Vec::new(); spec.bases.len()]);
                    }
                    spec.bases
                        .iter()
                        .map(|b| {
                            (0..spec.keys)
                                .map(|n| {
                                    let k = dcache::client::encode_key(&key(n));
                                    parse(format!("{b}/v1/kv/{k}{suffix}"))
                                })
                                .collect()
                        })
                        .collect()
                };
                let get_suffix = if spec.stale { "?consistency=stale" } else { "" };
                Requests::Dcache {
                    put: urls(spec.need_put, spec.put_query)?,
                    get: urls(spec.need_get, get_suffix)?,
                    value: spec.value.clone(),
                }
            }
            Target::Etcd => {
                let each = |path: &str| -> anyhow::Result<Vec<Url>> {
                    spec.bases
                        .iter()
                        .map(|b| parse(format!("{b}{path}")))
                        .collect()
                };
                let key_b64: Vec<String> = (0..spec.keys).map(|n| B64.encode(key(n))).collect();
                let range_body = if spec.need_get {
                    key_b64.iter().map(|k| range_body(k, spec.stale)).collect()
                } else {
                    Vec::new()
                };
                Requests::Etcd {
                    put_url: each("/v3/kv/put")?,
                    range_url: each("/v3/kv/range")?,
                    key_b64: if spec.need_put { key_b64 } else { Vec::new() },
                    range_body,
                    value_b64: B64.encode(&spec.value),
                }
            }
        })
    }

    /// The request of `kind` for key `n`, sent to base number `base`.
    pub fn build(
        &self,
        client: &reqwest::Client,
        base: usize,
        kind: Kind,
        n: usize,
    ) -> reqwest::RequestBuilder {
        match (self, kind) {
            (Requests::Dcache { put, value, .. }, Kind::Put) => {
                client.put(put[base][n].clone()).body(value.clone())
            }
            (Requests::Dcache { get, .. }, Kind::Get) => client.get(get[base][n].clone()),
            (
                Requests::Etcd {
                    put_url,
                    key_b64,
                    value_b64,
                    ..
                },
                Kind::Put,
            ) => client
                .post(put_url[base].clone())
                .body(put_body(&key_b64[n], value_b64)),
            (
                Requests::Etcd {
                    range_url,
                    range_body,
                    ..
                },
                Kind::Get,
            ) => client
                .post(range_url[base].clone())
                .body(range_body[n].clone()),
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

fn range_body(key_b64: &str, serializable: bool) -> Bytes {
    let s = if serializable {
        format!("{{\"key\":\"{key_b64}\",\"serializable\":true}}")
    } else {
        format!("{{\"key\":\"{key_b64}\"}}")
    };
    Bytes::from(s)
}

/// Judges an answer: `status` and the complete `body`.
pub fn judge(target: Target, kind: Kind, status: reqwest::StatusCode, body: &[u8]) -> Outcome {
    match (target, kind) {
        _ if !status.is_success() => {
            if target == Target::Dcache
                && kind == Kind::Get
                && status == reqwest::StatusCode::NOT_FOUND
            {
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
    use reqwest::StatusCode;

    fn spec(target: Target, bases: &[String]) -> Spec<'_> {
        Spec {
            target,
            bases,
            keys: 3,
            key_prefix: "bench-",
            put_query: "?ttl=5s",
            stale: true,
            value: Bytes::from_static(b"xyz"),
            need_put: true,
            need_get: true,
        }
    }

    #[test]
    fn dcache_urls_are_encoded_and_stale_only_on_get() {
        let bases = vec!["http://h:1".to_string(), "http://h:2".to_string()];
        let r = Requests::new(&Spec {
            key_prefix: "a b/",
            ..spec(Target::Dcache, &bases)
        })
        .unwrap();
        let c = reqwest::Client::new();
        let g = r.build(&c, 1, Kind::Get, 2).build().unwrap();
        assert_eq!(
            g.url().as_str(),
            "http://h:2/v1/kv/a%20b/2?consistency=stale"
        );
        assert_eq!(g.method(), reqwest::Method::GET);
        let p = r.build(&c, 0, Kind::Put, 0).build().unwrap();
        assert_eq!(p.url().as_str(), "http://h:1/v1/kv/a%20b/0?ttl=5s");
        assert_eq!(p.body().unwrap().as_bytes(), Some(&b"xyz"[..]));
    }

    #[test]
    fn etcd_bodies_are_base64_json() {
        let bases = vec!["http://h:1".to_string()];
        let r = Requests::new(&spec(Target::Etcd, &bases)).unwrap();
        let c = reqwest::Client::new();
        let p = r.build(&c, 0, Kind::Put, 1).build().unwrap();
        assert_eq!(p.url().as_str(), "http://h:1/v3/kv/put");
        assert_eq!(p.method(), reqwest::Method::POST);
        let body: serde_json::Value =
            serde_json::from_slice(p.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body["key"], B64.encode("bench-1"));
        assert_eq!(body["value"], B64.encode("xyz"));
        let g = r.build(&c, 0, Kind::Get, 2).build().unwrap();
        assert_eq!(g.url().as_str(), "http://h:1/v3/kv/range");
        let body: serde_json::Value =
            serde_json::from_slice(g.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body["key"], B64.encode("bench-2"));
        assert_eq!(body["serializable"], true);
        let r = Requests::new(&Spec {
            stale: false,
            ..spec(Target::Etcd, &bases)
        })
        .unwrap();
        let g = r.build(&c, 0, Kind::Get, 0).build().unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(g.body().unwrap().as_bytes().unwrap()).unwrap();
        assert!(body.get("serializable").is_none());
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
