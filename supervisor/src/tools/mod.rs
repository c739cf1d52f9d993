//! The tool index: which plugin serves which tool, from tool lists each
//! plugin describes once per module version (for every tenant, by a worker
//! of [`DESCRIBE_TENANT`]), and tool calls routed by it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tark_proto::worker::v1 as wpb;
use tonic::Code;

use crate::daemon::{Daemon, SOURCES_TENANT};
use crate::plugins::manifest::PluginType;
use crate::plugins::registry::{Plugin, Registry};
use crate::workers::CallError;

/// A tool as the agent sees it: which plugin serves it and how risky it is.
#[derive(Debug, Clone)]
pub struct Tool {
    pub plugin: String,
    pub name: String,
    pub description: String,
    pub parameters_schema: String,
    pub risk: wpb::RiskLevel,
}

/// What the tool plugins of one tenant offer.
#[derive(Debug, Default)]
pub struct ToolIndex {
    pub tools: Vec<Tool>,
    /// Tool name → the plugins that claim it, for names claimed more than once.
    pub conflicts: BTreeMap<String, Vec<String>>,
    /// Plugins whose tools could not be listed, with the reason.
    pub errors: Vec<String>,
}

/// A plugin's tools, valid while the module's SHA-256 (the first field) is
/// unchanged.
pub type ListedTools = (String, Vec<Tool>);

/// The tenant tool lists are described for: no tenant's (not a valid tenant
/// name, so no caller can act for it), so describing a plugin's tools once
/// serves every tenant, starts no worker of theirs and sees none of their data.
pub const DESCRIBE_TENANT: &str = "@describe";

