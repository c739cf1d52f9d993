//! Enabling, disabling and removing installed plugins: the daemon side of
//! `plugins::lifecycle` (see there for what survives a crash at each step).

use std::sync::atomic::Ordering;

use tonic::Code;

use super::Daemon;
use crate::plugins::lifecycle::managed;
use crate::plugins::registry::Registry;
use crate::workers::CallError;

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
