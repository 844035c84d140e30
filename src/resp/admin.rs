//! Server and connection commands: HELLO, SELECT, CLIENT, INFO, CONFIG GET,
//! COMMAND, TIME, WAIT; and the unknown-command error.
//!
//! Invariant: none of these touches the replicated state; they answer from
//! this node's view (INFO's figures are this node's, not linearized).

use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use super::cmd::wrong_args;
use super::reply::Frame;
use super::session::Session;
use super::table::COMMANDS;

/// The version reported to clients (the Redis command set it follows).
pub const REDIS_VERSION: &str = "7.0.0";

pub async fn handle(s: &mut Session, name: &str, args: &[Vec<u8>]) -> Frame {
    if name == "hello" {
        return hello(s, args);
    }
    local(s, name, args).unwrap_or_else(|| unknown(args))
}

/// `-ERR unknown command 'name', with args beginning with: 'a' 'b' `.
pub fn unknown(args: &[Vec<u8>]) -> Frame {
    let show = |a: &[u8]| {
        let t = String::from_utf8_lossy(a);
        t.chars().take(128).collect::<String>()
    };
    let rest: String = args[1..]
        .iter()
        .map(|a| format!("'{}' ", show(a)))
        .collect();
    Frame::err(format!(
        "ERR unknown command '{}', with args beginning with: {rest}",
        show(&args[0])
    ))
}

/// A server command answered here (also inside MULTI); `None` for an
/// unknown command (or one not allowed in MULTI: HELLO).
pub fn local(s: &mut Session, name: &str, args: &[Vec<u8>]) -> Option<Frame> {
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase());
    Some(match name {
        "select" => {
            if args.len() != 2 {
                return Some(Frame::err(wrong_args(name)));
            }
            match crate::kv::redis::parse_i64(&args[1]) {
                None => Frame::err(crate::kv::redis::ERR_NOT_INT),
                Some(0) => Frame::ok(),
                Some(_) => Frame::err("ERR DB index is out of range"),
            }
        }
        "time" => {
            let d = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Frame::Array(vec![
                Frame::bulk(d.as_secs().to_string()),
                Frame::bulk(d.subsec_micros().to_string()),
            ])
        }
        "wait" => {
            if args.len() != 3 {
                return Some(Frame::err(wrong_args(name)));
            }
            // Every acknowledged write is durable on a quorum: the leader
            // and at least half of the other voters.
            let voters = s
                .server
                .cluster
                .status()
                .members
                .iter()
                .filter(|m| m.role == "voter")
                .count();
            Frame::Int((voters / 2) as i64)
        }
        "info" => Frame::text(info(s, sub.as_deref())),
        "config" => config(args, sub.as_deref()),
        "client" => client(s, args, sub.as_deref()),
        "command" => command(args, sub.as_deref()),
        _ => return None,
    })
}

fn hello(s: &mut Session, args: &[Vec<u8>]) -> Frame {
    let mut i = 1;
    if let Some(v) = args.get(1) {
        match crate::kv::redis::parse_i64(v) {
            Some(p @ 2..=3) => s.proto = p as u8,
            Some(_) => return Frame::err("NOPROTO unsupported protocol version"),
            None => {
                return Frame::err("ERR Protocol version is not an integer or out of range");
            }
        }
        i = 2;
    }
    while i < args.len() {
        let o = String::from_utf8_lossy(&args[i]).to_ascii_uppercase();
        match (o.as_str(), args.get(i + 1), args.get(i + 2)) {
            // Checked (and the connection authenticated) by `conn` first.
            ("AUTH", Some(_), Some(_)) => i += 3,
            ("SETNAME", Some(n), _) => {
                s.name = String::from_utf8_lossy(n).into_owned();
                i += 2;
            }
            _ => return Frame::err(format!("ERR Syntax error in HELLO option '{o}'")),
        }
    }
    let (proto, name) = (s.proto, s.name.clone());
    s.server.update_client(s.id, |c| {
        c.proto = proto;
        c.name = name;
    });
    let role = if s.server.cluster.is_leader() {
        "master"
    } else {
        "replica"
    };
    Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(REDIS_VERSION)),
        (Frame::bulk("proto"), Frame::Int(i64::from(s.proto))),
        (Frame::bulk("id"), Frame::Int(s.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk(role)),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ])
}

fn client_line(id: u64, c: &super::ClientView) -> String {
    let age = c.created.map_or(0, |t| t.elapsed().as_secs());
    format!(
        "id={id} addr={} name={} age={age} db=0 cmd={} resp={}\n",
        c.addr, c.name, c.last_cmd, c.proto
    )
}

fn client(s: &mut Session, args: &[Vec<u8>], sub: Option<&str>) -> Frame {
    match (sub, args.len()) {
        (Some("id"), 2) => Frame::Int(s.id as i64),
        (Some("getname"), 2) if s.name.is_empty() => Frame::Nil,
        (Some("getname"), 2) => Frame::text(&s.name),
        (Some("setname"), 3) => {
            let n = &args[2];
            if n.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return Frame::err(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            s.name = String::from_utf8_lossy(n).into_owned();
            let name = s.name.clone();
            s.server.update_client(s.id, |c| c.name = name);
            Frame::ok()
        }
        (Some("info"), 2) => {
            let clients = s.server.clients.lock().expect("clients lock");
            let line = clients
                .get(&s.id)
                .map(|c| client_line(s.id, c))
                .unwrap_or_default();
            Frame::text(line)
        }
        (Some("list"), _) => {
            let clients = s.server.clients.lock().expect("clients lock");
            Frame::text(
                clients
                    .iter()
                    .map(|(id, c)| client_line(*id, c))
                    .collect::<String>(),
            )
        }
        (Some("setinfo" | "no-evict" | "no-touch"), _) => Frame::ok(),
        (Some(x), _) => Frame::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{x}'. Try CLIENT HELP."
        )),
        (None, _) => Frame::err(wrong_args("client")),
    }
}

