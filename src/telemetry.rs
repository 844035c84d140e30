//! One tracing subscriber for everything, openraft's events included: text
//! by default, JSON lines with `logging.json`, level from `logging.level`
//! (`RUST_LOG`, if set, overrides it), and a `node_id` field on every line.
//!
//! At `info` and above, openraft logs at `warn` only: its INFO lines (a
//! full `RaftState` dump at start, every election step) drown a new user,
//! while dcache's own lifecycle lines (listening, bootstrapped or joined,
//! leader changes, snapshots) stay at `info`. `debug` and `trace` show
//! everything.
//!
//! Uses: `config`.

use std::fmt;

use tracing::Event;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::FormatEvent;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogLevel;
use crate::config::LoggingConfig;

/// Wraps a formatter and adds `node_id`: as the first field of each JSON
/// object, or after the level in text lines.
struct WithNodeId<F> {
    inner: F,
    node_id: String,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithNodeId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut buf = String::new();
        self.inner.format_event(ctx, Writer::new(&mut buf), event)?;
        if self.json {
            if let Some(rest) = buf.strip_prefix('{') {
                let id = serde_json::to_string(&self.node_id).map_err(|_| fmt::Error)?;
                return write!(writer, "{{\"node_id\":{id},{rest}");
            }
            return writer.write_str(&buf);
        }
        write!(writer, "node_id={} {buf}", self.node_id)
    }
}

/// Install the global subscriber. Call once, from `main`.
pub fn init(cfg: &LoggingConfig, node_id: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(directives(cfg.level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.json {
        let fmt = tracing_subscriber::fmt::format().json().flatten_event(true);
        builder
            .event_format(WithNodeId {
                inner: fmt,
                node_id: node_id.to_string(),
                json: true,
            })
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init();
    } else {
        builder
            .event_format(WithNodeId {
                inner: tracing_subscriber::fmt::format(),
                node_id: node_id.to_string(),
                json: false,
            })
            .init();
    }
}

/// The filter for a configured level (see the module doc).
fn directives(level: LogLevel) -> String {
    match level {
        LogLevel::Trace | LogLevel::Debug | LogLevel::Warn | LogLevel::Error => {
            level.as_str().to_string()
        }
        LogLevel::Info => "info,openraft=warn".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_is_quiet_at_info_only() {
        assert_eq!(directives(LogLevel::Info), "info,openraft=warn");
        assert_eq!(directives(LogLevel::Debug), "debug");
        assert_eq!(directives(LogLevel::Error), "error");
    }
}
