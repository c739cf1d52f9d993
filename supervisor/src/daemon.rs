//! The daemon's shared state and the operations behind the agent API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tark_proto::worker::v1 as wpb;
use tonic::Code;

use crate::broker::grants::Grant;
use crate::config::Config;
use crate::plugins::approvals::Approvals;
use crate::plugins::manifest::PluginType;
use crate::plugins::registry::{Plugin, Registry};
use crate::workers::{CallError, Workers};

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
type ListedTools = (String, Vec<Tool>);

/// The tenant tool lists are described for: no tenant's (not a valid tenant
/// name, so no caller can act for it), so describing a plugin's tools once
/// serves every tenant, starts no worker of theirs and sees none of their data.
pub const DESCRIBE_TENANT: &str = "@describe";

/// tarkd's state.
pub struct Daemon {
    pub config: Arc<Config>,
    registry: RwLock<Arc<Registry>>,
    pub workers: Workers,
    /// Tool lists by plugin, described once per module version for every tenant.
    tool_cache: Mutex<HashMap<String, ListedTools>>,
    /// Tool lists are described one plugin at a time: tarkd's own workers
    /// then hold at most one place under `workers.max_live`.
    describing: tokio::sync::Mutex<()>,
    pub started: Instant,
    /// The operator's approvals, on disk.
    pub approvals: Approvals,
    /// Which plugins the operator disabled, on disk.
    pub disabled: crate::plugins::lifecycle::Disabled,
    /// Past versions kept for rollback.
    pub history: crate::plugins::history::History,
    /// The keys plugin packages may be signed with.
    pub trust: crate::plugins::trust::TrustStore,
    /// Where each plugin was installed from.
    pub origins: crate::plugins::lifecycle::Origins,
    /// Installs run one at a time.
    pub install_lock: tokio::sync::Mutex<()>,
    /// `config.tark_version`, parsed once: what manifests are checked against.
    pub host_version: semver::Version,
    /// Device flows in progress (sign-in through auth plugins).
    pub flows: crate::api::auth::Flows,
    /// PKCE sign-ins from manifests' `[oauth]` waiting for their code.
    pub oauth_logins: crate::oauth::Logins,
    /// Started channels (polled by tarkd, restarted with their workers).
    pub channels: crate::api::channels::Channels,
    /// Tool names more than one plugin claims → how `sources.conflicts`
    /// settled each (for diagnostics; each new one is audited once).
    tool_conflicts: Mutex<BTreeMap<String, (Vec<String>, String)>>,
}

impl Daemon {
    pub fn new(
        config: Arc<Config>,
        registry: Registry,
        workers: Workers,
        approvals: Approvals,
        host_version: semver::Version,
    ) -> Self {
        let channels = crate::api::channels::Channels::new(&config.state_dir);
        let disabled = crate::plugins::lifecycle::Disabled::new(&config.state_dir);
        disabled.apply_all(&registry);
        let trust = crate::plugins::trust::TrustStore::new(&config.state_dir);
        crate::plugins::trust::judge_installed(
            &trust,
            registry.plugins.values().map(|p| &**p),
            false,
        );
        let history = crate::plugins::history::History::new(
            &config.plugins_dir,
            config.lifecycle.keep_versions,
        );
        history.recover();
        let origins = crate::plugins::lifecycle::Origins::new(&config.state_dir);
        let found = registry.notes.clone();
        let daemon = Self {
            config,
            registry: RwLock::new(Arc::new(registry)),
            workers,
            tool_cache: Mutex::default(),
            describing: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            approvals,
            disabled,
            history,
            trust,
            origins,
            install_lock: tokio::sync::Mutex::new(()),
            host_version,
            flows: crate::api::auth::Flows::default(),
            oauth_logins: crate::oauth::Logins::default(),
            channels,
            tool_conflicts: Mutex::default(),
        };
        daemon.audit_notes(&found);
        daemon
    }

