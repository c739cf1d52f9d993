//! Where plugins come from, and which one wins when two say the same thing.
//!
//! Plugins are read from several roots, in precedence order: a local
//! project's plugins (`sources.project`), then the installed ones
//! (`plugins_dir`, the only root tarkctl manages), then each configured root
//! (`sources.roots`, in order). A plugin's identity is its id: the same id in
//! two roots is one plugin, read from the root that comes first; the other
//! copies are shadowed and reported. Different plugins that claim the same
//! tool name, provider id or channel id conflict: `sources.conflicts` says
//! who keeps it (`keep-first`, the default: the one from the root that comes
//! first, then the one installed first (`seniority`), then by id, so a
//! newcomer cannot take names from a plugin already in use; `keep-last`: the
//! other end; `error`: nobody, until the operator resolves it). Every
//! conflict is in the inventory's diagnostics and the audit log.

use std::path::PathBuf;

use serde::Deserialize;

/// `[sources]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// A local project's plugins: ahead of every other root.
    pub project: Option<PathBuf>,
    /// Further roots, after the installed plugins, in this order.
    pub roots: Vec<PathBuf>,
    pub conflicts: ConflictPolicy,
}

/// Who keeps a name two plugins claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The plugin there first keeps it; the newcomer's claim is refused.
    #[default]
    KeepFirst,
    KeepLast,
    /// Nobody: the name is refused until one plugin is disabled or removed.
    Error,
}

impl ConflictPolicy {
    pub fn name(self) -> &'static str {
        match self {
            ConflictPolicy::KeepFirst => "keep-first",
            ConflictPolicy::KeepLast => "keep-last",
            ConflictPolicy::Error => "error",
        }
    }

    /// Of `n` claimants in precedence order, the one that keeps the name.
    pub fn winner(self, n: usize) -> Option<usize> {
        match (self, n) {
            (_, 0) => None,
            (_, 1) => Some(0),
            (ConflictPolicy::KeepFirst, _) => Some(0),
            (ConflictPolicy::KeepLast, n) => Some(n - 1),
            (ConflictPolicy::Error, _) => None,
        }
    }

    /// What became of a conflict over `what` between `claimants` (in
    /// precedence order), for diagnostics and the audit log.
    pub fn resolution(self, what: &str, claimants: &[String]) -> String {
        let all = claimants.join(", ");
        match self.winner(claimants.len()) {
            Some(w) => format!(
                "{what} is claimed by {all}; sources.conflicts = {} keeps {}",
                self.name(),
                claimants[w]
            ),
            None => format!(
                "{what} is claimed by {all}; sources.conflicts = error: none serves it until all but one are disabled or removed"
            ),
        }
    }
}

/// Which root a plugin was read from. The order is the precedence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Project,
    #[default]
    Installed,
    /// `sources.roots[n]`.
    Root(usize),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Project => f.write_str("project (sources.project)"),
            Origin::Installed => f.write_str("installed (plugins_dir)"),
            Origin::Root(n) => write!(f, "root {} (sources.roots)", n + 1),
        }
    }
}

/// Every root, in precedence order.
pub fn roots(sources: &SourcesConfig, plugins_dir: &std::path::Path) -> Vec<(Origin, PathBuf)> {
    let mut all = Vec::new();
    if let Some(p) = &sources.project {
        all.push((Origin::Project, p.clone()));
    }
    all.push((Origin::Installed, plugins_dir.to_owned()));
    all.extend(
        sources
            .roots
            .iter()
            .enumerate()
            .map(|(i, r)| (Origin::Root(i), r.clone())),
    );
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_picks_one_claimant_or_none() {
        use ConflictPolicy::*;
        let table = [
            (KeepFirst, 0, None),
            (KeepFirst, 1, Some(0)),
            (KeepFirst, 3, Some(0)),
            (KeepLast, 1, Some(0)),
            (KeepLast, 3, Some(2)),
            (Error, 1, Some(0)),
            (Error, 2, None),
        ];
        for (policy, n, want) in table {
            assert_eq!(policy.winner(n), want, "{policy:?} of {n}");
        }
        let two = ["a".to_owned(), "b".to_owned()];
        assert!(
            KeepLast
                .resolution("tool \"x\"", &two)
                .ends_with("keep-last keeps b")
        );
        assert!(
            Error
                .resolution("tool \"x\"", &two)
                .contains("none serves it")
        );
    }

    #[test]
    fn roots_come_project_first_then_installed_then_configured() {
        let sources = SourcesConfig {
            project: Some("/p".into()),
            roots: vec!["/r1".into(), "/r2".into()],
            conflicts: ConflictPolicy::Error,
        };
        let order: Vec<Origin> = roots(&sources, std::path::Path::new("/i"))
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(
            order,
            [
                Origin::Project,
                Origin::Installed,
                Origin::Root(0),
                Origin::Root(1)
            ]
        );
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, order, "the enum's order is the precedence");
        let none = roots(&SourcesConfig::default(), std::path::Path::new("/i"));
        assert_eq!(none, [(Origin::Installed, PathBuf::from("/i"))]);
    }
}
