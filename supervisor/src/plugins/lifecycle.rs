//! Enabling, disabling and removing installed plugins.
//!
//! A disabled plugin keeps its folder, approval and storage and serves nothing:
//! its workers are drained and every call says it is disabled. The state is a
//! file per plugin in `state_dir/disabled/`, so it survives restarts and an
//! operator (or configuration management) can see it.
//!
//! Removing takes the plugin out of the registry first (no call reaches it
//! from then on), drains its workers, then renames its folder aside before
//! deleting it (and its kept versions), so a tarkd killed at any point restarts with the plugin either
//! installed or gone, never half-deleted; leftovers are cleared at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tonic::Code;

use crate::plugins::registry::{Plugin, Registry};
use crate::workers::CallError;

/// Which plugins the operator disabled.
#[derive(Debug, Clone)]
pub struct Disabled {
    dir: PathBuf,
}

impl Disabled {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("disabled"),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.dir.join(id).exists()
    }

    pub(crate) fn set(&self, id: &str, disabled: bool) -> std::io::Result<()> {
        if disabled {
            crate::durable::write_private(&self.dir, id, b"")
        } else {
            crate::durable::remove(&self.dir.join(id))?;
            // The removal is durable only once the directory is.
            match std::fs::File::open(&self.dir) {
                Ok(d) => d.sync_all(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }
    }

    /// Marks `plugin` as the state dir says.
    pub fn apply(&self, plugin: &Plugin) {
        plugin
            .disabled
            .store(self.contains(&plugin.id), Ordering::SeqCst);
    }

    /// Marks every plugin of `registry`.
    pub fn apply_all(&self, registry: &Registry) {
        for p in registry.plugins.values() {
            self.apply(p);
        }
    }
}

/// Where each plugin was last installed from, as the operator named it
/// (`state_dir/origins/<id>`), so an update can fetch the same source again.
#[derive(Debug, Clone)]
pub struct Origins {
    dir: PathBuf,
}

impl Origins {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("origins"),
        }
    }

    pub fn get(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join(id)).unwrap_or_default()
    }

    /// Records `origin` (nothing for an empty one: the old record stays).
    pub fn set(&self, id: &str, origin: &str) -> std::io::Result<()> {
        if origin.is_empty() {
            return Ok(());
        }
        crate::durable::write_private(&self.dir, id, origin.as_bytes())
    }

    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        crate::durable::remove(&self.dir.join(id))
    }
}

/// Clears what an install or removal killed half-way left in the plugins dir:
/// staged copies not switched in, old copies switched out, folders renamed
/// aside for deletion (all dot-names, which the scan skips).
pub fn clear_leftovers(plugins_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(plugins_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let leftover = name.starts_with('.')
            && [".staging", ".old", ".removed"]
                .iter()
                .any(|s| name.ends_with(s));
        if leftover && let Err(err) = std::fs::remove_dir_all(e.path()) {
            tracing::warn!(path = %e.path().display(), "leftover not removed: {err}");
        }
    }
}

/// Refuses to change a plugin tarkctl does not manage: one read from the
/// project's or a configured root (see `sources`) belongs to that root.
pub fn managed(plugin: &crate::plugins::registry::Plugin) -> Result<(), CallError> {
    use crate::plugins::sources::Origin;
    if plugin.origin == Origin::Installed {
        return Ok(());
    }
    Err(CallError::new(
        Code::FailedPrecondition,
        format!(
            "plugin {} is read from {} at {}: tarkctl manages only installed plugins (plugins_dir); change it there",
            plugin.id,
            plugin.origin,
            plugin.dir.display()
        ),
    ))
}