impl Daemon {
    /// The tools one plugin offers (described once per module version, by a
    /// worker of [`DESCRIBE_TENANT`], for every tenant).
    async fn plugin_tools(&self, plugin: &Plugin) -> Result<Vec<Tool>, CallError> {
        let Some(loaded) = plugin.of_type(PluginType::Tool) else {
            return Ok(Vec::new());
        };
        if loaded.is_commands() {
            return Ok(command_tools(plugin, loaded));
        }
        let cached = || {
            self.tool_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&plugin.id)
                .filter(|(sha, _)| *sha == loaded.sha256)
                .map(|(_, tools)| tools.clone())
        };
        if let Some(tools) = cached() {
            return Ok(tools);
        }
        let _describing = self.describing.lock().await;
        if let Some(tools) = cached() {
            return Ok(tools);
        }
        let described = self.describe_tools(plugin, loaded).await;
        // Described: the worker has done its job and its place goes to
        // tenants. One that failed stays (until idle), so asking again fails
        // fast instead of starting a worker per attempt.
        if described.is_ok() {
            let key = crate::workers::WorkerKey {
                tenant: DESCRIBE_TENANT.to_owned(),
                plugin: plugin.id.clone(),
            };
            self.workers.stop_idle(&key).await;
        }
        described
    }

    async fn describe_tools(
        &self,
        plugin: &Plugin,
        loaded: &crate::plugins::registry::Loaded,
    ) -> Result<Vec<Tool>, CallError> {
        let tenant = DESCRIBE_TENANT;
        let listed = match self
            .workers
            .call(
                tenant,
                plugin,
                wpb::invoke_request::Call::ListTools(wpb::ListTools {}),
            )
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
            let risk = match self.workers.call(tenant, plugin, call).await? {
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
        self.tool_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(plugin.id.clone(), (loaded.sha256.clone(), tools.clone()));
        Ok(tools)
    }

    /// Every tool of every runnable tool plugin, listed concurrently; a plugin that
    /// fails is reported in `errors` and does not hide the others.
    pub async fn tools(self: &Arc<Self>) -> ToolIndex {
        let registry = self.registry();
        let mut set = tokio::task::JoinSet::new();
        for plugin in registry
            .plugins
            .values()
            .filter(|p| p.of_type(PluginType::Tool).is_some())
        {
            let (daemon, plugin) = (Arc::clone(self), Arc::clone(plugin));
            set.spawn(async move { (plugin.id.clone(), daemon.plugin_tools(&plugin).await) });
        }
        let mut index = ToolIndex::default();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((_, Ok(tools))) => index.tools.extend(tools),
                Ok((id, Err(e))) => index.errors.push(format!("{id}: {}", e.message)),
                Err(e) => index.errors.push(format!("listing tools failed: {e}")),
            }
        }
        index
            .tools
            .sort_by(|a, b| (&a.name, &a.plugin).cmp(&(&b.name, &b.plugin)));
        index.errors.sort();
        let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &index.tools {
            claims
                .entry(t.name.clone())
                .or_default()
                .push(t.plugin.clone());
        }
        let policy = self.config.sources.conflicts;
        for (name, mut plugins) in claims.into_iter().filter(|(_, p)| p.len() > 1) {
            by_precedence(&registry, &mut plugins);
            if let Some(w) = policy.winner(plugins.len()) {
                let keep = plugins[w].clone();
                index.tools.retain(|t| t.name != name || t.plugin == keep);
            }
            self.note_tool_conflict(&name, &plugins);
            index.conflicts.insert(name, plugins);
        }
        index
    }

    /// Remembers how a tool-name conflict was settled, auditing it the first
    /// time these plugins conflict over it.
    fn note_tool_conflict(&self, tool: &str, plugins: &[String]) {
        let what = format!("tool {tool:?}");
        let resolution = self.config.sources.conflicts.resolution(&what, plugins);
        let mut seen = self
            .tool_conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.get(tool).is_some_and(|(p, _)| p == plugins) {
            return;
        }
        seen.insert(tool.to_owned(), (plugins.to_vec(), resolution.clone()));
        drop(seen);
        for p in plugins {
            self.workers.authority.audit.record(
                SOURCES_TENANT,
                p,
                "sources",
                &what,
                "conflict",
                &resolution,
            );
        }
    }

    /// The tool-name conflicts `plugin` is part of, as diagnostics.
    pub fn tool_conflicts_of(&self, plugin: &str) -> Vec<String> {
        let seen = self
            .tool_conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        seen.values()
            .filter(|(plugins, _)| plugins.iter().any(|p| p == plugin))
            .map(|(_, resolution)| resolution.clone())
            .collect()
    }

    /// The plugins (in name order) whose cached tool lists offer `tool`,
    /// without copying the lists; `None` when a runnable plugin has no current
    /// list.
    fn claims(&self, registry: &Registry, tool: &str) -> Option<Vec<String>> {
        let cache = self.tool_cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut claimants = Vec::new();
        for plugin in registry.plugins.values() {
            let Some(loaded) = plugin.of_type(PluginType::Tool) else {
                continue;
            };
            if loaded.is_commands() {
                if loaded.manifest.commands.iter().any(|c| c.name == tool) {
                    claimants.push(plugin.id.clone());
                }
                continue;
            }
            let (_, tools) = cache
                .get(&plugin.id)
                .filter(|(sha, _)| *sha == loaded.sha256)?;
            if tools.iter().any(|t| t.name == tool) {
                claimants.push(plugin.id.clone());
            }
        }
        Some(claimants)
    }

    /// Runs a tool by name, routed to the one plugin that provides it.
    pub async fn invoke_tool(
        self: &Arc<Self>,
        tenant: &str,
        tool: &str,
        arguments_json: &str,
    ) -> Result<(String, wpb::ToolResult), CallError> {
        let registry = self.registry();
        // Route from the cached lists; list the plugins only if one is not
        // listed yet for this tenant (first call, new module, earlier failure).
        let (mut claimants, errors) = match self.claims(&registry, tool) {
            Some(claimants) => (claimants, Vec::new()),
            None => {
                let index = self.tools().await;
                let claimants = index
                    .tools
                    .iter()
                    .filter(|t| t.name == tool)
                    .map(|t| t.plugin.clone())
                    .collect();
                (claimants, index.errors)
            }
        };
        // Only the plugins enabled for the tenant offer it their tools.
        claimants.retain(|p| crate::tenants::enabled(&self.config.tenants, tenant, p));
        if claimants.len() > 1 {
            by_precedence(&registry, &mut claimants);
        }
        let policy = self.config.sources.conflicts;
        let found = match (claimants.as_slice(), policy.winner(claimants.len())) {
            ([], _) => {
                let mut message = format!("unknown tool {tool:?}");
                if !errors.is_empty() {
                    message.push_str(&format!(
                        " (some plugins could not be asked: {})",
                        errors.join("; ")
                    ));
                }
                return Err(CallError {
                    reason: Some(crate::reasons::Reason::ToolNotFound),
                    ..CallError::new(Code::NotFound, message)
                });
            }
            // The winner is one of the claimants, by `winner`'s contract.
            (many, Some(w)) => &many[w],
            (many, None) => {
                return Err(CallError {
                    reason: Some(crate::reasons::Reason::ToolConflict),
                    ..CallError::new(
                        Code::FailedPrecondition,
                        format!(
                            "tool {tool:?} is provided by more than one plugin ({}); disable or remove all but one (or set sources.conflicts)",
                            many.join(", ")
                        ),
                    )
                });
            }
        };
        let plugin = self.plugin(found)?;
        if let Some(command) = plugin
            .runnable()
            .and_then(|l| l.manifest.commands.iter().find(|c| c.name == tool))
        {
            let jail = self.workers.jail(tenant, &plugin)?;
            let result =
                crate::commands::run(jail, tenant, &plugin, command, arguments_json).await?;
            return Ok((plugin.id.clone(), result));
        }
        let call = wpb::invoke_request::Call::ExecuteTool(wpb::ExecuteTool {
            tool: tool.to_owned(),
            arguments_json: arguments_json.to_owned(),
        });
        match self.workers.call(tenant, &plugin, call).await? {
            wpb::invoke_response::Outcome::ToolResult(r) => Ok((plugin.id.clone(), r)),
            _ => Err(unexpected(&plugin.id)),
        }
    }
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

/// Orders plugin ids by the precedence of their roots, then by id.
fn by_precedence(registry: &Registry, plugins: &mut [String]) {
    plugins.sort_by_cached_key(|p| (registry.get(p).map(|p| p.origin), p.clone()));
}

fn unexpected(plugin: &str) -> CallError {
    CallError::new(
        Code::Internal,
        format!("plugin {plugin}: worker answered a different call"),
    )
}
