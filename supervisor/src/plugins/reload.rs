//! Rescanning the plugins dir (`ReloadPlugins`, SIGHUP) and switching to what
//! it holds, all at once or not at all.
//!
//! The new set is read and validated in full before anything changes: if a
//! plugin that is new or changed cannot be loaded, the reload is refused, named,
//! and the running set stays as it was. Otherwise the registry is swapped in one
//! step; unchanged plugins keep their entries and their workers, changed and
//! removed ones have their workers drained (the next call starts a worker of the
//! new version). A reload writes nothing, so a tarkd killed during one restarts
//! on whatever the plugins dir holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Code;

use crate::daemon::Daemon;
use crate::plugins::registry::{Plugin, Registry};
use crate::workers::CallError;

/// How the scanned set differs from the running one, by plugin id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Whether two entries of the same plugin are the same plugin: the same
/// files (manifest, module and every other), or the same reasons for being
/// invalid.
fn same(a: &Plugin, b: &Plugin) -> bool {
    match (&a.loaded, &b.loaded) {
        (Some(x), Some(y)) => {
            x.sha256 == y.sha256
                && x.manifest_sha256 == y.manifest_sha256
                && a.package_digest == b.package_digest
                && a.origin == b.origin
                && a.conflict() == b.conflict()
        }
        (None, None) => a.diagnostics == b.diagnostics,
        _ => false,
    }
}

/// Compares the running registry with a fresh scan.
pub fn diff(running: &Registry, scanned: &Registry) -> Change {
    let mut change = Change::default();
    for (id, new) in &scanned.plugins {
        match running.get(id) {
            None => change.added.push(id.clone()),
            Some(old) if same(old, new) => change.unchanged.push(id.clone()),
            Some(_) => change.changed.push(id.clone()),
        }
    }
    change.removed = running
        .plugins
        .keys()
        .filter(|id| !scanned.plugins.contains_key(*id))
        .cloned()
        .collect();
    change
}

impl Change {
    /// One line for the operator: what the reload did.
    pub fn summary(&self) -> String {
        let part = |what: &str, ids: &[String]| {
            (!ids.is_empty()).then(|| format!("{what} {}", ids.join(", ")))
        };
        let parts: Vec<String> = [
            part("added", &self.added),
            part("changed", &self.changed),
            part("removed", &self.removed),
        ]
        .into_iter()
        .flatten()
        .collect();
        let unchanged = format!("{} unchanged", self.unchanged.len());
        if parts.is_empty() {
            format!("plugins reloaded: nothing changed ({unchanged})")
        } else {
            format!("plugins reloaded: {}; {unchanged}", parts.join("; "))
        }
    }
}

