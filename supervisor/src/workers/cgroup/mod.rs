//! Per-worker cgroups: every worker runs in a cgroup v2 of its own, made just
//! before it starts and removed after it exits, so the kernel holds it to
//! `memory.max`, `pids.max` and `cpu.max` whatever escapes wasmtime's limits and
//! the rlimits. The worker joins its cgroup between fork and exec, while still
//! root, so it never runs a single instruction outside it.
//!
//! tarkd needs a cgroup it may write: under systemd, `Delegate=yes` gives it
//! one (`place = "auto"`); tarkd then moves itself into `supervisor/` of it (a
//! cgroup with children may hold no processes) and puts workers under
//! `workers/`. Elsewhere `place` names a cgroup v2 directory. [`plan`] holds the
//! decisions; this module only does the file work.

pub mod plan;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use plan::{CONTROLLERS, CgroupConfig, ESSENTIAL, Place};

/// Files a kernel may lack although their controller is on (swap accounting).
const OPTIONAL: [&str; 1] = ["memory.swap.max"];

/// Where workers' cgroups are made, and which limits they can carry.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
    available: Vec<&'static str>,
    config: CgroupConfig,
    next: AtomicU64,
    removals: Removals,
}

/// The threads removing cgroups whose last processes were still exiting, so
/// that a stopping tarkd can let them finish.
type Removals = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// One worker's cgroup. Dropping it removes the directory (once the worker is
/// gone; a cgroup still holding a process is left for the next start's sweep).
#[derive(Debug)]
pub struct Leaf {
    dir: PathBuf,
    procs: File,
    removals: Removals,
}

impl Cgroups {
    /// Finds or makes the cgroup workers go under, turns on the controllers it
    /// can, and removes worker cgroups a previous tarkd left. `Err` says why
    /// workers get no cgroups (reported as the `cgroup` layer's detail).
    pub fn setup(config: &CgroupConfig) -> Result<Self, String> {
        let root = match config.place()? {
            Place::Off => return Err("disabled by sandbox.cgroup.place".into()),
            Place::Delegated => delegated()?,
            Place::At(dir) => {
                if !dir.exists() {
                    std::fs::create_dir(&dir)
                        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                }
                dir
            }
        };
        is_cgroup2(&root)?;
        let available = enable(&root)?;
        sweep(&root);
        Ok(Self {
            root,
            available,
            config: config.clone(),
            next: AtomicU64::new(1),
            removals: Removals::default(),
        })
    }

    /// Waits for the removals still under way (each gives up after
    /// [`EMPTY_WAIT`]): when tarkd stops, its workers' cgroups go with it.
    pub async fn removed(&self) {
        let pending = std::mem::take(&mut *self.removals.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for removal in pending {
                let _ = removal.join();
            }
        })
        .await;
    }

    /// The tenant's cgroup, made (with the controllers on for its children
    /// and the same `cpu.weight` as every other tenant's) if it is not there.
    fn tenant(&self, tenant: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(plan::tenant_dir_name(tenant));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(dir),
            Err(e) => return Err(e),
        }
        if self.available.contains(&"cpu") {
            std::fs::write(dir.join("cpu.weight"), plan::TENANT_CPU_WEIGHT)?;
        }
        enable(&dir).map_err(std::io::Error::other)?;
        Ok(dir)
    }

    /// Makes the cgroup for the next worker of `tenant`'s `plugin`, with its
    /// limits written, ready to join: in the tenant's cgroup, so that tenants
    /// share the CPU equally whatever number of workers each runs.
    pub fn create(&self, tenant: &str, plugin: &str) -> std::io::Result<Leaf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = plan::leaf_name(tenant, plugin, n);
        let mut dir = self.tenant(tenant)?.join(&name);
        // The tenant's cgroup may go with its last leaf just now: once more.
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != ErrorKind::NotFound {
                return Err(e);
            }
            dir = self.tenant(tenant)?.join(&name);
            std::fs::create_dir(&dir)?;
        }
        // From here on the directory is removed if anything fails.
        let procs = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("cgroup.procs"));
        let procs = match procs {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        let leaf = Leaf {
            dir,
            procs,
            removals: Arc::clone(&self.removals),
        };
        for (file, value) in self.config.files(&self.available) {
            match std::fs::write(leaf.dir.join(file), &value) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound && OPTIONAL.contains(&file) => {}
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("{file}: {e}"))),
            }
        }
        Ok(leaf)
    }

    /// The `cgroup` layer as reported for a worker in `leaf`: applied when the
    /// essential limits are set.
    pub fn layer(&self, leaf: &Leaf) -> (bool, String) {
        let missing: Vec<&str> = ESSENTIAL
            .into_iter()
            .filter(|c| !self.available.contains(c))
            .collect();
        let set: Vec<String> = self
            .config
            .files(&self.available)
            .into_iter()
            .filter(|(f, _)| ["memory.max", "pids.max", "cpu.max"].contains(f))
            .map(|(f, v)| format!("{f} {v}"))
            .collect();
        let dir = leaf.dir.display();
        if missing.is_empty() {
            (true, format!("{dir}: {}", set.join(", ")))
        } else {
            let set = if set.is_empty() {
                String::new()
            } else {
                format!(" ({} set)", set.join(", "))
            };
            (
                false,
                format!(
                    "{dir}: the {} controller(s) are not delegated there, so no limits{set}",
                    missing.join(" and ")
                ),
            )
        }
    }
}

