//! Several plugin roots read into one registry (`[sources]`): the first
//! root's copy of an id wins and the others are noted as shadowed; provider
//! and channel ids that two plugins contribute are settled by
//! `sources.conflicts` whenever the set changes, silencing the plugins that
//! lose. The decisions are [`sources`](super::sources); this applies them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::plugins::registry::{Plugin, Registry, scan_dir};
use crate::plugins::seniority::Seniority;
use crate::plugins::sources::{ConflictPolicy, Origin};

impl Registry {
    /// Reads every root in precedence order (see `sources`): an id already
    /// read from an earlier root shadows later copies; each plugin gets its
    /// place from `seniority` (recorded now for one seen the first time);
    /// then provider and channel ids two plugins contribute are settled by
    /// `policy`.
    pub fn scan_roots(
        roots: &[(Origin, PathBuf)],
        policy: ConflictPolicy,
        host_version: &semver::Version,
        seniority: Option<&Seniority>,
    ) -> std::io::Result<Self> {
        let mut plugins: BTreeMap<String, Plugin> = BTreeMap::new();
        let mut notes = Vec::new();
        for (origin, dir) in roots {
            for mut plugin in scan_dir(dir, host_version)? {
                if let Some(first) = plugins.get(&plugin.id) {
                    let why = format!(
                        "{} in {} is shadowed by the copy in {} ({})",
                        plugin.id,
                        dir.display(),
                        first.dir.display(),
                        first.origin
                    );
                    tracing::warn!(plugin = %plugin.id, "{why}");
                    notes.push((plugin.id.clone(), "shadowed".to_owned(), why));
                    continue;
                }
                plugin.origin = *origin;
                plugin.seniority = seniority.map_or(0, |s| s.of(&plugin.id));
                plugins.insert(plugin.id.clone(), plugin);
            }
        }
        let mut registry = Self {
            plugins: plugins.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            notes,
        };
        registry.settle(policy);
        Ok(registry)
    }

    /// Settles the provider and channel ids more than one valid plugin
    /// contributes: each plugin that does not keep one is silenced; each
    /// plugin involved gets a note (replacing the last settlement's). Returns
    /// the notes that are new, for the audit log.
    pub fn settle(&mut self, policy: ConflictPolicy) -> Vec<(String, String, String)> {
        // (kind, id) → its claimants' (root, seniority, plugin id).
        type Claimants = Vec<(Origin, u64, String)>;
        let mut claims: BTreeMap<(&str, String), Claimants> = BTreeMap::new();
        for p in self.plugins.values() {
            let Some(l) = &p.loaded else { continue };
            let c = &l.manifest.contributes;
            let ids = c
                .providers
                .iter()
                .map(|x| ("provider", x))
                .chain(c.channels.iter().map(|x| ("channel", x)));
            for (kind, x) in ids.filter(|(_, x)| !x.id.is_empty()) {
                let entry = claims.entry((kind, x.id.clone())).or_default();
                if !entry.iter().any(|(_, _, id)| *id == p.id) {
                    entry.push((p.origin, p.seniority, p.id.clone()));
                }
            }
        }
        let mut silenced: BTreeMap<String, String> = BTreeMap::new();
        let mut notes = Vec::new();
        for ((kind, id), mut claimants) in claims.into_iter().filter(|(_, c)| c.len() > 1) {
            claimants.sort();
            let names: Vec<String> = claimants.into_iter().map(|(_, _, p)| p).collect();
            let what = format!("{kind} id {id:?}");
            let resolution = policy.resolution(&what, &names);
            let winner = policy.winner(names.len());
            for (i, name) in names.iter().enumerate() {
                if Some(i) != winner {
                    silenced
                        .entry(name.clone())
                        .or_insert_with(|| resolution.clone());
                }
                notes.push((name.clone(), what.clone(), resolution.clone()));
            }
        }
        for p in self.plugins.values() {
            *p.conflict.lock().unwrap_or_else(|e| e.into_inner()) = silenced.get(&p.id).cloned();
        }
        let kept: Vec<_> = self
            .notes
            .iter()
            .filter(|(_, what, _)| what == "shadowed")
            .cloned()
            .collect();
        let new: Vec<_> = notes
            .iter()
            .filter(|n| !self.notes.contains(n))
            .cloned()
            .collect();
        self.notes = kept.into_iter().chain(notes).collect();
        new
    }

    /// What the scan and the settlement found about `plugin`: shadowed
    /// copies and conflicts, for its diagnostics.
    pub fn notes_of(&self, plugin: &str) -> Vec<String> {
        self.notes
            .iter()
            .filter(|(p, _, _)| p == plugin)
            .map(|(_, _, why)| why.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::registry::tests::write;

    #[test]
    fn roots_shadow_by_precedence_and_contributed_ids_are_settled_by_policy() -> std::io::Result<()>
    {
        let d = tempfile::tempdir()?;
        let provider = |name: &str, id: &str| {
            format!(
                "[plugin]\nname = \"{name}\"\nversion = \"1.0.0\"\ntype = \"provider\"\n\n[[contributes.providers]]\nid = \"{id}\"\nname = \"P\"\n"
            )
        };
        let (project, installed, root) =
            (d.path().join("p"), d.path().join("i"), d.path().join("r"));
        write(
            &project,
            "one/plugin.toml",
            provider("one", "gemini").as_bytes(),
        )?;
        write(&project, "one/plugin.wasm", b"\0asm\x01\0\0\0")?;
        write(
            &root,
            "two/plugin.toml",
            provider("two", "gemini").as_bytes(),
        )?;
        write(&root, "two/plugin.wasm", b"\0asm\x01\0\0\0")?;
        write(
            &installed,
            "two/plugin.toml",
            provider("two", "other").as_bytes(),
        )?;
        write(&installed, "two/plugin.wasm", b"\0asm\x01\0\0\0")?;
        let roots = [
            (Origin::Project, project),
            (Origin::Installed, installed.clone()),
            (Origin::Root(0), root.clone()),
        ];
        let v = semver::Version::new(0, 5, 0);
        // `two` is read from the installed root (its root copy is shadowed), and
        // contributes "other": no conflict.
        let r = Registry::scan_roots(&roots, ConflictPolicy::KeepFirst, &v, None)?;
        let two = r.get("two").map(|p| (p.origin, p.conflict()));
        assert_eq!(two, Some((Origin::Installed, None)));
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert_eq!(r.notes[0].1, "shadowed");
        // Without the installed copy, both claim "gemini".
        let roots = [roots[0].clone(), roots[2].clone()];
        let table = [
            (ConflictPolicy::KeepFirst, false, true),
            (ConflictPolicy::KeepLast, true, false),
            (ConflictPolicy::Error, true, true),
        ];
        for (policy, one_silenced, two_silenced) in table {
            let r = Registry::scan_roots(&roots, policy, &v, None)?;
            let silenced = |id: &str| r.get(id).is_some_and(|p| p.conflict().is_some());
            assert_eq!(
                (silenced("one"), silenced("two")),
                (one_silenced, two_silenced),
                "{policy:?}"
            );
            let said = |id: &str| {
                r.notes_of(id)
                    .iter()
                    .any(|d| d.starts_with("provider id \"gemini\" is claimed by one, two"))
            };
            assert!(said("one") && said("two"), "{policy:?}");
            assert_eq!(r.notes.len(), 2, "{policy:?}: {:?}", r.notes);
            assert_eq!(r.get("two").map(|p| p.origin), Some(Origin::Root(0)));
        }
        Ok(())
    }
}
