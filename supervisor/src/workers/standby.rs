//! Standby workers: a few worker processes started ahead of need, so that a
//! first call or a restart does not wait for a process to be spawned, the
//! worker binary to be relocated and its runtime to start.
//!
//! A standby worker is spawned exactly as a worker is (a uid of its own from
//! the pool, namespaces, its own process group, the death signal, a cleared
//! environment) into a cgroup of its own, and connected; it has been sent
//! nothing: no module, no limits, no broker, and it runs only tark-worker's own
//! code, waiting for `Load`. Binding it to a tenant × plugin moves its uid
//! lease to that key ([`super::ids::Ids::rekey`]) and its processes into the
//! key's new cgroup (checked in the cgroup's `cgroup.procs` afterwards); the
//! start then goes on as for a spawned worker: its broker is served with the
//! key's identity from then on, and `Load` locks it down before the first guest
//! instruction. A bound worker never returns to the pool: it ends with its
//! tenant × plugin.
//!
//! Standby workers count against `workers.max_live` (as tarkd's own tenant
//! `@standby`, under no tenant's cap) and give way first: a start that finds
//! the cap full ends one of them before it would stop anyone's idle worker.
//! The pool is refilled by one task, off every call's path; a refill that
//! finds the cap full retries after a pause.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tark_proto::worker::v1 as pb;
use tark_proto::worker::v1::worker_client::WorkerClient;
use tokio::sync::Notify;
use tonic::Code;
use tonic::transport::Channel;

use super::bounds::Ticket;
use super::cgroup::Leaf;
use super::ids::Lease;
use super::spawn::Confinement;
use super::start::{Control, Process};
use super::{WorkerKey, Workers, channel};

/// tarkd's name for the pool under the caps and in cgroup paths; `@` keeps it
/// apart from every tenant a caller can name.
pub const TENANT: &str = "@standby";

/// How long a new standby worker has to answer before it is given up on.
const READY_WAIT: Duration = Duration::from_secs(10);

/// How long a refill waits after a start took a standby worker.
const REFILL_DELAY: Duration = Duration::from_millis(20);

/// The longest pause between refills that failed.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One standby worker: the process, tarkd's ends of its channels, and what it
/// holds (its uid, its cgroup, its place under the caps).
pub(super) struct Standby {
    pub(super) child: tokio::process::Child,
    pub(super) pid: u32,
    pub(super) client: WorkerClient<Channel>,
    pub(super) broker: std::os::unix::net::UnixStream,
    pub(super) confinement: Confinement,
    pub(super) lease: Option<Lease>,
    pub(super) leaf: Option<Leaf>,
    pub(super) ticket: Option<Ticket>,
}

