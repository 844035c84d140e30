//! The `dcache` binary: run a node (default), load-test a cluster
//! (`dcache bench`), check a node's readiness (`dcache health`), or act as
//! the command-line client (`dcache get|put|del|cluster|member|leader`,
//! module `cli`).
//!
//! Owns signals and exit codes: 0 after a graceful stop, 1 for a start-up
//! failure or a node that failed for good while running, 130 on a second
//! signal. The load generator is a module of the binary, not of the
//! library; it shares only the client with it.

mod bench;
mod cli;

/// jemalloc, not glibc's malloc: after a load of a million keys glibc kept
/// three times the live data resident (freed request buffers interleaved
/// with long-lived items); see docs/BENCHMARKS.md "Memory".
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at start: a background thread returns freed
/// pages to the OS after a second (jemalloc's default is ten seconds, and
/// only when allocation activity runs the decay), so resident memory
/// follows the live data once a load burst is over.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 63] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::Subcommand;
use dcache::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "dcache",
    version,
    about = "A distributed, strongly consistent key-value cache replicated with Raft"
)]
struct Cli {
    /// YAML config file (the seed's `-config FILE` form is accepted too).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    client: cli::Global,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node (the default when no subcommand is given).
    Run,
    /// Load-test a cluster over HTTP and print throughput and latency.
    Bench(bench::BenchArgs),
    /// Exit 0 if the node at --addr is ready (GET /readyz), 1 otherwise.
    Health {
        #[arg(long, default_value = "localhost:11000")]
        addr: String,
    },
    #[command(flatten)]
    Client(cli::Command),
}

/// Accept the seed's single-dash long flags (`-config FILE`).
fn normalize_args() -> Vec<String> {
    std::env::args()
        .map(|a| {
            if a == "-config" || a.starts_with("-config=") {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args());
    let result = match cli.cmd.unwrap_or(Cmd::Run) {
        // A node's configuration sizes its runtime (`node.worker_threads`),
        // so it is loaded before the runtime exists.
        Cmd::Run => match Config::load(cli.config.as_deref(), std::env::vars()) {
            Ok(cfg) => block_on(cfg.node.worker_threads, run(cfg)),
            Err(e) => Ok(Err(e.into())),
        },
        Cmd::Bench(args) => block_on(0, bench(args)),
        Cmd::Health { addr } => block_on(0, health(addr, &cli.client)),
        Cmd::Client(cmd) => {
            return block_on(0, cli::run(cli.client, cmd)).unwrap_or_else(|code| code);
        }
    };
    match result {
        Ok(Ok(code)) | Err(code) => code,
        Ok(Err(e)) => {
            eprintln!("dcache: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` to completion on a multi-thread runtime of `worker_threads`
/// workers (0 = one per core); `Err` with the exit code if the runtime
/// cannot start.
fn block_on<F: Future>(worker_threads: usize, f: F) -> Result<F::Output, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    match builder.enable_all().build() {
        Ok(rt) => Ok(rt.block_on(f)),
        Err(e) => {
            eprintln!("dcache: cannot start the async runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

async fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    dcache::telemetry::init(&cfg.logging, &cfg.node_id());
    let (http, raft) = dcache::node::bind(&cfg).await?;
    let mut node = dcache::node::Node::start(cfg, http, raft)
        .await
        .context("cannot start the node")?;
    tokio::select! {
        r = wait_for_signal() => r?,
        r = reload_on_sighup(node.tls(), node.tokens()) => r?,
        e = node.failed() => {
            tracing::error!(error = %e, "stopping: the node cannot go on");
            node.shutdown(false).await?;
            return Err(anyhow::Error::new(e).context("the node stopped"));
        }
    }
    // A second signal during shutdown exits at once.
    tokio::spawn(async {
        if wait_for_signal().await.is_ok() {
            eprintln!("dcache: second signal, exiting now");
            std::process::exit(130);
        }
    });
    node.shutdown(true).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::SignalKind;
    use tokio::signal::unix::signal;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

/// SIGHUP: reload the TLS certificates and the tokens file, for as long as
/// the node runs. What does not load is kept as it was.
async fn reload_on_sighup(
    tls: Option<Arc<dcache::net::tls::Tls>>,
    tokens: Option<Arc<dcache::auth::Tokens>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::SignalKind;
    use tokio::signal::unix::signal;
    let mut hup = signal(SignalKind::hangup())?;
    while hup.recv().await.is_some() {
        match tls.as_ref().map(|t| t.reload()) {
            Some(Ok(())) => tracing::info!("SIGHUP: TLS certificates reloaded"),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "SIGHUP: certificates not reloaded; the current ones stay")
            }
            None => tracing::info!("SIGHUP: TLS is off; no certificates to reload"),
        }
        match tokens.as_ref().map(|t| t.reload()) {
            Some(Ok(n)) => tracing::info!(tokens = n, "SIGHUP: tokens file reloaded"),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "SIGHUP: tokens file not reloaded; the current tokens stay")
            }
            None => {}
        }
    }
    Ok(())
}

async fn bench(args: bench::BenchArgs) -> anyhow::Result<ExitCode> {
    let report = bench::run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(addr: String, global: &cli::Global) -> anyhow::Result<ExitCode> {
    let tls = global.tls().map_err(anyhow::Error::msg)?;
    let client = dcache::client::Client::with_options(dcache::net::HttpClientOptions {
        tls,
        ..dcache::net::HttpClientOptions::default().timeout(Duration::from_secs(3))
    });
    match client.http().get(client.url(&addr, "/readyz")).send().await {
        Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(r) => {
            eprintln!(
                "dcache: {addr} is not ready: {}",
                r.text().await.unwrap_or_default().trim()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("dcache: cannot reach {addr}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
