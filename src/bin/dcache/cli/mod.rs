//! The command-line client: `dcache get|put|del|scan|watch|txn|cluster|
//! member|leader|completions`. This file: the commands, the endpoint loop,
//! exit codes and the key commands; `watch` (SSE) and the admin commands
//! are in the submodules.
//!
//! Every command talks HTTP to the nodes named by `--endpoints` (tried in
//! order: the next one only when a node cannot be reached at all; a node
//! that answers forwards to the leader itself, so the leader is followed
//! without the CLI knowing it).
//!
//! Exit codes, so scripts can tell outcomes apart (README "Command-line
//! client"): see [`Exit`].
//!
//! Uses: `dcache::client` (the one HTTP client), `dcache::wire` (codes and
//! their classes). Not here: retries beyond trying the next endpoint.

mod admin;
mod token;
mod watch;

use std::io::Read as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::Args;
use clap::Subcommand;
use clap::ValueEnum;
use dcache::client::Answer;
use dcache::client::Client;
use dcache::client::ClientError;
use dcache::client::Put;
use dcache::client::Read;
use dcache::client::encode_query;
use dcache::wire::Class;
use dcache::wire::Code;
use reqwest::Method;
use serde_json::Value as Json;
use serde_json::json;

/// How the CLI exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Any other failure (bad local input, an answer that makes no sense).
    Failure = 1,
    /// The key (or member) does not exist.
    NotFound = 3,
    /// No endpoint could be reached: nothing was sent.
    Unreachable = 4,
    /// The cluster refused the request: it was not applied (CAS mismatch,
    /// invalid input, conflict, no leader...).
    Refused = 5,
    /// The request may or may not have been applied (timeout, connection
    /// lost after sending).
    Unknown = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Nodes to talk to, comma-separated host:port, tried in order.
    #[arg(
        long,
        global = true,
        env = dcache::config::CLIENT_ENV_VARS[0],
        value_delimiter = ',',
        default_value = "localhost:11000"
    )]
    pub endpoints: Vec<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: Output,
    /// Give up on a request after this long (humantime: `5s`, `500ms`).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Bearer token sent with every request (nodes with `auth.enabled`).
    #[arg(long, global = true, env = dcache::config::CLIENT_ENV_VARS[1], hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster secret, sent with every request: nodes with
    /// `cluster.secret` require it on membership requests (`member add`,
    /// `member remove`).
    #[arg(
        long,
        global = true,
        env = "DCACHE_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
    /// CA certificate (PEM) to trust; with it, requests use https (nodes
    /// with `tls.cert_file`).
    #[arg(long, global = true, env = dcache::config::CLIENT_ENV_VARS[2])]
    pub cacert: Option<std::path::PathBuf>,
    /// Client certificate (PEM) to present (nodes with `tls.client_auth`
    /// optional or required); needs --key and --cacert.
    #[arg(id = "tls_cert", long = "cert", global = true, env = dcache::config::CLIENT_ENV_VARS[3], requires = "tls_key")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(id = "tls_key", long = "key", global = true, env = dcache::config::CLIENT_ENV_VARS[4], requires = "tls_cert")]
    pub key: Option<std::path::PathBuf>,
}

