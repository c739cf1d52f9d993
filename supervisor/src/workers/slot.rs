//! One tenant × plugin's place in the worker manager: its live worker process, if
//! any, and what tarkd remembers across that worker's restarts (counters, the last
//! error, crash history for backoff and quarantine, a module that failed to load).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tark_proto::worker::v1 as pb;
use tark_proto::worker::v1::worker_client::WorkerClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::restart::CrashHistory;

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
    /// The plugin interface the component exports (package and version).
    pub contract: String,
    /// A core module's exports of tark's ABI (empty for components).
    pub provides: Vec<String>,
}

impl SlotStats {
    /// Worker starts after the first.
    pub fn restarts(&self) -> u64 {
        self.starts.saturating_sub(1)
    }
}

/// A live worker process.
pub(super) struct Worker {
    pub(super) pid: u32,
    pub(super) client: WorkerClient<Channel>,
    pub(super) exit: watch::Receiver<Option<String>>,
    /// The calls sent to the worker and not yet answered.
    pub(super) window: super::window::Window,
    /// Set when tarkd itself ends the worker (restart, shutdown): not a crash.
    pub(super) stopping: Arc<AtomicBool>,
}

impl Worker {
    pub(super) fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Why the worker exited, once it has; `None` if it is still running after `wait`.
    pub(super) async fn exit_reason(&self, wait: Duration) -> Option<String> {
        let mut rx = self.exit.clone();
        let waited = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        waited.ok().and_then(|r| r.ok().and_then(|v| v.clone()))
    }

    /// Ends the worker on tarkd's behalf; its exit is not counted as a crash.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.kill();
    }

    /// Kills a worker that misbehaved; its exit counts as a crash.
    pub(super) fn kill(&self) {
        kill_group(self.pid);
    }
}

/// Kills a worker spawned as `pid`: it leads its own process group (with the
/// child it forked into its PID namespace), so the group is killed.
pub(super) fn kill_group(pid: u32) {
    let pgid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
}

/// One tenant × plugin: its live worker, if any, and its history.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) worker: tokio::sync::Mutex<Option<Arc<Worker>>>,
    pub(super) stats: Mutex<SlotStats>,
    /// A load failure for this module (by SHA-256): the same bytes will fail the
    /// same way, so calls fail fast until the plugin changes or is restarted.
    pub(super) load_error: Mutex<Option<(String, String)>>,
    /// Crashes of this slot's workers: backoff and quarantine.
    pub(super) history: Mutex<CrashHistory>,
    /// Calls under way (from before their worker is found or started): a
    /// worker with any is busy and never stopped for idleness or room.
    pub(super) in_flight: AtomicUsize,
    /// When a call last began or ended.
    pub(super) last_used: Mutex<Option<Instant>>,
}

/// A call under way on a slot; ends (and counts as use) when dropped.
pub(super) struct InUse(Arc<Slot>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slot {
    pub(super) fn stats(&self) -> std::sync::MutexGuard<'_, SlotStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn load_error(&self) -> std::sync::MutexGuard<'_, Option<(String, String)>> {
        self.load_error.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn history(&self) -> std::sync::MutexGuard<'_, CrashHistory> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a call as under way until the returned guard drops.
    pub(super) fn begin_use(slot: &Arc<Slot>) -> InUse {
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        slot.touch();
        InUse(Arc::clone(slot))
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// When a call last began or ended (`now` if none has: a worker only
    /// starts within a call).
    pub(super) fn last_used(&self, now: Instant) -> Instant {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(now)
    }
}
