//! `dcache watch`: follows `GET /v1/watch` (Server-Sent Events), printing
//! each change, and resumes after the last index it saw on the next
//! endpoint when a connection is lost or the server cuts a slow watcher.
//!
//! Owns the incremental SSE parser. Not here: the other commands
//! (`cli/mod.rs`), the wire format of events (README "Watch").

use std::io::Write as _;
use std::time::Duration;

use dcache::client::Client;
use dcache::client::encode_query;
use serde_json::Value as Json;

use super::Cli;
use super::Done;
use super::Exit;
use super::Failed;
use super::Output;
use super::local;

impl Cli {
    /// Follow `GET /v1/watch`, printing each change as it comes; on a lost
    /// connection or a `cut`, resume after the last index seen, on the
    /// next endpoint.
    pub(super) async fn watch(
        &self,
        prefix: &str,
        since: Option<u64>,
        count: Option<u64>,
    ) -> Result<Done, Failed> {
        use futures_util::StreamExt as _;
        let client =
            Client::with_options(self.http_opts.clone().connect_timeout(self.connect_timeout));
        let http = client.http();
        let (mut last, mut seen, mut failures) = (since, 0u64, 0usize);
        let mut endpoints = self.endpoints.iter().cycle();
        loop {
            let addr = endpoints.next().ok_or_else(|| local("no endpoint"))?;
            let mut url = client.url(addr, &format!("/v1/watch?prefix={}", encode_query(prefix)));
            if let Some(n) = last {
                url.push_str(&format!("&since={n}"));
            }
            let resp = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    let (status, headers) = (r.status(), r.headers().clone());
                    let body = r.bytes().await.unwrap_or_default();
                    return Err(Client::failure_of(status, &headers, &body).into());
                }
                Err(e) => {
                    failures += 1;
                    if failures >= self.endpoints.len() * 3 {
                        return Err(Failed {
                            exit: Exit::Unreachable,
                            message: format!("no endpoint serves the watch ({addr}: {e})"),
                            code: None,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            failures = 0;
            let mut sse = Sse::default();
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                for ev in sse.feed(&chunk) {
                    if ev.event == "cut" {
                        if let Some(n) = serde_json::from_str::<Json>(&ev.data)
                            .ok()
                            .and_then(|v| v["last_index"].as_u64())
                        {
                            last = Some(n);
                        }
                        continue;
                    }
                    if let Some(id) = ev.id {
                        last = Some(id);
                    }
                    let Ok(data) = serde_json::from_str::<Json>(&ev.data) else {
                        continue;
                    };
                    for change in data["events"].as_array().into_iter().flatten() {
                        self.print_change(&data["index"], change);
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            return Ok(Done::printed());
                        }
                    }
                }
            }
        }
    }

    fn print_change(&self, index: &Json, change: &Json) {
        let mut out = std::io::stdout().lock();
        let _ = match self.output {
            Output::Json => {
                let mut c = change.clone();
                c["index"] = index.clone();
                writeln!(out, "{c}")
            }
            Output::Text => {
                let kind = change["type"].as_str().unwrap_or("?");
                let key = change["key"].as_str().unwrap_or("?");
                match (change["value"].as_str(), change["value_base64"].as_str()) {
                    (Some(v), _) => writeln!(out, "{index} {kind} {key} {v}"),
                    (None, Some(b)) => writeln!(out, "{index} {kind} {key} base64:{b}"),
                    _ => writeln!(out, "{index} {kind} {key}"),
                }
            }
        };
        let _ = out.flush();
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct Event {
    id: Option<u64>,
    event: String,
    data: String,
}

/// An incremental Server-Sent Events parser (lines `id:`, `event:`,
/// `data:`; an empty line ends an event; `:` lines are comments).
#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    cur: Event,
}

impl Sse {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut done = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_string();
            self.line.clear();
            if line.is_empty() {
                let ev = std::mem::take(&mut self.cur);
                if !ev.data.is_empty() || !ev.event.is_empty() {
                    done.push(ev);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.cur.id = value.parse().ok(),
                "event" => self.cur.event = value.to_string(),
                "data" => {
                    if !self.cur.data.is_empty() {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                }
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_parsed_across_chunk_boundaries() {
        let mut p = Sse::default();
        let mut all = p.feed(b": keepalive\n\nid: 58\nevent: kv\nda");
        assert!(all.is_empty());
        all.extend(p.feed(b"ta: {\"index\":58}\r\n\nevent: cut\ndata: {}\n\n"));
        assert_eq!(
            all,
            vec![
                Event {
                    id: Some(58),
                    event: "kv".into(),
                    data: "{\"index\":58}".into()
                },
                Event {
                    id: None,
                    event: "cut".into(),
                    data: "{}".into()
                }
            ]
        );
    }
}
