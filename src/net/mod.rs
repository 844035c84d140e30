//! Plumbing shared by every listener and every outgoing HTTP call, with no
//! knowledge of Raft, the cache or the API:
//!
//! - [`serve()`]: the accept loop with a connection cap (idle connections
//!   make room for new ones), a per-IP cap, header timeout and graceful
//!   drain, used by the client API; [`serve_with`] the same loop for any
//!   protocol (the Redis listener; the Raft listener, which hands HTTP
//!   connections to [`serve::serve_http`], with bytes it already read given
//!   back by [`serve::Rewind`]);
//! - [`http_client`]: the one place a `reqwest::Client` is built (forwarding,
//!   peer RPCs, the join probe, the join loop, the client library);
//! - [`Backoff`]: capped exponential backoff for retry loops;
//! - [`ClusterSecret`]: the peers' shared secret, compared in constant time;
//! - [`tls`]: rustls server and client configurations, reloadable, and the
//!   check that a certificate names a node.
//!
//! Uses: nothing in the crate (a leaf).

mod backoff;
mod conns;
mod http_client;
mod secret;
pub mod serve;
pub mod tls;

pub use backoff::Backoff;
pub use http_client::HttpClientOptions;
pub use http_client::http_client;
pub use http_client::scheme;
pub use secret::ClusterSecret;
pub use serve::PeerCertificates;
pub use serve::ServeOptions;
pub use serve::serve;
pub use serve::serve_with;
