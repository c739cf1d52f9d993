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

use crate::daemon::Daemon;
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

    fn set(&self, id: &str, disabled: bool) -> std::io::Result<()> {
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

impl Daemon {
    /// Enables or disables a plugin; idempotent.
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<String, CallError> {
        let _one_at_a_time = self.install_lock.lock().await;
        let plugin = self.plugin(id)?;
        if plugin.is_disabled() != enabled {
            return Ok(format!(
                "plugin {id} is already {}",
                if enabled { "enabled" } else { "disabled" }
            ));
        }
        self.disabled.set(id, !enabled).map_err(|e| {
            CallError::new(
                Code::Internal,
                format!("plugin {id}: recording its state: {e}"),
            )
        })?;
        plugin.disabled.store(!enabled, Ordering::SeqCst);
        self.forget_tools(id);
        if enabled {
            tracing::info!(plugin = id, "enabled");
            return Ok(format!("plugin {id} enabled"));
        }
        let stopped = self.workers.restart(id).await;
        tracing::info!(plugin = id, stopped, "disabled");
        Ok(format!(
            "plugin {id} disabled: stopped {stopped} worker(s); its files, grants and storage are kept"
        ))
    }

    /// Uninstalls a plugin (see the module doc); with `purge`, its storage too.
    pub async fn remove_plugin(&self, id: &str, purge: bool) -> Result<String, CallError> {
        let _one_at_a_time = self.install_lock.lock().await;
        let plugin = self.plugin(id)?;
        managed(&plugin)?;
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            CallError::new(Code::Internal, format!("plugin {id}: {what}: {e}"))
        };
        // Out of service first: no new call finds it.
        let registry = self.registry();
        let mut plugins = registry.plugins.clone();
        plugins.remove(id);
        let notes = registry.notes.clone();
        self.swap_registry(Registry { plugins, notes }, &[&plugin.id]);
        self.refresh_grant(id);
        let stopped = self.workers.restart(id).await;
        crate::crash::point("remove:unlisted");
        // Then its files: renamed aside (one step), then deleted.
        let dir = &plugin.dir;
        let aside = self.config.plugins_dir.join(format!(".{id}.removed"));
        if dir.starts_with(&self.config.plugins_dir) && dir.exists() {
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(dir, &aside).map_err(|e| internal("moving its folder aside", &e))?;
            crate::crash::point("remove:aside");
            std::fs::remove_dir_all(&aside).map_err(|e| internal("deleting its folder", &e))?;
        }
        self.approvals.remove(id)?;
        self.disabled
            .set(id, false)
            .map_err(|e| internal("clearing its disabled state", &e))?;
        self.origins
            .remove(id)
            .map_err(|e| internal("forgetting its source", &e))?;
        self.seniority.forget(id);
        crate::metrics::METRICS.forget_plugin(id);
        // Its kept versions go with it: a rollback needs an installed plugin.
        self.history
            .clear(id)
            .map_err(|e| internal("deleting its kept versions", &e))?;
        let mut said = format!("plugin {id} removed: stopped {stopped} worker(s)");
        if purge {
            let storage = self.workers.authority.storage.clone();
            let plugin_id = id.to_owned();
            let keys = tokio::task::spawn_blocking(move || storage.purge_plugin(&plugin_id))
                .await
                .map_err(|e| internal("purging its storage", &e))?
                .map_err(|e| internal("purging its storage", &e))?;
            said.push_str(&format!("; purged {keys} stored key(s)"));
        } else {
            said.push_str("; its storage is kept (--purge deletes it)");
        }
        tracing::info!(plugin = id, purge, "{said}");
        Ok(said)
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
