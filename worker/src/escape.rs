//! Compromised-worker simulation, for tests only (cargo feature `escape-hatch`,
//! never enabled by release builds): a locked-down worker attempts one named
//! system call, as code that escaped wasmtime would.
//!
//! Every attempt uses arguments that are harmless if the filter were missing:
//! invalid pointers and fds, signal 0, flag combinations the kernel rejects.

/// A named attempt; the argument is a pid where one is needed (tarkd's own, never
/// pid 1), ignored otherwise.
pub type Attempt = (&'static str, fn(i64) -> libc::c_long);

/// System calls the sandbox must stop.
// SAFETY (every row): raw system calls with invalid or harmless arguments.
pub const FORBIDDEN: &[Attempt] = &[
    ("sched_setscheduler(another process)", |_| unsafe {
        let p = libc::sched_param { sched_priority: 0 };
        libc::syscall(libc::SYS_sched_setscheduler, 1, libc::SCHED_IDLE, &p)
    }),
    ("sched_setscheduler(SCHED_FIFO)", |_| unsafe {
        let p = libc::sched_param { sched_priority: 1 };
        libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_FIFO, &p)
    }),
    ("execve", |_| unsafe {
        libc::syscall(libc::SYS_execve, c"/nonexistent".as_ptr(), 0, 0)
    }),
    ("socket", |_| unsafe {
        libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0)
    }),
    ("connect", |_| unsafe {
        libc::syscall(libc::SYS_connect, -1, 0, 0)
    }),
    ("openat", |_| unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/etc/passwd".as_ptr(),
            libc::O_RDONLY,
        )
    }),
    ("ptrace", |_| unsafe {
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKDATA, 0, 0, 0)
    }),
    ("mount", |_| unsafe {
        libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0)
    }),
    ("unshare", |_| unsafe {
        libc::syscall(libc::SYS_unshare, 0)
    }),
    ("setns", |_| unsafe {
        libc::syscall(libc::SYS_setns, -1, 0)
    }),
    ("bpf", |_| unsafe { libc::syscall(libc::SYS_bpf, -1, 0, 0) }),
    ("perf_event_open", |_| unsafe {
        libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0)
    }),
    ("kill", |pid| unsafe {
        libc::syscall(libc::SYS_kill, pid, 0)
    }),
    // CLONE_SIGHAND without CLONE_VM is rejected (EINVAL) if ever allowed.
    ("clone", |_| unsafe {
        libc::syscall(libc::SYS_clone, libc::CLONE_SIGHAND, 0, 0, 0, 0)
    }),
    ("clone3", |_| unsafe {
        libc::syscall(libc::SYS_clone3, 0, 0)
    }),
    ("io_uring_setup", |_| unsafe {
        libc::syscall(libc::SYS_io_uring_setup, 0, 0)
    }),
    ("userfaultfd", |_| unsafe {
        libc::syscall(libc::SYS_userfaultfd, 0)
    }),
    ("keyctl", |_| unsafe {
        libc::syscall(libc::SYS_keyctl, -1, 0, 0, 0, 0)
    }),
    ("init_module", |_| unsafe {
        libc::syscall(libc::SYS_init_module, 0, 0, 0)
    }),
    ("mprotect_rwx", |_| unsafe {
        libc::syscall(
            libc::SYS_mprotect,
            0,
            0,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        )
    }),
    ("mmap_exec", |_| unsafe {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        libc::syscall(
            libc::SYS_mmap,
            0,
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            flags,
            -1,
            0,
        )
    }),
    ("futex_lock_pi", |_| unsafe {
        libc::syscall(libc::SYS_futex, 0, libc::FUTEX_LOCK_PI, 0, 0, 0, 0)
    }),
    ("madvise_hwpoison", |_| unsafe {
        libc::syscall(libc::SYS_madvise, 0, 0, libc::MADV_HWPOISON)
    }),
    ("prctl_dumpable", |_| unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_DUMPABLE, 1, 0, 0, 0)
    }),
    ("fcntl_dupfd", |_| unsafe {
        libc::syscall(libc::SYS_fcntl, 0, libc::F_DUPFD, 100)
    }),
    ("rt_sigaction", |_| unsafe {
        libc::syscall(libc::SYS_rt_sigaction, libc::SIGUSR1, 0, 0, 8)
    }),
];

/// The same kinds of call with arguments the policy allows, and calls the worker
/// needs: these must go through.
// SAFETY (every row): raw system calls with harmless arguments.
pub const ALLOWED: &[Attempt] = &[
    ("sched_setscheduler(itself, SCHED_IDLE)", |_| unsafe {
        let p = libc::sched_param { sched_priority: 0 };
        libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_IDLE, &p)
    }),
    ("mmap_rw", |_| unsafe {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        libc::syscall(
            libc::SYS_mmap,
            0,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    }),
    ("mprotect_r", |_| unsafe {
        libc::syscall(libc::SYS_mprotect, 0, 0, libc::PROT_READ)
    }),
    ("futex_wake", |_| unsafe {
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
    ("madvise_dontneed", |_| unsafe {
        libc::syscall(libc::SYS_madvise, 0, 0, libc::MADV_DONTNEED)
    }),
    ("prctl_set_name", |_| unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_NAME, c"t".as_ptr(), 0, 0, 0)
    }),
    ("fcntl_getfl", |_| unsafe {
        libc::syscall(libc::SYS_fcntl, 0, libc::F_GETFL)
    }),
    ("write", |_| unsafe {
        libc::syscall(libc::SYS_write, -1, 0, 0)
    }),
    ("getrandom", |_| unsafe {
        libc::syscall(libc::SYS_getrandom, 0, 0, 0)
    }),
    ("clock_gettime", |_| unsafe {
        libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, 0)
    }),
    ("gettid", |_| unsafe { libc::syscall(libc::SYS_gettid) }),
];

/// The attempt a tool call's arguments ask for: `{"__escape__": NAME, "pid": N}`.
#[cfg(feature = "escape-hatch")]
pub fn requested(arguments_json: &str) -> Option<(Attempt, i64)> {
    let v: serde_json::Value = serde_json::from_str(arguments_json).ok()?;
    let name = v.get("__escape__")?.as_str()?;
    let pid = v
        .get("pid")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    FORBIDDEN
        .iter()
        .chain(ALLOWED)
        .find(|(n, _)| *n == name)
        .map(|a| (*a, pid))
}
