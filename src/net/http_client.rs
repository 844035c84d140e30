//! The one `reqwest::Client` builder.
//!
//! Every client dcache builds talks HTTP/1.1 (over TLS when given a
//! [`ClientTls`]; see [`scheme`]) to a known host:port: no
//! proxy (a `HTTP_PROXY` in the environment must not reroute peer traffic),
//! no automatic redirects (a 307 is an answer to pass on), `TCP_NODELAY`
//! (requests are small and latency-bound).

use std::net::IpAddr;
use std::time::Duration;

use super::tls::ClientTls;

/// What differs between the clients dcache builds.
#[derive(Debug, Clone)]
pub struct HttpClientOptions {
    /// Bound on the TCP connect.
    pub connect_timeout: Duration,
    /// Bound on a whole request, response body included (None: the caller
    /// bounds each request itself).
    pub timeout: Option<Duration>,
    /// How long an idle keep-alive connection stays pooled.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (None: reqwest's default, unbounded).
    pub pool_max_idle_per_host: Option<usize>,
    /// Bind outgoing connections to this local address (None: the kernel
    /// chooses), so per-address fault injection cuts exactly one node.
    pub local_address: Option<IpAddr>,
    /// Headers sent with every request (the CLI's bearer token).
    pub default_headers: reqwest::header::HeaderMap,
    /// TLS: the roots, the name check and the client certificate (None:
    /// plain HTTP; an https URL then fails, as no root is trusted).
    pub tls: Option<ClientTls>,
}

/// The URL scheme for a client with or without TLS.
pub fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: None,
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: None,
            local_address: None,
            default_headers: reqwest::header::HeaderMap::new(),
            tls: None,
        }
    }
}

impl HttpClientOptions {
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }
}

/// Build a client.
pub fn http_client(opts: HttpClientOptions) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .pool_idle_timeout(opts.pool_idle_timeout)
        .tcp_nodelay(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    if let Some(n) = opts.pool_max_idle_per_host {
        b = b.pool_max_idle_per_host(n);
    }
    if !opts.default_headers.is_empty() {
        b = b.default_headers(opts.default_headers);
    }
    if let Some(ip) = opts.local_address {
        b = b.local_address(ip);
    }
    // Always our own rustls config: reqwest's default would load the
    // system's roots, which a FROM-scratch image does not have (and a
    // client without TLS options must not trust them anyway).
    let tls = opts.tls.unwrap_or_else(ClientTls::trusting_nothing);
    b = b.use_preconfigured_tls(tls.config());
    // Building fails only when the TLS backend or the system resolver
    // configuration cannot load: a broken environment.
    b.build().expect("build HTTP client")
}