impl Standby {
    /// Ends the worker and lets go of what it holds once its process is gone
    /// (its uid then goes to no one while the process could still run).
    pub(super) async fn discard(mut self) {
        super::slot::kill_group(self.pid);
        let _ = self.child.wait().await;
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The standby workers ready to be bound, and the refill's wake-up.
pub(super) struct Pool {
    size: usize,
    ready: Mutex<VecDeque<Standby>>,
    wake: Notify,
    /// Held by the refill while it starts one, so that a stopping tarkd can
    /// wait for that one too.
    starting: tokio::sync::Mutex<()>,
    /// Set when tarkd stops: nothing is added any more.
    closed: std::sync::atomic::AtomicBool,
    /// Starts waiting for a place under the caps: while any does, the refill
    /// takes none.
    admitting: AtomicUsize,
}

/// A start waiting for its place ([`Pool::admitting`]).
pub(super) struct Admitting<'p>(&'p AtomicUsize);

impl Drop for Admitting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Self {
            size,
            ready: Mutex::default(),
            wake: Notify::new(),
            starting: tokio::sync::Mutex::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
            admitting: AtomicUsize::new(0),
        }
    }

    /// Counts a start as waiting for a place until the guard is dropped.
    pub(super) fn admitting(&self) -> Admitting<'_> {
        self.admitting.fetch_add(1, Ordering::SeqCst);
        Admitting(&self.admitting)
    }

    /// Waits for the standby worker being started, if any, to be in the pool.
    pub(super) async fn started(&self) {
        let _done = self.starting.lock().await;
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Standby workers ready now.
    pub(super) fn ready(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Standby>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest standby worker still alive, to be bound ([`Self::refill`]
    /// replaces it).
    pub(super) fn take(&self) -> Option<Standby> {
        self.pop()
    }

    /// Wakes the refill.
    pub(super) fn refill(&self) {
        self.wake.notify_one();
    }

    /// A standby worker to end because the caps are full: not replaced until
    /// a refill finds a place.
    pub(super) fn give_way(&self) -> Option<Standby> {
        self.pop()
    }

    /// The oldest standby worker still alive (dead ones are let go of on the
    /// way).
    fn pop(&self) -> Option<Standby> {
        let mut ready = self.lock();
        while let Some(mut s) = ready.pop_front() {
            if s.alive() {
                return Some(s);
            }
            tracing::warn!(pid = s.pid, "a standby worker exited while waiting");
            tokio::spawn(s.discard());
        }
        None
    }

    /// Every standby worker, for a stopping tarkd, once the one being started
    /// (if any) is in; none is added after.
    pub(super) async fn drain(&self) -> Vec<Standby> {
        self.closed.store(true, Ordering::SeqCst);
        let _started = self.starting.lock().await;
        self.lock().drain(..).collect()
    }

    /// Adds a standby worker, or gives it back when tarkd is stopping.
    fn put(&self, s: Standby) -> Option<Standby> {
        if self.closed.load(Ordering::SeqCst) {
            return Some(s);
        }
        self.lock().push_back(s);
        None
    }
}

impl Workers {
    /// Keeps `workers.standby` workers ready, for as long as tarkd runs. One
    /// start at a time; a failed start is retried after a pause that doubles
    /// up to [`MAX_RETRY`] (or when a start has taken one).
    pub async fn keep_standby(&self) {
        let pool = &self.standby;
        if pool.size() == 0 {
            return;
        }
        let mut retry = Duration::from_millis(100);
        let mut n = 0u64;
        loop {
            while pool.ready() < pool.size() {
                n += 1;
                let starting = pool.starting.lock().await;
                if pool.closed.load(Ordering::SeqCst) {
                    return;
                }
                let outcome = self.spawn_standby(n).await.map(|s| pool.put(s));
                if let Ok(Some(late)) = outcome {
                    // tarkd is stopping: gone before the stop goes on.
                    late.discard().await;
                    return;
                }
                drop(starting);
                match outcome {
                    Ok(_) => retry = Duration::from_millis(100),
                    Err(why) => {
                        tracing::debug!("standby worker not started: {why}");
                        let _ = tokio::time::timeout(retry, pool.wake.notified()).await;
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                }
            }
            pool.wake.notified().await;
            // A start just took one: let its first call run before the
            // refill forks tarkd and starts a process, which on a small
            // machine would take the CPU from it.
            tokio::time::sleep(REFILL_DELAY).await;
        }
    }

    /// Binds a standby worker to `key`: its uid lease becomes the key's, its
    /// processes move into a new cgroup of the key's. A standby worker that
    /// cannot be bound is ended (in the background) and the reason returned.
    pub(super) fn bind(&self, mut s: Standby, key: &WorkerKey) -> Result<Process, String> {
        if let Some(lease) = s.lease.take() {
            match self.ids.rekey(lease, key) {
                Ok(lease) => s.lease = Some(lease),
                Err(lease) => {
                    s.lease = Some(lease);
                    tokio::spawn(s.discard());
                    return Err(
                        "another process of this tenant × plugin holds a uid of its own".into(),
                    );
                }
            }
        }
        let leaf = match s.leaf.take() {
            None => None,
            Some(standby_leaf) => {
                let moved = self.leaf(key).and_then(|leaf| {
                    let leaf = leaf.ok_or_else(|| std::io::Error::other("no cgroup was made"))?;
                    // The process in its own PID namespace first, then the
                    // one that forked it.
                    let inner = super::spawn::worker_pid(s.pid);
                    let pids: &[u32] = if inner == s.pid {
                        &[s.pid]
                    } else {
                        &[inner, s.pid]
                    };
                    leaf.adopt(pids).map(|()| leaf)
                });
                match moved {
                    Ok(leaf) => Some(leaf),
                    Err(e) => {
                        s.leaf = Some(standby_leaf);
                        tokio::spawn(s.discard());
                        return Err(format!("moving it into its cgroup: {e}"));
                    }
                }
            }
        };
        Ok(Process {
            child: s.child,
            pid: s.pid,
            control: Control::Client(s.client),
            broker: s.broker,
            confinement: s.confinement,
            lease: s.lease,
            leaf,
        })
    }

    /// Starts one standby worker and waits until it serves (one call it
    /// answers with "no plugin loaded").
    async fn spawn_standby(&self, n: u64) -> Result<Standby, String> {
        let waiting = &self.standby.admitting;
        let ticket = self
            .live
            .reserve_if(TENANT, &self.config.workers, usize::MAX, || {
                waiting.load(Ordering::SeqCst) == 0
            })
            .map_err(|_| "workers.max_live is reached, or a start waits for a place".to_owned())?;
        let key = WorkerKey {
            tenant: TENANT.to_owned(),
            plugin: n.to_string(),
        };
        let (confinement, lease) = self.confinement(&key).map_err(|e| e.message)?;
        let leaf = self
            .leaf(&key)
            .map_err(|e| format!("making its cgroup: {e}"))?;
        let procs = leaf
            .as_ref()
            .map(Leaf::procs)
            .transpose()
            .map_err(|e| format!("making its cgroup: {e}"))?;
        let spawned = self
            .spawner
            .spawn("standby".into(), confinement, procs)
            .await
            .map_err(|e| format!("starting {}: {e}", self.worker_path.display()))?;
        let mut child = spawned.child;
        let pid = spawned.pid;
        let ready = async {
            let control = channel::adopt(spawned.control)?;
            let mut client = channel::worker_client(control)
                .await
                .map_err(std::io::Error::other)?;
            match client.describe(pb::DescribeRequest {}).await {
                Err(s) if s.code() == Code::FailedPrecondition => Ok(client),
                Err(s) => Err(std::io::Error::other(format!("it answered {s}"))),
                Ok(_) => Err(std::io::Error::other("it has a plugin loaded")),
            }
        };
        let why = match tokio::time::timeout(READY_WAIT, ready).await {
            Ok(Ok(client)) => {
                return Ok(Standby {
                    child,
                    pid,
                    client,
                    broker: spawned.broker,
                    confinement,
                    lease,
                    leaf,
                    ticket: Some(ticket),
                });
            }
            Ok(Err(e)) => format!("it did not come up: {e}"),
            Err(_) => format!("it did not answer within {READY_WAIT:?}"),
        };
        // Its uid, cgroup and place go (as locals, after this) once it is gone.
        super::slot::kill_group(pid);
        let _ = child.wait().await;
        Err(why)
    }
}
