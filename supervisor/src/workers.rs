//! The worker manager: one worker process per tenant × plugin, started on first
//! use, replaced after it dies, and never trusted with anything but its own calls.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tark_proto::worker::v1 as pb;
use tark_proto::worker::v1::worker_client::WorkerClient;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::broker::{Authority, Broker};
use crate::cache::ArtifactCache;
use crate::channel;
use crate::config::Config;
use crate::registry::Plugin;
use crate::restart::{CrashHistory, Decision};
use crate::spawn::{Confinement, Spawner};

/// How long tarkd waits, after a worker's channel broke, to learn why it exited.
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);
/// Lines of a worker's stderr tarkd relays to its own log, per worker.
const MAX_STDERR_LINES: usize = 200;
/// Longest stderr line tarkd reads from a worker.
const MAX_STDERR_LINE: usize = 1024;
/// What a worker writes before seccomp's SIGSYS ends it (tark-worker's seccomp
/// module), followed by the system call's number.
const VIOLATION_PREFIX: &str = "tark-worker: seccomp: forbidden system call ";

/// Which worker: tenant and plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerKey {
    pub tenant: String,
    pub plugin: String,
}

/// Counters and last error of one tenant × plugin, shown by `tarkctl status`.
#[derive(Debug, Clone, Default)]
pub struct SlotStats {
    pub pid: Option<u32>,
    pub starts: u64,
    pub calls: u64,
    pub last_error: String,
    pub sandbox: Vec<pb::SandboxLayer>,
}

impl SlotStats {
    /// Worker starts after the first.
    pub fn restarts(&self) -> u64 {
        self.starts.saturating_sub(1)
    }
}

/// A live worker process.
struct Worker {
    pid: u32,
    client: WorkerClient<Channel>,
    exit: watch::Receiver<Option<String>>,
    /// The worker runs one call at a time; tarkd queues here, so a call's kill
    /// timer starts when it is the call's turn, not while it waits behind others.
    turn: tokio::sync::Mutex<()>,
    /// Set when tarkd itself ends the worker (restart, shutdown): not a crash.
    stopping: Arc<AtomicBool>,
}

impl Worker {
    fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Why the worker exited, once it has; `None` if it is still running after `wait`.
    async fn exit_reason(&self, wait: Duration) -> Option<String> {
        let mut rx = self.exit.clone();
        let waited = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        waited.ok().and_then(|r| r.ok().and_then(|v| v.clone()))
    }

    /// Ends the worker on tarkd's behalf; its exit is not counted as a crash.
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.kill();
    }

    /// Kills a worker that misbehaved; its exit counts as a crash.
    fn kill(&self) {
        // The worker leads its own process group; kill the group.
        let pgid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// One tenant × plugin: its live worker, if any, and its history.
#[derive(Default)]
struct Slot {
    worker: tokio::sync::Mutex<Option<Arc<Worker>>>,
    stats: Mutex<SlotStats>,
    /// A load failure for this module (by SHA-256): the same bytes will fail the
    /// same way, so calls fail fast until the plugin changes or is restarted.
    load_error: Mutex<Option<(String, String)>>,
    /// Crashes of this slot's workers: backoff and quarantine.
    history: Mutex<CrashHistory>,
}

impl Slot {
    fn stats(&self) -> std::sync::MutexGuard<'_, SlotStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_error(&self) -> std::sync::MutexGuard<'_, Option<(String, String)>> {
        self.load_error.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn history(&self) -> std::sync::MutexGuard<'_, CrashHistory> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a call to a plugin failed, as the agent sees it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub code: Code,
    pub message: String,
}

impl CallError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        Status::new(e.code, e.message)
    }
}

/// Adds the system call seccomp stopped to a SIGSYS death's description.
fn with_violation(reason: String, status: ExitStatus, violation: Option<i64>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), violation) {
        (Some(libc::SIGSYS), Some(nr)) => match crate::syscalls::name(nr) {
            Some(name) => format!("{reason}: forbidden system call {name} ({nr})"),
            None => format!("{reason}: forbidden system call {nr}"),
        },
        _ => reason,
    }
}

/// Describes how a process ended, the way an operator wants to read it.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str())
            .unwrap_or("unknown signal");
        format!("killed by signal {sig} ({name})")
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        format!("ended: {status}")
    }
}

