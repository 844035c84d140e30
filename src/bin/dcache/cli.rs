//! The command-line client: `dcache get|put|del|cluster|member|leader|completions`.
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
use dcache::client::encode_key;
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
    /// Delete a key.
    Del {
        key: String,
        /// Only if the key's modify index is this.
        #[arg(long)]
        cas: Option<u64>,
    },
    /// The cluster as the answering node sees it.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Membership: list, add, remove.
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

/// What a command prints on success: text for people, JSON for scripts.
struct Done {
    text: Vec<u8>,
    json: Json,
}

impl Done {
    fn new(text: impl Into<Vec<u8>>, json: Json) -> Done {
        Done {
            text: text.into(),
            json,
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
    if let Command::Completions { shell } = cmd {
        let mut app = <crate::Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut app, "dcache", &mut script);
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(&script);
        return ExitCode::SUCCESS;
    }
    let cli = Cli {
        client: Client::new(global.timeout),
        endpoints: global.endpoints.clone(),
    };
    let result = cli.dispatch(cmd).await;
    let mut out = std::io::stdout().lock();
    match result {
        Ok(done) => {
            let _ = match global.output {
                Output::Text => out.write_all(&done.text),
                Output::Json => writeln!(out, "{}", done.json),
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
    endpoints: Vec<String>,
}

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
            Command::Del { key, cas } => self.del(&key, cas).await,
            Command::Cluster {
                cmd: ClusterCmd::Status,
            } => {
                let v = self.json(Method::GET, "/v1/cluster", None).await?;
                Ok(Done::new(cluster_text(&v), v))
            }
            Command::Member { cmd } => self.member(cmd).await,
            Command::Leader {
                cmd: LeaderCmd::Transfer { to },
            } => {
                let body = to.map(|t| json!({ "to": t }));
                let v = self
                    .json(Method::POST, "/v1/cluster/transfer-leader", body)
                    .await?;
                let text = match v["leader"].as_str().or(v["to"].as_str()) {
                    Some(l) => format!("leadership handed to {l}\n"),
                    None => "leadership handed over\n".to_string(),
                };
                Ok(Done::new(text, v))
            }
            Command::Completions { .. } => unreachable!("handled before dispatch"),
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

    async fn member(&self, cmd: MemberCmd) -> Result<Done, Failed> {
        match cmd {
            MemberCmd::List => {
                let v = self.json(Method::GET, "/v1/cluster", None).await?;
                let members = v["members"].clone();
                Ok(Done::new(members_text(&v), members))
            }
            MemberCmd::Add { id, raft_addr } => {
                let body = json!({ "id": id, "addr": raft_addr });
                let v = self
                    .json(Method::POST, "/v1/cluster/members", Some(body))
                    .await?;
                Ok(Done::new(format!("{id} is a voter\n"), v))
            }
            MemberCmd::Remove { id } => {
                let path = format!("/v1/cluster/members/{}", encode_key(&id));
                let v = self.json(Method::DELETE, &path, None).await?;
                Ok(Done::new(format!("{id} removed\n"), v))
            }
        }
    }
}

fn members_text(v: &Json) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:<22} {:<22} {}\n",
        "ID", "ROLE", "RAFT", "HTTP", "MATCHED"
    );
    let leader = v["leader_id"].as_str();
    for m in v["members"].as_array().into_iter().flatten() {
        let id = m["id"].as_str().unwrap_or("?");
        let role = match (m["role"].as_str().unwrap_or("?"), Some(id) == leader) {
            (_, true) => "leader",
            (r, false) => r,
        };
        let matched = m["matched_index"]
            .as_u64()
            .map_or("-".to_string(), |i| i.to_string());
        out.push_str(&format!(
            "{:<12} {:<8} {:<22} {:<22} {}\n",
            id,
            role,
            m["raft_addr"].as_str().unwrap_or("?"),
            m["http_addr"].as_str().unwrap_or("?"),
            matched
        ));
    }
    out
}

fn cluster_text(v: &Json) -> String {
    let leader = v["leader_id"].as_str().unwrap_or("(none)");
    format!(
        "node {} ({}), leader {leader}, term {}\ncommit {} applied {} last log {}\n\n{}",
        v["node_id"].as_str().unwrap_or("?"),
        v["raft_state"].as_str().unwrap_or("?"),
        v["term"],
        v["commit_index"],
        v["applied_index"],
        v["last_log_index"],
        members_text(v)
    )
}
