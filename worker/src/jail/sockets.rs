//! Unix sockets in the jail: none can be made unless the tool declared a
//! socket to connect to. A seccomp filter answers `socket(AF_UNIX, …)` with
//! EACCES (the C library's NSS and syslog then fall back quietly); other
//! system calls are the command's own business. It is a second wall behind
//! the jail's root ([`super::root`]), which holds no host socket but the
//! declared ones: an `fs_read` grant over a folder that holds a socket (or
//! over `/`) does not make it reachable.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// The filter, for this machine's architecture (another architecture's
/// system calls kill the process: no way around it through a compat ABI).
pub fn filter() -> Result<seccompiler::BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let unix = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_UNIX as u64,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let rule = SeccompRule::new(vec![unix]).map_err(|e| format!("seccomp: {e}"))?;
    let rules = BTreeMap::from([(libc::SYS_socket, vec![rule])]);
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .and_then(TryInto::try_into)
    .map_err(|e| format!("seccomp: {e}"))
}

/// Refuses Unix sockets from here on (this thread and what it executes).
pub fn refuse() -> Result<(), String> {
    let program = filter()?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    /// In a thread of its own (a filter binds the thread that installs it
    /// and what it starts): Unix sockets refused, others made.
    #[test]
    fn unix_sockets_are_refused_and_others_are_not() {
        let outcome = std::thread::spawn(|| {
            // SAFETY: prctl on this thread.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            super::refuse()?;
            let try_socket = |family| {
                // SAFETY: socket(2), closed at once.
                let fd = unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
                let err = std::io::Error::last_os_error().raw_os_error();
                if fd >= 0 {
                    // SAFETY: our own descriptor.
                    unsafe { libc::close(fd) };
                }
                (fd >= 0, err)
            };
            Ok::<_, String>((try_socket(libc::AF_UNIX), try_socket(libc::AF_INET)))
        })
        .join();
        let Ok(Ok(((unix_made, unix_err), (inet_made, _)))) = outcome else {
            panic!("the filter could not be applied: {outcome:?}");
        };
        assert!(!unix_made && unix_err == Some(libc::EACCES));
        assert!(inet_made);
    }
}
