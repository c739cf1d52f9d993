//! The tool index: which plugin serves which tool.
//!
//! Each tool plugin describes its tools once per module version, for every
//! tenant, in a worker of [`DESCRIBE_TENANT`], in the background and with a
//! short deadline of its own ([`catalog`]); what it said (or that it failed)
//! is kept. [`index`] builds a tenant's `ListTools` from what is known,
//! waiting (bounded) only for plugins not described yet; [`route`] sends an
//! `InvokeTool` to the plugin that serves the tool, from what is known, and
//! never waits for another plugin's describe when the tool's own plugin is
//! known. Two plugins claiming one name are settled by `sources.conflicts`
//! (by default the plugin there first keeps it).

pub mod catalog;
mod index;
mod route;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tark_proto::worker::v1 as wpb;
use tokio::sync::watch;
use tonic::Code;

use crate::daemon::Daemon;
use crate::plugins::manifest::PluginType;
use crate::plugins::registry::{Plugin, Registry};
use crate::workers::CallError;
use catalog::Lookup;

pub use index::ToolIndex;

/// A tool as the agent sees it: which plugin serves it and how risky it is.
#[derive(Debug, Clone)]
pub struct Tool {
    pub plugin: String,
    pub name: String,
    pub description: String,
    pub parameters_schema: String,
    pub risk: wpb::RiskLevel,
}

/// The tenant tool lists are described for: no tenant's (not a valid tenant
/// name, so no caller can act for it), so describing a plugin's tools once
/// serves every tenant, starts no worker of theirs and sees none of their data.
pub const DESCRIBE_TENANT: &str = "@describe";

/// How long, beyond the describe deadline, a caller waits for a describe to
/// end (it may queue behind others).
const WAIT_SLACK: Duration = Duration::from_secs(1);

impl Daemon {
    /// Every runnable tool plugin of `registry`, with what is known of its
    /// tools now (command tools are known from their manifest).
    pub(crate) fn listings(&self, registry: &Registry) -> Vec<(Arc<Plugin>, Lookup)> {
        let now = Instant::now();
        registry
            .plugins
            .values()
            .filter_map(|p| {
                let loaded = p.of_type(PluginType::Tool)?;
                let lookup = if loaded.is_commands() {
                    Lookup::Listed(Arc::new(command_tools(p, loaded)))
                } else {
                    self.catalog.lookup(&p.id, &loaded.sha256, now)
                };
                Some((Arc::clone(p), lookup))
            })
            .collect()
    }

    /// Starts describing `plugin`'s tools unless that is done, under way,
    /// or failed and not due again; a receiver that says when a describe
    /// under way ends.
    pub(crate) fn describe(
        self: &Arc<Self>,
        plugin: &Arc<Plugin>,
    ) -> Option<watch::Receiver<bool>> {
        let loaded = plugin.of_type(PluginType::Tool)?;
        if loaded.is_commands() {
            return None;
        }
        let sha = loaded.sha256.clone();
        let done = match self.catalog.claim(&plugin.id, &sha, Instant::now()) {
            Ok(done) => done,
            Err(running) => return running,
        };
        let ended = done.subscribe();
        let (daemon, plugin) = (Arc::clone(self), Arc::clone(plugin));
        tokio::spawn(async move {
            let permit = daemon.catalog.permits().acquire_owned().await;
            let described = daemon.describe_tools(&plugin).await;
            if described.is_ok() {
                // Its worker has done its job: the place goes to tenants. One
                // that failed stays until idle (or killed), so a retry does
                // not start a worker per attempt.
                let key = crate::workers::WorkerKey {
                    tenant: DESCRIBE_TENANT.to_owned(),
                    plugin: plugin.id.clone(),
                };
                daemon.workers.stop_idle(&key).await;
            }
            if let Err(e) = &described {
                tracing::warn!(plugin = %plugin.id, "listing its tools failed: {}", e.message);
            }
            match described {
                // tarkd had no worker place for it, or its describing worker
                // is restarting: the plugin's fault it is not, so nothing is
                // kept and the next caller tries again.
                Err(e) if e.reason.is_some_and(transient) => daemon.catalog.forget(&plugin.id),
                described => {
                    let result = described.map_err(|e| e.message);
                    let quarantine_after = daemon.config.supervision.intensity;
                    daemon.catalog.finish(
                        &plugin.id,
                        &sha,
                        result,
                        Instant::now(),
                        quarantine_after,
                    );
                }
            }
            drop(permit);
            let _ = done.send(true);
        });
        Some(ended)
    }

