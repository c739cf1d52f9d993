//! Starting worker processes.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process. tokio's blocking threads come and go, so every worker is forked from
//! one dedicated thread that lives as long as tarkd: a worker then dies exactly
//! when tarkd does.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use tokio::sync::oneshot;

/// Where the worker finds its channels (see tark-worker's `channel` module).
const CONTROL_FD: RawFd = 3;
const BROKER_FD: RawFd = 4;

/// A started worker: the process and tarkd's ends of its two channels.
#[derive(Debug)]
pub struct Spawned {
    pub child: tokio::process::Child,
    pub pid: u32,
    /// tarkd calls the worker's `Worker` service over this.
    pub control: std::os::unix::net::UnixStream,
    /// The worker calls tarkd's `Broker` service over this.
    pub broker: std::os::unix::net::UnixStream,
}

/// How to confine a worker before it runs its first instruction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Confinement {
    /// Unshare the user (when not root), network, mount, IPC and UTS namespaces;
    /// best effort: tarkd checks afterwards which took ([`namespaces_of`]).
    pub namespaces: bool,
    /// Run as this uid and gid (tarkd must be root).
    pub ids: Option<(u32, u32)>,
}

struct Request {
    label: String,
    confinement: Confinement,
    cgroup: Option<OwnedFd>,
    reply: oneshot::Sender<std::io::Result<Spawned>>,
}

/// A handle to the spawner thread.
#[derive(Clone)]
pub struct Spawner {
    tx: mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawner thread. It must be called from within the tokio runtime
    /// whose reactor will reap the children.
    ///
    /// The worker executable is opened here, once, and every worker is executed
    /// through that descriptor (`/proc/self/fd/N`): a worker running as its own
    /// unprivileged uid needs no search permission on the directories above the
    /// binary, and replacing the file on disk does not change what runs.
    pub fn start(worker: &std::path::Path) -> std::io::Result<Self> {
        let binary = std::fs::File::open(worker)?;
        let binary = high_dup(&OwnedFd::from(binary))?;
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("tarkd-spawner".into())
            .spawn(move || {
                let _runtime = handle.enter();
                let program = PathBuf::from(format!("/proc/self/fd/{}", binary.as_raw_fd()));
                for req in rx {
                    let cgroup = req.cgroup.as_ref().map(AsRawFd::as_raw_fd);
                    let _ = req
                        .reply
                        .send(spawn(&program, &req.label, req.confinement, cgroup));
                }
            })?;
        Ok(Self { tx })
    }

    /// Starts a worker. `label` (tenant/plugin) becomes its argument, so
    /// operators can tell workers apart in `ps`; the worker trusts nothing in it.
    /// `cgroup` is the `cgroup.procs` of the cgroup it joins before anything else.
    pub async fn spawn(
        &self,
        label: String,
        confinement: Confinement,
        cgroup: Option<OwnedFd>,
    ) -> std::io::Result<Spawned> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                label,
                confinement,
                cgroup,
                reply,
            })
            .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the spawner thread dropped the request"))?
    }
}

/// Duplicates `fd` to a number ≥ 10 (close-on-exec), out of the way of 3 and 4.
fn high_dup(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: fcntl just returned this new fd and nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

fn spawn(
    program: &std::path::Path,
    label: &str,
    confinement: Confinement,
    cgroup: Option<RawFd>,
) -> std::io::Result<Spawned> {
    let (control, control_child) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let (broker, broker_child) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let control_child = high_dup(&control_child)?;
    let broker_child = high_dup(&broker_child)?;
    let (c, b) = (control_child.as_raw_fd(), broker_child.as_raw_fd());
    let parent = std::process::id();

    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0("tark-worker")
        .arg(label)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: tarkd can kill the worker and anything it forked.
        .process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls on values copied into it.
    unsafe {
        cmd.pre_exec(move || {
            // Its cgroup before all else ("0" is the writer), while still root.
            if let Some(procs) = cgroup
                && libc::write(procs, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            // The worker's own uid next: the namespaces below are then
            // created by an unprivileged user, inside a user namespace, so
            // tarkd needs no CAP_SYS_ADMIN for them (packaging/tarkd.service
            // leaves it out of the bounding set).
            if let Some((uid, gid)) = confinement.ids
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if confinement.namespaces {
                // The worker forks into the PID namespace itself (tark-worker's
                // pidns module): unshare gives one only to a process's children.
                let shared = libc::CLONE_NEWNET
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWPID;
                // Root (with no per-worker uid) can unshare directly; anyone
                // else needs a user namespace (the child is single-threaded
                // here, as that requires). Failure is not fatal: tarkd reports
                // what took.
                if libc::geteuid() == 0 {
                    libc::unshare(shared);
                } else if libc::unshare(libc::CLONE_NEWUSER | shared) != 0 {
                    libc::unshare(libc::CLONE_NEWUSER);
                }
            }
            // After the credential change, which clears the death signal.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // tarkd may have died between fork and prctl: then nobody will signal.
            if libc::getppid() != parent as libc::pid_t {
                return Err(std::io::Error::other(
                    "tarkd exited while starting the worker",
                ));
            }
            // dup2 clears close-on-exec on the copies; the sources are >= 10, so
            // neither dup2 can clobber the other's source.
            if libc::dup2(c, CONTROL_FD) < 0 || libc::dup2(b, BROKER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Anything else a library left open without close-on-exec is closed at
            // exec. (CLOEXEC rather than close: std's own exec-error pipe must live.)
            let first = (BROKER_FD + 1) as libc::c_uint;
            if libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop((control_child, broker_child));
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("worker exited at once"))?;
    Ok(Spawned {
        child,
        pid,
        control: control.into(),
        broker: broker.into(),
    })
}

/// Namespaces the process `pid` does not share with tarkd, by name.
pub fn namespaces_of(pid: u32) -> Vec<&'static str> {
    ["user", "pid", "net", "mnt", "ipc", "uts"]
        .into_iter()
        .filter(|ns| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"));
            let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"));
            matches!((theirs, ours), (Ok(a), Ok(b)) if a != b)
        })
        .collect()
}

/// The process that runs as the worker: the spawned process's child when the
/// worker forked into its own PID namespace, else the spawned process itself.
pub fn worker_pid(spawned: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{spawned}/task/{spawned}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(spawned)
}
