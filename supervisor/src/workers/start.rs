//! Starting a worker: spawning it confined, wiring its two channels (tarkd's
//! client of the worker, the worker's broker), watching its exit, loading the
//! module (precompiled from the cache when tarkd has it) and checking the sandbox
//! layers it reports against what the config requires.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tark_proto::wasm::CoreShape;

use tark_proto::worker::v1 as pb;
use tokio::sync::watch;
use tonic::{Code, Status};

use super::cgroup;
use super::exit::{describe_exit, relay_stderr, with_violation};
use super::ids;
use super::restart::Decision;
use super::slot::{Slot, Worker, WorkerKey};
use super::spawn::Confinement;
use super::standby::Standby;
use super::{CallError, EXIT_REPORT_WAIT, Workers, channel};
use crate::broker::Broker;
use crate::plugins::registry::Plugin;

/// The worker_uid layer: applied only if the kernel reports every uid and
/// gid of the process (real, effective, saved, filesystem) as the ones asked,
/// and none is root.
fn uid_layer(asked: (u32, u32), found: Option<(Vec<u32>, Vec<u32>)>) -> pb::SandboxLayer {
    let Some((uids, gids)) = found else {
        return layer(
            "worker_uid",
            false,
            "its credentials could not be read".into(),
        );
    };
    let (uid, gid) = asked;
    let all = |ids: &[u32], want: u32| ids.len() == 4 && ids.iter().all(|&i| i == want);
    if uid != 0 && all(&uids, uid) && all(&gids, gid) {
        layer(
            "worker_uid",
            true,
            format!("uid {uid}, gid {gid} (as the kernel reports)"),
        )
    } else {
        layer(
            "worker_uid",
            false,
            format!(
                "asked for uid {uid}, gid {gid}; the kernel reports uids {uids:?}, gids {gids:?}"
            ),
        )
    }
}

/// A worker process for a tenant × plugin, before its channels are served.
pub(super) struct Process {
    pub(super) child: tokio::process::Child,
    pub(super) pid: u32,
    pub(super) control: Control,
    pub(super) broker: std::os::unix::net::UnixStream,
    pub(super) confinement: Confinement,
    pub(super) lease: Option<ids::Lease>,
    pub(super) leaf: Option<cgroup::Leaf>,
}

/// tarkd's end of a worker's control channel: connected already (a standby
/// worker), or not yet.
pub(super) enum Control {
    Stream(std::os::unix::net::UnixStream),
    Client(tark_proto::worker::v1::worker_client::WorkerClient<tonic::transport::Channel>),
}

fn layer(name: &str, applied: bool, detail: String) -> pb::SandboxLayer {
    pb::SandboxLayer {
        name: name.into(),
        applied,
        detail,
    }
}

impl Workers {
    /// How to confine a process of `key`: namespaces if configured, and its
    /// tenant × plugin's own uid and gid when tarkd can set them (it is
    /// root), held by the returned lease until the process is gone.
    pub(super) fn confinement(
        &self,
        key: &WorkerKey,
    ) -> Result<(Confinement, Option<ids::Lease>), CallError> {
        let lease = if nix::unistd::geteuid().is_root() {
            let lease = self.ids.lease(key).map_err(|e| {
                CallError::new(
                    Code::ResourceExhausted,
                    format!("plugin {}: {e}", key.plugin),
                )
            })?;
            Some(lease)
        } else {
            None
        };
        let confinement = Confinement {
            namespaces: self.config.sandbox.namespaces,
            ids: lease.as_ref().map(|l| (l.uid, l.uid)),
            own_root: false,
        };
        Ok((confinement, lease))
    }

    /// The layers tarkd applies at spawn, as found on the running worker.
    fn outer_layers(
        &self,
        pid: u32,
        confinement: Confinement,
        cgroup: pb::SandboxLayer,
        reported_namespaces: &[String],
    ) -> Vec<pb::SandboxLayer> {
        let namespaces = match (
            confinement.namespaces,
            crate::workers::spawn::namespaces_of(pid, reported_namespaces),
        ) {
            (false, _) => layer("namespaces", false, "disabled by sandbox.namespaces".into()),
            (true, ns) if ns.is_empty() => {
                layer("namespaces", false, "the kernel refused them".into())
            }
            (true, ns) => layer("namespaces", true, ns.join(", ")),
        };
        let uid = match confinement.ids {
            Some(asked) => uid_layer(asked, crate::workers::spawn::ids_of(pid)),
            None => layer("worker_uid", false, "tarkd is not root".into()),
        };
        vec![namespaces, uid, cgroup]
    }

