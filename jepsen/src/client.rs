//! HTTP client operations against one node, mapped to history outcomes.
//!
//! The mapping is the heart of honest checking: an operation is `Fail`
//! only when dcache says it was *not applied* (its `X-Dcache-Error` code is
//! in the not-applied class, or the TCP connection was never made);
//! timeouts, cut connections and "outcome unknown" codes are
//! `Indeterminate`; a read that fails is dropped (it had no effect).

use std::time::Duration;

use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;

/// Codes whose requests were certainly not applied (README, "Errors").
const NOT_APPLIED: &[&str] = &[
    "not_leader",
    "no_leader",
    "unavailable",
    "leader_unreachable",
    "invalid_input",
    "too_large",
    "conflict",
    "not_found",
];

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

/// A read's result plus the key's modify index (for CAS).
pub struct ReadResult {
    pub outcome: Outcome,
    pub index: u64,
}

fn enc(key: &str) -> String {
    // Keys are plain ASCII identifiers in the workload.
    key.to_string()
}

impl Api {
    pub fn new(timeout: Duration) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_millis(500))
                .pool_idle_timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .expect("HTTP client"),
        }
    }

    fn error_code(r: &reqwest::Response) -> Option<String> {
        r.headers()
            .get("x-dcache-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn write_failure(r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
        match r {
            Err(e) if e.is_connect() => Outcome::Fail,
            Err(_) => Outcome::Indeterminate,
            Ok(resp) => match Self::error_code(&resp) {
                Some(code) if NOT_APPLIED.contains(&code.as_str()) => Outcome::Fail,
                _ => Outcome::Indeterminate,
            },
        }
    }

    /// Linearizable read via the native API (`seed`: via `/store/{key}`).
    pub async fn read(&self, addr: &str, key: &str, seed: bool) -> ReadResult {
        let url = if seed {
            format!("http://{addr}/store/{}", enc(key))
        } else {
            format!("http://{addr}/v1/kv/{}", enc(key))
        };
        let fail = ReadResult {
            outcome: Outcome::Fail,
            index: 0,
        };
        let Ok(resp) = self.http.get(&url).send().await else {
            return fail;
        };
        let status = resp.status().as_u16();
        let code = Self::error_code(&resp);
        let index = resp
            .headers()
            .get("x-dcache-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match (status, code.as_deref()) {
            (200, _) => {
                let Ok(body) = resp.text().await else {
                    return fail;
                };
                let value = if seed {
                    match serde_json::from_str::<serde_json::Value>(&body) {
                        Ok(v) => match v["value"].as_str() {
                            Some(s) => s.to_string(),
                            None => return fail,
                        },
                        Err(_) => return fail,
                    }
                } else {
                    body
                };
                ReadResult {
                    outcome: Outcome::Ok(Ret::Read(Some(value))),
                    index,
                }
            }
            // The seed route has no code in its 404 body; the header has it.
            (404, Some("key_not_found")) => ReadResult {
                outcome: Outcome::Ok(Ret::Read(None)),
                index: 0,
            },
            _ => fail,
        }
    }

    pub async fn write(&self, addr: &str, key: &str, value: &str, seed: bool) -> Outcome {
        let r = if seed {
            self.http
                .post(format!("http://{addr}/store"))
                .body(serde_json::json!({ "key": key, "value": value }).to_string())
                .send()
                .await
        } else {
            self.http
                .put(format!("http://{addr}/v1/kv/{}", enc(key)))
                .body(value.to_string())
                .send()
                .await
        };
        match r {
            Ok(resp) if resp.status().is_success() => Outcome::Ok(Ret::Written),
            other => Self::write_failure(other),
        }
    }

    /// CAS on the modify index read before (0: only if absent).
    pub async fn cas(&self, addr: &str, key: &str, index: u64, value: &str) -> Outcome {
        let r = self
            .http
            .put(format!("http://{addr}/v1/kv/{}?cas={index}", enc(key)))
            .body(value.to_string())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => Outcome::Ok(Ret::Cas(true)),
            Ok(resp) if resp.status().as_u16() == 412 => Outcome::Ok(Ret::Cas(false)),
            other => Self::write_failure(other),
        }
    }

    pub async fn json(&self, addr: &str, path: &str) -> Option<serde_json::Value> {
        let r = self
            .http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        serde_json::from_str(&r.text().await.ok()?).ok()
    }

    pub async fn ready(&self, addr: &str) -> bool {
        matches!(
            self.http.get(format!("http://{addr}/readyz")).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    pub async fn delete_member(&self, addr: &str, id: &str) -> bool {
        matches!(
            self.http.delete(format!("http://{addr}/v1/cluster/members/{id}")).send().await,
            Ok(r) if r.status().is_success()
        )
    }
}
