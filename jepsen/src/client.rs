//! Client operations against one node, mapped to history outcomes.
//!
//! The mapping is the heart of honest checking, and it is the server's own:
//! every failure is classified by `dcache::wire::Class` (from the
//! `X-Dcache-Error` code, or from how the exchange broke), on the seed
//! routes as on the native ones. An operation is `Fail` only when dcache
//! says it was *not applied* (or the TCP connection was never made);
//! timeouts, cut connections and "outcome unknown" codes are
//! `Indeterminate`; a read that fails is dropped (it had no effect). A
//! seed-route 404 is a read of an absent key (its code is
//! `key_not_found`), never a failed op, so lost writes that surface as seed
//! 404s are checked like native ones.
//!
//! TTL requests (`PUT ?ttl=`/`?keepttl=true`, `POST ?expire=`/`?persist=true`,
//! and reads that keep `X-Dcache-Expires-At` and `X-Dcache-Served-By`) are
//! not in `dcache::client::Client` yet: they are sent through
//! [`Client::http`] and classified the same way (a `key_not_found` answer to
//! an expire or persist is the result "not found", not a failure).

use std::time::Duration;

use dcache::client::Client;
use dcache::client::ClientError;
use dcache::client::Read;
use dcache::wire::Class;
use dcache::wire::Code;
use dcache::wire::header;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;

use crate::faketime::parse_rfc3339;

/// What a PUT does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutTtl {
    /// No `ttl`: clears it (Redis SET semantics).
    Clear,
    /// `?keepttl=true`.
    Keep,
    /// `?ttl=<ms>ms`.
    In(u64),
}

/// A TTL-aware answer: the history outcome and what dcache said about the
/// key's deadline and who served it.
pub struct TtlAnswer {
    pub outcome: Outcome,
    /// The key's modify index (reads; for CAS).
    pub index: u64,
    /// Reported deadline (ms since the epoch): `expires_at` of a write or
    /// expire, `X-Dcache-Expires-At` of a read; `None` = no deadline.
    pub expires_at_ms: Option<u64>,
    /// `X-Dcache-Served-By`.
    pub served_by: Option<String>,
}

impl TtlAnswer {
    fn failed(outcome: Outcome) -> TtlAnswer {
        TtlAnswer {
            outcome,
            index: 0,
            expires_at_ms: None,
            served_by: None,
        }
    }
}

/// An RFC 3339 time as ms since the epoch.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let secs = parse_rfc3339(s)?;
    (secs >= 0.0).then(|| (secs * 1000.0).round() as u64)
}

/// An HTTP answer: the status, the headers the harness uses, the body.
struct Answer {
    status: u16,
    error: Option<String>,
    index: Option<String>,
    expires_at: Option<String>,
    served_by: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends a request built on [`Client::http`] and reads its [`Answer`];
/// `Err` as `dcache::client::Client` classifies broken exchanges (no
/// connection: not sent; anything else: outcome unknown). A macro, so that
/// the harness need not depend on the HTTP client crate to name its types.
macro_rules! send {
    ($req:expr) => {
        async {
            let resp = $req.send().await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Connect(e.to_string())
                } else {
                    ClientError::Transport(e.to_string())
                }
            })?;
            let h = resp.headers();
            let get = |name: &str| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (error, index, expires_at, served_by) = (
                get(header::ERROR),
                get(header::INDEX),
                get(header::EXPIRES_AT),
                get(header::SERVED_BY),
            );
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_vec();
            Ok::<Answer, ClientError>(Answer {
                status,
                error,
                index,
                expires_at,
                served_by,
                body,
            })
        }
    };
}

/// The `expires_at` of a JSON answer (`null` = none).
fn json_deadline(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["expires_at"].as_str().and_then(rfc3339_ms)
}

#[derive(Clone)]
pub struct Api {
    client: Client,
}

/// A read's result plus the key's modify index (for CAS).
pub struct ReadResult {
    pub outcome: Outcome,
    pub index: u64,
}

/// What a failed write means for the history.
fn write_failure(e: &ClientError) -> Outcome {
    match e.class() {
        Class::NotApplied => Outcome::Fail,
        Class::OutcomeUnknown | Class::Answer => Outcome::Indeterminate,
    }
}

/// The headers of every request: the cluster secret and the bearer
/// token, when there are.
fn auth_headers(secret: Option<&str>, token: Option<&str>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in [
        (
            dcache::wire::header::CLUSTER_SECRET,
            secret.map(str::to_string),
        ),
        ("authorization", token.map(|t| format!("Bearer {t}"))),
    ] {
        if let Some(value) = value {
            let mut v = reqwest::header::HeaderValue::from_str(&value)
                .expect("secrets and tokens are visible ASCII");
            v.set_sensitive(true);
            headers.insert(name, v);
        }
    }
    headers
}

