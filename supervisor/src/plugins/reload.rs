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

use crate::plugins::registry::{Plugin, Registry};

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