/// Starts, calls and stops workers.
pub struct Workers {
    config: Arc<Config>,
    worker_path: PathBuf,
    cache: ArtifactCache,
    spawner: Spawner,
    /// What every broker hands out, checked: storage, grants, network, audit.
    pub authority: Arc<Authority>,
    slots: Mutex<HashMap<WorkerKey, Arc<Slot>>>,
    /// The uid/gid offset of each tenant × plugin, when tarkd runs as root.
    ids: Mutex<HashMap<WorkerKey, u32>>,
}

impl Workers {
    /// How to confine the worker of `key`: namespaces if configured, and its own
    /// uid and gid when tarkd can set them (it is root).
    fn confinement(&self, key: &WorkerKey) -> Confinement {
        let sandbox = &self.config.sandbox;
        let ids = nix::unistd::geteuid().is_root().then(|| {
            let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
            let next = ids.len() as u32;
            let offset = *ids.entry(key.clone()).or_insert(next) % sandbox.worker_id_count;
            let id = sandbox.worker_id_base.saturating_add(offset);
            (id, id)
        });
        Confinement {
            namespaces: sandbox.namespaces,
            ids,
        }
    }

    /// The layers tarkd applies at spawn, as found on the running worker.
    fn outer_layers(&self, pid: u32, confinement: Confinement) -> Vec<pb::SandboxLayer> {
        let layer = |name: &str, applied: bool, detail: String| pb::SandboxLayer {
            name: name.into(),
            applied,
            detail,
        };
        let namespaces = match (confinement.namespaces, crate::spawn::namespaces_of(pid)) {
            (false, _) => layer("namespaces", false, "disabled by sandbox.namespaces".into()),
            (true, ns) if ns.is_empty() => {
                layer("namespaces", false, "the kernel refused them".into())
            }
            (true, ns) => layer("namespaces", true, ns.join(", ")),
        };
        let uid = match confinement.ids {
            Some((uid, _)) => layer("worker_uid", true, format!("uid and gid {uid}")),
            None => layer("worker_uid", false, "tarkd is not root".into()),
        };
        let cgroup = layer(
            "cgroup",
            false,
            format!("{}; rlimits only", crate::spawn::cgroup_delegation()),
        );
        vec![namespaces, uid, cgroup]
    }

    /// Refuses a worker that lacks a layer the config requires.
    fn check_required(&self, plugin: &str, layers: &[pb::SandboxLayer]) -> Result<(), CallError> {
        for required in &self.config.sandbox.require {
            let layer = layers.iter().find(|l| l.name == *required);
            if !layer.is_some_and(|l| l.applied) {
                let found =
                    layer.map_or_else(|| format!("{required}: not reported"), ToString::to_string);
                return Err(CallError::new(
                    Code::FailedPrecondition,
                    format!("plugin {plugin}: required sandbox layer missing: {found}"),
                ));
            }
        }
        Ok(())
    }

    pub fn new(
        config: Arc<Config>,
        worker_path: PathBuf,
        authority: Arc<Authority>,
        cache: ArtifactCache,
        spawner: Spawner,
    ) -> Self {
        Self {
            config,
            worker_path,
            authority,
            cache,
            spawner,
            slots: Mutex::default(),
            ids: Mutex::default(),
        }
    }

    fn max_response_bytes(&self) -> usize {
        usize::try_from(self.config.limits.max_response_kib << 10).unwrap_or(usize::MAX)
    }

