//! `tarkctl conformance <plugin | dir> [--json[=FILE]]`: does a plugin keep
//! its contract?
//!
//! The plugin (a folder, or an installed plugin's folder as tarkd reports it)
//! is installed into a private tarkd ([`private`]) with what it declares
//! approved, as an operator would, and so is loaded, validated and run in the
//! same sandboxed workers as in production. Each export its world (or tark's
//! core-module ABI) offers through the agent API is called with valid and with
//! invalid input ([`checks`]); then the run as a whole is judged: every call
//! within the limits, no host call beyond what the plugin declares (the private
//! tarkd's audit log), the worker never crashed. The report lists each check
//! with its id, status (pass, fail, skip) and detail; tarkctl fails if any
//! check failed.

pub mod checks;
pub mod private;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use tark_proto::plugin::v1 as pb;

/// A check's outcome. `Skip`: tarkd did not let the call reach the plugin
/// (say, a sign-in it needs), so nothing was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One check of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub status: Status,
    pub detail: String,
}

impl Check {
    pub fn new(id: String, status: Status, detail: String) -> Self {
        Self { id, status, detail }
    }
}

/// Runs the checks on `target`; `Ok(false)` when one failed.
pub async fn run(
    target: &str,
    socket: PathBuf,
    json_out: bool,
    json_file: Option<&Path>,
) -> anyhow::Result<bool> {
    let folder = if Path::new(target).is_dir() {
        std::fs::canonicalize(target)?
    } else {
        // An installed plugin: tarkd says where its folder is.
        let mut host = pb::plugins_client::PluginsClient::new(crate::connect(socket).await?);
        let info = host
            .get_plugin(pb::PluginRef {
                id: target.to_owned(),
            })
            .await
            .map_err(crate::status_error)
            .with_context(|| format!("{target} is neither a folder nor an installed plugin"))?
            .into_inner();
        PathBuf::from(info.path)
    };
    let tarkd = private::Private::start().await?;
    let (plugin, kind, mut checks) = install(&tarkd, &folder).await;
    if let (Some(plugin), Some(kind)) = (&plugin, kind) {
        let ch = &tarkd.channel;
        checks.extend(match kind {
            pb::PluginType::Tool => checks::tool(ch, plugin).await,
            pb::PluginType::Provider => checks::provider(ch, plugin).await,
            pb::PluginType::Auth => checks::auth(ch, plugin).await,
            pb::PluginType::Hook => checks::hook(ch, plugin).await,
            pb::PluginType::Channel => checks::channel(ch, plugin).await,
            pb::PluginType::Unspecified => Vec::new(),
        });
        checks.extend(afterwards(&tarkd, plugin, &checks).await);
    }
    tarkd.stop().await;
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    let report = json!({
        "plugin": plugin,
        "source": folder,
        "type": kind.map(|k| format!("{k:?}").to_lowercase()),
        "passed": !failed,
        "checks": checks.iter().map(|c| json!({
            "id": c.id, "status": c.status.name(), "detail": c.detail,
        })).collect::<Vec<_>>(),
    });
    if let Some(file) = json_file {
        std::fs::write(file, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", file.display()))?;
    }
    if json_out && json_file.is_none() {
        crate::print_json(&report);
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| vec![c.status.name().to_owned(), c.id.clone(), c.detail.clone()])
            .collect();
        crate::print_table(&["STATUS", "CHECK", "DETAIL"], rows);
        let count = |s| checks.iter().filter(|c| c.status == s).count();
        println!(
            "{}: {} passed, {} failed, {} skipped",
            plugin.as_deref().unwrap_or(target),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip)
        );
    }
    Ok(!failed)
}