fn config(args: &[Vec<u8>], sub: Option<&str>) -> Frame {
    match sub {
        Some("get") if args.len() >= 3 => {
            let params = [
                ("save", String::new()),
                ("appendonly", "no".into()),
                ("databases", "1".into()),
                ("maxmemory", "0".into()),
                ("maxmemory-policy", "noeviction".into()),
                ("timeout", "0".into()),
                ("proto-max-bulk-len", "536870912".into()),
            ];
            let mut out = Vec::new();
            for (k, v) in params {
                if args[2..]
                    .iter()
                    .any(|p| crate::kv::glob::matches(&p.to_ascii_lowercase(), k.as_bytes()))
                {
                    out.push((Frame::bulk(k), Frame::bulk(v)));
                }
            }
            Frame::Map(out)
        }
        Some("resetstat") => Frame::ok(),
        Some("set") => Frame::err("ERR CONFIG SET is not supported by dcache: use its config file"),
        Some(x) => Frame::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{x}'. Try CONFIG HELP."
        )),
        None => Frame::err(wrong_args("config")),
    }
}

fn command_info(name: &str) -> Option<Frame> {
    let (n, arity, flags, first, last, step) = COMMANDS.iter().find(|c| c.0 == name)?;
    Some(Frame::Array(vec![
        Frame::bulk(*n),
        Frame::Int(*arity),
        Frame::Array(flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
        Frame::Int(*first),
        Frame::Int(*last),
        Frame::Int(*step),
    ]))
}

fn command(args: &[Vec<u8>], sub: Option<&str>) -> Frame {
    match sub {
        None => Frame::Array(COMMANDS.iter().filter_map(|c| command_info(c.0)).collect()),
        Some("count") => Frame::Int(COMMANDS.len() as i64),
        Some("info") => Frame::Array(
            args[2..]
                .iter()
                .map(|a| {
                    command_info(&String::from_utf8_lossy(a).to_ascii_lowercase())
                        .unwrap_or(Frame::Nil)
                })
                .collect(),
        ),
        // No documentation: redis-cli then shows no hints.
        Some("docs") => Frame::Map(Vec::new()),
        Some(x) => Frame::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{x}'. Try COMMAND HELP."
        )),
    }
}

fn info(s: &Session, section: Option<&str>) -> String {
    let c = &s.server.cluster;
    let st = c.status();
    let cache = c.cache_status();
    let want = |name: &str| {
        section.is_none_or(|x| x == name || x == "all" || x == "default" || x == "everything")
    };
    let mut out = String::new();
    let mut sec = |title: &str, lines: Vec<(String, String)>| {
        if want(&title.to_ascii_lowercase()) {
            out.push_str(&format!("# {title}\r\n"));
            for (k, v) in lines {
                out.push_str(&format!("{k}:{v}\r\n"));
            }
            out.push_str("\r\n");
        }
    };
    let l = |k: &str, v: String| (k.to_string(), v);
    sec(
        "Server",
        vec![
            l("redis_version", REDIS_VERSION.into()),
            l("dcache_version", env!("CARGO_PKG_VERSION").into()),
            l("redis_mode", "standalone".into()),
            l("process_id", std::process::id().to_string()),
            l(
                "tcp_port",
                c.redis_addr()
                    .unwrap_or("")
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .into(),
            ),
            l(
                "uptime_in_seconds",
                s.server.started.elapsed().as_secs().to_string(),
            ),
            l("node_id", st.node_id.clone()),
        ],
    );
    let clients = s.server.clients.lock().expect("clients lock").len();
    sec("Clients", vec![l("connected_clients", clients.to_string())]);
    sec(
        "Memory",
        vec![
            l("used_memory", cache.memory_bytes.to_string()),
            l("maxmemory", cache.max_memory_bytes.to_string()),
            l("maxmemory_policy", cache.eviction_policy.to_string()),
        ],
    );
    sec(
        "Stats",
        vec![
            l(
                "total_connections_received",
                s.server
                    .connections
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            l(
                "total_commands_processed",
                s.server
                    .commands
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            l("keyspace_hits", cache.hits.to_string()),
            l("keyspace_misses", cache.misses.to_string()),
            l("expired_keys", cache.expired_keys.to_string()),
            l("evicted_keys", cache.evicted_keys.to_string()),
        ],
    );
    let role = if st.is_leader { "master" } else { "slave" };
    let voters = st.members.iter().filter(|m| m.role == "voter").count();
    sec(
        "Replication",
        vec![
            l("role", role.into()),
            l("connected_slaves", voters.saturating_sub(1).to_string()),
            l(
                "raft_state",
                format!("{:?}", st.raft_state).to_ascii_lowercase(),
            ),
            l("raft_term", st.term.to_string()),
            l("raft_leader_id", st.leader_id.clone().unwrap_or_default()),
            l("raft_commit_index", st.commit_index.to_string()),
            l("raft_applied_index", st.applied_index.to_string()),
            l("raft_voters", voters.to_string()),
        ],
    );
    let keyspace = if cache.keys > 0 {
        vec![l(
            "db0",
            format!("keys={},expires={},avg_ttl=0", cache.keys, cache.ttl_keys),
        )]
    } else {
        Vec::new()
    };
    sec("Keyspace", keyspace);
    out
}