    fn slot(&self, key: &WorkerKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(key.clone()).or_default())
    }

    /// Whether any tenant's worker of this plugin is quarantined.
    pub fn quarantined(&self, plugin: &str) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .any(|(k, s)| k.plugin == plugin && s.history().quarantined())
    }

    /// Status of every tenant × plugin that has had a worker, in key order.
    pub fn stats(&self) -> Vec<(WorkerKey, SlotStats)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = slots
            .iter()
            .map(|(k, s)| (k.clone(), s.stats().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Makes one call to a plugin for a tenant, starting its worker if need be.
    pub async fn call(
        &self,
        tenant: &str,
        plugin: &Plugin,
        call: pb::invoke_request::Call,
    ) -> Result<pb::invoke_response::Outcome, CallError> {
        let key = WorkerKey {
            tenant: tenant.to_owned(),
            plugin: plugin.id.clone(),
        };
        let slot = self.slot(&key);
        let worker = self.ensure_worker(&key, &slot, plugin).await?;
        slot.stats().calls += 1;

        let limit = Duration::from_millis(
            self.config.limits.deadline_ms + self.config.limits.kill_grace_ms,
        );
        let mut client = worker.client.clone();
        let request = pb::InvokeRequest { call: Some(call) };
        let turn = worker.turn.lock().await;
        // A worker whose process ended fails the call at once, even if something
        // (an orphan of a kill racing its start) still holds the other end of
        // its channel: that leftover is killed with the worker's process group.
        let mut exited = worker.exit.clone();
        let result = tokio::select! {
            r = tokio::time::timeout(limit, client.invoke(request)) => r,
            _ = exited.wait_for(Option::is_some) => {
                worker.kill();
                Ok(Err(tonic::Status::unavailable("the worker exited")))
            }
        };
        drop(turn);
        let id = &plugin.id;
        let outcome = match result {
            Err(_) => {
                // The worker ignored its own deadline: it is stuck or compromised.
                worker.kill();
                let msg = format!(
                    "plugin {id} did not answer within {} ms; its worker was killed",
                    limit.as_millis()
                );
                Err(CallError::new(Code::DeadlineExceeded, msg))
            }
            Ok(Err(status)) => {
                let reason = match worker.exit_reason(EXIT_REPORT_WAIT).await {
                    Some(r) => r,
                    None => {
                        worker.kill();
                        format!("its channel failed ({})", status.message())
                    }
                };
                Err(CallError::new(
                    Code::Unavailable,
                    format!("worker for plugin {id} exited: {reason}"),
                ))
            }
            Ok(Ok(resp)) => {
                match check_size(id, resp.into_inner(), self.max_response_bytes())?.outcome {
                    Some(pb::invoke_response::Outcome::Failure(f)) => Err(failure_to_error(id, &f)),
                    Some(o) => {
                        slot.history().succeeded();
                        Ok(o)
                    }
                    None => Err(CallError::new(
                        Code::Internal,
                        format!("plugin {id}: worker sent an empty answer"),
                    )),
                }
            }
        };
        if let Err(e) = &outcome {
            slot.stats().last_error = e.message.clone();
        }
        outcome
    }

    /// The slot's live worker, or a newly started and loaded one.
    async fn ensure_worker(
        &self,
        key: &WorkerKey,
        slot: &Arc<Slot>,
        plugin: &Plugin,
    ) -> Result<Arc<Worker>, CallError> {
        let Some(loaded) = plugin.runnable() else {
            let why = plugin.diagnostics.join("; ");
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!("plugin {} cannot run: {why}", plugin.id),
            ));
        };
        if let Some((sha, err)) = slot.load_error().as_ref()
            && *sha == loaded.sha256
        {
            return Err(CallError::new(Code::FailedPrecondition, err.clone()));
        }
        let mut current = slot.worker.lock().await;
        if let Some(w) = current.as_ref()
            && !w.exited()
        {
            return Ok(Arc::clone(w));
        }
        self.wait_for_backoff(&plugin.id, slot).await?;
        let worker = match self.start(key, slot, plugin, loaded).await {
            Ok(w) => w,
            Err(e) => {
                slot.stats().last_error = e.message.clone();
                return Err(e);
            }
        };
        *current = Some(Arc::clone(&worker));
        Ok(worker)
    }

    /// Holds a restart back until the slot's backoff has passed; a quarantined
    /// slot, or a backoff longer than a call may wait, fails the call instead.
    async fn wait_for_backoff(&self, plugin: &str, slot: &Slot) -> Result<(), CallError> {
        let decision = slot.history().may_start(Instant::now());
        let last = || slot.stats().last_error.clone();
        match decision {
            Ok(()) => Ok(()),
            Err(Decision::Quarantine) => Err(CallError::new(
                Code::Unavailable,
                format!(
                    "plugin {plugin} is quarantined after {} crashes within {} s (last: {}); run `tarkctl restart {plugin}` once it is fixed",
                    self.config.supervision.intensity,
                    self.config.supervision.period_s,
                    last()
                ),
            )),
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
                    ));
                }
                tokio::time::sleep_until(at.into()).await;
                Ok(())
            }
        }
    }

    async fn start(
        &self,
        key: &WorkerKey,
        slot: &Arc<Slot>,
        plugin: &Plugin,
        loaded: &crate::registry::Loaded,
    ) -> Result<Arc<Worker>, CallError> {
        let id = &plugin.id;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            CallError::new(Code::Unavailable, format!("plugin {id}: {what}: {e}"))
        };
        let label = format!("{}/{}", key.tenant, key.plugin);
        let confinement = self.confinement(key);
        let spawned =
            self.spawner.spawn(label, confinement).await.map_err(|e| {
                unavailable(&format!("starting {}", self.worker_path.display()), &e)
            })?;
        let pid = spawned.pid;
        let (exit_tx, exit_rx) = watch::channel(None);
        let mut child = spawned.child;
        let relay = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(relay_stderr(id.clone(), pid, stderr)));
        let watched = Arc::clone(slot);
        let plugin_id = id.clone();
        // The pid tarkd shows for this worker (the namespaced child, once loaded).
        let shown_pid = Arc::new(std::sync::atomic::AtomicU32::new(pid));
        let shown = Arc::clone(&shown_pid);
        let stopping = Arc::new(AtomicBool::new(false));
        let asked = Arc::clone(&stopping);
        let policy = self.config.supervision;
        tokio::spawn(async move {
            let status = child.wait().await;
            // The stderr relay ends when the worker's last write end closes.
            let violation = match relay {
                Some(r) => tokio::time::timeout(EXIT_REPORT_WAIT, r)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten(),
                None => None,
            };
            let reason = match status {
                Ok(status) => with_violation(describe_exit(status), status, violation),
                Err(e) => format!("could not be waited for: {e}"),
            };
            let crashed = !asked.load(Ordering::SeqCst);
            let decision = crashed.then(|| watched.history().crashed(&policy, Instant::now()));
            {
                let mut stats = watched.stats();
                if stats.pid == Some(shown.load(Ordering::SeqCst)) {
                    stats.pid = None;
                    if crashed {
                        stats.last_error = format!("worker exited: {reason}");
                    }
                }
            }
            match decision {
                Some(Decision::Quarantine) => {
                    tracing::error!(plugin = %plugin_id, pid, "worker {reason}; plugin quarantined after {} crashes in {} s", policy.intensity, policy.period_s)
                }
                Some(Decision::RestartAt(_)) => {
                    tracing::warn!(plugin = %plugin_id, pid, "worker {reason}")
                }
                None => tracing::info!(plugin = %plugin_id, pid, "worker {reason}"),
            }
            let _ = exit_tx.send(Some(reason));
        });

        // The broker for this worker: its identity is fixed here, from the key.
        let broker = Broker::new(
            key.tenant.clone(),
            key.plugin.clone(),
            plugin.dir.clone(),
            Arc::clone(&self.authority),
        );
        let broker_stream =
            channel::adopt(spawned.broker).map_err(|e| unavailable("broker channel", &e))?;
        let mut exited = exit_rx.clone();
        let gone = async move {
            let _ = exited.wait_for(Option::is_some).await;
        };
        tokio::spawn(channel::serve_broker(broker, broker_stream, gone));

        let control =
            channel::adopt(spawned.control).map_err(|e| unavailable("control channel", &e))?;
        let client = channel::worker_client(control)
            .await
            .map_err(|e| unavailable("control channel", &e))?;
        let worker = Arc::new(Worker {
            pid,
            client,
            exit: exit_rx,
            turn: tokio::sync::Mutex::new(()),
            stopping,
        });

        let mut layers = Vec::new();
        match self.load(&worker, loaded).await.and_then(|inner| {
            // The worker answered, so it runs: as the child of the pid it was
            // spawned as when it entered its own PID namespace.
            let shown = crate::spawn::worker_pid(pid);
            shown_pid.store(shown, Ordering::SeqCst);
            layers = self.outer_layers(shown, confinement);
            layers.extend(inner);
            self.check_required(id, &layers)
        }) {
            Ok(()) => {
                let pid = shown_pid.load(Ordering::SeqCst);
                let mut stats = slot.stats();
                stats.starts += 1;
                stats.pid = Some(pid);
                stats.sandbox = layers;
                tracing::info!(plugin = %id, tenant = %key.tenant, pid, "worker started");
                for missing in stats.sandbox.iter().filter(|l| !l.applied) {
                    tracing::warn!(plugin = %id, tenant = %key.tenant, pid, "sandbox layer {missing}");
                }
                Ok(worker)
            }
            Err(e) => {
                worker.kill();
                if e.code == Code::FailedPrecondition || e.code == Code::InvalidArgument {
                    *slot.load_error() = Some((loaded.sha256.clone(), e.message.clone()));
                }
                Err(e)
            }
        }
    }

    /// Sends the module (precompiled when the cache has it) and the limits.
    async fn load(
        &self,
        worker: &Worker,
        loaded: &crate::registry::Loaded,
    ) -> Result<Vec<pb::SandboxLayer>, CallError> {
        let l = &self.config.limits;
        let fuel = l.fuel > 0;
        let limits = pb::Limits {
            deadline_ms: l.deadline_ms,
            memory_bytes: l.memory_mib << 20,
            table_elements: l.table_elements,
            instances: l.instances,
            fuel: l.fuel,
            max_response_bytes: l.max_response_kib << 10,
        };
        let kind = match loaded.manifest.plugin_type {
            crate::manifest::PluginType::Auth => pb::PluginKind::Auth,
            crate::manifest::PluginType::Tool => pb::PluginKind::Tool,
            crate::manifest::PluginType::Provider => pb::PluginKind::Provider,
            crate::manifest::PluginType::Channel => pb::PluginKind::Channel,
            crate::manifest::PluginType::Hook => pb::PluginKind::Hook,
        };
        let request = |module| pb::LoadRequest {
            kind: kind as i32,
            limits: Some(limits),
            module: Some(module),
            lockdown: self.config.sandbox.lockdown,
            seccomp_log: self.config.sandbox.seccomp == crate::config::SeccompMode::Log,
        };
        let name = &loaded.manifest.name;
        let mut client = worker.client.clone();
        if let Some(artifact) = self.cache.get(&loaded.sha256, fuel) {
            match client
                .load(request(pb::load_request::Module::Precompiled(artifact)))
                .await
            {
                Ok(r) => return Ok(r.into_inner().sandbox),
                Err(s) if s.code() == Code::DataLoss => {
                    tracing::info!(plugin = %name, "cached artifact refused ({}); recompiling", s.message());
                    self.cache.remove(&loaded.sha256, fuel);
                }
                Err(s) => return Err(self.load_error(worker, name, s).await),
            }
        }
        let wasm = pb::load_request::Module::Wasm(loaded.wasm.to_vec());
        let reply = match client.load(request(wasm)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(self.load_error(worker, name, s).await),
        };
        tracing::info!(plugin = %name, compile_ms = reply.compile_micros / 1000, "compiled");
        if !reply.precompiled.is_empty()
            && let Err(e) = self.cache.put(&loaded.sha256, fuel, &reply.precompiled)
        {
            tracing::warn!(plugin = %name, "caching the compiled module failed: {e}");
        }
        Ok(reply.sandbox)
    }

    async fn load_error(&self, worker: &Worker, name: &str, s: Status) -> CallError {
        match s.code() {
            Code::FailedPrecondition | Code::InvalidArgument => CallError::new(
                Code::FailedPrecondition,
                format!("plugin {name} cannot be loaded: {}", s.message()),
            ),
            _ => {
                let reason = worker
                    .exit_reason(EXIT_REPORT_WAIT)
                    .await
                    .unwrap_or_else(|| s.message().to_owned());
                CallError::new(
                    Code::Unavailable,
                    format!("worker for plugin {name} failed to load it: {reason}"),
                )
            }
        }
    }

    /// Stops every worker of a plugin (all tenants) and forgets its load failure;
    /// the next call starts fresh. Returns how many workers were stopped.
    pub async fn restart(&self, plugin: &str) -> usize {
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .iter()
                .filter(|(k, _)| k.plugin == plugin)
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

    /// Kills every worker (tarkd is shutting down).
    pub async fn stop_all(&self) {
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().cloned().collect()
        };
        for slot in slots {
            if let Some(w) = slot.worker.lock().await.take() {
                w.stop();
            }
        }
    }
}