/// Installs the folder into the private tarkd, approving what it declares:
/// the plugin's id and type, and the `install` check.
async fn install(
    tarkd: &private::Private,
    folder: &Path,
) -> (Option<String>, Option<pb::PluginType>, Vec<Check>) {
    let mut c = pb::plugins_client::PluginsClient::new(tarkd.channel.clone());
    let source = folder.display().to_string();
    let ask = |approved| pb::InstallPluginRequest {
        source: source.clone(),
        approved,
        origin: String::new(),
        allow_unsigned: false,
    };
    let installed = async {
        let plan = c.install_plugin(ask(None)).await?.into_inner();
        let done = c
            .install_plugin(ask(Some(plan.requested.unwrap_or_default())))
            .await?
            .into_inner();
        Ok::<_, tonic::Status>(done.plugin.unwrap_or_default())
    };
    match installed.await {
        Ok(info) => {
            let kind = pb::PluginType::try_from(info.r#type).unwrap_or_default();
            let detail = format!(
                "{} {} ({:?}), loaded in a sandboxed worker{}",
                info.id,
                info.version,
                kind,
                if info.diagnostics.is_empty() {
                    String::new()
                } else {
                    format!("; warnings: {}", info.diagnostics.join("; "))
                }
            );
            (
                Some(info.id),
                Some(kind),
                vec![Check::new("install".into(), Status::Pass, detail)],
            )
        }
        Err(s) => (
            None,
            None,
            vec![Check::new(
                "install".into(),
                Status::Fail,
                format!("{}{}", s.message(), tarkd.log()),
            )],
        ),
    }
}

/// What the run as a whole shows: limits, capabilities, crashes.
async fn afterwards(tarkd: &private::Private, plugin: &str, done: &[Check]) -> Vec<Check> {
    let mut checks = Vec::new();
    let limited: Vec<&str> = done
        .iter()
        .filter(|c| {
            [
                "PLUGIN_LIMIT_EXCEEDED",
                "DEADLINE_EXCEEDED",
                "RESPONSE_TOO_LARGE",
            ]
            .iter()
            .any(|r| c.detail.contains(r))
        })
        .map(|c| c.id.as_str())
        .collect();
    checks.push(if limited.is_empty() {
        Check::new(
            "limits".into(),
            Status::Pass,
            "every call answered within the deadline and the memory, fuel and response caps".into(),
        )
    } else {
        Check::new(
            "limits".into(),
            Status::Fail,
            format!("over a limit in: {}", limited.join(", ")),
        )
    });
    let mut system = pb::system_client::SystemClient::new(tarkd.channel.clone());
    let audit = system
        .audit(pb::AuditRequest {
            plugin: plugin.to_owned(),
            limit: 1000,
        })
        .await;
    checks.push(match audit {
        Ok(a) => {
            let beyond: Vec<String> = a
                .into_inner()
                .entries
                .into_iter()
                .filter(|e| e.decision == "deny")
                .map(|e| format!("{} {}: {}", e.capability, e.target, e.reason))
                .collect();
            if beyond.is_empty() {
                Check::new(
                    "capabilities.declared".into(),
                    Status::Pass,
                    "no host call beyond what the manifest declares".into(),
                )
            } else {
                Check::new(
                    "capabilities.declared".into(),
                    Status::Fail,
                    beyond.join("; "),
                )
            }
        }
        Err(s) => Check::new(
            "capabilities.declared".into(),
            Status::Skip,
            s.message().into(),
        ),
    });
    let mut plugins = pb::plugins_client::PluginsClient::new(tarkd.channel.clone());
    checks.push(
        match plugins
            .get_plugin(pb::PluginRef {
                id: plugin.to_owned(),
            })
            .await
        {
            Ok(info) => {
                let crashed: Vec<String> = info
                    .into_inner()
                    .workers
                    .into_iter()
                    .filter(|w| w.restarts > 0 || (!w.running && !w.last_error.is_empty()))
                    .map(|w| {
                        format!(
                            "tenant {}: {} restarts, last error {:?}",
                            w.tenant, w.restarts, w.last_error
                        )
                    })
                    .collect();
                if crashed.is_empty() {
                    Check::new(
                        "worker.survived".into(),
                        Status::Pass,
                        "no crash, no restart".into(),
                    )
                } else {
                    Check::new("worker.survived".into(), Status::Fail, crashed.join("; "))
                }
            }
            Err(s) => Check::new("worker.survived".into(), Status::Skip, s.message().into()),
        },
    );
    checks
}
