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

use std::time::Duration;

use dcache::client::Client;
use dcache::client::ClientError;
use dcache::client::Read;
use dcache::wire::Class;
use dcache::wire::Code;
use dcache_jepsen::history::Outcome;
use dcache_jepsen::history::Ret;

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

impl Api {
    pub fn new(timeout: Duration) -> Api {
        Api {
            client: Client::with_options(dcache::net::HttpClientOptions {
                timeout: Some(timeout),
                connect_timeout: Duration::from_millis(500),
                pool_idle_timeout: Duration::from_secs(2),
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

    pub async fn json(&self, addr: &str, path: &str) -> Option<serde_json::Value> {
        self.client.json(addr, path).await.ok()
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