    /// Starts describing each of `plugins` not known yet and waits for them,
    /// at most the describe deadline (and a little slack).
    pub(crate) async fn await_described<'a>(
        self: &Arc<Self>,
        plugins: impl Iterator<Item = &'a Arc<Plugin>>,
    ) {
        let running: Vec<_> = plugins.filter_map(|p| self.describe(p)).collect();
        if running.is_empty() {
            return;
        }
        let all = futures_util::future::join_all(running.into_iter().map(|mut ended| async move {
            let _ = ended.wait_for(|done| *done).await;
        }));
        let _ = tokio::time::timeout(self.describe_deadline() + WAIT_SLACK, all).await;
    }

    /// Starts describing every tool plugin not described yet, in the
    /// background (at start, and after plugins change).
    pub fn describe_all(self: &Arc<Self>) {
        for plugin in self.registry().plugins.values() {
            self.describe(plugin);
        }
    }

    fn describe_deadline(&self) -> Duration {
        Duration::from_millis(self.config.workers.describe_deadline_ms)
    }

    /// Asks a plugin's describing worker for its tools and each one's risk,
    /// each call cut off at the describe deadline.
    async fn describe_tools(&self, plugin: &Plugin) -> Result<Vec<Tool>, CallError> {
        let (tenant, limit) = (DESCRIBE_TENANT, Some(self.describe_deadline()));
        let list = wpb::invoke_request::Call::ListTools(wpb::ListTools {});
        let listed = match self
            .workers
            .call_within(tenant, plugin, list, limit)
            .await?
        {
            wpb::invoke_response::Outcome::Tools(t) => t.tools,
            _ => return Err(unexpected(&plugin.id)),
        };
        let mut tools = Vec::with_capacity(listed.len());
        for t in listed {
            let call = wpb::invoke_request::Call::GetRiskLevel(wpb::GetRiskLevel {
                tool: t.name.clone(),
            });
            let risk = match self
                .workers
                .call_within(tenant, plugin, call, limit)
                .await?
            {
                wpb::invoke_response::Outcome::Risk(r) => {
                    wpb::RiskLevel::try_from(r.level).unwrap_or(wpb::RiskLevel::Unspecified)
                }
                _ => return Err(unexpected(&plugin.id)),
            };
            tools.push(Tool {
                plugin: plugin.id.clone(),
                name: t.name,
                description: t.description,
                parameters_schema: t.parameters_schema,
                risk,
            });
        }
        Ok(tools)
    }

    /// Drops a plugin's known tool list (it changed, or its state did),
    /// and the tool-name conflicts it was part of (settled again when the
    /// tools are next listed).
    pub fn forget_tools(&self, id: &str) {
        self.catalog.forget(id);
        self.tool_conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (plugins, _)| !plugins.iter().any(|p| p == id));
    }
}

/// Whether a failure says nothing about the plugin: tarkd could not give it
/// a worker just then.
fn transient(reason: crate::reasons::Reason) -> bool {
    use crate::reasons::Reason;
    matches!(reason, Reason::WorkersBusy | Reason::PluginRestarting)
}

/// A command plugin's tools, from its manifest.
fn command_tools(plugin: &Plugin, loaded: &crate::plugins::registry::Loaded) -> Vec<Tool> {
    loaded
        .manifest
        .commands
        .iter()
        .map(|c| Tool {
            plugin: plugin.id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            parameters_schema: c.parameters_schema.clone(),
            risk: c.risk,
        })
        .collect()
}

/// Orders plugin ids by precedence: the root they come from, then when they
/// were installed, then id.
fn by_precedence(registry: &Registry, plugins: &mut [String]) {
    plugins.sort_by_cached_key(|p| {
        let place = registry.get(p).map(|p| (p.origin, p.seniority));
        (place, p.clone())
    });
}

fn unexpected(plugin: &str) -> CallError {
    CallError::new(
        Code::Internal,
        format!("plugin {plugin}: worker answered a different call"),
    )
}
