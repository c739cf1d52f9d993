//! Names of system calls, for reports of workers that seccomp stopped.

/// The name of system call `nr` on this architecture, for the calls a sandboxed
/// worker is most likely to be caught making.
pub fn name(nr: i64) -> Option<&'static str> {
    let (_, constant) = TABLE.iter().chain(LEGACY).find(|(n, _)| *n == nr)?;
    constant.strip_prefix("SYS_")
}

macro_rules! table {
    ($($sys:ident),* $(,)?) => {
        &[$((libc::$sys, stringify!($sys))),*]
    };
}

const TABLE: &[(i64, &str)] = table![
    SYS_socket,
    SYS_socketpair,
    SYS_connect,
    SYS_bind,
    SYS_listen,
    SYS_accept,
    SYS_accept4,
    SYS_openat,
    SYS_openat2,
    SYS_newfstatat,
    SYS_statx,
    SYS_faccessat,
    SYS_readlinkat,
    SYS_unlinkat,
    SYS_chdir,
    SYS_truncate,
    SYS_execve,
    SYS_execveat,
    SYS_clone,
    SYS_clone3,
    SYS_kill,
    SYS_tkill,
    SYS_tgkill,
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_chroot,
    SYS_unshare,
    SYS_setns,
    SYS_bpf,
    SYS_perf_event_open,
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
    SYS_userfaultfd,
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_kexec_load,
    SYS_reboot,
    SYS_setuid,
    SYS_setgid,
    SYS_setresuid,
    SYS_setresgid,
    SYS_capset,
    SYS_prctl,
    SYS_seccomp,
    SYS_rt_sigaction,
    SYS_ioctl,
    SYS_getppid,
    SYS_memfd_create,
    SYS_mmap,
    SYS_mprotect,
    SYS_madvise,
    SYS_futex,
    SYS_fcntl,
    SYS_dup,
    SYS_dup3,
    SYS_pipe2,
    SYS_eventfd2,
    SYS_epoll_create1,
    SYS_getdents64,
    SYS_sysinfo,
    SYS_uname,
];

/// The calls x86_64 kept from before their `*at` forms; aarch64 (like every
/// newer architecture) has only the `*at` ones, which [`TABLE`] names.
#[cfg(target_arch = "x86_64")]
const LEGACY: &[(i64, &str)] = table![
    SYS_open,
    SYS_creat,
    SYS_stat,
    SYS_lstat,
    SYS_access,
    SYS_readlink,
    SYS_unlink,
    SYS_rename,
    SYS_mkdir,
    SYS_chmod,
    SYS_chown,
    SYS_fork,
    SYS_vfork,
    SYS_dup2,
    SYS_pipe,
];
#[cfg(not(target_arch = "x86_64"))]
const LEGACY: &[(i64, &str)] = &[];

#[cfg(test)]
mod tests {
    #[test]
    fn names_come_from_the_numbers() {
        assert_eq!(super::name(libc::SYS_socket), Some("socket"));
        assert_eq!(
            super::name(libc::SYS_io_uring_setup),
            Some("io_uring_setup")
        );
        assert_eq!(super::name(libc::SYS_mprotect), Some("mprotect"));
        assert_eq!(super::name(-1), None);
        assert_eq!(super::name(100_000), None);
    }

    /// On each architecture, a number names one call: the tables compile
    /// only with the calls that architecture has (scripts/arm64-check builds
    /// them for aarch64), and no two rows share a number.
    #[test]
    fn every_number_names_one_call_on_this_architecture() {
        let rows: Vec<_> = super::TABLE.iter().chain(super::LEGACY).collect();
        for (i, (nr, name)) in rows.iter().enumerate() {
            assert!(
                rows[i + 1..].iter().all(|(other, _)| other != nr),
                "{name} ({nr}) is named twice"
            );
            assert_eq!(super::name(*nr), name.strip_prefix("SYS_"));
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(super::name(libc::SYS_open), Some("open"));
    }
}
