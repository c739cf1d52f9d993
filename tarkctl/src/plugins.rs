//! `tarkctl plugin ...`: what is installed and its lifecycle (add, update,
//! grants, history, rollback, enable, disable, remove, reload), through the
//! `Plugins` RPCs. Signing is offline (`trust::sign`).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

use crate::render::{plugin_json, print_info, print_json, print_table, state_name, type_name};
use crate::{grants, request, status_error};

#[derive(Subcommand, Debug)]
pub(crate) enum PluginCommand {
    /// Name, version, type, state and description of each plugin.
    List,
    /// Manifest, capabilities, paths and state of one plugin.
    Info { id: String },
    /// Install or update a plugin, approving its capabilities.
    Add {
        /// A folder (plugin.toml and its wasm), a git repository URL[#ref]
        /// (tag, branch or commit), or an archive (.tar.gz, .tgz, .tar.zst).
        source: String,
        /// Approve everything the plugin declares without asking.
        #[arg(long)]
        yes: bool,
        /// Approve only these (repeatable): storage, http=HOST, env=NAME, fs_read=PATH, shell.
        #[arg(long)]
        grant: Vec<String>,
        /// Let a package not signed by a trusted key replace a signed version
        /// (admins; audited).
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Check a plugin folder (or its plugin.toml or extension.json) as tarkd
    /// would install it, installing nothing: the plugin as it would be, what
    /// it requests, its warnings; the problems when it is invalid.
    Validate { source: String },
    /// Install a new version of an installed plugin (as add, but the source must
    /// hold that plugin); without a source, the one it was installed from is
    /// fetched again (a git URL's ref, a folder, an archive).
    Update {
        id: String,
        source: Option<String>,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        grant: Vec<String>,
        /// As for add.
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// The installed version and those kept for rollback, newest first.
    History { id: String },
    /// Install a kept version again (the newest, or --to VERSION); the installed
    /// one is kept in its place. Grants: the current approval, narrowed.
    Rollback {
        id: String,
        #[arg(long)]
        to: Option<String>,
    },
    /// Uninstall a plugin: out of service at once, workers drained, folder and
    /// approval deleted; its storage is kept unless --purge.
    Remove {
        id: String,
        /// Also delete what the plugin stored, for every tenant.
        #[arg(long)]
        purge: bool,
    },
    /// Serve the plugin again.
    Enable { id: String },
    /// Stop serving the plugin (workers drained); files, grants and storage kept.
    Disable { id: String },
    /// Write a new plugin's folder (Cargo.toml on tark-plugin-sdk, src/lib.rs,
    /// plugin.toml, README) that builds and installs as written. Needs no tarkd.
    New {
        name: String,
        #[arg(long = "type", value_enum)]
        kind: crate::new::Kind,
        /// Where to write it (default ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on the SDK at this path instead of crates.io's version 0.1.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Sign a plugin folder with a key from keygen: writes DIR/plugin.sig over
    /// every file in it. Needs no tarkd.
    Sign {
        #[arg(long)]
        key: PathBuf,
        dir: PathBuf,
    },
    /// Rescan the plugins dir: new and changed plugins are validated first and
    /// switched in all at once (or nothing changes); unchanged ones keep their
    /// workers. Also done by SIGHUP (systemctl reload tarkd).
    Reload,
    /// Show a plugin's declared, approved and policy-capped capabilities; narrow
    /// them with --revoke, or approve everything declared with --approve-all.
    Grants {
        id: String,
        /// Withdraw an approved item (repeatable): storage, http=HOST, env=NAME, fs_read=PATH, shell.
        #[arg(long)]
        revoke: Vec<String>,
        /// Approve everything the plugin declares (e.g. after an update).
        #[arg(long)]
        approve_all: bool,
    },
}

/// Runs a plugin command (`Sign` is handled before a connection is made).
pub(crate) async fn run(
    channel: Channel,
    cmd: PluginCommand,
    t: &Option<String>,
    json_out: bool,
) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Add {
            source,
            yes,
            grant,
            allow_unsigned,
        } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let how = grants::How {
                yes,
                grant: &grant,
                allow_unsigned,
            };
            grants::add(&mut c, &source, &how, json_out, None).await?;
        }
        PluginCommand::Validate { source } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            grants::validate(&mut c, &source, json_out).await?;
        }
        PluginCommand::Grants {
            id,
            revoke,
            approve_all,
        } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            grants::grants(&mut c, id, &revoke, approve_all, json_out).await?;
        }
        PluginCommand::Update {
            id,
            source,
            yes,
            grant,
            allow_unsigned,
        } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let source = match source {
                Some(s) => s,
                None => {
                    let info = c
                        .get_plugin(request(pb::PluginRef { id: id.clone() }, t)?)
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    if info.origin.is_empty() {
                        anyhow::bail!(
                            "plugin {id} has no recorded source: give one (tarkctl plugin update {id} <source>)"
                        );
                    }
                    info.origin
                }
            };
            let how = grants::How {
                yes,
                grant: &grant,
                allow_unsigned,
            };
            grants::add(&mut c, &source, &how, json_out, Some(&id)).await?;
        }
        PluginCommand::History { id } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let versions = c
                .plugin_history(request(pb::PluginRef { id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner()
                .versions;
            if json_out {
                let rows: Vec<_> = versions
                    .iter()
                    .map(|v| {
                        json!({"version": v.version, "sha256": v.sha256,
                            "installed": v.installed, "replaced_unix_ms": v.replaced_unix_ms})
                    })
                    .collect();
                print_json(&json!(rows));
            } else {
                for v in &versions {
                    let sha: String = v.sha256.chars().take(12).collect();
                    let when = if v.installed {
                        "installed".to_owned()
                    } else {
                        format!("replaced {}", crate::render::ago(v.replaced_unix_ms))
                    };
                    println!("{:<12} {sha:<12} {when}", v.version);
                }
            }
        }
        PluginCommand::Rollback { id, to } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let version = to.unwrap_or_default();
            let done = c
                .rollback_plugin(request(pb::RollbackPluginRequest { id, version }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let approved = done.current.clone().unwrap_or_default();
            grants::show_installed(done, &approved, json_out);
        }
        lifecycle @ (PluginCommand::Reload
        | PluginCommand::Remove { .. }
        | PluginCommand::Enable { .. }
        | PluginCommand::Disable { .. }) => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let r = match lifecycle {
                PluginCommand::Remove { id, purge } => {
                    c.remove_plugin(request(pb::RemovePluginRequest { id, purge }, t)?)
                        .await
                }
                PluginCommand::Enable { id } => {
                    c.enable_plugin(request(pb::PluginRef { id }, t)?).await
                }
                PluginCommand::Disable { id } => {
                    c.disable_plugin(request(pb::PluginRef { id }, t)?).await
                }
                _ => {
                    c.reload_plugins(request(pb::ReloadPluginsRequest {}, t)?)
                        .await
                }
            };
            let msg = r.map_err(status_error)?.into_inner().message;
            if json_out {
                print_json(&json!({ "message": msg }));
            } else {
                println!("{msg}");
            }
        }
        PluginCommand::List => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let r = c
                .list_plugins(request(pb::ListPluginsRequest {}, t)?)
                .await
                .map_err(status_error)?;
            let plugins = r.into_inner().plugins;
            if json_out {
                print_json(&json!(plugins.iter().map(plugin_json).collect::<Vec<_>>()));
            } else {
                let rows = plugins
                    .iter()
                    .map(|p| {
                        let desc = if p.state() == pb::PluginState::Invalid {
                            p.diagnostics.join("; ")
                        } else {
                            p.description.clone()
                        };
                        vec![
                            p.id.clone(),
                            p.version.clone(),
                            type_name(p.r#type()),
                            state_name(p.state()),
                            desc,
                        ]
                    })
                    .collect();
                print_table(&["NAME", "VERSION", "TYPE", "STATUS", "DESCRIPTION"], rows);
            }
        }
        PluginCommand::Info { id } => {
            let mut c = pb::plugins_client::PluginsClient::new(channel);
            let p = c
                .get_plugin(request(pb::PluginRef { id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                print_json(&plugin_json(&p));
            } else {
                print_info(&p);
            }
        }
        PluginCommand::Sign { .. } | PluginCommand::New { .. } => {}
    }
    Ok(())
}