    /// The cgroup layer of a worker placed in `leaf` (none: why not).
    fn cgroup_layer(&self, leaf: Option<&cgroup::Leaf>) -> pb::SandboxLayer {
        let (applied, detail) = match (&self.cgroups, leaf) {
            (Ok(cgroups), Some(leaf)) => cgroups.layer(leaf),
            (Ok(_), None) => (false, "no cgroup was made".into()),
            (Err(why), _) => (false, format!("{why}; rlimits only")),
        };
        layer("cgroup", applied, detail)
    }

    /// Refuses a worker that lacks a layer the config requires, or runs as
    /// another uid than the one it was given (never a silent root worker).
    fn check_required(
        &self,
        plugin: &str,
        confinement: Confinement,
        layers: &[pb::SandboxLayer],
    ) -> Result<(), CallError> {
        let asked_uid = confinement.ids.is_some().then_some("worker_uid");
        for required in self
            .config
            .sandbox
            .require
            .iter()
            .map(String::as_str)
            .chain(asked_uid)
        {
            let layer = layers.iter().find(|l| l.name == *required);
            if !layer.is_some_and(|l| l.applied) {
                let found =
                    layer.map_or_else(|| format!("{required}: not reported"), ToString::to_string);
                return Err(CallError::new(
                    Code::FailedPrecondition,
                    format!("plugin {plugin}: required sandbox layer missing: {found}"),
                )
                .because(crate::reasons::Reason::SandboxIncomplete, plugin));
            }
        }
        Ok(())
    }

