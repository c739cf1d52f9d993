//! A tenant's `ListTools`, from what is known of each plugin's tools, and
//! the tool-name conflicts between plugins.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog::Lookup;
use super::{Tool, by_precedence};
use crate::daemon::{Daemon, SOURCES_TENANT};

/// What the tool plugins offer.
#[derive(Debug, Default)]
pub struct ToolIndex {
    pub tools: Vec<Tool>,
    /// Tool name → the plugins that claim it, for names claimed more than once.
    pub conflicts: BTreeMap<String, Vec<String>>,
    /// Plugins whose tools could not be listed, with the reason.
    pub errors: Vec<String>,
}

impl Daemon {
    /// Every tool of every runnable tool plugin. Plugins not described yet
    /// are described first (waited for at most the describe deadline); one
    /// that failed, or is still being described, is reported in `errors`
    /// and hides nothing of the others.
    pub async fn tools(self: &Arc<Self>) -> ToolIndex {
        let registry = self.registry();
        let unknown: Vec<_> = self
            .listings(&registry)
            .into_iter()
            .filter(|(_, l)| matches!(l, Lookup::Unknown))
            .map(|(p, _)| p)
            .collect();
        self.await_described(unknown.iter()).await;
        let mut index = ToolIndex::default();
        for (plugin, lookup) in self.listings(&registry) {
            match lookup {
                Lookup::Listed(tools) => index.tools.extend(tools.iter().cloned()),
                Lookup::Failed(why) => index.errors.push(format!("{}: {why}", plugin.id)),
                Lookup::Unknown => index.errors.push(format!(
                    "{}: its tools are still being listed (ask again)",
                    plugin.id
                )),
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
        // Conflicts that are over (a plugin removed, disabled or changed)
        // are no plugin's diagnostics any more.
        self.tool_conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, (plugins, _)| index.conflicts.get(name) == Some(plugins));
        index
    }

    /// What an install of `id` means for tool names: each name it shares
    /// with another plugin and who serves it, for `plugin add`'s output.
    pub async fn tool_clashes(self: &Arc<Self>, id: &str) -> Vec<String> {
        let index = self.tools().await;
        let policy = self.config.sources.conflicts;
        index
            .conflicts
            .iter()
            .filter(|(_, plugins)| plugins.iter().any(|p| p == id))
            .map(|(tool, plugins)| match policy.winner(plugins.len()) {
                Some(w) if plugins[w] == id => format!(
                    "tool {tool:?}: {id} serves it; {} claim it too and are refused it (sources.conflicts = {})",
                    others(plugins, id),
                    policy.name()
                ),
                Some(w) => format!(
                    "tool {tool:?} is not served by {id}: {} keeps it (sources.conflicts = {}: the plugin there first)",
                    plugins[w],
                    policy.name()
                ),
                None => format!(
                    "tool {tool:?} is refused to all: {id} and {} claim it (sources.conflicts = error)",
                    others(plugins, id)
                ),
            })
            .collect()
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
}

fn others(plugins: &[String], id: &str) -> String {
    plugins
        .iter()
        .filter(|p| *p != id)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}
