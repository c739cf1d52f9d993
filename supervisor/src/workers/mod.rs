//! The worker manager: one worker process per tenant × plugin, started on first
//! use, replaced after it dies, and never trusted with anything but its own calls.
//!
//! [`slot`] holds one tenant × plugin's state, [`start`] brings a worker up,
//! [`call`] makes one call through it ([`error`]: how a call fails),
//! [`exit`] tells how it ended, [`restart`] decides when it may come back,
//! [`limits`] what one call of a plugin may use, [`bounds`] how many workers
//! may live and which gives way, [`cgroup`] the cgroup each one runs in,
//! [`standby`] workers started ahead of need, [`validate`] loading a plugin
//! before it is installed.

mod backstop;
pub mod bounds;
pub mod cache;
mod call;
pub mod cgroup;
pub mod channel;
mod error;
mod eviction;
mod exit;
pub mod ids;
pub mod limits;
pub mod restart;
mod slot;
pub mod spawn;
mod standby;
mod start;
pub mod syscalls;
pub mod validate;
mod window;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Code;

use crate::broker::Authority;
use crate::config::Config;
use crate::metrics::{METRICS, Metrics};
use crate::plugins::registry::Plugin;
use crate::reasons::Reason;
use cache::ArtifactCache;
use restart::Decision;
use slot::{Slot, Worker};
use spawn::{Confinement, Spawner};

pub use error::CallError;
pub use exit::describe_exit;
pub use slot::{SlotStats, WorkerKey};

/// How long tarkd waits, after a worker's channel broke, to learn why it exited.
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);

/// How long a stopping tarkd waits for a killed worker's exit to be on record.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Starts, calls and stops workers.
pub struct Workers {
    config: Arc<Config>,
    worker_path: PathBuf,
    cache: ArtifactCache,
    spawner: Spawner,
    /// What every broker hands out, checked: storage, grants, network, audit.
    pub authority: Arc<Authority>,
    slots: Mutex<HashMap<WorkerKey, Arc<Slot>>>,
    /// The uid and gid of each tenant × plugin's processes, when tarkd runs
    /// as root.
    ids: ids::Ids,
    /// Live workers, counted against `[workers]` caps.
    live: bounds::Live,
    /// Where workers' cgroups are made, or why they get none.
    cgroups: Result<cgroup::Cgroups, String>,
    /// Workers started ahead of need ([`Self::keep_standby`] fills it).
    standby: standby::Pool,
}

impl Workers {
    pub fn new(
        config: Arc<Config>,
        worker_path: PathBuf,
        authority: Arc<Authority>,
        cache: ArtifactCache,
        spawner: Spawner,
        cgroups: Result<cgroup::Cgroups, String>,
    ) -> Self {
        let ids = ids::Ids::new(
            config.sandbox.worker_id_base,
            config.sandbox.worker_id_count,
        );
        let standby = standby::Pool::new(config.workers.standby);
        Self {
            config,
            worker_path,
            authority,
            cache,
            spawner,
            slots: Mutex::default(),
            ids,
            live: bounds::Live::default(),
            cgroups,
            standby,
        }
    }

    fn max_response_bytes(&self) -> usize {
        usize::try_from(self.config.limits.max_response_kib << 10).unwrap_or(usize::MAX)
    }