    /// Spawns a worker process for `key`, confined.
    async fn spawn_for(&self, key: &WorkerKey, id: &str) -> Result<Process, CallError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            CallError::new(Code::Unavailable, format!("plugin {id}: {what}: {e}"))
        };
        let label = format!("{}/{}", key.tenant, key.plugin);
        let (confinement, lease) = self.confinement(key)?;
        let leaf = self
            .leaf(key)
            .map_err(|e| unavailable("making its cgroup", &e))?;
        let procs = leaf
            .as_ref()
            .map(cgroup::Leaf::procs)
            .transpose()
            .map_err(|e| unavailable("making its cgroup", &e))?;
        let spawned = self
            .spawner
            .spawn(label, confinement, procs)
            .await
            .map_err(|e| unavailable(&format!("starting {}", self.worker_path.display()), &e))?;
        Ok(Process {
            child: spawned.child,
            pid: spawned.pid,
            control: Control::Stream(spawned.control),
            broker: spawned.broker,
            confinement,
            lease,
            leaf,
        })
    }

    /// Starts and loads a worker for `key`: `standby` bound to it when there
    /// is one and it binds, else a newly spawned one.
    pub(super) async fn start(
        &self,
        key: &WorkerKey,
        slot: &Arc<Slot>,
        plugin: &Plugin,
        loaded: &crate::plugins::registry::Loaded,
        ticket: super::bounds::Ticket,
        standby: Option<Standby>,
    ) -> Result<Arc<Worker>, CallError> {
        let id = &plugin.id;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            CallError::new(Code::Unavailable, format!("plugin {id}: {what}: {e}"))
        };
        let bound = match standby.map(|s| self.bind(s, key)) {
            Some(Ok(process)) => Some(process),
            Some(Err(why)) => {
                tracing::warn!(plugin = %id, tenant = %key.tenant, "standby worker not bound ({why}); spawning one");
                None
            }
            None => None,
        };
        let from_standby = bound.is_some();
        let process = match bound {
            Some(p) => p,
            None => self.spawn_for(key, id).await?,
        };
        let Process {
            mut child,
            pid,
            control,
            broker: broker_end,
            confinement,
            lease: uid_lease,
            leaf,
        } = process;
        let cgroup_layer = self.cgroup_layer(leaf.as_ref());
        let (exit_tx, exit_rx) = watch::channel(None);
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
            // Its uid, then its place under the caps, are free once the
            // process is gone, before anyone waiting for its exit hears of it
            // (in that order: a start waiting for the place finds the uid
            // free too).
            drop(uid_lease);
            drop(ticket);
            // The stderr relay ends when the worker's last write end closes.
            let violation = match relay {
                Some(r) => tokio::time::timeout(EXIT_REPORT_WAIT, r)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten(),
                None => None,
            };
            let oom = leaf.as_ref().and_then(cgroup::Leaf::oom_kills).unwrap_or(0) > 0;
            let reason = match status {
                Ok(status) if oom && status.signal() == Some(libc::SIGKILL) => format!(
                    "{}: out of memory, by the kernel's OOM killer at its cgroup's memory.max",
                    describe_exit(status)
                ),
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
            // The worker's cgroup goes with it, before its exit is on record:
            // whoever waits for the exit (a stopping tarkd) finds it removed
            // or its removal under way.
            drop(leaf);
            let _ = exit_tx.send(Some(reason));
        });

        // The broker for this worker: its identity is fixed here, from the key.
        let broker = Broker::new(
            key.tenant.clone(),
            key.plugin.clone(),
            plugin.dir.clone(),
            Arc::clone(&shown_pid),
            Arc::clone(&self.authority),
        );
        let broker_stream =
            channel::adopt(broker_end).map_err(|e| unavailable("broker channel", &e))?;
        let mut exited = exit_rx.clone();
        let gone = async move {
            let _ = exited.wait_for(Option::is_some).await;
        };
        tokio::spawn(channel::serve_broker(broker, broker_stream, gone));

        let client = match control {
            Control::Client(client) => client,
            Control::Stream(stream) => {
                let stream =
                    channel::adopt(stream).map_err(|e| unavailable("control channel", &e))?;
                channel::worker_client(stream)
                    .await
                    .map_err(|e| unavailable("control channel", &e))?
            }
        };
        let worker = Arc::new(Worker {
            pid,
            client,
            exit: exit_rx,
            window: Default::default(),
            stopping,
        });

        let mut layers = Vec::new();
        let mut contract = String::new();
        let mut provides = Vec::new();
        match self.load(&worker, loaded).await.and_then(|reply| {
            // The worker answered, so it runs: as the child of the pid it was
            // spawned as when it entered its own PID namespace.
            let shown = crate::workers::spawn::worker_pid(pid);
            shown_pid.store(shown, Ordering::SeqCst);
            layers = self.outer_layers(shown, confinement, cgroup_layer.clone(), &reply.namespaces);
            layers.extend(reply.sandbox);
            contract = reply.contract;
            provides = reply.provides;
            self.check_required(id, confinement, &layers)
        }) {
            Ok(()) => {
                let pid = shown_pid.load(Ordering::SeqCst);
                let mut stats = slot.stats();
                stats.starts += 1;
                crate::metrics::Metrics::plugin_event(&crate::metrics::METRICS.worker_starts, id);
                stats.pid = Some(pid);
                stats.sandbox = layers;
                stats.contract = contract;
                stats.provides = provides;
                tracing::info!(plugin = %id, tenant = %key.tenant, pid, from_standby, "worker started");
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
        loaded: &crate::plugins::registry::Loaded,
    ) -> Result<pb::LoadResponse, CallError> {
        let limits = super::limits::effective(&self.config.limits, &loaded.manifest.limits);
        let fuel = limits.fuel > 0;
        let kind = match loaded.manifest.plugin_type {
            crate::plugins::manifest::PluginType::Auth => pb::PluginKind::Auth,
            crate::plugins::manifest::PluginType::Tool => pb::PluginKind::Tool,
            crate::plugins::manifest::PluginType::Provider => pb::PluginKind::Provider,
            crate::plugins::manifest::PluginType::Channel => pb::PluginKind::Channel,
            crate::plugins::manifest::PluginType::Hook => pb::PluginKind::Hook,
        };
        let request = |module| pb::LoadRequest {
            kind: kind as i32,
            limits: Some(limits.clone()),
            module: Some(module),
            plugin: loaded.manifest.name.clone(),
            version: loaded.manifest.version.to_string(),
            lockdown: self.config.sandbox.lockdown,
            seccomp_log: self.config.sandbox.seccomp == crate::config::SeccompMode::Log,
            landlock_min_abi: self.config.sandbox.landlock.min_abi,
        };
        let name = &loaded.manifest.name;
        let mut client = worker.client.clone();
        // `plugin info` says when a module was adapted (the worker reports
        // only the world it found).
        let label = |mut r: pb::LoadResponse| {
            if tark_proto::wasm::core_shape(&loaded.wasm) == Some(CoreShape::WitBindgen) {
                r.contract = format!("{} ({})", r.contract, tark_proto::wasm::ADAPTED);
            }
            r
        };
        if let Some(artifact) = self.cache.get(&loaded.sha256, fuel) {
            match client
                .load(request(pb::load_request::Module::Precompiled(artifact)))
                .await
            {
                Ok(r) => return Ok(label(r.into_inner())),
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
        Ok(label(reply))
    }

    async fn load_error(&self, worker: &Worker, name: &str, s: Status) -> CallError {
        match s.code() {
            Code::FailedPrecondition | Code::InvalidArgument => CallError::new(
                Code::FailedPrecondition,
                format!("plugin {name} cannot be loaded: {}", s.message()),
            )
            .because(crate::reasons::Reason::PluginNotRunnable, name),
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
}
