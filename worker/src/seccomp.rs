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
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut rows = vec![
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
        // Its own thread to idle priority and back (a heavy call gives way;
        // see `priority`): pid 0 only, and no other policy.
        when(
            libc::SYS_sched_setscheduler,
            [libc::SCHED_OTHER, libc::SCHED_IDLE]
                .iter()
                .map(|p| vec![(0, Op::Eq, 0), (1, Op::Eq, *p as u64)])
                .collect(),
        ),
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
    ];
    // x86_64 keeps the calls newer architectures only have in their *at or
    // p* form; aarch64 has epoll_pwait alone.
    #[cfg(target_arch = "x86_64")]
    rows.push(any(libc::SYS_epoll_wait));
    rows
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

/// The line a worker writes to stderr when seccomp stops it; tarkd reads the
/// number after it to name the system call in its report.
pub const VIOLATION_PREFIX: &[u8] = b"tark-worker: seccomp: forbidden system call ";

/// Makes a seccomp violation name itself before the worker dies of it.
///
/// With [`Violation::Trap`], a forbidden call raises SIGSYS in the calling thread.
/// The handler writes [`VIOLATION_PREFIX`] and the call's number to stderr, then
/// makes a forbidden call again: SIGSYS is blocked inside its own handler, so the
/// kernel resets it to the default action and the process dies by SIGSYS, as with
/// a plain kill. It must be installed before the filter (seccomp forbids
/// `rt_sigaction` afterwards, so a compromised worker cannot replace it).
pub fn install_violation_reporter() -> Result<(), SeccompError> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::SigAction(on_sigsys),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler only reads its siginfo and makes raw system calls.
    unsafe { sigaction(Signal::SIGSYS, &action) }
        .map(drop)
        .map_err(|e| SeccompError(format!("SIGSYS handler: {e}")))
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // siginfo for SIGSYS (64-bit Linux): after signo, errno, code and padding come
    // the call address (8 bytes at 16) and the system call number (i32 at 24).
    let nr = if info.is_null() {
        -1
    } else {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() }
    };
    let mut line = [0u8; 96];
    let mut len = VIOLATION_PREFIX.len();
    line[..len].copy_from_slice(VIOLATION_PREFIX);
    len += write_decimal(nr, &mut line[len..]);
    line[len] = b'\n';
    // SAFETY: write(2) and a forbidden getppid(2) are async-signal-safe.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len + 1);
        libc::syscall(libc::SYS_getppid);
        libc::_exit(128 + libc::SIGSYS);
    }
}

/// Formats `n` in decimal into `out` without allocating; returns the length.
fn write_decimal(n: i32, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 11];
    let mut v = i64::from(n).unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut len = 0;
    if n < 0 {
        out[0] = b'-';
        len = 1;
    }
    let d = &digits[i..];
    out[len..len + d.len()].copy_from_slice(d);
    len + d.len()
}

/// The reaper's policy ([`crate::pidns`]): the parent left outside the
/// worker's PID namespace only waits for the worker and ends as it ended, so
/// it may wait, reset a signal's action, signal itself (`own_pid`) and exit.
fn reaper_policy(own_pid: u32) -> Vec<Allow> {
    vec![
        any(libc::SYS_wait4),
        any(libc::SYS_rt_sigaction),
        any(libc::SYS_rt_sigreturn),
        any(libc::SYS_restart_syscall),
        any(libc::SYS_getpid),
        when(libc::SYS_kill, vec![vec![(0, Op::Eq, u64::from(own_pid))]]),
        any(libc::SYS_exit_group),
        any(libc::SYS_exit),
    ]
}

/// Compiles the worker's policy to BPF.
pub fn compile(on_violation: Violation) -> Result<BpfProgram, SeccompError> {
    compile_rows(policy(), on_violation)
}

/// Compiles the reaper's policy to BPF; anything else kills it.
pub fn compile_reaper(own_pid: u32) -> Result<BpfProgram, SeccompError> {
    compile_rows(reaper_policy(own_pid), Violation::Kill)
}