impl Cgroups {
    /// The directory workers' cgroups are made in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The controllers turned on for workers' cgroups.
    pub fn available(&self) -> &[&'static str] {
        &self.available
    }
}

impl Leaf {
    /// A descriptor of the cgroup's `cgroup.procs`: the worker writes `0` to it
    /// between fork and exec to join.
    pub fn procs(&self) -> std::io::Result<OwnedFd> {
        Ok(self.procs.try_clone()?.into())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the processes `pids` (running, started elsewhere: a standby
    /// worker) into this cgroup, and checks that the kernel lists each of
    /// them here afterwards.
    pub fn adopt(&self, pids: &[u32]) -> std::io::Result<()> {
        for pid in pids {
            (&self.procs).write_all(pid.to_string().as_bytes())?;
        }
        let listed = std::fs::read_to_string(self.dir.join("cgroup.procs"))?;
        match plan::missing(pids, &listed) {
            None => Ok(()),
            Some(pid) => Err(std::io::Error::other(format!(
                "process {pid} is not in {} after moving it there",
                self.dir.display()
            ))),
        }
    }

    /// Processes of this leaf the kernel's OOM killer ended (its memory.max
    /// reached); none where the memory controller is not enabled.
    pub fn oom_kills(&self) -> Option<u64> {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).ok()?;
        plan::oom_kills(&events)
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => remove_tenant_if_empty(&self.dir),
            // The worker's last process is still exiting, or something outlived
            // it: end whatever is left and remove the directory once the
            // kernel says it is empty.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
                let dir = self.dir.clone();
                let spawned = std::thread::Builder::new()
                    .name("tarkd-cgroup-rm".into())
                    .spawn(move || remove_when_empty(&dir));
                match spawned {
                    Ok(removal) => {
                        let mut removals = self.removals.lock().unwrap_or_else(|p| p.into_inner());
                        removals.retain(|r| !r.is_finished());
                        removals.push(removal);
                    }
                    Err(e) => {
                        tracing::warn!(cgroup = %self.dir.display(), "worker cgroup left for the next start: {e}")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(cgroup = %self.dir.display(), "worker cgroup not removed: {e}")
            }
        }
    }
}

/// Removes `dir` once its `cgroup.events` reads `populated 0`, woken by the
/// kernel's change notification on that file; gives up (for the next start's
/// sweep) after [`EMPTY_WAIT`].
fn remove_when_empty(dir: &Path) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let events = dir.join("cgroup.events");
    let watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .and_then(|i| i.add_watch(&events, AddWatchFlags::IN_MODIFY).map(|_| i));
    let deadline = std::time::Instant::now() + EMPTY_WAIT;
    let result = loop {
        let empty = std::fs::read_to_string(&events)
            .map(|s| s.lines().any(|l| l == "populated 0"))
            .unwrap_or(true);
        if empty {
            break std::fs::remove_dir(dir).map(|()| remove_tenant_if_empty(dir));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(inotify) = &watch else {
            break Err(std::io::Error::other(
                "no change notification on cgroup.events",
            ));
        };
        if left.is_zero() {
            break Err(std::io::Error::other("still populated"));
        }
        let mut fd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(inotify),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fd, ms);
        let _ = inotify.read_events();
    };
    if let Err(e) = result {
        tracing::warn!(cgroup = %dir.display(), "worker cgroup left for the next start: {e}");
    }
}

