//! The worker's seccomp policy: the system calls a locked-down worker may make.
//!
//! The policy is data: one row per allowed syscall, with argument constraints where
//! the syscall is only safe for some arguments. Anything else kills the process
//! (SIGSYS), and tarkd reports the signal. It applies to every thread (TSYNC).
//!
//! It is minimal on purpose. After lockdown the worker only runs guest code that
//! is already compiled and talks over fds it already has, so it needs no new
//! executable memory, no new fds but none from the filesystem or network, no new
//! threads or processes.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// An argument constraint: (argument index, operator, value). All of a row's
/// alternatives are tried; one matching alternative allows the call.
type Cond = (u8, Op, u64);

/// One allowed syscall. `alternatives` empty: allowed with any arguments.
struct Allow {
    nr: libc::c_long,
    alternatives: Vec<Vec<Cond>>,
}

fn any(nr: libc::c_long) -> Allow {
    Allow {
        nr,
        alternatives: Vec::new(),
    }
}

fn when(nr: libc::c_long, alternatives: Vec<Vec<Cond>>) -> Allow {
    Allow { nr, alternatives }
}

/// futex operations without priority inheritance (the PI ops are a long-standing
/// source of kernel bugs, and nothing in the worker uses them).
const FUTEX_OPS: [u64; 7] = [
    libc::FUTEX_WAIT as u64,
    libc::FUTEX_WAKE as u64,
    libc::FUTEX_REQUEUE as u64,
    libc::FUTEX_CMP_REQUEUE as u64,
    libc::FUTEX_WAKE_OP as u64,
    libc::FUTEX_WAIT_BITSET as u64,
    libc::FUTEX_WAKE_BITSET as u64,
];
/// futex_op without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME.
const FUTEX_CMD_MASK: u64 = 0x7f;

/// The policy table.
fn policy() -> Vec<Allow> {
    let no_exec = vec![vec![(2, Op::MaskedEq(libc::PROT_EXEC as u64), 0)]];
    let futex = FUTEX_OPS
        .iter()
        .map(|op| vec![(1, Op::MaskedEq(FUTEX_CMD_MASK), *op)])
        .collect();
    let fcntl = [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_SETFL]
        .iter()
        .map(|cmd| vec![(1, Op::Eq, *cmd as u64)])
        .collect();
    let madvise = [libc::MADV_DONTNEED, libc::MADV_FREE, libc::MADV_DONTDUMP]
        .iter()
        .map(|a| vec![(2, Op::Eq, *a as u64)])
        .collect();
    vec![
        // I/O on fds the worker already holds (its channels, its runtime's epoll).
        any(libc::SYS_read),
        any(libc::SYS_write),
        any(libc::SYS_readv),
        any(libc::SYS_writev),
        any(libc::SYS_recvfrom),
        any(libc::SYS_recvmsg),
        any(libc::SYS_sendto),
        any(libc::SYS_sendmsg),
        any(libc::SYS_close),
        when(libc::SYS_fcntl, fcntl),
        any(libc::SYS_epoll_wait),
        any(libc::SYS_epoll_pwait),
        any(libc::SYS_epoll_ctl),
        // Memory, never executable: code was mapped before lockdown.
        when(libc::SYS_mmap, no_exec.clone()),
        when(libc::SYS_mprotect, no_exec),
        any(libc::SYS_munmap),
        any(libc::SYS_mremap),
        any(libc::SYS_brk),
        when(libc::SYS_madvise, madvise),
        // Threads already running: synchronisation and identity.
        when(libc::SYS_futex, futex),
        any(libc::SYS_sched_yield),
        any(libc::SYS_sched_getaffinity),
        any(libc::SYS_gettid),
        any(libc::SYS_getpid),
        any(libc::SYS_set_robust_list),
        any(libc::SYS_rseq),
        // Naming a thread (a runtime thread may start just as lockdown begins).
        when(
            libc::SYS_prctl,
            vec![vec![(0, Op::Eq, libc::PR_SET_NAME as u64)]],
        ),
        // Traps: wasmtime's signal handlers, on their alternate stacks.
        any(libc::SYS_rt_sigreturn),
        any(libc::SYS_rt_sigprocmask),
        any(libc::SYS_sigaltstack),
        // Time and randomness.
        any(libc::SYS_clock_gettime),
        any(libc::SYS_clock_nanosleep),
        any(libc::SYS_nanosleep),
        any(libc::SYS_getrandom),
        any(libc::SYS_restart_syscall),
        any(libc::SYS_exit),
        any(libc::SYS_exit_group),
    ]
}

