//! `dcache cluster status`, `dcache member list|add|promote|remove` and
//! `dcache leader transfer`: the admin routes of README "Operations", and
//! their text form.
//!
//! Not here: key commands and the endpoint loop (`cli/mod.rs`).

use dcache::client::encode_key;
use reqwest::Method;
use serde_json::Value as Json;
use serde_json::json;

use super::Cli;
use super::Done;
use super::Exit;
use super::Failed;
use super::MemberCmd;

impl Cli {
    pub(super) async fn cluster_status(&self) -> Result<Done, Failed> {
        let v = self.json(Method::GET, "/v1/cluster", None).await?;
        Ok(Done::new(cluster_text(&v), v))
    }

    pub(super) async fn transfer_leader(&self, to: Option<String>) -> Result<Done, Failed> {
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

    pub(super) async fn member(&self, cmd: MemberCmd) -> Result<Done, Failed> {
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
            MemberCmd::Promote { id } => self.promote(&id).await,
            MemberCmd::Remove { id } => {
                let path = format!("/v1/cluster/members/{}", encode_key(&id));
                let v = self.json(Method::DELETE, &path, None).await?;
                Ok(Done::new(format!("{id} removed\n"), v))
            }
        }
    }

    /// Make a learner a voter: the add route again, with the address the
    /// cluster already has for it (a join whose catch-up timed out leaves
    /// the node a learner; adding it again promotes it once caught up).
    async fn promote(&self, id: &str) -> Result<Done, Failed> {
        let v = self.json(Method::GET, "/v1/cluster", None).await?;
        let member = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["id"].as_str() == Some(id));
        let Some(m) = member else {
            return Err(Failed {
                exit: Exit::NotFound,
                message: format!("{id} is not a member"),
                code: None,
            });
        };
        if m["role"] == "voter" {
            return Ok(Done::new(format!("{id} is already a voter\n"), m.clone()));
        }
        let addr = m["raft_addr"].as_str().unwrap_or_default();
        let body = json!({ "id": id, "addr": addr });
        let v = self
            .json(Method::POST, "/v1/cluster/members", Some(body))
            .await?;
        Ok(Done::new(format!("{id} is a voter\n"), v))
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
