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
    /// Checks the config (and that tark-worker is where it says) and exits:
    /// 0 if tarkd would start with it, 1 with the reason otherwise.
    #[arg(long)]
    check_config: bool,
    /// Checks what this host gives tarkd's sandbox (namespaces, landlock,
    /// seccomp, cgroups, the worker, the state dir, the socket's group), one
    /// line each, and exits: 1 if something the config requires is missing.
    #[arg(long)]
    check_host: bool,
    /// Packaging: writes tarkd's man page and shell completions into DIR.
    #[arg(long, hide = true, value_name = "DIR")]
    generate_assets: Option<PathBuf>,
}

/// The man page (section 8) and bash, zsh and fish completions, for the package.
fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(Args::command().name("tarkd"))
        .section("8")
        .render(&mut page)?;
    std::fs::write(dir.join("tarkd.8"), page)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Args::command(), "tarkd", dir)?;
    }
    Ok(())
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

const SYSTEM_CONFIG: &str = "/etc/tarkd/tarkd.toml";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.generate_assets {
        return generate_assets(dir).with_context(|| format!("writing to {}", dir.display()));
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARKD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        // Plugins' text is escaped: one event, one line.
        LogFormat::Text => logs
            .fmt_fields(tarkd::logs::EscapedFields::default())
            .init(),
        LogFormat::Json => logs.json().init(),
    }
    // Each live worker holds a few descriptors in tarkd (its two channels and
    // its process): take the hard limit, not the default soft 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files"),
        Err(e) => tracing::warn!("raising the open-files limit: {e}"),
    }
    // Workers inherit RLIMIT_NICE: at 20 one demoted to idle priority for a
    // heavy call may return to nice 0 after a light one (never below 0).
    // The unit sets it (LimitNICE=+0); root without it can.
    if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NICE)
        && soft < 20
        && let Err(e) = rlimit::setrlimit(rlimit::Resource::NICE, 20, hard.max(20))
    {
        tracing::warn!(
            "RLIMIT_NICE is {soft}: a worker demoted for a heavy call stays at idle priority until restarted ({e})"
        );
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
    if args.check_host {
        let findings = tarkd::hostcheck::run(&config);
        for f in &findings {
            println!("{f}");
        }
        let failed = findings.iter().filter(|f| f.fails()).count();
        anyhow::ensure!(
            failed == 0,
            "{failed} required item(s) missing on this host"
        );
        return Ok(());
    }
    if args.check_config {
        let worker = tarkd::server::worker_path(&config)?;
        anyhow::ensure!(
            worker.is_file(),
            "tark-worker not found at {} (set worker_path)",
            worker.display()
        );
        println!(
            "config ok: socket {}, state {}, plugins {}, worker {}",
            config.socket.display(),
            config.state_dir.display(),
            config.plugins_dir.display(),
            worker.display()
        );
        return Ok(());
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
