//! The tarkd binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tarkd::config::Config;

/// tarkd: runs tark's WebAssembly plugins, each in its own sandboxed worker.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Config file (TOML). Default: /etc/tarkd/tarkd.toml if it exists.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Zero-configuration mode: user-level paths (XDG), the bundled example plugins
    /// installed, no root needed.
    #[arg(long)]
    dev: bool,
    /// Overrides the config's socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Overrides the config's state_dir.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Overrides the config's plugins_dir.
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
    /// Log lines as text (default) or as one JSON object each, for journald
    /// and log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

const SYSTEM_CONFIG: &str = "/etc/tarkd/tarkd.toml";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARKD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // Each live worker holds a few descriptors in tarkd (its two channels and
    // its process): take the hard limit, not the default soft 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files"),
        Err(e) => tracing::warn!("raising the open-files limit: {e}"),
    }
    let mut config = match (&args.config, args.dev) {
        (Some(path), _) => Config::load(path)?,
        (None, true) => Config::dev(),
        (None, false) if std::path::Path::new(SYSTEM_CONFIG).exists() => {
            Config::load(std::path::Path::new(SYSTEM_CONFIG))?
        }
        (None, false) => Config::default(),
    };
    if args.dev && args.config.is_some() {
        tracing::info!("--dev with --config: the config's paths are used");
    }
    if let Some(s) = args.socket {
        config.socket = s;
    }
    if let Some(d) = args.state_dir {
        config.state_dir = d;
    }
    if let Some(d) = args.plugins_dir {
        config.plugins_dir = d;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let started = tarkd::server::start(config, args.dev).await?;
        tarkd::server::serve(started, shutdown_signal())
            .await
            .context("serving the agent API")
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
