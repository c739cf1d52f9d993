//! Rescanning and switching the plugin set: the daemon side of
//! `plugins::reload` (see there for the all-or-nothing rule).

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Code;

use super::Daemon;
use crate::plugins::registry::{Plugin, Registry};
use crate::plugins::reload::{Change, diff};
use crate::workers::CallError;

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
