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
/// Where tark-jail reads its command (see tark-worker's `jail` module).
const SPEC_FD: RawFd = 3;

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

/// A started tark-jail, waiting for its command on the other end of `spec`.
#[derive(Debug)]
pub struct Jailed {
    /// Its stdout and stderr are piped to tarkd.
    pub child: tokio::process::Child,
    pub pid: u32,
    /// Where tarkd writes the `CommandSpec`, once it has checked the jail.
    pub spec: OwnedFd,
}

/// How to confine a worker before it runs its first instruction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Confinement {
    /// Unshare the user (when not root), network, mount, IPC and UTS namespaces;
    /// best effort: tarkd checks afterwards which took ([`namespaces_of`]).
    pub namespaces: bool,
    /// Run as this uid and gid (tarkd must be root).
    pub ids: Option<(u32, u32)>,
    /// Be uid 0 of its user namespace (mapped to its uid outside), with the
    /// capabilities that gives there, so that it can build a mount tree of
    /// its own (tark-jail, which drops them all before the command runs).
    /// With `namespaces` only.
    pub own_root: bool,
}

/// One start, run on the spawner thread with the worker program's path.
type Job = Box<dyn FnOnce(&std::path::Path) + Send>;

/// A handle to the spawner thread.
#[derive(Clone)]
pub struct Spawner {
    tx: mpsc::Sender<Job>,
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
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tarkd-spawner".into())
            .spawn(move || {
                let _runtime = handle.enter();
                let program = PathBuf::from(format!("/proc/self/fd/{}", binary.as_raw_fd()));
                for job in rx {
                    job(&program);
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
        self.run(label, confinement, cgroup, spawn).await
    }

    /// Starts tark-jail for one command of a command tool, under the same
    /// confinement as a worker (in `cgroup`, as for `spawn`); it runs nothing
    /// until its spec is written.
    pub async fn jail(
        &self,
        label: String,
        confinement: Confinement,
        cgroup: Option<OwnedFd>,
    ) -> std::io::Result<Jailed> {
        self.run(label, confinement, cgroup, jail).await
    }

    /// Runs `start` on the spawner thread and waits for what it started.
    async fn run<T: Send + 'static>(
        &self,
        label: String,
        confinement: Confinement,
        cgroup: Option<OwnedFd>,
        start: fn(&std::path::Path, &str, Confinement, Option<RawFd>) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |program| {
            let cgroup = cgroup.as_ref().map(AsRawFd::as_raw_fd);
            let _ = reply.send(start(program, &label, confinement, cgroup));
        });
        self.tx
            .send(job)
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
    let fds = [
        (control_child.as_raw_fd(), CONTROL_FD),
        (broker_child.as_raw_fd(), BROKER_FD),
    ];
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0("tark-worker")
        .arg(label)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    confine(&mut cmd, confinement, cgroup, fds);
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

fn jail(
    program: &std::path::Path,
    label: &str,
    confinement: Confinement,
    cgroup: Option<RawFd>,
) -> std::io::Result<Jailed> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let read = high_dup(&read)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0("tark-jail")
        .arg(label)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The spec's fd twice: `confine` leaves open only up to its last target.
    let fd = read.as_raw_fd();
    confine(
        &mut cmd,
        confinement,
        cgroup,
        [(fd, SPEC_FD), (fd, SPEC_FD)],
    );
    let child = cmd.spawn()?;
    drop(read);
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("tark-jail exited at once"))?;
    Ok(Jailed {
        child,
        pid,
        spec: write,
    })
}

