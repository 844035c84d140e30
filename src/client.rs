//! A typed HTTP client for dcache: the one client the binary's `bench` and
//! `health` commands, the tests and the fault harness use.
//!
//! Every failure is a [`ClientError`] whose [`ClientError::class`] says
//! what the caller may conclude, from the server's `X-Dcache-Error` code
//! (see `wire`), or from how the exchange broke: no connection means not
//! applied; a request sent without an answer means outcome unknown.
//!
//! Not here: retries (callers decide), cluster discovery.
//!
//! Uses: `wire`, `net`.

use std::time::Duration;

use bytes::Bytes;
use percent_encoding::AsciiSet;
use percent_encoding::CONTROLS;
use percent_encoding::NON_ALPHANUMERIC;
use percent_encoding::utf8_percent_encode;
use reqwest::StatusCode;
use serde_json::Value as Json;

use crate::net::HttpClientOptions;
use crate::net::http_client;
use crate::wire::Class;
use crate::wire::Code;
use crate::wire::header;

/// Bytes escaped in a key placed in a URL path: controls, space, and the
/// characters with a meaning in URLs (`/` is kept: dcache keys may hold it,
/// raw or escaped, with the same meaning).
const KEY_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'+')
    .add(b'&')
    .add(b'=')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// A key as a URL path segment.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ESCAPES).to_string()
}

/// A value placed in a URL query string.
pub fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error code.
    #[error("{status} {code}: {message}")]
    Server {
        code: Code,
        status: u16,
        message: String,
    },
    /// The server answered an unexpected status without a known code.
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: u16, body: String },
    /// No connection was made: the request was never sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request was sent (or may have been) but no full answer came.
    #[error("no answer: {0}")]
    Transport(String),
}

impl ClientError {
    /// What the caller may conclude about the request.
    pub fn class(&self) -> Class {
        match self {
            ClientError::Server { code, .. } => code.class(),
            ClientError::Connect(_) => Class::NotApplied,
            ClientError::Unexpected { .. } | ClientError::Transport(_) => Class::OutcomeUnknown,
        }
    }

    /// The server's code, if it sent one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_connect() {
            ClientError::Connect(e.to_string())
        } else {
            ClientError::Transport(e.to_string())
        }
    }
}

/// A value and its metadata, as `GET /v1/kv/{key}` returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub modify_index: u64,
    /// The key's deadline (RFC 3339, milliseconds), if it has a TTL.
    pub expires_at: Option<String>,
    /// Milliseconds left before the deadline, if it has a TTL.
    pub ttl_ms: Option<u64>,
}

/// Options of a `PUT /v1/kv/{key}` beyond the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Put {
    /// Only if the key's modify index is this (0 = only if absent).
    pub cas: Option<u64>,
    /// Time to live (`500ms`, `30s`, `10m`, an integer = seconds).
    pub ttl: Option<String>,
}

/// A successful answer to [`Client::call`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

/// A read's consistency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Linearizable,
    Stale,
}

/// The dcache client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// "https" when built with TLS options.
    scheme: &'static str,
}