impl Global {
    /// The TLS client configuration the flags ask for (None: plain HTTP).
    pub fn tls(&self) -> Result<Option<dcache::net::tls::ClientTls>, String> {
        let pair = self.cert.as_deref().zip(self.key.as_deref());
        match &self.cacert {
            Some(ca) => dcache::net::tls::ClientTls::from_files(ca, pair)
                .map(Some)
                .map_err(|e| e.to_string()),
            None if pair.is_some() => Err("--cert and --key need --cacert".into()),
            None => Ok(None),
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read a key (linearizable unless --stale). Prints the value.
    Get {
        key: String,
        /// Read this node's state without a round trip (may lag).
        #[arg(long)]
        stale: bool,
    },
    /// Write a key. The value is the argument, or stdin when it is absent or `-`.
    Put {
        key: String,
        value: Option<String>,
        /// Time to live (`500ms`, `30s`, `10m`, `1h`; an integer = seconds).
        #[arg(long)]
        ttl: Option<String>,
        /// Only if the key's modify index is this (0 = only if absent).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Delete a key, or with --prefix every key under a prefix (atomic per
    /// 10,000 keys; repeated until none is left).
    Del {
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        key: Option<String>,
        /// Only if the key's modify index is this.
        #[arg(long, conflicts_with = "prefix")]
        cas: Option<u64>,
        /// Delete every key starting with this (non-empty) prefix.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// List keys under a prefix in key order, following cursors (`ls` too).
    #[command(visible_alias = "ls")]
    Scan {
        /// The prefix (empty: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Stop after this many keys (default: all).
        #[arg(long)]
        limit: Option<u64>,
        /// Keys only, no values.
        #[arg(long)]
        keys_only: bool,
        /// Only count the keys.
        #[arg(long, conflicts_with_all = ["keys_only", "limit"])]
        count: bool,
        /// Read this node's state without a round trip (may lag).
        #[arg(long)]
        stale: bool,
    },
    /// Stream changes under a prefix (put, delete, expire, evict) as they
    /// are applied; resumes on the next endpoint if a node goes away.
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// Start after this Raft index (default: from now).
        #[arg(long)]
        since: Option<u64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Run a transaction (the JSON body of `POST /v1/txn`, README
    /// "Transactions") from a file, or stdin when absent or `-`.
    Txn { file: Option<std::path::PathBuf> },
    /// The cluster as the answering node sees it.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Membership: list, add, promote, remove.
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// Leadership.
    Leader {
        #[command(subcommand)]
        cmd: LeaderCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Bearer tokens (no node is contacted).
    Token {
        #[command(subcommand)]
        cmd: token::TokenCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Leader, term, indexes and members.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Members, their roles and addresses.
    List,
    /// Add a node (it must be running): it joins as a learner, catches up,
    /// and becomes a voter.
    Add {
        id: String,
        /// The node's Raft address, host:port.
        raft_addr: String,
    },
    /// Make a learner (a node whose join did not finish catching up) a
    /// voter.
    Promote { id: String },
    /// Remove a member.
    Remove { id: String },
}

#[derive(Subcommand, Debug)]
pub enum LeaderCmd {
    /// Hand leadership to `--to`, or to the most up-to-date voter.
    Transfer {
        #[arg(long)]
        to: Option<String>,
    },
}

/// What a command prints on success: text for people, JSON for scripts
/// (none for a command that printed as it went, like `watch`).
struct Done {
    text: Vec<u8>,
    json: Option<Json>,
}

impl Done {
    fn new(text: impl Into<Vec<u8>>, json: Json) -> Done {
        Done {
            text: text.into(),
            json: Some(json),
        }
    }

    fn printed() -> Done {
        Done {
            text: Vec::new(),
            json: None,
        }
    }
}

/// A failure and the exit code it maps to.
struct Failed {
    exit: Exit,
    message: String,
    code: Option<Code>,
}

impl From<ClientError> for Failed {
    fn from(e: ClientError) -> Failed {
        let exit = match (&e, e.class()) {
            (ClientError::Connect(_), _) => Exit::Unreachable,
            (_, _) if matches!(e.code(), Some(Code::KeyNotFound | Code::NotFound)) => {
                Exit::NotFound
            }
            (_, Class::NotApplied) => Exit::Refused,
            (_, Class::OutcomeUnknown) => Exit::Unknown,
            (_, Class::Answer) => Exit::Failure,
        };
        Failed {
            exit,
            message: e.to_string(),
            code: e.code(),
        }
    }
}

fn local(message: impl Into<String>) -> Failed {
    Failed {
        exit: Exit::Failure,
        message: message.into(),
        code: None,
    }
}

/// Run one CLI command and return the process exit code.
pub async fn run(global: Global, cmd: Command) -> ExitCode {
    if let Command::Token { cmd } = cmd {
        return token::run(cmd);
    }
    if let Command::Completions { shell } = cmd {
        let mut app = <crate::Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut app, "dcache", &mut script);
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(&script);
        return ExitCode::SUCCESS;
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in [
        (
            "authorization",
            global.token.as_ref().map(|t| format!("Bearer {t}")),
        ),
        (
            dcache::wire::header::CLUSTER_SECRET,
            global.cluster_secret.clone(),
        ),
    ] {
        if let Some(v) = value {
            match reqwest::header::HeaderValue::from_str(&v) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    headers.insert(name, v);
                }
                Err(_) => {
                    eprintln!("dcache: {name} is not a valid header value");
                    return Exit::Failure.into();
                }
            }
        }
    }
    let tls = match global.tls() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dcache: {e}");
            return Exit::Failure.into();
        }
    };
    let http_opts = dcache::net::HttpClientOptions {
        default_headers: headers,
        tls,
        ..dcache::net::HttpClientOptions::default()
    };
    let cli = Cli {
        client: Client::with_options(http_opts.clone().timeout(global.timeout)),
        http_opts,
        endpoints: global.endpoints.clone(),
        output: global.output,
        connect_timeout: global.timeout,
    };
    let result = cli.dispatch(cmd).await;
    let mut out = std::io::stdout().lock();
    match result {
        Ok(done) => {
            let _ = match (global.output, &done.json) {
                (Output::Text, _) => out.write_all(&done.text),
                (Output::Json, Some(j)) => writeln!(out, "{j}"),
                (Output::Json, None) => Ok(()),
            };
            Exit::Ok.into()
        }
        Err(f) => {
            match global.output {
                Output::Text => eprintln!("dcache: {}", f.message),
                Output::Json => {
                    let code = f.code.map(|c| c.as_str());
                    let _ = writeln!(
                        out,
                        "{}",
                        json!({"error": f.message, "code": code, "exit": f.exit as u8})
                    );
                }
            }
            f.exit.into()
        }
    }
}

struct Cli {
    client: Client,
    /// The client's options without its per-request timeout (streams).
    http_opts: dcache::net::HttpClientOptions,
    endpoints: Vec<String>,
    output: Output,
    connect_timeout: Duration,
}

/// `DELETE /v1/kv?prefix=` requests one `del --prefix` makes at most
/// (10,000 keys each).
const MAX_PREFIX_DELETES: usize = 10_000;
/// Keys a scan page asks for.
const SCAN_PAGE: u64 = 1_000;

impl Cli {
    /// `method path` on the first endpoint that can be reached.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, Failed> {
        self.each(|addr| {
            let (client, method, path, body) = (
                self.client.clone(),
                method.clone(),
                path.to_string(),
                body.clone(),
            );
            async move { client.call(method, &addr, &path, body).await }
        })
        .await
    }

    /// `f` on each endpoint in turn until one can be reached.
    async fn each<T, F, Fut>(&self, f: F) -> Result<T, Failed>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut last = None;
        for addr in &self.endpoints {
            match f(addr.clone()).await {
                Err(ClientError::Connect(e)) => last = Some(format!("{addr}: {e}")),
                r => return r.map_err(Failed::from),
            }
        }
        Err(Failed {
            exit: Exit::Unreachable,
            message: format!(
                "no endpoint could be reached ({})",
                last.unwrap_or_else(|| "none given".into())
            ),
            code: None,
        })
    }

    async fn json(&self, method: Method, path: &str, body: Option<Json>) -> Result<Json, Failed> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let a = self.call(method, path, body).await?;
        if a.body.is_empty() {
            return Ok(Json::Null);
        }
        serde_json::from_slice(&a.body).map_err(|e| local(format!("{path}: not JSON: {e}")))
    }