/// What every process tarkd starts gets: a cleared environment, no stdin, a
/// process group of its own, and between fork and exec its cgroup, its uid,
/// its namespaces, a death signal tied to tarkd, and `fds` (each source ≥ 10
/// moved to its target; every fd above the targets closed at exec).
fn confine(
    cmd: &mut tokio::process::Command,
    confinement: Confinement,
    cgroup: Option<RawFd>,
    fds: [(RawFd, RawFd); 2],
) {
    let parent = std::process::id();
    // The user namespace's maps, written by the child itself: its uid and
    // gid outside become 0 inside (formatted here: no allocation after fork).
    let (map_uid, map_gid) = confinement.ids.unwrap_or_else(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    let uid_map = format!("0 {map_uid} 1\n").into_bytes();
    let gid_map = format!("0 {map_gid} 1\n").into_bytes();
    cmd.env_clear()
        .stdin(Stdio::null())
        .kill_on_drop(true)
        // Its own process group: tarkd can kill the child and anything it forked.
        .process_group(0);
    let [(c, c_to), (b, b_to)] = fds;
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
            // The child's own uid next: the namespaces below are then
            // created by an unprivileged user, inside a user namespace, so
            // tarkd needs no CAP_SYS_ADMIN for them (packaging/tarkd.service
            // leaves it out of the bounding set).
            if let Some((uid, gid)) = confinement.ids {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // What the kernel gave, not what was asked: a uid of
                // (uid_t)-1 means "unchanged" to setresuid, and the child
                // would still be root.
                let (mut r, mut e, mut s) = (0, 0, 0);
                let (mut rg, mut eg, mut sg) = (0, 0, 0);
                if libc::getresuid(&mut r, &mut e, &mut s) != 0
                    || libc::getresgid(&mut rg, &mut eg, &mut sg) != 0
                    || !became((uid, gid), [r, e, s], [rg, eg, sg])
                {
                    return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            if confinement.namespaces && confinement.own_root {
                // Its own user namespace, mapped so that it is root there
                // (the process that made it may write its maps; the uid
                // change made it non-dumpable, and /proc/self root's).
                let shared = libc::CLONE_NEWNET
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWPID;
                if libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0
                    || libc::unshare(libc::CLONE_NEWUSER) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &uid_map)?;
                write_file(c"/proc/self/gid_map", &gid_map)?;
                if libc::unshare(shared) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if confinement.namespaces {
                // The child forks into the PID namespace itself (tark-worker's
                // pidns module): unshare gives one only to a process's children.
                let shared = libc::CLONE_NEWNET
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWPID;
                // Root (with no per-worker uid) can unshare directly; anyone
                // else needs a user namespace (the child is single-threaded
                // here, as that requires). Failure is not fatal: tarkd checks
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
                    "tarkd exited while starting the child",
                ));
            }
            // dup2 clears close-on-exec on the copies; the sources are >= 10, so
            // neither dup2 can clobber the other's source.
            if libc::dup2(c, c_to) < 0 || libc::dup2(b, b_to) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Anything else a library left open without close-on-exec is closed at
            // exec. (CLOEXEC rather than close: std's own exec-error pipe must live.)
            let first = (c_to.max(b_to) + 1) as libc::c_uint;
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
}

/// Writes `bytes` to `path` with nothing but system calls (between fork and
/// exec).
///
/// # Safety
/// Async-signal-safe: open, write, close.
unsafe fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is ours until closed.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `bytes` is valid for its length.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if written != bytes.len() as isize {
        return Err(err);
    }
    Ok(())
}

/// Whether a child that asked for `asked` (uid, gid) runs as exactly that,
/// and not as root.
fn became(asked: (u32, u32), uids: [libc::uid_t; 3], gids: [libc::gid_t; 3]) -> bool {
    asked.0 != 0 && uids.iter().all(|&u| u == asked.0) && gids.iter().all(|&g| g == asked.1)
}

/// The uids and gids (real, effective, saved, filesystem) of process `pid`,
/// as the kernel reports them in `/proc/<pid>/status`.
pub fn ids_of(pid: u32) -> Option<(Vec<u32>, Vec<u32>)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_ids(&status)
}

fn parse_ids(status: &str) -> Option<(Vec<u32>, Vec<u32>)> {
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = status.lines().find_map(|l| l.strip_prefix(name))?;
        line.split_whitespace().map(|n| n.parse().ok()).collect()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

/// Namespaces the process `pid` does not share with tarkd, by name.
pub fn namespaces_of(pid: u32, reported: &[String]) -> Vec<&'static str> {
    tark_proto::NAMESPACES
        .into_iter()
        .filter(|ns| match own_namespace(pid, ns) {
            Some(theirs) => theirs,
            // Not ours to read (under systemd's ProtectProc=invisible, or a
            // non-dumpable worker without CAP_SYS_PTRACE): the worker's own
            // reading, taken before any guest code ran.
            None => std::fs::read_link(format!("/proc/self/ns/{ns}")).is_ok_and(|ours| {
                let ours = ours.to_string_lossy();
                reported
                    .iter()
                    .any(|r| r.starts_with(&format!("{ns}:")) && r.as_str() != ours)
            }),
        })
        .collect()
}

/// Whether process `pid` is in a `kind` namespace other than tarkd's, as
/// /proc shows it; `None` where tarkd may not read it.
pub fn own_namespace(pid: u32, kind: &str) -> Option<bool> {
    let ours = std::fs::read_link(format!("/proc/self/ns/{kind}")).ok()?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    Some(theirs != ours)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_judged_as_the_kernel_reports_them() {
        type Case = ((u32, u32), [u32; 3], [u32; 3], bool);
        let cases: &[Case] = &[
            ((600_000, 600_000), [600_000; 3], [600_000; 3], true),
            (
                (600_000, 600_000),
                [600_000, 600_000, 0],
                [600_000; 3],
                false,
            ),
            ((600_000, 600_000), [600_000; 3], [0; 3], false),
            ((0, 0), [0; 3], [0; 3], false),
            ((u32::MAX, u32::MAX), [0; 3], [0; 3], false),
        ];
        for &(asked, uids, gids, ok) in cases {
            assert_eq!(became(asked, uids, gids), ok, "{asked:?} {uids:?} {gids:?}");
        }
    }

    #[test]
    fn proc_status_ids_are_parsed() {
        let status = "Name:\ttark-worker\nUid:\t600001\t600001\t600001\t600001\nGid:\t600001\t600001\t600001\t600001\nGroups:\n";
        assert_eq!(
            parse_ids(status),
            Some((vec![600_001; 4], vec![600_001; 4]))
        );
        assert_eq!(parse_ids("Uid:\t0\t0\t0\t0\n"), None);
        assert_eq!(parse_ids("Uid:\tx\nGid:\t1\n"), None);
        let mine = ids_of(std::process::id());
        assert!(mine.is_some_and(|(u, g)| u.len() == 4 && g.len() == 4));
    }
}
