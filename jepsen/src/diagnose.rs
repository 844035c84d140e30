//! What a failed recovery prints, so that a CI log (where the run's
//! directory is gone) shows why: each node's Raft view (`/v1/cluster`) and
//! the last notable lines of its log (warnings, errors, joins, membership),
//! without the noise of a faulted run (unreachable peers, pre-votes).

use std::path::Path;

use crate::client::Api;
use crate::db::Db;

/// Notable lines printed per node.
const LINES: usize = 25;
/// Characters kept of one line.
const LINE_CHARS: usize = 400;

/// Print every node's Raft view and notable log lines.
pub async fn print_nodes(api: &Api, db: &tokio::sync::Mutex<Db>) {
    let n = db.lock().await.n();
    for i in 1..=n {
        let view = match api.json(&Db::http(i), "/v1/cluster").await {
            Some(v) => {
                let members: Vec<String> = v["members"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .map(|m| format!("{}:{}", m["id"], m["role"]).replace('"', ""))
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{} term {} leader {} applied {} commit {} last {} members [{}] settled {} fatal {} refused_rpcs {}",
                    v["raft_state"],
                    v["term"],
                    v["leader_id"],
                    v["applied_index"],
                    v["commit_index"],
                    v["last_log_index"],
                    members.join(" "),
                    v["membership_settled"],
                    v["fatal"],
                    v["refused_rpcs"]
                )
            }
            None => "no answer to /v1/cluster".into(),
        };
        println!("dcache-jepsen: n{i}: {view}");
        let path = db.lock().await.procs.log_path(i);
        for line in notable(&path) {
            println!("    n{i}| {line}");
        }
    }
}

/// The last [`LINES`] notable lines of a node's log.
fn notable(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read(path) else {
        return vec![format!("(cannot read {})", path.display())];
    };
    let text = String::from_utf8_lossy(&text);
    let keep = |l: &&str| {
        let wanted = [
            "WARN", "ERROR", "panic", "join", "member", "learner", "fatal",
        ]
        .iter()
        .any(|w| l.contains(w));
        let noise = [
            "Unreachable",
            "pre-vote",
            "heartbeat",
            "SECURITY",
            "cannot connect to the leader",
        ]
        .iter()
        .any(|w| l.contains(w));
        wanted && !noise
    };
    let lines: Vec<&str> = text.lines().filter(keep).collect();
    crate::db::last_lines(&lines, LINES, LINE_CHARS)
}
