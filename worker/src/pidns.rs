//! The worker's own PID namespace.
//!
//! tarkd unshares a PID namespace when it starts the worker, but that only places
//! the process's *children* in it. So the worker's first act, while it is still
//! one thread, is to fork: the child is PID 1 of the new namespace and goes on to
//! be the worker; the parent stays outside only to reap it and to end the same
//! way (same exit status, same signal), so tarkd's reports stay true, under a
//! seccomp filter of its own that allows nothing else.

use std::io;

/// Where this process stands after [`enter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidNamespace {
    /// tarkd gave no PID namespace: carry on as the worker.
    NotRequested,
    /// This is PID 1 of the worker's own namespace: carry on as the worker.
    Entered,
}

/// Forks into the PID namespace tarkd prepared, if any. Must run before any
/// thread is started. In the parent it never returns.
pub fn enter() -> io::Result<PidNamespace> {
    let ns = std::fs::read_link("/proc/self/ns/pid")?;
    // A namespace unshared for children has no process yet, and until it has one
    // its link does not resolve (ENOENT): that, too, means one is waiting.
    match std::fs::read_link("/proc/self/ns/pid_for_children") {
        Ok(for_children) if for_children == ns => return Ok(PidNamespace::NotRequested),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // A pipe tells the child whether the parent is still alive once the child
    // has asked to die with it: a parent killed before that would otherwise
    // leave the child running (getppid() cannot tell: it is 0 in a new
    // namespace).
    // The reaper's seccomp filter, compiled while allocating is still safe:
    // the reaper keeps this process's pid.
    let reaper_filter = crate::seccomp::compile_reaper(std::process::id())
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut alive = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [parent_gone, parent_holds] = alive;
    // SAFETY: single-threaded at this point (nothing has started a thread).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: prctl, close and poll on our own descriptors; the parent
            // (the reaper) dies with tarkd.
            unsafe {
                libc::close(parent_holds);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let mut fd = libc::pollfd {
                    fd: parent_gone,
                    events: libc::POLLIN,
                    revents: 0,
                };
                if libc::poll(&mut fd, 1, 0) != 0 {
                    // Hung up (or failed): the parent died before the death
                    // signal was armed.
                    libc::_exit(70);
                }
                libc::close(parent_gone);
            }
            Ok(PidNamespace::Entered)
        }
        child => {
            // SAFETY: closing our copy of the child's end.
            unsafe { libc::close(parent_gone) };
            reap(child, parent_holds, &reaper_filter)
        }
    }
}

/// The parent: hold nothing but `keep` (the child's liveness pipe), confine
/// itself to waiting and exiting (`filter`), wait for the worker, end as it
/// ended.
fn reap(child: libc::pid_t, keep: libc::c_int, filter: &seccompiler::BpfProgram) -> ! {
    // SAFETY: raw system calls on this process only.
    unsafe {
        // The channels belong to the worker; the reaper keeps only stderr and
        // the pipe whose end tells the child it is alive.
        let keep = keep as libc::c_uint;
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3, keep - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        // Outside the worker's PID namespace, so confined too: unconfined, a
        // compromised worker that took it over would see the host's pids.
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0 {
            libc::_exit(70);
        }
        let mut status = 0;
        while libc::waitpid(child, &mut status, 0) < 0 {
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(70);
            }
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            70
        })
    }
}
