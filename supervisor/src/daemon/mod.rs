//! The daemon's shared state and the operations behind the agent API.
//!
//! `plugins/` holds what a plugin set is (folders, manifests, trust, kept
//! versions) and knows nothing of the daemon; the operations that change the
//! running set live here, one file per kind.

mod history;
mod install;
mod lifecycle;
mod reload;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tonic::Code;

use crate::broker::grants::Grant;
use crate::config::Config;
use crate::plugins::approvals::Approvals;
use crate::plugins::registry::{Plugin, Registry};
use crate::workers::{CallError, Workers};

/// tarkd's state.
pub struct Daemon {
    pub config: Arc<Config>,
    registry: RwLock<Arc<Registry>>,
    pub workers: Workers,
    /// What is known of each tool plugin's tools.
    pub(crate) catalog: crate::tools::catalog::Catalog,
    pub started: Instant,
    /// The operator's approvals, on disk.
    pub approvals: Approvals,
    /// Which plugins the operator disabled, on disk.
    pub disabled: crate::plugins::lifecycle::Disabled,
    /// Past versions kept for rollback.
    pub history: crate::plugins::history::History,
    /// The keys plugin packages may be signed with.
    pub trust: crate::plugins::trust::TrustStore,
    /// Where each plugin was installed from.
    pub origins: crate::plugins::lifecycle::Origins,
    /// Installs run one at a time.
    pub install_lock: tokio::sync::Mutex<()>,
    /// `config.tark_version`, parsed once: what manifests are checked against.
    pub host_version: semver::Version,
    /// Device flows in progress (sign-in through auth plugins).
    pub flows: crate::api::auth::Flows,
    /// PKCE sign-ins from manifests' `[oauth]` waiting for their code.
    pub oauth_logins: crate::oauth::Logins,
    /// Started channels (polled by tarkd, restarted with their workers).
    pub channels: crate::api::channels::Channels,
    /// Tool names more than one plugin claims → how `sources.conflicts`
    /// settled each (for diagnostics; each new one is audited once).
    pub(crate) tool_conflicts: Mutex<BTreeMap<String, (Vec<String>, String)>>,
    /// When each plugin was first installed: who keeps a name two claim.
    pub seniority: Arc<crate::plugins::seniority::Seniority>,
}

impl Daemon {
    pub fn new(
        config: Arc<Config>,
        registry: Registry,
        workers: Workers,
        approvals: Approvals,
        host_version: semver::Version,
        seniority: Arc<crate::plugins::seniority::Seniority>,
    ) -> Self {
        let channels = crate::api::channels::Channels::new(&config.state_dir);
        let disabled = crate::plugins::lifecycle::Disabled::new(&config.state_dir);
        disabled.apply_all(&registry);
        let trust = crate::plugins::trust::TrustStore::new(&config.state_dir);
        crate::plugins::trust::judge_installed(
            &trust,
            registry.plugins.values().map(|p| &**p),
            false,
        );
        let history = crate::plugins::history::History::new(
            &config.plugins_dir,
            config.lifecycle.keep_versions,
        );
        history.recover();
        let origins = crate::plugins::lifecycle::Origins::new(&config.state_dir);
        let found = registry.notes.clone();
        let catalog = crate::tools::catalog::Catalog::new(config.workers.max_live);
        let daemon = Self {
            config,
            registry: RwLock::new(Arc::new(registry)),
            workers,
            catalog,
            started: Instant::now(),
            approvals,
            disabled,
            history,
            trust,
            origins,
            install_lock: tokio::sync::Mutex::new(()),
            host_version,
            flows: crate::api::auth::Flows::default(),
            oauth_logins: crate::oauth::Logins::default(),
            channels,
            tool_conflicts: Mutex::default(),
            seniority,
        };
        daemon.audit_notes(&found);
        daemon
    }

    /// Puts a (re)installed plugin in the registry; its cached tool lists go.
    pub fn replace_plugin(&self, plugin: Arc<Plugin>) {
        self.disabled.apply(&plugin);
        crate::plugins::trust::judge_installed(&self.trust, [&*plugin], false);
        let id = plugin.id.clone();
        {
            let mut current = self.registry.write().unwrap_or_else(|p| p.into_inner());
            let mut plugins = current.plugins.clone();
            plugins.insert(id.clone(), plugin);
            let notes = current.notes.clone();
            let mut next = Registry { plugins, notes };
            let new = next.settle(self.config.sources.conflicts);
            *current = Arc::new(next);
            drop(current);
            self.audit_notes(&new);
        }
        self.forget_tools(&id);
    }

    /// Puts a whole rescanned registry in place at once; the cached tool lists
    /// of `touched` plugins go.
    pub fn swap_registry(&self, mut registry: Registry, touched: &[&String]) {
        // Contributed ids are settled again over the new set, and what is
        // new since the last settlement is audited.
        let new = registry.settle(self.config.sources.conflicts);
        self.audit_notes(&new);
        self.disabled.apply_all(&registry);
        crate::plugins::trust::judge_installed(
            &self.trust,
            registry.plugins.values().map(|p| &**p),
            false,
        );
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        for id in touched {
            self.forget_tools(id);
        }
    }

    /// Judges every installed plugin's signature again (the trust roots
    /// changed): a revoked or rotated key takes effect on the next call.
    pub fn judge_again(&self) {
        let registry = self.registry();
        crate::plugins::trust::judge_installed(
            &self.trust,
            registry.plugins.values().map(|p| &**p),
            true,
        );
    }

    /// Recomputes every plugin's grant from its manifest, its approval and the
    /// policy. A plugin whose approval cannot be read gets nothing, and says why.
    pub fn refresh_grants(&self) {
        for id in self.registry().plugins.keys() {
            self.refresh_grant(id);
        }
    }

    /// Recomputes one plugin's grant (after an install, update or grants change).
    pub fn refresh_grant(&self, id: &str) {
        let grants = &self.workers.authority.grants;
        let registry = self.registry();
        let Some(loaded) = registry.get(id).and_then(|p| p.loaded.as_ref()) else {
            grants.remove(id);
            return;
        };
        let approved = self.approvals.get(id).unwrap_or_else(|e| {
            tracing::error!(plugin = id, "{e}; nothing is granted");
            None
        });
        let declared = &loaded.manifest.capabilities;
        let mut grant = Grant::new(id, declared, approved.as_ref(), &self.config.policy);
        grant.oauth = loaded.manifest.oauth.clone().map(Arc::new);
        if !grant.pending.is_empty() {
            tracing::warn!(
                plugin = id,
                "capabilities awaiting approval: {}",
                grant.pending.join(", ")
            );
        }
        grants.set(id, grant);
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn plugin(&self, id: &str) -> Result<Arc<Plugin>, CallError> {
        self.registry().get(id).cloned().ok_or_else(|| {
            CallError::new(
                Code::NotFound,
                format!("no plugin named {id:?} is installed"),
            )
            .because(crate::reasons::Reason::PluginNotFound, id)
        })
    }
}

/// The tenant scan-time findings are audited under: tarkd's own.
pub(crate) const SOURCES_TENANT: &str = "@sources";

impl Daemon {
    /// Records what a scan or a settlement found (shadowed copies,
    /// conflicts) in the audit log.
    pub fn audit_notes(&self, notes: &[(String, String, String)]) {
        for (plugin, what, why) in notes {
            let decision = if what == "shadowed" {
                "shadowed"
            } else {
                "conflict"
            };
            self.workers.authority.audit.record(
                SOURCES_TENANT,
                plugin,
                "sources",
                what,
                decision,
                why,
            );
        }
    }
}
