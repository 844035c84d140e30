//! The tests' HTTP client and a fully read response.
//!
//! The client is dcache's own ([`dcache::net::http_client`]: no proxy, no
//! redirects followed, `TCP_NODELAY`); tests build no other. For typed
//! calls (`put`, `get`, membership) use [`typed`], dcache's
//! [`dcache::client::Client`].

use std::time::Duration;

use dcache::net::HttpClientOptions;
use dcache::net::http_client;
use dcache::wire::Code;
use dcache::wire::header;
use serde_json::Value;

/// Bound on one test request, answer included. Longer than any server-side
/// bound the tests configure, so a server that answers late is seen
/// answering late rather than as a client timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The tests' HTTP client (requests bounded by [`REQUEST_TIMEOUT`]).
pub fn client() -> reqwest::Client {
    client_with(HttpClientOptions::default())
}

/// [`client`] with other options (e.g. `pool_max_idle_per_host: Some(0)`
/// for one connection per request). The request timeout defaults to
/// [`REQUEST_TIMEOUT`] if `opts` has none.
pub fn client_with(mut opts: HttpClientOptions) -> reqwest::Client {
    opts.timeout.get_or_insert(REQUEST_TIMEOUT);
    http_client(opts)
}

/// dcache's typed client, with [`REQUEST_TIMEOUT`].
pub fn typed() -> dcache::client::Client {
    dcache::client::Client::new(REQUEST_TIMEOUT)
}

/// A response read fully: status, headers, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as UTF-8 (panics otherwise).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone())
            .unwrap_or_else(|_| panic!("{} body is not UTF-8: {:?}", self.status, self.body))
    }

    /// The body as JSON (panics otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The error code in the `X-Dcache-Error` header, if any.
    pub fn code(&self) -> Option<Code> {
        let v = self.header(header::ERROR)?;
        Some(
            v.parse()
                .unwrap_or_else(|e| panic!("{} {}: {e}", self.status, header::ERROR)),
        )
    }

    /// Assert this is the native API's answer for `code`: its status, the
    /// code header, and a JSON body whose `code` field is the code.
    #[track_caller]
    pub fn assert_error(&self, code: Code) {
        self.assert_seed_error(code.status(), code);
        assert_eq!(
            self.json()["code"],
            code.as_str(),
            "body of a {code} answer: {}",
            self.text()
        );
    }

    /// Assert this is a seed route's error answer: `status`, `code` in the
    /// header, and a JSON body with a string `error` (seed bodies carry no
    /// code field).
    #[track_caller]
    pub fn assert_seed_error(&self, status: u16, code: Code) {
        assert_eq!(
            (self.status, self.code()),
            (status, Some(code)),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error bodies are JSON"
        );
        assert!(
            self.json()["error"].is_string(),
            "no error message: {}",
            self.text()
        );
    }
}

/// Send `rb` and read the whole answer; panics if there is none (a test
/// that expects a transport failure checks `send()` itself).
pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let r = rb.send().await.expect("request sent and answered");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body read").to_vec();
    Resp {
        status,
        headers,
        body,
    }
}