/// How long a worker's last processes may take to exit after it was reaped.
const EMPTY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The cgroup systemd delegated to tarkd, after moving tarkd into its
/// `supervisor/` child; returns the `workers/` child.
fn delegated() -> Result<PathBuf, String> {
    let own = delegated_to_me()?;
    let supervisor = own.join("supervisor");
    make_dir(&supervisor)?;
    std::fs::write(
        supervisor.join("cgroup.procs"),
        std::process::id().to_string(),
    )
    .map_err(|e| format!("moving tarkd into {}: {e}", supervisor.display()))?;
    enable(&own)?;
    let workers = own.join("workers");
    make_dir(&workers)?;
    Ok(workers)
}

/// The cgroup systemd delegated to this process, changing nothing (what
/// [`Cgroups::setup`] starts from, and what `--check-host` looks at).
pub fn delegated_to_me() -> Result<PathBuf, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("reading {p}: {e}"));
    let proc_cgroup = read("/proc/self/cgroup")?;
    if proc_cgroup.lines().any(|l| l == "0::/") {
        return Err("tarkd runs in the root cgroup, which is never delegated (set Delegate=yes on its unit, or sandbox.cgroup.place to a cgroup v2 directory)".into());
    }
    let own = plan::own_cgroup(&proc_cgroup, &read("/proc/self/mountinfo")?)
        .ok_or("tarkd is in no mounted cgroup v2 hierarchy")?;
    let own = PathBuf::from(own.to_string_lossy().trim_end_matches('/'));
    if !is_delegated(&own) {
        return Err(format!(
            "{} is not delegated to tarkd (no trusted.delegate mark: set Delegate=yes on its unit, or sandbox.cgroup.place to a cgroup v2 directory)",
            own.display()
        ));
    }
    Ok(own)
}

/// systemd (≥ 251) marks the cgroups it delegates with `trusted.delegate` (and
/// `user.delegate` for unprivileged managers).
fn is_delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let Ok(name) = std::ffi::CString::new(*name) else {
            return false;
        };
        let mut value = [0u8; 8];
        // SAFETY: both strings are NUL-terminated and `value` is writable for
        // its length.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        n == 1 && value[0] == b'1'
    })
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", dir.display())),
    }
}

fn is_cgroup2(dir: &Path) -> Result<(), String> {
    let fs = nix::sys::statfs::statfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(format!("{} is not in a cgroup v2 hierarchy", dir.display()));
    }
    Ok(())
}

/// Turns on, for the children of `dir`, those of [`CONTROLLERS`] that `dir`
/// has; returns the ones on.
fn enable(dir: &Path) -> Result<Vec<&'static str>, String> {
    let has = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let wanted: Vec<&'static str> = CONTROLLERS
        .into_iter()
        .filter(|c| has.split_whitespace().any(|h| h == *c))
        .collect();
    if !wanted.is_empty() {
        let line: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        let control = dir.join("cgroup.subtree_control");
        OpenOptions::new()
            .write(true)
            .open(&control)
            .and_then(|mut f| f.write_all(line.join(" ").as_bytes()))
            .map_err(|e| {
                format!(
                    "enabling {} in {}: {e}{}",
                    wanted.join(", "),
                    control.display(),
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        " (the cgroup holds processes; give tarkd an empty one)"
                    } else {
                        ""
                    }
                )
            })?;
    }
    Ok(wanted)
}

/// Removes the tenant cgroup a leaf was in once it holds no other (a tenant
/// with a worker starting keeps it: its leaf is there, or the start makes
/// the tenant's cgroup again).
fn remove_tenant_if_empty(leaf: &Path) {
    if let Some(tenant) = leaf.parent()
        && tenant
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(plan::is_tenant_dir_name)
    {
        // ENOTEMPTY or EBUSY: another worker of the tenant is there.
        let _ = std::fs::remove_dir(tenant);
    }
}

/// Removes the worker cgroups a previous tarkd left (it was killed before its
/// workers' exits were seen): in tenants' cgroups, which go too, and any
/// directly under the root (from a tarkd before tenant cgroups).
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let remove = |path: &Path| {
        if let Err(e) = std::fs::remove_dir(path) {
            tracing::warn!(cgroup = %path.display(), "leftover worker cgroup not removed: {e}");
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if plan::is_tenant_dir_name(name) {
            for leaf in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if leaf.file_name().to_str().is_some_and(plan::is_leaf_name) {
                    remove(&leaf.path());
                }
            }
            remove(&entry.path());
        } else if plan::is_leaf_name(name) {
            remove(&entry.path());
        }
    }
}