/// How the harness reaches the nodes: the cluster secret, and with
/// `--secure` TLS (the test CA, a client certificate) and a bearer token.
#[derive(Clone, Default)]
pub struct Access {
    pub secret: Option<String>,
    pub tls: Option<dcache::net::tls::ClientTls>,
    pub token: Option<String>,
}

impl Api {
    /// Requests carry `access`'s secret (membership changes need it when
    /// the nodes have one) and token, over TLS when it has one.
    pub fn new(timeout: Duration, access: &Access) -> Api {
        Api {
            client: Client::with_options(dcache::net::HttpClientOptions {
                timeout: Some(timeout),
                default_headers: auth_headers(access.secret.as_deref(), access.token.as_deref()),
                connect_timeout: Duration::from_millis(500),
                pool_idle_timeout: Duration::from_secs(2),
                tls: access.tls.clone(),
                ..Default::default()
            }),
        }
    }

    /// Linearizable read via the native API (`seed`: via `/store/{key}`).
    pub async fn read(&self, addr: &str, key: &str, seed: bool) -> ReadResult {
        let fail = ReadResult {
            outcome: Outcome::Fail,
            index: 0,
        };
        if seed {
            return match self.client.seed_get(addr, key).await {
                Ok(v) => ReadResult {
                    outcome: Outcome::Ok(Ret::Read(v)),
                    index: 0,
                },
                Err(_) => fail,
            };
        }
        match self.client.get(addr, key, Read::Linearizable).await {
            Ok(Some(v)) => match String::from_utf8(v.value.to_vec()) {
                Ok(s) => ReadResult {
                    outcome: Outcome::Ok(Ret::Read(Some(s))),
                    index: v.modify_index,
                },
                Err(_) => fail,
            },
            Ok(None) => ReadResult {
                outcome: Outcome::Ok(Ret::Read(None)),
                index: 0,
            },
            Err(_) => fail,
        }
    }