impl Daemon {
    /// Rescans the plugins dir and switches to it (see the module doc).
    pub async fn reload_plugins(&self) -> Result<Change, CallError> {
        let _one_at_a_time = self.install_lock.lock().await;
        let roots = crate::plugins::sources::roots(&self.config.sources, &self.config.plugins_dir);
        let policy = self.config.sources.conflicts;
        let version = self.host_version.clone();
        let seniority = Arc::clone(&self.seniority);
        let mut scanned = tokio::task::spawn_blocking(move || {
            Registry::scan_roots(&roots, policy, &version, Some(&seniority))
        })
        .await
        .map_err(|e| CallError::new(Code::Internal, format!("reload: {e}")))?
        .map_err(|e| {
            CallError::new(
                Code::FailedPrecondition,
                format!(
                    "reload refused, nothing changed: scanning {}: {e}",
                    self.config.plugins_dir.display()
                ),
            )
        })?;
        let running = self.registry();
        let change = diff(&running, &scanned);
        let incoming: Vec<&Arc<Plugin>> = change
            .added
            .iter()
            .chain(&change.changed)
            .filter_map(|id| scanned.get(id))
            .collect();
        crate::plugins::trust::judge_installed(&self.trust, incoming.iter().map(|p| &***p), false);
        let require = crate::plugins::trust::by_policy(self.config.policy.require_signed);
        let mut broken: Vec<String> = incoming
            .iter()
            .filter_map(|p| match &p.loaded {
                None => Some(format!("plugin {}: {}", p.id, p.diagnostics.join("; "))),
                Some(_) => p.signature_gate(require).err(),
            })
            .collect();
        // Each new or changed module must load, in a worker, before the swap.
        if broken.is_empty() {
            for p in &incoming {
                if let Err(e) = self.workers.validate(p).await {
                    broken.push(format!("plugin {}: {}", p.id, e.message));
                }
            }
        }
        if !broken.is_empty() {
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!("reload refused, nothing changed: {}", broken.join(" | ")),
            ));
        }
        // Copies shadowed now, as the scan found them (audited if new); the
        // conflicts are settled again over the new set by `swap_registry`.
        let shadowed: Vec<_> = std::mem::take(&mut scanned.notes)
            .into_iter()
            .filter(|n| n.1 == "shadowed")
            .collect();
        let new_shadowed: Vec<_> = shadowed
            .iter()
            .filter(|n| !running.notes.contains(n))
            .cloned()
            .collect();
        let mut notes: Vec<_> = running
            .notes
            .iter()
            .filter(|n| n.1 != "shadowed")
            .cloned()
            .collect();
        notes.extend(shadowed);
        let plugins: BTreeMap<String, Arc<Plugin>> = scanned
            .plugins
            .into_iter()
            .map(|(id, new)| match running.get(&id) {
                Some(old) if change.unchanged.contains(&id) => (id, Arc::clone(old)),
                _ => (id, new),
            })
            .collect();
        let touched: Vec<&String> = change
            .added
            .iter()
            .chain(&change.changed)
            .chain(&change.removed)
            .collect();
        self.audit_notes(&new_shadowed);
        self.swap_registry(Registry { plugins, notes }, &touched);
        for id in &touched {
            self.refresh_grant(id);
        }
        for id in change.changed.iter().chain(&change.removed) {
            self.workers.restart(id).await;
        }
        tracing::info!("{}", change.summary());
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::registry::Loaded;

    fn plugin(id: &str, wasm: &str, manifest: &str, diagnostics: &[&str]) -> Arc<Plugin> {
        with_data(id, wasm, manifest, diagnostics, "")
    }

    /// A plugin whose other files are `data`.
    fn with_data(
        id: &str,
        wasm: &str,
        manifest: &str,
        diagnostics: &[&str],
        data: &str,
    ) -> Arc<Plugin> {
        let loaded = (!wasm.is_empty()).then(|| Loaded {
            manifest: crate::plugins::manifest::parse(
                &format!("[plugin]\nname = \"{id}\"\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
                id,
                &semver::Version::new(0, 5, 0),
            )
            .unwrap_or_else(|e| panic!("{e:?}")),
            wasm: Arc::from(&b"\0asm"[..]),
            sha256: wasm.into(),
            manifest_sha256: manifest.into(),
        });
        Arc::new(Plugin {
            id: id.into(),
            dir: id.into(),
            loaded,
            diagnostics: diagnostics.iter().map(|d| d.to_string()).collect(),
            disabled: Default::default(),
            package_digest: format!("{wasm}{manifest}{data}"),
            signature: Default::default(),
            origin: Default::default(),
            seniority: 0,
            conflict: Default::default(),
        })
    }

    fn registry(plugins: &[Arc<Plugin>]) -> Registry {
        Registry {
            plugins: plugins
                .iter()
                .map(|p| (p.id.clone(), Arc::clone(p)))
                .collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn what_changed() {
        let running = registry(&[
            plugin("same", "w1", "m1", &[]),
            plugin("module", "w1", "m1", &[]),
            plugin("manifest", "w1", "m1", &[]),
            plugin("fixed", "", "", &["bad"]),
            plugin("broke", "w1", "m1", &[]),
            plugin("still-bad", "", "", &["bad"]),
            plugin("gone", "w1", "m1", &[]),
            plugin("data", "w1", "m1", &[]),
        ]);
        let scanned = registry(&[
            plugin("same", "w1", "m1", &["a warning is not a change"]),
            plugin("module", "w2", "m1", &[]),
            plugin("manifest", "w1", "m2", &[]),
            plugin("fixed", "w1", "m1", &[]),
            plugin("broke", "", "", &["bad"]),
            plugin("still-bad", "", "", &["bad"]),
            plugin("new", "w1", "m1", &[]),
            with_data("data", "w1", "m1", &[], "a data file changed"),
        ]);
        let owned = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            diff(&running, &scanned),
            Change {
                added: owned(&["new"]),
                changed: owned(&["broke", "data", "fixed", "manifest", "module"]),
                removed: owned(&["gone"]),
                unchanged: owned(&["same", "still-bad"]),
            }
        );
        assert_eq!(
            diff(&running, &scanned).summary(),
            "plugins reloaded: added new; changed broke, data, fixed, manifest, module; removed gone; 2 unchanged"
        );
        assert_eq!(
            diff(&running, &running).summary(),
            "plugins reloaded: nothing changed (8 unchanged)"
        );
    }
}
