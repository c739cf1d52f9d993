//! tarkctl: the operator's CLI for tarkd. A thin client of the agent API: anything
//! it does, the agent can do through the same RPCs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tonic::transport::{Channel, Endpoint};

mod auth;
mod channels;
mod conformance;
mod grants;
mod hooks;
mod new;
mod plugins;
mod providers;
mod redirect;
mod render;
mod source;
mod trust;
use plugins::PluginCommand;
use render::{print_json, print_status, print_table, risk_name, status_json};

#[derive(Parser, Debug)]
#[command(version, about = "Operate tarkd, the tark plugin supervisor")]
struct Cli {
    /// tarkd's socket. Default: $TARKD_SOCKET, else the `tarkd --dev` socket if it
    /// exists, else /run/tarkd/tarkd.sock.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print JSON instead of tables (`conformance --json=FILE`: write the
    /// report to FILE).
    #[arg(long = "json", global = true, num_args = 0..=1, require_equals = true, value_name = "FILE")]
    json_to: Option<Option<PathBuf>>,
    /// Act for this tenant, one of yours (default: your first; for an admin, "default").
    #[arg(long, global = true)]
    tenant: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// tarkd and each plugin: state, pid, restarts, calls, last error.
    Status,
    /// Stop a plugin's workers and clear its failures; the next call starts fresh.
    Restart { plugin: String },
    /// Installed plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Tools offered by tool plugins.
    Tools,
    /// Run a tool.
    Invoke {
        tool: String,
        /// Arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
    },
    /// LLM provider plugins.
    Providers,
    /// The models a provider plugin offers.
    Models { plugin: String },
    /// Send one message to a provider plugin and print its reply.
    Chat {
        plugin: String,
        #[arg(long)]
        model: String,
        /// Print the reply as it arrives.
        #[arg(long)]
        stream: bool,
        message: String,
    },
    /// Sign in through an auth plugin or a plugin's `[oauth]` (login shows the
    /// device code and URL and waits, or for `pkce` opens a loopback listener on
    /// the manifest's redirect_uri and hands the code to tarkd), or show or end a
    /// sign-in.
    Auth {
        plugin: String,
        /// status, login or logout.
        #[arg(default_value = "status")]
        action: String,
    },
    /// Channel plugins, and whether each is started.
    Channels,
    /// Start, stop, poll, watch or send through a channel plugin.
    Channel {
        plugin: String,
        /// start, stop, poll, watch (inbound messages as they arrive) or send.
        action: String,
        /// send: the conversation to send to.
        #[arg(long)]
        to: Option<String>,
        /// start: the channel's configuration (JSON).
        #[arg(long, default_value = "{}")]
        config: String,
        /// send: the text.
        message: Option<String>,
    },
    /// Send an event to every hook plugin and show each one's decision. EVENT is
    /// before-tool ({"tool":…,"arguments":{…}}), after-tool ({"tool":…,"result":…}),
    /// error ({"error":…}) or any other event name.
    Hook {
        event: String,
        /// The event's JSON payload.
        #[arg(long, default_value = "{}", conflicts_with = "payload_file")]
        payload: String,
        /// The payload from this JSON file instead (tau's `--payload-file`).
        #[arg(long)]
        payload_file: Option<std::path::PathBuf>,
        /// Only this hook plugin runs (tau's exec of one extension's hook).
        #[arg(long)]
        plugin: Option<String>,
    },
    /// Recent refusals of plugins' host calls, and counts per plugin and capability.
    Audit {
        /// Only this plugin's.
        #[arg(long)]
        plugin: Option<String>,
        /// How many recent entries.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// tarkd's Prometheus metrics, as a scrape of `[metrics] listen` would see
    /// them (admins only).
    Metrics,
    /// What this host gives the running tarkd's sandbox, as tarkd sees it
    /// under its unit and in its cgroup: one line per layer and requirement
    /// (`ok`, `degraded (why; how to fix)`, `missing (why)`); exits non-zero
    /// when something tarkd's config requires is missing. `tarkd --check-host`
    /// asks the same before tarkd runs.
    Doctor,
    /// Packaging: writes tarkctl's man page and shell completions into DIR.
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
    /// Make an ed25519 signing key: OUT (secret, 0600) and OUT.pub. Needs no
    /// tarkd: keep the secret key where plugins are built, not where they run.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// The keys tarkd trusts plugin packages to be signed with.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Check a plugin keeps its contract: installed into a private tarkd (what
    /// it declares approved), each export of its world called with valid and
    /// invalid input, limits, capabilities used and crashes judged. Fails if a
    /// check fails; `--json=FILE` writes the report (id, status, detail per
    /// check) to FILE.
    Conformance {
        /// A plugin folder, or an installed plugin's id.
        plugin: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TrustCommand {
    /// Trust a public key (a file from keygen, or hex).
    Add {
        key: String,
        /// RFC 3339 time after which its signatures are refused.
        #[arg(long)]
        expires: Option<String>,
        /// The key id this key replaces; the old key verifies nothing after.
        #[arg(long)]
        rotate_from: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Every trusted key, with its expiry, revocation and rotation.
    List,
    /// Revoke a key for good: plugins signed with it stop serving.
    Revoke { key_id: String },
}

/// The first socket that exists of: $TARKD_SOCKET, then where `tarkd --dev` puts it
/// ($XDG_RUNTIME_DIR/tarkd.sock, else $XDG_STATE_HOME/tarkd/tarkd.sock), then the
/// system service's /run/tarkd/tarkd.sock.
fn default_socket() -> PathBuf {
    if let Some(s) = std::env::var_os("TARKD_SOCKET") {
        return PathBuf::from(s);
    }
    // As tarkd --dev reads them: unset, empty or relative XDG variables are ignored.
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let state_home = var("XDG_STATE_HOME").or_else(|| var("HOME").map(|h| h.join(".local/state")));
    let candidates = [
        var("XDG_RUNTIME_DIR").map(|d| d.join("tarkd.sock")),
        state_home.map(|d| d.join("tarkd/tarkd.sock")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/run/tarkd/tarkd.sock"))
}

async fn connect(path: PathBuf) -> anyhow::Result<Channel> {
    let shown = path.display().to_string();
    Endpoint::from_static("http://tarkd")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("cannot reach tarkd at {shown} (is it running? try --socket)"))
}

/// The man page (section 1) and bash, zsh and fish completions, for the package.
fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    std::fs::write(dir.join("tarkctl.1"), page)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "tarkctl", dir)?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Piped into `head`, tarkctl ends quietly as other Unix tools do, instead
    // of panicking on a closed stdout (Rust ignores SIGPIPE by default).
    // SAFETY: no other thread runs yet, and SIG_DFL installs no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse();
    let json = cli.json_to.is_some();
    if let Command::Conformance { plugin } = &cli.command {
        return conformance(&cli, plugin, json);
    }
    let offline = match &cli.command {
        Command::Keygen { out } => Some(trust::keygen(out, json)),
        Command::Plugin(PluginCommand::Sign { key, dir }) => Some(trust::sign(key, dir, json)),
        Command::Plugin(PluginCommand::New {
            name,
            kind,
            dir,
            sdk_path,
        }) => Some(new::run(name, *kind, dir.clone(), sdk_path.clone(), json)),
        _ => None,
    };
    if let Some(done) = offline {
        return match done {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tarkctl: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Command::GenerateAssets { dir } = &cli.command {
        return match generate_assets(dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tarkctl: {}: {e}", dir.display());
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tarkctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tarkctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn conformance(cli: &Cli, plugin: &str, json: bool) -> std::process::ExitCode {
    // The private tarkd's connection may be written to after it stopped: an
    // error for that connection, not the end of tarkctl.
    // SAFETY: no other thread runs yet, and SIG_IGN installs no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let file = cli.json_to.clone().flatten();
    let socket = cli.socket.clone().unwrap_or_else(default_socket);
    let ran = runtime
        .map_err(anyhow::Error::from)
        .and_then(|r| r.block_on(conformance::run(plugin, socket, json, file.as_deref())));
    match ran {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tarkctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Turns a gRPC status into one readable line.
fn status_error(s: tonic::Status) -> anyhow::Error {
    if let Some(why) = refused_connection(&s) {
        return anyhow::anyhow!("{why}");
    }
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}

/// What a connection tarkd refused before reading it means. tarkd then
/// answers only with an HTTP/2 GOAWAY, whose code gRPC maps to
/// PERMISSION_DENIED (no principal) or RESOURCE_EXHAUSTED (a connection
/// limit); its reason text does not reach a tonic client.
fn refused_connection(s: &tonic::Status) -> Option<String> {
    if !s.message().starts_with("h2 protocol error") {
        return None;
    }
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    match s.code() {
        tonic::Code::PermissionDenied => Some(format!(
            "tarkd refused the connection: uid {uid} gid {gid} is no configured principal (an admin adds it to [[principals]] in tarkd's config)"
        )),
        tonic::Code::ResourceExhausted => Some(format!(
            "tarkd refused the connection: too many connections open, from uid {uid} or in all (api.max_connections_per_uid, api.max_connections)"
        )),
        _ => None,
    }
}

fn request<T>(msg: T, tenant: &Option<String>) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = tenant {
        req.metadata_mut()
            .insert("tark-tenant", t.parse().context("--tenant must be ASCII")?);
    }
    Ok(req)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json_to.is_some();
    let channel = connect(cli.socket.clone().unwrap_or_else(default_socket)).await?;
    let t = &cli.tenant;
    match cli.command {
        Command::Status => {
            let mut c = pb::system_client::SystemClient::new(channel);
            let s = c
                .status(request(pb::StatusRequest {}, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&status_json(&s));
            } else {
                print_status(&s);
            }
        }
        Command::Audit { plugin, limit } => {
            let mut c = pb::system_client::SystemClient::new(channel);
            let req = pb::AuditRequest {
                plugin: plugin.unwrap_or_default(),
                limit,
            };
            let r = c
                .audit(request(req, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&render::audit_json(&r));
            } else {
                render::print_audit(&r);
            }
        }
        // Handled before a connection is made (main).
        Command::GenerateAssets { .. }
        | Command::Conformance { .. }
        | Command::Keygen { .. }
        | Command::Plugin(PluginCommand::Sign { .. })
        | Command::Plugin(PluginCommand::New { .. }) => {}
        Command::Trust(cmd) => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            trust::run(&mut c, cmd, json).await?;
        }
        Command::Doctor => {
            let mut c = pb::system_client::SystemClient::new(channel);
            let r = c
                .check_host(request(pb::CheckHostRequest {}, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&serde_json::json!({ "lines": r.lines, "failed": r.failed }));
            } else {
                for line in &r.lines {
                    println!("{line}");
                }
            }
            anyhow::ensure!(
                r.failed == 0,
                "{} required item(s) missing on this host",
                r.failed
            );
        }
        Command::Metrics => {
            let mut c = pb::system_client::SystemClient::new(channel);
            let r = c
                .metrics(request(pb::MetricsRequest {}, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&serde_json::json!({ "text": r.text }));
            } else {
                print!("{}", r.text);
            }
        }
        Command::Plugin(cmd) => plugins::run(channel, cmd, t, json).await?,
        Command::Restart { plugin } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let r = c
                .restart_plugin(request(pb::PluginRef { id: plugin }, t)?)
                .await
                .map_err(status_error)?;
            let msg = r.into_inner().message;
            if json {
                print_json(&json!({ "message": msg }));
            } else {
                println!("{msg}");
            }
        }
        Command::Providers => {
            let mut c = pb::providers_client::ProvidersClient::new(channel);
            providers::providers(&mut c, t, json).await?;
        }
        Command::Models { plugin } => {
            let mut c = pb::providers_client::ProvidersClient::new(channel);
            providers::models(&mut c, plugin, t, json).await?;
        }
        Command::Chat {
            plugin,
            model,
            stream,
            message,
        } => {
            let mut c = pb::providers_client::ProvidersClient::new(channel);
            providers::chat(&mut c, plugin, model, message, stream, t, json).await?;
        }
        Command::Auth { plugin, action } => {
            auth::run(channel, plugin, &action, t, json).await?;
        }
        Command::Channels => channels::list(channel, t, json).await?,
        Command::Channel {
            plugin,
            action,
            to,
            config,
            message,
        } => {
            let a = channels::Action {
                verb: action,
                to,
                config,
                message,
            };
            channels::run(channel, plugin, a, t, json).await?;
        }
        Command::Hook {
            event,
            payload,
            payload_file,
            plugin,
        } => {
            let payload = match payload_file {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading the payload file {}", f.display()))?,
                None => payload,
            };
            let only = plugin.as_deref().unwrap_or("");
            hooks::dispatch(channel, &event, &payload, only, t, json).await?;
        }
        Command::Tools => {
            let mut c = pb::tools_client::ToolsClient::new(channel);
            let r = c
                .list_tools(request(pb::ListToolsRequest {}, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                let tools: Vec<_> = r
                    .tools
                    .iter()
                    .map(|t| {
                        json!({ "name": t.name, "plugin": t.plugin, "risk": risk_name(t.risk()),
                                "description": t.description, "parameters_schema": t.parameters_schema })
                    })
                    .collect();
                let conflicts: Vec<_> = r
                    .conflicts
                    .iter()
                    .map(|c| json!({ "tool": c.tool, "plugins": c.plugins }))
                    .collect();
                print_json(&json!({ "tools": tools, "conflicts": conflicts, "errors": r.errors }));
            } else {
                let rows = r
                    .tools
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.plugin.clone(),
                            risk_name(t.risk()),
                            t.description.clone(),
                        ]
                    })
                    .collect();
                print_table(&["TOOL", "PLUGIN", "RISK", "DESCRIPTION"], rows);
                for c in &r.conflicts {
                    println!(
                        "conflict: {} is claimed by {}",
                        c.tool,
                        c.plugins.join(", ")
                    );
                }
                for e in &r.errors {
                    println!("error: {e}");
                }
            }
        }
        Command::Invoke { tool, args } => {
            serde_json::from_str::<serde_json::Value>(&args).context("--args is not valid JSON")?;
            let mut c = pb::tools_client::ToolsClient::new(channel);
            let req = pb::InvokeToolRequest {
                tool,
                arguments_json: args,
            };
            let r = c
                .invoke_tool(request(req, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            match r.result {
                Some(pb::invoke_tool_response::Result::Output(out)) => {
                    if json {
                        print_json(&json!({ "plugin": r.plugin, "output": out }));
                    } else {
                        println!("{out}");
                    }
                }
                Some(pb::invoke_tool_response::Result::Error(e)) => {
                    if json {
                        print_json(&json!({ "plugin": r.plugin, "error": e }));
                    }
                    anyhow::bail!("tool failed: {e}");
                }
                None => anyhow::bail!("tarkd returned no result"),
            }
        }
    }
    Ok(())
}