    /// The key's slot with a call counted in, under the slots lock, so the
    /// idle reaper (which forgets idle slots under the same lock) never
    /// forgets one a call is about to use.
    fn slot_in_use(&self, key: &WorkerKey) -> (Arc<Slot>, slot::InUse) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = Arc::clone(slots.entry(key.clone()).or_default());
        let in_use = Slot::begin_use(&slot);
        (slot, in_use)
    }

    /// Live workers bound to a tenant × plugin, and standby workers, counted
    /// under the manager's lock: that it returns at all is what the systemd
    /// watchdog checks.
    pub fn answers(&self) -> (usize, usize) {
        let _slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (all, standby) = self.live.count(standby::TENANT);
        (all - standby, standby)
    }

    /// Test hook (feature `test-hooks`): holds the manager's lock forever,
    /// as a deadlocked tarkd would.
    #[cfg(feature = "test-hooks")]
    pub fn wedge(&self) {
        let _held = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            std::thread::park();
        }
    }

    /// Whether any tenant's worker of this plugin is quarantined.
    pub fn quarantined(&self, plugin: &str) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .any(|(k, s)| k.plugin == plugin && s.history().quarantined())
    }

    /// Status of every tenant × plugin that has had a worker, in key order;
    /// tarkd's own (describing) workers only when their last run failed.
    pub fn stats(&self) -> Vec<(WorkerKey, SlotStats)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = slots
            .iter()
            .map(|(k, s)| (k.clone(), s.stats().clone()))
            .filter(|(k, s)| !bounds::internal(&k.tenant) || !s.last_error.is_empty())
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Standby workers ready to be bound now.
    pub fn standby_ready(&self) -> usize {
        self.standby.ready()
    }

    /// Status of one tenant × plugin, if it has had a worker.
    pub fn slot_stats(&self, key: &WorkerKey) -> Option<SlotStats> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(key).map(|s| s.stats().clone())
    }

    /// The slot's live worker, or a newly started and loaded one.
    async fn ensure_worker(
        &self,
        key: &WorkerKey,
        slot: &Arc<Slot>,
        plugin: &Plugin,
    ) -> Result<Arc<Worker>, CallError> {
        let loaded = self.admit_plugin(&key.tenant, plugin)?;
        if loaded.is_commands() {
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!(
                    "plugin {} runs commands and has no module: it runs in no worker",
                    plugin.id
                ),
            )
            .because(Reason::WrongPluginType, &plugin.id));
        }
        if let Some((sha, err)) = slot.load_error().as_ref()
            && *sha == loaded.sha256
        {
            return Err(CallError::new(Code::FailedPrecondition, err.clone())
                .because(Reason::PluginNotRunnable, &plugin.id));
        }
        let mut current = slot.worker.lock().await;
        if let Some(w) = current.as_ref()
            && !w.exited()
        {
            return Ok(Arc::clone(w));
        }
        self.wait_for_backoff(&plugin.id, slot).await?;
        let ticket = self.admit(key).await?;
        let standby = self.standby.take().map(|mut s| {
            // Its place under the caps is the one just reserved for `key`.
            s.ticket = None;
            s
        });
        let started = self.start(key, slot, plugin, loaded, ticket, standby).await;
        // Replaced once this start is done, not during it: spawning one
        // competes for the CPU with the start.
        self.standby.refill();
        let worker = match started {
            Ok(w) => w,
            Err(e) => {
                slot.stats().last_error = e.message.clone();
                return Err(e);
            }
        };
        *current = Some(Arc::clone(&worker));
        Ok(worker)
    }

    /// Whether `plugin` may act for `tenant` now (enabled for it, signed if
    /// it requires signatures, valid and not silenced by a conflict), so
    /// that a tenant is shown only what it can call.
    pub fn serves(&self, tenant: &str, plugin: &Plugin) -> Result<(), CallError> {
        self.enabled_for(tenant, plugin)?;
        self.admit_plugin(tenant, plugin).map(|_| ())
    }

    /// Refuses a plugin the tenant may not use.
    fn enabled_for(&self, tenant: &str, plugin: &Plugin) -> Result<(), CallError> {
        if crate::config::tenants::enabled(&self.config.tenants, tenant, &plugin.id) {
            return Ok(());
        }
        Err(CallError::new(
            Code::PermissionDenied,
            crate::config::tenants::not_enabled(tenant, &plugin.id),
        )
        .because(Reason::PluginNotEnabledForTenant, &plugin.id))
    }

    /// `--check-host` as this tarkd runs: its config, and the cgroup its
    /// workers really go under (or why they get none).
    pub fn host_findings(&self) -> Vec<crate::hostcheck::Finding> {
        use crate::hostcheck::CgroupProbe;
        let cgroup = match &self.cgroups {
            Ok(c) => CgroupProbe::At {
                dir: c.root().display().to_string(),
                writable: true,
                controllers: c.available().iter().map(|c| c.to_string()).collect(),
            },
            Err(why) => CgroupProbe::Refused(why.clone()),
        };
        crate::hostcheck::run_with(&self.config, cgroup)
    }

    /// A new cgroup for one process of `key` (a worker, or a command tool's
    /// run), where tarkd makes them.
    fn leaf(&self, key: &WorkerKey) -> std::io::Result<Option<cgroup::Leaf>> {
        self.cgroups
            .as_ref()
            .ok()
            .map(|c| c.create(&key.tenant, &key.plugin))
            .transpose()
    }

    /// What a plugin must pass before it acts for `tenant`: enabled, signed
    /// if signatures are required, and valid.
    fn admit_plugin<'p>(
        &self,
        tenant: &str,
        plugin: &'p Plugin,
    ) -> Result<&'p crate::plugins::registry::Loaded, CallError> {
        if plugin.is_disabled() {
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!(
                    "plugin {0} is disabled (tarkctl plugin enable {0})",
                    plugin.id
                ),
            )
            .because(Reason::PluginDisabled, &plugin.id));
        }
        let tenant_requires = self
            .config
            .tenants
            .get(tenant)
            .and_then(|t| t.policy.as_ref())
            .and_then(|p| p.require_signed)
            .unwrap_or(false);
        let policy = self.config.policy.require_signed;
        let tenant_says = (tenant_requires && !policy)
            .then(|| format!("tenant {tenant} requires signed plugins"));
        let required_by = crate::plugins::trust::by_policy(policy).or(tenant_says.as_deref());
        if let Err(why) = plugin.signature_gate(required_by) {
            return Err(CallError::new(Code::FailedPrecondition, why)
                .because(Reason::PluginSignature, &plugin.id));
        }
        let Some(loaded) = plugin.runnable() else {
            let why = plugin.diagnostics.join("; ");
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!("plugin {} cannot run: {why}", plugin.id),
            )
            .because(Reason::PluginNotRunnable, &plugin.id));
        };
        // A validation worker only loads the module: what it could serve is
        // another matter.
        if let Some(conflict) = plugin.conflict()
            && tenant != validate::VALIDATE_TENANT
        {
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!("plugin {} serves nothing: {conflict}", plugin.id),
            )
            .because(Reason::PluginNotRunnable, &plugin.id));
        }
        Ok(loaded)
    }

    /// What running one of `plugin`'s command tools for `tenant` needs: the
    /// checks a worker start passes, then the same confinement as its worker
    /// would get, and the plugin's deadline and output cap.
    pub fn jail(&self, tenant: &str, plugin: &Plugin) -> Result<crate::commands::Jail, CallError> {
        self.enabled_for(tenant, plugin)?;
        let loaded = self.admit_plugin(tenant, plugin)?;
        let key = WorkerKey {
            tenant: tenant.to_owned(),
            plugin: plugin.id.clone(),
        };
        let deadline_ms =
            limits::effective(&self.config.limits, &loaded.manifest.limits).deadline_ms;
        // A cgroup of its own, as a worker gets: a command cannot take memory
        // or tasks from tarkd's cgroup.
        let cgroup = self.leaf(&key).map_err(|e| {
            CallError::new(
                Code::Unavailable,
                format!("plugin {}: making its command's cgroup: {e}", plugin.id),
            )
        })?;
        let (confinement, uid_lease) = self.confinement(&key)?;
        Ok(crate::commands::Jail {
            cgroup,
            spawner: self.spawner.clone(),
            // Namespaces whatever `sandbox.namespaces` says: a command gets
            // no network, and the jail refuses to run without one.
            confinement: Confinement {
                namespaces: true,
                own_root: true,
                ..confinement
            },
            uid_lease,
            authority: Arc::clone(&self.authority),
            deadline: Duration::from_millis(deadline_ms),
            max_output: self.max_response_bytes(),
            landlock_min_abi: self.config.sandbox.landlock.min_abi,
        })
    }

    /// Holds a restart back until the slot's backoff has passed; a quarantined
    /// slot, or a backoff longer than a call may wait, fails the call instead.
    async fn wait_for_backoff(&self, plugin: &str, slot: &Slot) -> Result<(), CallError> {
        let decision = slot.history().may_start(Instant::now());
        let last = || slot.stats().last_error.clone();
        match decision {
            Ok(()) => Ok(()),
            Err(Decision::Quarantine) => Err({
                Metrics::plugin_event(&METRICS.quarantines, plugin);
                CallError::new(
                Code::Unavailable,
                format!(
                    "plugin {plugin} is quarantined after {} crashes within {} s (last: {}); run `tarkctl restart {plugin}` once it is fixed",
                    self.config.supervision.intensity,
                    self.config.supervision.period_s,
                    last()
                ),
            )
            .because(Reason::PluginQuarantined, plugin)
            }),
            Err(Decision::RestartAt(at)) => {
                let wait = at.saturating_duration_since(Instant::now());
                if wait > Duration::from_millis(self.config.limits.deadline_ms) {
                    return Err(CallError::new(
                        Code::Unavailable,
                        format!(
                            "plugin {plugin} is restarting after a crash ({}); retry in {} ms",
                            last(),
                            wait.as_millis()
                        ),
                    )
                    .because(Reason::PluginRestarting, plugin));
                }
                tokio::time::sleep_until(at.into()).await;
                Ok(())
            }
        }
    }

    /// Stops every worker of a plugin (all tenants) and forgets its load failure;
    /// the next call starts fresh. Returns how many workers were stopped.
    pub async fn restart(&self, plugin: &str) -> usize {
        self.restart_where(plugin, |_| true).await
    }

    /// [`Self::restart`] for the tenants `tenant` selects.
    pub async fn restart_where(&self, plugin: &str, tenant: impl Fn(&str) -> bool) -> usize {
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .iter()
                .filter(|(k, _)| k.plugin == plugin && tenant(&k.tenant))
                .map(|(_, s)| Arc::clone(s))
                .collect()
        };
        let mut stopped = 0;
        for slot in slots {
            *slot.load_error() = None;
            slot.history().reset();
            if let Some(w) = slot.worker.lock().await.take() {
                w.stop();
                let _ = w.exit_reason(EXIT_REPORT_WAIT).await;
                stopped += 1;
            }
            let mut stats = slot.stats();
            stats.pid = None;
            stats.last_error.clear();
        }
        stopped
    }

    /// Kills every worker (tarkd is shutting down) and waits, a bounded time,
    /// for their exits and for their cgroups to be removed.
    pub async fn stop_all(&self) {
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().cloned().collect()
        };
        let mut stopped = Vec::new();
        for slot in slots {
            if let Some(w) = slot.worker.lock().await.take() {
                w.stop();
                stopped.push(w);
            }
        }
        let standby = self.standby.drain().await;
        let standby = standby.into_iter().map(standby::Standby::discard);
        let ended = futures_util::future::join_all(standby);
        let exited =
            futures_util::future::join_all(stopped.iter().map(|w| w.exit_reason(STOP_WAIT)));
        futures_util::future::join(ended, exited).await;
        if let Ok(cgroups) = &self.cgroups {
            cgroups.removed().await;
        }
    }
}
