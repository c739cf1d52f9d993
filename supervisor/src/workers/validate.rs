//! Loading a plugin that is not installed yet, in a worker of its own, before
//! it is switched in: its module is compiled and instantiated inside the
//! sandbox (never in tarkd), against the world or ABI it declares, so an
//! install or reload never switches in a plugin that cannot start.

use super::{EXIT_REPORT_WAIT, WorkerKey, Workers};
use crate::plugins::registry::Plugin;
use crate::workers::CallError;

/// The tenant validation workers run for: internal (`@`), never a caller's.
pub const VALIDATE_TENANT: &str = "@validate";

impl Workers {
    /// Starts a worker for `plugin`, has it load the module, and stops it.
    /// The error is the worker's own account of why the module did not load.
    pub async fn validate(&self, plugin: &Plugin) -> Result<(), CallError> {
        // Command tools have no module to load; their manifest is all there is.
        if plugin.loaded.as_ref().is_some_and(|l| l.is_commands()) {
            return Ok(());
        }
        let key = WorkerKey {
            tenant: VALIDATE_TENANT.to_owned(),
            plugin: plugin.id.clone(),
        };
        let (slot, in_use) = self.slot_in_use(&key);
        let loaded = self.ensure_worker(&key, &slot, plugin).await;
        drop(in_use);
        if let Some(w) = slot.worker.lock().await.take() {
            w.stop();
            let _ = w.exit_reason(EXIT_REPORT_WAIT).await;
        }
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        loaded.map(|_| ())
    }
}
