//! The Redis protocol front end: a RESP2/RESP3 listener so redis-cli,
//! redis-benchmark and Redis client libraries use the replicated cache.
//!
//! - `parse`: the incremental, bounded request parser;
//! - `reply`: reply frames and their RESP2/RESP3 encodings;
//! - `conn`: one connection: pipelining, MULTI/EXEC/WATCH;
//! - `session`: one connection's state (name, protocol, MULTI queue,
//!   WATCHed keys), shared by `conn` and `admin`;
//! - `cmd`: the data commands → `kv::redis` writes and reads;
//! - `admin`: server commands (INFO, CONFIG, CLIENT, COMMAND, ...);
//! - `route`: run on the leader, forwarding once from a follower;
//! - `auth`: AUTH / HELLO AUTH with the HTTP API's tokens, and every
//!   command's role and key check;
//! - `table`: the command table (arity, flags, key positions) `admin` and
//!   `auth` both read (a leaf, so they do not import each other).
//!
//! Invariants:
//! - Every data command is linearizable on any node: writes go through
//!   `Cluster::write` (read-modify-write commands are `kv::Command::Rmw`,
//!   applied in the state machine), reads through `Cluster::query`
//!   (ReadIndex on the leader); a follower forwards once to the leader:
//!   writes with `Cluster::forward_write`, reads to its HTTP port
//!   (`POST /internal/kv`).
//! - A reply is sent only after the write is committed and applied (durable
//!   on a quorum before `+OK`).
//! - Input is bounded: bulk strings by `http.max_value_bytes`, keys by
//!   `http.max_key_bytes`, inline commands by 64 KiB, arrays by
//!   [`parse::MAX_ARGS`]; connections by `http.max_connections`; a
//!   command whose first byte arrived must arrive in full within
//!   [`RedisLimits::command_timeout`] (else the connection closes).
//! - `auth::check` is the one place a command is allowed (TLS, when on,
//!   is the listener's: `net::serve_with`).
//!
//! Not here: Raft or the state machine (only `cluster` and `kv`'s plain
//! data), HTTP routes (`api`; `/internal/kv` is there).
//!
//! Uses: `cluster`, `kv`, `wire`, `error`, `id`, `net`, `config`, `auth`.
//! Used by: `node`.

pub mod admin;
pub mod auth;
pub mod cmd;
pub mod conn;
pub mod parse;
pub mod reply;
pub mod route;
pub mod session;
pub mod table;

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::net::ServeOptions;

/// Limits of the Redis front end (from config).
#[derive(Debug, Clone)]
pub struct RedisLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Deadline of one command, forwarding included.
    pub request_timeout: Duration,
    /// How long the rest of a command may take to arrive once its first
    /// byte has (the HTTP listeners' header timeout; slowloris defence).
    /// A connection with nothing pending may stay idle.
    pub command_timeout: Duration,
}

/// What CLIENT LIST / INFO shows of a connection.
#[derive(Debug, Clone, Default)]
pub struct ClientView {
    pub addr: String,
    pub name: String,
    pub proto: u8,
    pub last_cmd: String,
    pub created: Option<Instant>,
}

/// SCAN cursors this node remembers at most (the oldest are forgotten;
/// continuing a forgotten one is an error).
const MAX_CURSORS: usize = 65_536;

/// State shared by every Redis connection of a node.
pub struct Server {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) limits: RedisLimits,
    pub(crate) forwarder: reqwest::Client,
    /// The tokens AUTH takes (None: `auth.enabled` is false, no AUTH).
    pub(crate) tokens: Option<Arc<crate::auth::Tokens>>,
    next_client: AtomicU64,
    pub(crate) clients: Mutex<BTreeMap<u64, ClientView>>,
    /// SCAN cursor → the last key returned (cursors are numbers for
    /// clients, keys for us).
    cursors: Mutex<(u64, BTreeMap<u64, String>, VecDeque<u64>)>,
    pub(crate) started: Instant,
    pub(crate) commands: AtomicU64,
    pub(crate) connections: AtomicU64,
}

impl Server {
    pub fn new(
        cluster: Arc<Cluster>,
        limits: RedisLimits,
        tokens: Option<Arc<crate::auth::Tokens>>,
    ) -> Arc<Server> {
        Arc::new(Server {
            tokens,
            forwarder: crate::net::http_client(cluster.node_http_options()),
            cluster,
            limits,
            next_client: AtomicU64::new(1),
            clients: Mutex::new(BTreeMap::new()),
            cursors: Mutex::new((0, BTreeMap::new(), VecDeque::new())),
            started: Instant::now(),
            commands: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        })
    }

    fn register(&self, addr: String) -> u64 {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().expect("clients lock").insert(
            id,
            ClientView {
                addr,
                proto: 2,
                created: Some(Instant::now()),
                ..ClientView::default()
            },
        );
        id
    }

    fn unregister(&self, id: u64) {
        self.clients.lock().expect("clients lock").remove(&id);
    }

    pub(crate) fn update_client(&self, id: u64, f: impl FnOnce(&mut ClientView)) {
        if let Some(c) = self.clients.lock().expect("clients lock").get_mut(&id) {
            f(c);
        }
    }

    /// A cursor for continuing a SCAN after `key`.
    pub(crate) fn cursor_for(&self, key: String) -> u64 {
        let mut g = self.cursors.lock().expect("cursors lock");
        let (next, map, order) = &mut *g;
        *next += 1;
        // Cursor 0 means "start" / "done": never hand it out.
        let id = *next;
        map.insert(id, key);
        order.push_back(id);
        if order.len() > MAX_CURSORS
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        id
    }

    /// The key a cursor continues after (`Ok(None)` for 0, the start).
    pub(crate) fn cursor_key(&self, cursor: u64) -> Result<Option<String>, ()> {
        if cursor == 0 {
            return Ok(None);
        }
        let g = self.cursors.lock().expect("cursors lock");
        g.1.get(&cursor).cloned().map(Some).ok_or(())
    }
}

/// Serve Redis connections on `listener` until `shutdown`, then drain.
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: CancellationToken,
    opts: ServeOptions,
) -> std::io::Result<()> {
    crate::net::serve_with(
        listener,
        shutdown,
        opts,
        move |stream, peer, activity, stop| conn::run(server.clone(), stream, peer, activity, stop),
    )
    .await
}