/// The worker caps its answers; tarkd checks again on receipt, because a
/// compromised worker would not.
fn check_size(
    plugin: &str,
    reply: pb::InvokeResponse,
    limit: usize,
) -> Result<pb::InvokeResponse, CallError> {
    use prost::Message;
    let size = reply.encoded_len();
    if size > limit {
        return Err(CallError::new(
            Code::ResourceExhausted,
            format!("plugin {plugin}: response of {size} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(reply)
}

/// Maps a worker's failure report to the agent's status code.
fn failure_to_error(plugin: &str, f: &pb::Failure) -> CallError {
    use pb::FailureKind as K;
    let code = match K::try_from(f.kind).unwrap_or(K::Unspecified) {
        K::Deadline => Code::DeadlineExceeded,
        K::MemoryLimit | K::TableLimit | K::Fuel | K::ResponseTooLarge => Code::ResourceExhausted,
        K::WrongWorld | K::NotLoaded => Code::FailedPrecondition,
        K::BadRequest => Code::InvalidArgument,
        K::Trap | K::Instantiate => Code::Aborted,
        K::Unspecified => Code::Unknown,
    };
    CallError::new(code, format!("plugin {plugin}: {}", f.message))
}

/// Relays a worker's stderr into tarkd's log, labelled and bounded.
/// Relays a worker's stderr into tarkd's log, labelled and bounded (line length
/// and count), until the worker exits. Returns the system call the worker said
/// seccomp stopped, if it said so (it is only believed if it then died by SIGSYS).
async fn relay_stderr(
    plugin: String,
    pid: u32,
    stderr: tokio::process::ChildStderr,
) -> Option<i64> {
    use tokio_stream::StreamExt;
    let codec = tokio_util::codec::LinesCodec::new_with_max_length(MAX_STDERR_LINE);
    let mut lines = tokio_util::codec::FramedRead::new(stderr, codec);
    let (mut n, mut violation) = (0, None);
    while let Some(line) = lines.next().await {
        let Ok(line) = line else {
            // An overlong line is dropped whole; anything else ends the stream.
            continue;
        };
        if let Some(nr) = line.strip_prefix(VIOLATION_PREFIX) {
            violation = nr.trim().parse().ok();
        }
        n += 1;
        if n <= MAX_STDERR_LINES {
            tracing::warn!(target: "worker", plugin = %plugin, pid, "{line}");
        }
    }
    violation
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exits_are_described_for_operators() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(31)),
            "killed by signal 31 (SIGSYS)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }

    #[test]
    fn oversized_answers_are_refused_on_receipt() {
        let reply = |text: &str| pb::InvokeResponse {
            outcome: Some(pb::invoke_response::Outcome::ToolResult(pb::ToolResult {
                result: Some(pb::tool_result::Result::Success(text.to_owned())),
            })),
        };
        assert!(check_size("p", reply("small"), 64).is_ok());
        let err = check_size("p", reply(&"x".repeat(100)), 64).err();
        assert_eq!(err.as_ref().map(|e| e.code), Some(Code::ResourceExhausted));
        assert!(err.is_some_and(|e| e.message.starts_with("plugin p: response of 10")));
    }

    #[test]
    fn sigsys_deaths_name_the_call_and_others_ignore_the_claim() {
        let sys = ExitStatus::from_raw(libc::SIGSYS);
        let base = || describe_exit(sys);
        assert_eq!(
            with_violation(base(), sys, Some(libc::SYS_socket)),
            format!(
                "killed by signal 31 (SIGSYS): forbidden system call socket ({})",
                libc::SYS_socket
            )
        );
        assert_eq!(
            with_violation(base(), sys, Some(99_999)),
            "killed by signal 31 (SIGSYS): forbidden system call 99999"
        );
        assert_eq!(
            with_violation(base(), sys, None),
            "killed by signal 31 (SIGSYS)"
        );
        let killed = ExitStatus::from_raw(9);
        assert_eq!(
            with_violation(describe_exit(killed), killed, Some(41)),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn failures_map_to_status_codes() {
        use pb::FailureKind as K;
        let cases = [
            (K::Deadline, Code::DeadlineExceeded),
            (K::MemoryLimit, Code::ResourceExhausted),
            (K::Fuel, Code::ResourceExhausted),
            (K::ResponseTooLarge, Code::ResourceExhausted),
            (K::Trap, Code::Aborted),
            (K::WrongWorld, Code::FailedPrecondition),
            (K::BadRequest, Code::InvalidArgument),
        ];
        for (kind, code) in cases {
            let e = failure_to_error(
                "p",
                &pb::Failure {
                    kind: kind as i32,
                    message: "m".into(),
                },
            );
            assert_eq!(
                (e.code, e.message.as_str()),
                (code, "plugin p: m"),
                "{kind:?}"
            );
        }
    }
}
