//! The trying behind `--check-host`: each function asks the kernel (or the
//! filesystem) the way tarkd or a worker would, and returns the answer.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

use super::{CgroupProbe, Finding, State, UsernsProbe};
use crate::config::Config;
use crate::workers::cgroup::plan::{self, Place};

fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Unshares a worker's namespaces in a child that is, when tarkd is root, a
/// worker uid: what decides it (Ubuntu's AppArmor rule, the sysctls) applies
/// to unprivileged uids only.
pub fn namespaces(config: &Config) -> UsernsProbe {
    let id = config.sandbox.worker_id_base;
    let root = nix::unistd::geteuid().is_root();
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWPID;
    let mut child = std::process::Command::new("/proc/self/exe");
    child
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe system calls.
    unsafe {
        child.pre_exec(move || {
            if root
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(id, id, id) != 0
                    || libc::setresuid(id, id, id) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let refused = match child.status() {
        Ok(_) => None,
        Err(e) => Some(e.raw_os_error().unwrap_or(libc::EPERM)),
    };
    UsernsProbe {
        refused,
        apparmor_restricts: sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            == Some(1),
        max_user_namespaces: sysctl("/proc/sys/user/max_user_namespaces"),
        userns_clone: sysctl("/proc/sys/kernel/unprivileged_userns_clone").map(|v| v == 1),
    }
}

/// The kernel's landlock ABI, or the errno of asking.
pub fn landlock_abi() -> Result<u32, i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: a version query reads no memory (NULL attributes, size 0).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The seccomp filter actions the kernel offers.
pub fn seccomp_actions() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").ok()
}

/// Where workers' cgroups would go under `config`, as tarkd would find it.
pub fn cgroup(config: &plan::CgroupConfig) -> CgroupProbe {
    let dir = match config.place() {
        Ok(Place::Off) | Err(_) => return CgroupProbe::Off,
        Ok(Place::At(dir)) => dir,
        // The same finding as tarkd's start, without moving anything.
        Ok(Place::Delegated) => match crate::workers::cgroup::delegated_to_me() {
            Ok(dir) => dir,
            Err(why) => return CgroupProbe::Refused(why),
        },
    };
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(&dir);
    CgroupProbe::At {
        dir: dir.display().to_string(),
        writable: nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_ok(),
        controllers: std::fs::read_to_string(existing.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    }
}

pub fn worker_binary(config: &Config) -> Finding {
    let (state, detail) = match crate::server::worker_path(config) {
        Err(e) => (State::Missing(format!("finding it: {e}")), String::new()),
        Ok(path) => match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                (State::Ok, path.display().to_string())
            }
            Ok(_) => (
                State::Missing(format!("{} is not an executable file", path.display())),
                String::new(),
            ),
            Err(e) => (
                State::Missing(format!("{}: {e} (set worker_path)", path.display())),
                String::new(),
            ),
        },
    };
    Finding::new("worker", state, detail)
}

pub fn state_dir(dir: &Path) -> Finding {
    let me = nix::unistd::geteuid().as_raw();
    let state = match std::fs::metadata(dir) {
        Ok(m) if m.uid() != me => State::Missing(format!(
            "{} is owned by uid {}, not tarkd's {me}",
            dir.display(),
            m.uid()
        )),
        Ok(m) if m.mode() & 0o077 != 0 => State::Degraded {
            why: format!(
                "{} is mode {:o}: others may read plugin storage",
                dir.display(),
                m.mode() & 0o777
            ),
            fix: format!("chmod 0700 {}", dir.display()),
        },
        Ok(_) => State::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // tarkd makes it and any folder above it that is missing.
            match dir.ancestors().skip(1).find(|p| p.exists()) {
                Some(p) if nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok() => {
                    State::Ok
                }
                _ => State::Missing(format!(
                    "{} does not exist and cannot be made",
                    dir.display()
                )),
            }
        }
        Err(e) => State::Missing(format!("{}: {e}", dir.display())),
    };
    Finding::new("state_dir", state, dir.display().to_string())
}

pub fn socket_group(group: Option<&str>) -> Finding {
    let (state, detail) = match group {
        None => (
            State::Ok,
            "api.socket_group not set: the socket is tarkd's group's".into(),
        ),
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => (State::Ok, format!("{name} (gid {})", g.gid)),
            Ok(None) => (
                State::Missing(format!(
                    "api.socket_group {name:?} is no group on this host"
                )),
                String::new(),
            ),
            Err(e) => (
                State::Missing(format!("looking up group {name:?}: {e}")),
                String::new(),
            ),
        },
    };
    Finding::new("socket_group", state, detail)
}

pub fn fs_home(home: Option<&Path>) -> Finding {
    let home = home
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HOME").map(Into::into));
    let (state, detail) = match home {
        None => (
            State::Degraded {
                why: "no fs.home and no $HOME: fs_read grants under ~ match nothing".into(),
                fix: "set fs.home".into(),
            },
            String::new(),
        ),
        Some(h) if h.is_dir() => (State::Ok, h.display().to_string()),
        Some(h) => (
            State::Degraded {
                why: format!(
                    "{} is not a folder: fs_read grants under ~ match nothing",
                    h.display()
                ),
                fix: "set fs.home to an existing folder".into(),
            },
            String::new(),
        ),
    };
    Finding::new("fs.home", state, detail)
}