    async fn dispatch(&self, cmd: Command) -> Result<Done, Failed> {
        match cmd {
            Command::Get { key, stale } => self.get(&key, stale).await,
            Command::Put {
                key,
                value,
                ttl,
                cas,
            } => self.put(&key, value, Put { cas, ttl }).await,
            Command::Del {
                key: Some(key),
                cas,
                prefix: None,
            } => self.del(&key, cas).await,
            Command::Del {
                prefix: Some(prefix),
                ..
            } => self.del_prefix(&prefix).await,
            Command::Del { .. } => Err(local("give a key or --prefix")),
            Command::Scan {
                prefix,
                limit,
                keys_only,
                count,
                stale,
            } => self.scan(&prefix, limit, keys_only, count, stale).await,
            Command::Watch {
                prefix,
                since,
                count,
            } => self.watch(&prefix, since, count).await,
            Command::Txn { file } => self.txn(file).await,
            Command::Cluster {
                cmd: ClusterCmd::Status,
            } => self.cluster_status().await,
            Command::Member { cmd } => self.member(cmd).await,
            Command::Leader {
                cmd: LeaderCmd::Transfer { to },
            } => self.transfer_leader(to).await,
            Command::Completions { .. } | Command::Token { .. } => {
                unreachable!("handled before dispatch")
            }
        }
    }

    async fn get(&self, key: &str, stale: bool) -> Result<Done, Failed> {
        let read = if stale {
            Read::Stale
        } else {
            Read::Linearizable
        };
        let found = self
            .each(|addr| {
                let client = self.client.clone();
                let key = key.to_string();
                async move { client.get(&addr, &key, read).await }
            })
            .await?;
        let Some(v) = found else {
            return Err(Failed {
                exit: Exit::NotFound,
                message: format!("key {key:?} not found"),
                code: Some(Code::KeyNotFound),
            });
        };
        let mut j = json!({ "key": key, "modify_index": v.modify_index });
        match std::str::from_utf8(&v.value) {
            Ok(s) => j["value"] = json!(s),
            Err(_) => j["value_base64"] = json!(STANDARD.encode(&v.value)),
        }
        if let Some(at) = &v.expires_at {
            j["expires_at"] = json!(at);
        }
        if let Some(ms) = v.ttl_ms {
            j["ttl_ms"] = json!(ms);
        }
        let mut text = v.value.to_vec();
        text.push(b'\n');
        Ok(Done::new(text, j))
    }