    pub async fn write(&self, addr: &str, key: &str, value: &str, seed: bool) -> Outcome {
        let r = if seed {
            self.client.seed_set(addr, key, value).await
        } else {
            self.client
                .put(addr, key, value.to_string(), None)
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) => Outcome::Ok(Ret::Written),
            Err(e) => write_failure(&e),
        }
    }

    /// CAS on the modify index read before (0: only if absent).
    pub async fn cas(&self, addr: &str, key: &str, index: u64, value: &str) -> Outcome {
        match self
            .client
            .put(addr, key, value.to_string(), Some(index))
            .await
        {
            Ok(_) => Outcome::Ok(Ret::Cas(true)),
            Err(e) if e.code() == Some(Code::CasMismatch) => Outcome::Ok(Ret::Cas(false)),
            Err(e) => write_failure(&e),
        }
    }

    /// The error an unsuccessful answer stands for (as
    /// `dcache::client::Client` classifies it).
    fn failure(a: &Answer) -> ClientError {
        let message = String::from_utf8_lossy(&a.body).into_owned();
        match Code::from_header(a.error.as_deref()) {
            Some(code) => ClientError::Server {
                code,
                status: a.status,
                message,
            },
            None => ClientError::Unexpected {
                status: a.status,
                body: message,
            },
        }
    }

    fn kv_url(&self, addr: &str, key: &str) -> String {
        self.client
            .url(addr, &format!("/v1/kv/{}", dcache::client::encode_key(key)))
    }

    /// `GET /v1/kv/{key}` (linearizable, or `?consistency=stale`), keeping
    /// the deadline and serving node. A failed read is `Fail` (dropped).
    pub async fn read_ttl(&self, addr: &str, key: &str, stale: bool) -> TtlAnswer {
        let mut url = self.kv_url(addr, key);
        if stale {
            url.push_str("?consistency=stale");
        }
        let Ok(a) = send!(self.client.http().get(url)).await else {
            return TtlAnswer::failed(Outcome::Fail);
        };
        let read = if a.ok() {
            match String::from_utf8(a.body) {
                Ok(v) => Some(v),
                Err(_) => return TtlAnswer::failed(Outcome::Fail),
            }
        } else if Self::failure(&a).code() == Some(Code::KeyNotFound) {
            None
        } else {
            return TtlAnswer::failed(Outcome::Fail);
        };
        TtlAnswer {
            outcome: Outcome::Ok(Ret::Read(read)),
            index: a.index.and_then(|v| v.parse().ok()).unwrap_or(0),
            expires_at_ms: a.expires_at.as_deref().and_then(rfc3339_ms),
            served_by: a.served_by,
        }
    }

    /// `PUT /v1/kv/{key}` with a TTL choice, and CAS on a modify index.
    /// `Ret::Written`, or `Ret::Cas(_)` when `cas` is given.
    pub async fn put_ttl(
        &self,
        addr: &str,
        key: &str,
        value: &str,
        ttl: PutTtl,
        cas: Option<u64>,
    ) -> TtlAnswer {
        let mut query = Vec::new();
        match ttl {
            PutTtl::Clear => {}
            PutTtl::Keep => query.push("keepttl=true".to_string()),
            PutTtl::In(ms) => query.push(format!("ttl={ms}ms")),
        }
        if let Some(c) = cas {
            query.push(format!("cas={c}"));
        }
        let mut url = self.kv_url(addr, key);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let r = send!(self.client.http().put(url).body(value.to_string()))
            .await
            .and_then(|a| {
                if a.ok() {
                    Ok(a.body)
                } else {
                    Err(Self::failure(&a))
                }
            });
        match r {
            Ok(body) => TtlAnswer {
                outcome: Outcome::Ok(if cas.is_some() {
                    Ret::Cas(true)
                } else {
                    Ret::Written
                }),
                index: 0,
                expires_at_ms: json_deadline(&body),
                served_by: None,
            },
            Err(e) if cas.is_some() && e.code() == Some(Code::CasMismatch) => {
                TtlAnswer::failed(Outcome::Ok(Ret::Cas(false)))
            }
            Err(e) => TtlAnswer::failed(write_failure(&e)),
        }
    }

    /// `POST /v1/kv/{key}?expire=<ms>ms` (`Some`) or `?persist=true`
    /// (`None`): `Ret::Found(true)` with the new deadline, or
    /// `Ret::Found(false)` for an absent key.
    pub async fn expire(&self, addr: &str, key: &str, ttl_ms: Option<u64>) -> TtlAnswer {
        let query = match ttl_ms {
            Some(ms) => format!("expire={ms}ms"),
            None => "persist=true".to_string(),
        };
        let url = format!("{}?{query}", self.kv_url(addr, key));
        match send!(self.client.http().post(url)).await {
            Ok(a) if a.ok() => TtlAnswer {
                outcome: Outcome::Ok(Ret::Found(true)),
                index: 0,
                expires_at_ms: json_deadline(&a.body),
                served_by: None,
            },
            Ok(a) => {
                let e = Self::failure(&a);
                if e.code() == Some(Code::KeyNotFound) {
                    TtlAnswer::failed(Outcome::Ok(Ret::Found(false)))
                } else {
                    TtlAnswer::failed(write_failure(&e))
                }
            }
            Err(e) => TtlAnswer::failed(write_failure(&e)),
        }
    }

    /// `POST /v1/txn`: the answer, or what the failure means for the
    /// history (`Fail`: not applied; `Indeterminate`: outcome unknown).
    pub async fn txn(
        &self,
        addr: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, Outcome> {
        self.client
            .txn(addr, body)
            .await
            .map_err(|e| write_failure(&e))
    }

    pub async fn json(&self, addr: &str, path: &str) -> Option<serde_json::Value> {
        self.client.json(addr, path).await.ok()
    }

    /// `POST /v1/cluster/transfer-leader` to `to` (a node id): the new
    /// leader the answer names, or the error.
    pub async fn transfer_leader(&self, addr: &str, to: &str) -> Result<Option<String>, String> {
        let url = self.client.url(addr, "/v1/cluster/transfer-leader");
        let body = serde_json::json!({ "to": to }).to_string();
        let req = self
            .client
            .http()
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        match send!(req).await {
            Ok(a) if a.ok() => Ok(serde_json::from_slice::<serde_json::Value>(&a.body)
                .ok()
                .and_then(|v| v["leader"].as_str().map(str::to_string))),
            Ok(a) => Err(Self::failure(&a).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn ready(&self, addr: &str) -> bool {
        self.client.ready(addr).await.unwrap_or(false)
    }

    pub async fn delete_member(&self, addr: &str, id: &str) -> bool {
        self.client.remove_member(addr, id).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_parse_to_ms() {
        assert_eq!(
            rfc3339_ms("2026-12-02T15:35:20.123Z"),
            Some(1_796_225_720_123)
        );
        assert_eq!(json_deadline(br#"{"expires_at":null}"#), None);
        assert_eq!(
            json_deadline(br#"{"key":"k","expires_at":"1970-01-01T00:00:01.500Z"}"#),
            Some(1_500)
        );
    }

    #[test]
    fn only_not_applied_failures_are_fails() {
        let server = |code: Code| ClientError::Server {
            code,
            status: code.status(),
            message: String::new(),
        };
        assert_eq!(write_failure(&server(Code::NoLeader)), Outcome::Fail);
        assert_eq!(
            write_failure(&server(Code::Timeout)),
            Outcome::Indeterminate
        );
        assert_eq!(
            write_failure(&server(Code::ForwardOutcomeUnknown)),
            Outcome::Indeterminate
        );
        assert_eq!(
            write_failure(&ClientError::Connect("x".into())),
            Outcome::Fail
        );
        assert_eq!(
            write_failure(&ClientError::Transport("x".into())),
            Outcome::Indeterminate
        );
    }
}