impl Client {
    /// A client whose requests each take at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self::with_options(HttpClientOptions::default().timeout(timeout))
    }

    pub fn with_options(opts: HttpClientOptions) -> Self {
        Self {
            scheme: crate::net::scheme(opts.tls.is_some()),
            http: http_client(opts),
        }
    }

    /// The URL of `path` (with its query) on node `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// The underlying HTTP client, for requests this API does not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), ClientError> {
        let resp = req.send().await.map_err(ClientError::from_reqwest)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok((status, headers, body))
    }

    /// The error an unsuccessful answer stands for (status, headers, body).
    pub fn failure_of(
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> ClientError {
        let text = String::from_utf8_lossy(body).into_owned();
        match Code::from_header(headers.get(header::ERROR).and_then(|v| v.to_str().ok())) {
            Some(code) => {
                let message = serde_json::from_slice::<Json>(body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                ClientError::Server {
                    code,
                    status: status.as_u16(),
                    message,
                }
            }
            None => ClientError::Unexpected {
                status: status.as_u16(),
                body: text,
            },
        }
    }

    fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
        headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn index(headers: &reqwest::header::HeaderMap) -> u64 {
        Self::header(headers, header::INDEX)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Any request: `method` on `http(s)://{addr}{path}` (path with its query)
    /// with an optional body; a 2xx answer, or the failure it stands for.
    pub async fn call(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}://{addr}{path}", self.scheme));
        if let Some(b) = body {
            req = req.body(b);
        }
        let (status, headers, body) = self.send(req).await?;
        if status.is_success() {
            Ok(Answer {
                status: status.as_u16(),
                headers,
                body,
            })
        } else {
            Err(Self::failure_of(status, &headers, &body))
        }
    }

    /// `PUT /v1/kv/{key}` (`cas`: only if the modify index is this; 0 =
    /// only if absent). Returns the key's new modify index.
    pub async fn put(
        &self,
        addr: &str,
        key: &str,
        value: impl Into<Bytes>,
        cas: Option<u64>,
    ) -> Result<u64, ClientError> {
        self.put_with(addr, key, value, &Put { cas, ttl: None })
            .await
    }

    /// [`Client::put`] with every option.
    pub async fn put_with(
        &self,
        addr: &str,
        key: &str,
        value: impl Into<Bytes>,
        opts: &Put,
    ) -> Result<u64, ClientError> {
        let mut url = format!("{}://{addr}/v1/kv/{}", self.scheme, encode_key(key));
        let mut sep = '?';
        if let Some(c) = opts.cas {
            url.push_str(&format!("{sep}cas={c}"));
            sep = '&';
        }
        if let Some(t) = &opts.ttl {
            url.push_str(&format!("{sep}ttl={}", encode_query(t)));
        }
        let (status, headers, body) = self.send(self.http.put(url).body(value.into())).await?;
        if status.is_success() {
            Ok(Self::index(&headers))
        } else {
            Err(Self::failure_of(status, &headers, &body))
        }
    }

    /// `GET /v1/kv/{key}`: `None` when the key does not exist.
    pub async fn get(
        &self,
        addr: &str,
        key: &str,
        read: Read,
    ) -> Result<Option<Versioned>, ClientError> {
        let mut url = format!("{}://{addr}/v1/kv/{}", self.scheme, encode_key(key));
        if read == Read::Stale {
            url.push_str("?consistency=stale");
        }
        let (status, headers, body) = self.send(self.http.get(url)).await?;
        if status.is_success() {
            return Ok(Some(Versioned {
                modify_index: Self::index(&headers),
                expires_at: Self::header(&headers, header::EXPIRES_AT).map(str::to_string),
                ttl_ms: Self::header(&headers, header::TTL_MS).and_then(|v| v.parse().ok()),
                value: body,
            }));
        }
        match Self::failure_of(status, &headers, &body) {
            ClientError::Server {
                code: Code::KeyNotFound,
                ..
            } => Ok(None),
            e => Err(e),
        }
    }

    /// `DELETE /v1/kv/{key}`: whether the key existed.
    pub async fn delete(
        &self,
        addr: &str,
        key: &str,
        cas: Option<u64>,
    ) -> Result<bool, ClientError> {
        let mut url = format!("{}://{addr}/v1/kv/{}", self.scheme, encode_key(key));
        if let Some(c) = cas {
            url.push_str(&format!("?cas={c}"));
        }
        let (status, headers, body) = self.send(self.http.delete(url)).await?;
        if status.is_success() {
            let v: Json =
                serde_json::from_slice(&body).map_err(|e| ClientError::Transport(e.to_string()))?;
            Ok(v["deleted"].as_bool().unwrap_or(false))
        } else {
            Err(Self::failure_of(status, &headers, &body))
        }
    }

    /// The seed's `POST /store`.
    pub async fn seed_set(&self, addr: &str, key: &str, value: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "key": key, "value": value }).to_string();
        let req = self
            .http
            .post(format!("{}://{addr}/store", self.scheme))
            .header("content-type", "application/json")
            .body(body);
        let (status, headers, body) = self.send(req).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::failure_of(status, &headers, &body))
        }
    }

    /// The seed's `GET /store/{key}`: `None` when the key does not exist.
    pub async fn seed_get(&self, addr: &str, key: &str) -> Result<Option<String>, ClientError> {
        let url = format!("{}://{addr}/store/{}", self.scheme, encode_key(key));
        let (status, headers, body) = self.send(self.http.get(url)).await?;
        if status.is_success() {
            let v: Json =
                serde_json::from_slice(&body).map_err(|e| ClientError::Transport(e.to_string()))?;
            return match v["value"].as_str() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(ClientError::Unexpected {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                }),
            };
        }
        match Self::failure_of(status, &headers, &body) {
            ClientError::Server {
                code: Code::KeyNotFound,
                ..
            } => Ok(None),
            e => Err(e),
        }
    }

    /// `GET {path}` as JSON (2xx only).
    pub async fn json(&self, addr: &str, path: &str) -> Result<Json, ClientError> {
        let (status, headers, body) = self
            .send(self.http.get(format!("{}://{addr}{path}", self.scheme)))
            .await?;
        if !status.is_success() {
            return Err(Self::failure_of(status, &headers, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Transport(format!("{path}: {e}")))
    }

    /// `POST /v1/txn` with a JSON body (README "Transactions"): the answer
    /// (`succeeded`, `index`, `results`).
    pub async fn txn(&self, addr: &str, body: &Json) -> Result<Json, ClientError> {
        let req = self
            .http
            .post(format!("{}://{addr}/v1/txn", self.scheme))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let (status, headers, body) = self.send(req).await?;
        if !status.is_success() {
            return Err(Self::failure_of(status, &headers, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Transport(format!("txn: {e}")))
    }

    /// Whether `/readyz` answers 200; `Err` only when it could not be asked.
    pub async fn ready(&self, addr: &str) -> Result<bool, ClientError> {
        let (status, _, _) = self
            .send(self.http.get(format!("{}://{addr}/readyz", self.scheme)))
            .await?;
        Ok(status.is_success())
    }

    /// `DELETE /v1/cluster/members/{id}`.
    pub async fn remove_member(&self, addr: &str, id: &str) -> Result<(), ClientError> {
        let url = format!(
            "{}://{addr}/v1/cluster/members/{}",
            self.scheme,
            encode_key(id)
        );
        let (status, headers, body) = self.send(self.http.delete(url)).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::failure_of(status, &headers, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_slashes_and_escape_the_rest() {
        assert_eq!(encode_key("a/b c?d%"), "a/b%20c%3Fd%25");
        assert_eq!(encode_key("ключ"), "%D0%BA%D0%BB%D1%8E%D1%87");
    }

    #[test]
    fn failures_are_classified() {
        let e = ClientError::Server {
            code: Code::Timeout,
            status: 504,
            message: String::new(),
        };
        assert_eq!(e.class(), Class::OutcomeUnknown);
        assert_eq!(ClientError::Connect("x".into()).class(), Class::NotApplied);
        assert_eq!(
            ClientError::Transport("x".into()).class(),
            Class::OutcomeUnknown
        );
    }
}