    async fn put(&self, key: &str, value: Option<String>, opts: Put) -> Result<Done, Failed> {
        let value = match value.as_deref() {
            None | Some("-") => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| local(format!("reading the value from stdin: {e}")))?;
                Bytes::from(buf)
            }
            Some(v) => Bytes::from(v.to_string()),
        };
        let index = self
            .each(|addr| {
                let (client, key, value, opts) = (
                    self.client.clone(),
                    key.to_string(),
                    value.clone(),
                    opts.clone(),
                );
                async move { client.put_with(&addr, &key, value, &opts).await }
            })
            .await?;
        Ok(Done::new(
            format!("OK (modify index {index})\n"),
            json!({ "key": key, "modify_index": index }),
        ))
    }

    async fn del(&self, key: &str, cas: Option<u64>) -> Result<Done, Failed> {
        let existed = self
            .each(|addr| {
                let (client, key) = (self.client.clone(), key.to_string());
                async move { client.delete(&addr, &key, cas).await }
            })
            .await?;
        let text = if existed {
            "deleted\n"
        } else {
            "no such key (nothing deleted)\n"
        };
        Ok(Done::new(text, json!({ "key": key, "deleted": existed })))
    }

    async fn del_prefix(&self, prefix: &str) -> Result<Done, Failed> {
        if prefix.is_empty() {
            return Err(local("--prefix must not be empty"));
        }
        let path = format!("/v1/kv?prefix={}", encode_query(prefix));
        let mut deleted = 0;
        for _ in 0..MAX_PREFIX_DELETES {
            let v = self.json(Method::DELETE, &path, None).await?;
            deleted += v["deleted"].as_u64().unwrap_or(0);
            if v["more"].as_bool() != Some(true) {
                return Ok(Done::new(
                    format!("deleted {deleted} keys\n"),
                    json!({ "prefix": prefix, "deleted": deleted }),
                ));
            }
        }
        Err(local(format!(
            "keys under {prefix:?} keep coming: {deleted} deleted in {MAX_PREFIX_DELETES} requests"
        )))
    }

    async fn scan(
        &self,
        prefix: &str,
        limit: Option<u64>,
        keys_only: bool,
        count: bool,
        stale: bool,
    ) -> Result<Done, Failed> {
        let mut base = format!("/v1/kv?prefix={}", encode_query(prefix));
        if stale {
            base.push_str("&consistency=stale");
        }
        if count {
            let v = self
                .json(Method::GET, &format!("{base}&count=true"), None)
                .await?;
            let n = v["count"].as_u64().unwrap_or(0);
            return Ok(Done::new(format!("{n}\n"), v));
        }
        if keys_only {
            base.push_str("&keys_only=true");
        }
        let (mut kvs, mut cursor, mut index) = (Vec::new(), None::<String>, Json::Null);
        loop {
            let left = limit.map_or(SCAN_PAGE, |l| l.saturating_sub(kvs.len() as u64));
            if left == 0 {
                break;
            }
            let mut path = format!("{base}&limit={}", left.min(SCAN_PAGE));
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode_query(c)));
            }
            let page = self.json(Method::GET, &path, None).await?;
            index = page["index"].clone();
            kvs.extend(page["kvs"].as_array().cloned().unwrap_or_default());
            match page["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut text = String::new();
        for kv in &kvs {
            let key = kv["key"].as_str().unwrap_or_default();
            match (keys_only, kv["value"].as_str(), kv["value_base64"].as_str()) {
                (true, _, _) => text.push_str(&format!("{key}\n")),
                (false, Some(v), _) => text.push_str(&format!("{key}\t{v}\n")),
                (false, None, Some(b)) => text.push_str(&format!("{key}\tbase64:{b}\n")),
                (false, None, None) => text.push_str(&format!("{key}\n")),
            }
        }
        Ok(Done::new(text, json!({ "kvs": kvs, "index": index })))
    }

    async fn txn(&self, file: Option<std::path::PathBuf>) -> Result<Done, Failed> {
        let body = match file.as_deref() {
            None => read_stdin()?,
            Some(p) if p.as_os_str() == "-" => read_stdin()?,
            Some(p) => {
                std::fs::read(p).map_err(|e| local(format!("reading {}: {e}", p.display())))?
            }
        };
        let a = self
            .call(Method::POST, "/v1/txn", Some(Bytes::from(body)))
            .await?;
        let v: Json =
            serde_json::from_slice(&a.body).map_err(|e| local(format!("txn answer: {e}")))?;
        let mut text = if v["succeeded"].as_bool() == Some(true) {
            "SUCCESS".to_string()
        } else {
            "FAILURE".to_string()
        };
        text.push_str(&format!(" (index {})\n", v["index"]));
        for r in v["results"].as_array().into_iter().flatten() {
            text.push_str(&format!("{r}\n"));
        }
        Ok(Done::new(text, v))
    }
}

fn read_stdin() -> Result<Vec<u8>, Failed> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| local(format!("reading stdin: {e}")))?;
    Ok(buf)
}