    /// Puts a (re)installed plugin in the registry; its cached tool lists go.
    pub fn replace_plugin(&self, plugin: Arc<Plugin>) {
        self.disabled.apply(&plugin);
        crate::plugins::trust::judge_installed(&self.trust, [&*plugin], false);
        let id = plugin.id.clone();
        {
            let mut current = self.registry.write().unwrap_or_else(|p| p.into_inner());
            let mut plugins = current.plugins.clone();
            plugins.insert(id.clone(), plugin);
            let notes = current.notes.clone();
            let mut next = Registry { plugins, notes };
            let new = next.settle(self.config.sources.conflicts);
            *current = Arc::new(next);
            drop(current);
            self.audit_notes(&new);
        }
        self.tool_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Puts a whole rescanned registry in place at once; the cached tool lists
    /// of `touched` plugins go.
    pub fn swap_registry(&self, mut registry: Registry, touched: &[&String]) {
        // Contributed ids are settled again over the new set, and what is
        // new since the last settlement is audited.
        let new = registry.settle(self.config.sources.conflicts);
        self.audit_notes(&new);
        self.disabled.apply_all(&registry);
        crate::plugins::trust::judge_installed(
            &self.trust,
            registry.plugins.values().map(|p| &**p),
            false,
        );
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        for id in touched {
            self.forget_tools(id);
        }
    }

    /// Judges every installed plugin's signature again (the trust roots
    /// changed): a revoked or rotated key takes effect on the next call.
    pub fn judge_again(&self) {
        let registry = self.registry();
        crate::plugins::trust::judge_installed(
            &self.trust,
            registry.plugins.values().map(|p| &**p),
            true,
        );
    }

    /// Drops a plugin's cached tool list (it changed, or its state did).
    pub fn forget_tools(&self, id: &str) {
        self.tool_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Recomputes every plugin's grant from its manifest, its approval and the
    /// policy. A plugin whose approval cannot be read gets nothing, and says why.
    pub fn refresh_grants(&self) {
        for id in self.registry().plugins.keys() {
            self.refresh_grant(id);
        }
    }

    /// Recomputes one plugin's grant (after an install, update or grants change).
    pub fn refresh_grant(&self, id: &str) {
        let grants = &self.workers.authority.grants;
        let registry = self.registry();
        let Some(loaded) = registry.get(id).and_then(|p| p.loaded.as_ref()) else {
            grants.remove(id);
            return;
        };
        let approved = self.approvals.get(id).unwrap_or_else(|e| {
            tracing::error!(plugin = id, "{e}; nothing is granted");
            None
        });
        let declared = &loaded.manifest.capabilities;
        let mut grant = Grant::new(id, declared, approved.as_ref(), &self.config.policy);
        grant.oauth = loaded.manifest.oauth.clone().map(Arc::new);
        if !grant.pending.is_empty() {
            tracing::warn!(
                plugin = id,
                "capabilities awaiting approval: {}",
                grant.pending.join(", ")
            );
        }
        grants.set(id, grant);
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn plugin(&self, id: &str) -> Result<Arc<Plugin>, CallError> {
        self.registry().get(id).cloned().ok_or_else(|| {
            CallError::new(
                Code::NotFound,
                format!("no plugin named {id:?} is installed"),
            )
            .because(crate::reasons::Reason::PluginNotFound, id)
        })
    }

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

/// The tenant scan-time findings are audited under: tarkd's own.
const SOURCES_TENANT: &str = "@sources";

impl Daemon {
    /// Records what a scan or a settlement found (shadowed copies,
    /// conflicts) in the audit log.
    pub fn audit_notes(&self, notes: &[(String, String, String)]) {
        for (plugin, what, why) in notes {
            let decision = if what == "shadowed" {
                "shadowed"
            } else {
                "conflict"
            };
            self.workers.authority.audit.record(
                SOURCES_TENANT,
                plugin,
                "sources",
                what,
                decision,
                why,
            );
        }
    }
}

fn unexpected(plugin: &str) -> CallError {
    CallError::new(
        Code::Internal,
        format!("plugin {plugin}: worker answered a different call"),
    )
}
