//! The worker's lockdown: the one place where the process gives up what it does not
//! need, after the engine and module are set up and before the first guest
//! instruction runs.
//!
//! tarkd already started the worker with a cleared environment, only its channel
//! fds (every other fd close-on-exec), a death signal tied to tarkd and its own
//! process group. The layers here are the ones the worker applies to itself, in
//! this order; each reports whether the kernel accepted it, so tarkd can show the
//! operator what a worker actually runs under.

use landlock::{Access, AccessFs, AccessNet, Ruleset, RulesetAttr, Scope};
use nix::sys::prctl;
use rlimit::Resource;

use crate::seccomp;

/// Open files a locked-down worker may hold: its channels and its runtime's fds,
/// with room to spare; it can open no new ones anyway.
const MAX_OPEN_FILES: u64 = 64;
/// CPU seconds over a worker's life before the kernel ends it: a backstop, far
/// above what the per-call deadlines allow in normal use.
const MAX_CPU_SECONDS: u64 = 24 * 3600;

/// One sandbox layer and what became of it, as reported to tarkd.
pub type Layer = tark_proto::worker::v1::SandboxLayer;

/// How [`crate::pidns::enter`] went.
pub fn pid_namespace_layer(r: &std::io::Result<crate::pidns::PidNamespace>) -> Layer {
    use crate::pidns::PidNamespace;
    let (applied, detail) = match r {
        Ok(PidNamespace::Entered) => (true, "pid 1 of its own namespace".to_owned()),
        Ok(PidNamespace::NotRequested) => (false, "tarkd did not create one".to_owned()),
        Err(e) => (false, e.to_string()),
    };
    Layer {
        name: "pid_namespace".into(),
        applied,
        detail,
    }
}

fn layer<E: std::fmt::Display>(name: &str, r: Result<(), E>) -> Layer {
    match r {
        Ok(()) => Layer {
            name: name.into(),
            applied: true,
            detail: String::new(),
        },
        Err(e) => Layer {
            name: name.into(),
            applied: false,
            detail: e.to_string(),
        },
    }
}

/// A layer whose success has something to say (what the kernel gave).
fn detailed(name: &str, r: Result<String, String>) -> Layer {
    let (applied, detail) = match r {
        Ok(detail) => (true, detail),
        Err(why) => (false, why),
    };
    Layer {
        name: name.into(),
        applied,
        detail,
    }
}

/// Resource limits. Never RLIMIT_AS: wasmtime reserves large virtual ranges for
/// guard pages, and memory is capped per store instead.
fn rlimits() -> std::io::Result<()> {
    rlimit::setrlimit(Resource::NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES)?;
    rlimit::setrlimit(Resource::CORE, 0, 0)?;
    // No file writes: the worker has no files (wasmtime's copy-on-write memory
    // images, which are memfds, are turned off in `engine`).
    rlimit::setrlimit(Resource::FSIZE, 0, 0)?;
    // No new processes (ignored by the kernel for root; seccomp refuses them too).
    rlimit::setrlimit(Resource::NPROC, 0, 0)?;
    rlimit::setrlimit(Resource::CPU, MAX_CPU_SECONDS, MAX_CPU_SECONDS)?;
    Ok(())
}

/// Landlock: no filesystem access, no TCP, no signals or abstract sockets beyond
/// the worker's own domain, at the best ABI the kernel offers; counted as
/// applied when the kernel gave at least `min_abi` (the detail names the ABI
/// and every right it lacks).
fn landlock(min_abi: u32) -> Result<String, String> {
    let abi = crate::landlock_abi::TARGET;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    crate::landlock_abi::judge(&status, min_abi)
}

/// The namespaces this process is in, as the kernel names them
/// (`net:[4026532301]`), for tarkd to compare with its own. Read before
/// landlock hides /proc.
pub fn own_namespaces() -> Vec<String> {
    tark_proto::NAMESPACES
        .iter()
        .filter_map(|ns| std::fs::read_link(format!("/proc/self/ns/{ns}")).ok())
        .map(|link| link.to_string_lossy().into_owned())
        .collect()
}

/// First thing at start, while the worker is one thread: close every fd above
/// the channels (tarkd marked them close-on-exec already; this also covers a
/// launcher that did not) and drop any environment. Reported as layers.
pub fn at_start() -> Vec<Layer> {
    // SAFETY: close_range(2) on fds this process has not started using.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 5, libc::c_uint::MAX, 0) };
    let fds = layer(
        "close_fds",
        if closed == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        },
    );
    let names: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    for name in &names {
        // SAFETY: the worker is single-threaded here (no runtime, no threads yet).
        unsafe { std::env::remove_var(name) };
    }
    let env = Layer {
        name: "empty_env".into(),
        applied: true,
        detail: if names.is_empty() {
            String::new()
        } else {
            format!("removed {} inherited variables", names.len())
        },
    };
    vec![fds, env]
}

/// Applies the lockdown layers in order and reports each. seccomp comes last: the
/// layers before it need system calls it forbids. With `seccomp_log`, violations
/// are allowed and logged by the kernel instead (to find what a policy misses).
pub fn lockdown(seccomp_log: bool, landlock_min_abi: u32) -> Vec<Layer> {
    // Built before anything is locked: compiling allocates and may fail. A
    // violation traps into a handler that names the call, then dies by SIGSYS.
    let violation = if seccomp_log {
        seccomp::Violation::Log
    } else {
        seccomp::Violation::Trap
    };
    let filter = seccomp::install_violation_reporter().and_then(|()| seccomp::compile(violation));
    let mut layers = vec![
        layer("rlimits", rlimits()),
        // No setuid/file-capability gains from here on (and a precondition for
        // unprivileged landlock and seccomp).
        layer("no_new_privs", prctl::set_no_new_privs()),
        // No core dumps and no ptrace attach by same-uid processes.
        layer("not_dumpable", prctl::set_dumpable(false)),
        detailed("landlock", landlock(landlock_min_abi)),
    ];
    let mut seccomp = layer("seccomp", filter.and_then(|f| seccomp::apply(&f)));
    if seccomp.applied && seccomp_log {
        seccomp.detail = "log mode: violations are allowed and logged by the kernel".into();
    }
    layers.push(seccomp);
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_display_names_state_and_reason() {
        assert_eq!(layer::<String>("x", Ok(())).to_string(), "x: applied");
        let refused = layer("y", Err(nix::Error::EPERM));
        assert!(!refused.applied);
        assert!(
            refused.to_string().starts_with("y: not applied ("),
            "{refused}"
        );
    }
}