fn compile_rows(rows: Vec<Allow>, on_violation: Violation) -> Result<BpfProgram, SeccompError> {
    let err = |e: &dyn std::fmt::Display| SeccompError(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for row in rows {
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

    /// Runs `attempt` in a forked child under the policy; returns the signal that
    /// killed the child, or `None` if it exited normally. The child only makes
    /// system calls (no allocation) after fork, as a multi-threaded parent requires.
    fn under_policy(program: &BpfProgram, attempt: fn(i64) -> libc::c_long) -> Option<i32> {
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
                attempt(0);
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

    /// In trap mode the worker names the call on stderr and still dies by SIGSYS.
    #[test]
    fn trap_mode_reports_the_call_then_dies_by_sigsys() -> Result<(), SeccompError> {
        let program = compile(Violation::Trap)?;
        let filter = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        let mut fds = [0; 2];
        // SAFETY: a pipe for the child's stderr.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child makes only raw system calls (and a sigaction) and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::dup2(fds[1], 2);
                if install_violation_reporter().is_err()
                    || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &filter) != 0
                {
                    libc::_exit(3);
                }
                libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the write end, then reading and reaping.
        let (status, text) = unsafe {
            libc::close(fds[1]);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            let mut buf = [0u8; 256];
            let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
            libc::close(fds[0]);
            (
                status,
                String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned(),
            )
        };
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "status {status:#x}"
        );
        assert_eq!(
            text,
            format!(
                "tark-worker: seccomp: forbidden system call {}\n",
                libc::SYS_socket
            )
        );
        Ok(())
    }

    #[test]
    fn decimal_formatting_table() {
        for (n, want) in [
            (0, "0"),
            (7, "7"),
            (41, "41"),
            (-1, "-1"),
            (i32::MAX, "2147483647"),
            (i32::MIN, "-2147483648"),
        ] {
            let mut buf = [0u8; 16];
            let len = write_decimal(n, &mut buf);
            assert_eq!(&buf[..len], want.as_bytes());
        }
    }

    /// Forbidden calls (the compromised-worker table) die by SIGSYS.
    #[test]
    fn forbidden_syscalls_kill_the_process() -> Result<(), SeccompError> {
        let program = compile(Violation::Kill)?;
        assert!(crate::escape::FORBIDDEN.len() >= 15);
        for (name, attempt) in crate::escape::FORBIDDEN {
            assert_eq!(
                under_policy(&program, *attempt),
                Some(libc::SIGSYS),
                "{name} was not stopped"
            );
        }
        Ok(())
    }

    /// The reaper may wait and exit; everything the worker's table forbids,
    /// and signalling anyone but itself, kills it.
    #[test]
    fn the_reaper_only_waits_and_exits() -> Result<(), SeccompError> {
        let program = compile_reaper(1)?;
        // The reaper resets a signal's action to re-raise it; the rest of
        // what a worker may not do, it may not either.
        for (name, attempt) in crate::escape::FORBIDDEN
            .iter()
            .filter(|(n, _)| *n != "rt_sigaction")
        {
            assert_eq!(
                under_policy(&program, *attempt),
                Some(libc::SIGSYS),
                "{name} was not stopped"
            );
        }
        let allowed: &[crate::escape::Attempt] = &[
            // SAFETY (each): a harmless call in the forked test child.
            ("getpid", |_| unsafe { libc::syscall(libc::SYS_getpid) }),
            ("wait4 (no children)", |_| unsafe {
                libc::syscall(libc::SYS_wait4, -1, 0, libc::WNOHANG, 0)
            }),
            ("rt_sigaction", |_| unsafe {
                libc::signal(libc::SIGUSR1, libc::SIG_DFL) as libc::c_long
            }),
            ("kill(its own pid 1, 0)", |_| unsafe {
                libc::syscall(libc::SYS_kill, 1, 0)
            }),
        ];
        for (name, attempt) in allowed {
            assert_eq!(under_policy(&program, *attempt), None, "{name} was stopped");
        }
        let others: &[crate::escape::Attempt] = &[
            // SAFETY (each): as above; the filter stops them before the kernel acts.
            ("kill(another pid)", |_| unsafe {
                libc::syscall(libc::SYS_kill, 2, 0)
            }),
            ("read", |_| unsafe {
                libc::syscall(libc::SYS_read, 0, 0, 0)
            }),
            ("write", |_| unsafe {
                libc::syscall(libc::SYS_write, 2, 0, 0)
            }),
            ("close", |_| unsafe { libc::syscall(libc::SYS_close, 100) }),
        ];
        for (name, attempt) in others {
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
        for (name, attempt) in crate::escape::ALLOWED {
            assert_eq!(under_policy(&program, *attempt), None, "{name} was stopped");
        }
        Ok(())
    }
}