/// What a policy violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Kill the process (SIGSYS). The default.
    Kill,
    /// Send SIGSYS to the thread, for finding what a policy misses.
    Trap,
    /// Allow but log to the kernel audit log, also for finding what is missing.
    Log,
}

/// Why the filter could not be built or applied.
#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(String);

/// Compiles the policy to BPF.
pub fn compile(on_violation: Violation) -> Result<BpfProgram, SeccompError> {
    let err = |e: &dyn std::fmt::Display| SeccompError(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for row in policy() {
        let mut alternatives = Vec::new();
        for conds in row.alternatives {
            let conds = conds
                .into_iter()
                .map(|(arg, op, value)| SeccompCondition::new(arg, Len::Qword, op, value))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(&e))?;
            alternatives.push(SeccompRule::new(conds).map_err(|e| err(&e))?);
        }
        rules.insert(row.nr, alternatives);
    }
    let mismatch = match on_violation {
        Violation::Kill => SeccompAction::KillProcess,
        Violation::Trap => SeccompAction::Trap,
        Violation::Log => SeccompAction::Log,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| err(&e))?;
    let filter =
        SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch).map_err(|e| err(&e))?;
    BpfProgram::try_from(filter).map_err(|e| err(&e))
}

/// Applies a compiled filter to every thread of the process.
pub fn apply(program: &BpfProgram) -> Result<(), SeccompError> {
    seccompiler::apply_filter_all_threads(program).map_err(|e| SeccompError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named system call attempt.
    type Attempt = (&'static str, fn() -> libc::c_long);

    /// Runs `attempt` in a forked child under the policy; returns the signal that
    /// killed the child, or `None` if it exited normally. The child only makes
    /// system calls (no allocation) after fork, as a multi-threaded parent requires.
    fn under_policy(program: &BpfProgram, attempt: fn() -> libc::c_long) -> Option<i32> {
        let filter = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: fork in a test; the child makes only raw system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: raw system calls in the forked child, then _exit.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &filter) != 0 {
                    libc::_exit(3);
                }
                attempt();
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFSIGNALED(status) {
            Some(libc::WTERMSIG(status))
        } else {
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "child could not apply the filter"
            );
            None
        }
    }

    /// Forbidden calls, each with arguments that would be harmless without the
    /// filter (so a missing rule cannot hurt the machine running the test).
    #[test]
    fn forbidden_syscalls_kill_the_process() -> Result<(), SeccompError> {
        let program = compile(Violation::Kill)?;
        // SAFETY (all rows): raw system calls with invalid or harmless arguments.
        let table: &[Attempt] = &[
            ("socket", || unsafe {
                libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0)
            }),
            ("connect", || unsafe {
                libc::syscall(libc::SYS_connect, -1, 0, 0)
            }),
            ("openat", || unsafe {
                libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c"/etc/passwd".as_ptr(), 0)
            }),
            ("execve", || unsafe {
                libc::syscall(libc::SYS_execve, c"/nonexistent".as_ptr(), 0, 0)
            }),
            ("fork (clone)", || unsafe {
                libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0)
            }),
            ("clone3", || unsafe {
                libc::syscall(libc::SYS_clone3, 0, 0)
            }),
            ("ptrace", || unsafe {
                libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0)
            }),
            ("kill", || unsafe {
                libc::syscall(libc::SYS_kill, libc::getpid(), 0)
            }),
            ("mount", || unsafe {
                libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0)
            }),
            ("unshare", || unsafe { libc::syscall(libc::SYS_unshare, 0) }),
            ("setns", || unsafe { libc::syscall(libc::SYS_setns, -1, 0) }),
            ("bpf", || unsafe { libc::syscall(libc::SYS_bpf, -1, 0, 0) }),
            ("perf_event_open", || unsafe {
                libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0)
            }),
            ("io_uring_setup", || unsafe {
                libc::syscall(libc::SYS_io_uring_setup, 0, 0)
            }),
            ("userfaultfd", || unsafe {
                libc::syscall(libc::SYS_userfaultfd, 0)
            }),
            ("keyctl", || unsafe {
                libc::syscall(libc::SYS_keyctl, -1, 0, 0, 0, 0)
            }),
            ("init_module", || unsafe {
                libc::syscall(libc::SYS_init_module, 0, 0, 0)
            }),
            ("mmap PROT_EXEC", || unsafe {
                libc::syscall(
                    libc::SYS_mmap,
                    0,
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            }),
            ("mprotect RWX", || unsafe {
                libc::syscall(
                    libc::SYS_mprotect,
                    0,
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                )
            }),
            ("futex LOCK_PI", || unsafe {
                libc::syscall(libc::SYS_futex, 0, libc::FUTEX_LOCK_PI, 0, 0, 0, 0)
            }),
            ("madvise HWPOISON", || unsafe {
                libc::syscall(libc::SYS_madvise, 0, 0, libc::MADV_HWPOISON)
            }),
            ("prctl PR_SET_DUMPABLE", || unsafe {
                libc::syscall(libc::SYS_prctl, libc::PR_SET_DUMPABLE, 1, 0, 0, 0)
            }),
            ("fcntl F_DUPFD", || unsafe {
                libc::syscall(libc::SYS_fcntl, 0, libc::F_DUPFD, 100)
            }),
            ("rt_sigaction", || unsafe {
                libc::syscall(libc::SYS_rt_sigaction, libc::SIGUSR1, 0, 0, 8)
            }),
        ];
        for (name, attempt) in table {
            assert_eq!(
                under_policy(&program, *attempt),
                Some(libc::SIGSYS),
                "{name} was not stopped"
            );
        }
        Ok(())
    }

    /// The same calls with allowed arguments, and the calls the worker needs, go
    /// through (allowed-vs-altered arguments, as Firecracker tests its rules).
    #[test]
    fn allowed_syscalls_and_arguments_pass() -> Result<(), SeccompError> {
        let program = compile(Violation::Kill)?;
        // SAFETY (all rows): raw system calls with harmless arguments.
        let table: &[Attempt] = &[
            ("mmap RW", || unsafe {
                libc::syscall(
                    libc::SYS_mmap,
                    0,
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            }),
            ("mprotect R", || unsafe {
                libc::syscall(libc::SYS_mprotect, 0, 0, libc::PROT_READ)
            }),
            ("futex WAKE private", || unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    0,
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    0,
                    0,
                    0,
                    0,
                )
            }),
            ("madvise DONTNEED", || unsafe {
                libc::syscall(libc::SYS_madvise, 0, 0, libc::MADV_DONTNEED)
            }),
            ("prctl PR_SET_NAME", || unsafe {
                libc::syscall(libc::SYS_prctl, libc::PR_SET_NAME, c"t".as_ptr(), 0, 0, 0)
            }),
            ("fcntl F_GETFL", || unsafe {
                libc::syscall(libc::SYS_fcntl, 0, libc::F_GETFL)
            }),
            ("write", || unsafe {
                libc::syscall(libc::SYS_write, -1, 0, 0)
            }),
            ("getrandom", || unsafe {
                libc::syscall(libc::SYS_getrandom, 0, 0, 0)
            }),
            ("clock_gettime", || unsafe {
                libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, 0)
            }),
            ("gettid", || unsafe { libc::syscall(libc::SYS_gettid) }),
        ];
        for (name, attempt) in table {
            assert_eq!(under_policy(&program, *attempt), None, "{name} was stopped");
        }
        Ok(())
    }
}
