//! One connection's state: who it is (id, name, protocol version,
//! the token it authenticated with)
//! and its transaction in progress (the MULTI queue, the WATCHed keys).
//!
//! Its own file so that `conn` (which runs commands on it) and `admin`
//! (HELLO, CLIENT: which read and set the connection's name and protocol)
//! share it without importing each other.

use std::sync::Arc;

use super::Server;
use crate::kv::redis::MultiOp;
use crate::kv::redis::Watched;

pub struct Session {
    pub(crate) server: Arc<Server>,
    pub(crate) id: u64,
    /// 2 or 3 (HELLO).
    pub(crate) proto: u8,
    /// CLIENT SETNAME / HELLO SETNAME.
    pub(crate) name: String,
    /// Commands queued since MULTI (None outside a transaction).
    pub(super) multi: Option<Vec<MultiOp>>,
    /// A command failed to queue: EXEC answers EXECABORT.
    pub(super) multi_failed: bool,
    /// WATCHed keys with the modify index seen.
    pub(super) watch: Vec<Watched>,
    /// Who AUTH said the connection is (`auth`).
    pub(super) login: super::auth::Login,
}

impl Session {
    /// A fresh RESP2 connection, registered with the server as `id`.
    pub(super) fn new(server: Arc<Server>, id: u64) -> Session {
        Session {
            server,
            id,
            proto: 2,
            name: String::new(),
            multi: None,
            multi_failed: false,
            watch: Vec::new(),
            login: super::auth::Login::default(),
        }
    }
}
