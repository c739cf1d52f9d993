//! `tarkd --check-host`: whether this host gives tarkd what its config asks
//! for, one line per sandbox layer and requirement, before an operator finds
//! out from a worker's `SANDBOX_INCOMPLETE`.
//!
//! Each line is `ok`, `degraded (why; how to fix)` or `missing (why)`, from
//! what the kernel answered when tried ([`probe`] does the trying, as tarkd
//! and its workers would: unsharing namespaces as an unprivileged uid, asking
//! landlock for its ABI), never from version numbers. The verdicts are pure
//! functions of those answers, table-tested here. A layer the config requires
//! (`sandbox.require`, `sandbox.landlock.min_abi`) that is missing, or a
//! requirement to start at all (the worker binary, the state dir, the socket's
//! group), makes the check fail.

pub mod probe;

use std::fmt;

use crate::config::Config;

/// How one requirement stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ok,
    /// Works, with less than tarkd can use: why, and how to get the rest.
    Degraded {
        why: String,
        fix: String,
    },
    Missing(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub state: State,
    /// What was found, shown with `ok` (e.g. the ABI, the controllers).
    pub detail: String,
    /// The config cannot do without it: missing fails the check.
    pub required: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let required = if self.fails() { " [required]" } else { "" };
        match &self.state {
            State::Ok if self.detail.is_empty() => write!(f, "{}: ok", self.name),
            State::Ok => write!(f, "{}: ok ({})", self.name, self.detail),
            State::Degraded { why, fix } => write!(f, "{}: degraded ({why}; {fix})", self.name),
            State::Missing(why) => write!(f, "{}: missing ({why}){required}", self.name),
        }
    }
}

impl Finding {
    fn new(name: &'static str, state: State, detail: String) -> Self {
        Self {
            name,
            state,
            detail,
            required: false,
        }
    }

    /// Whether this line fails the check.
    pub fn fails(&self) -> bool {
        self.required && matches!(self.state, State::Missing(_))
    }
}

/// Every finding for `config` on this host, from outside a running tarkd.
pub fn run(config: &Config) -> Vec<Finding> {
    run_with(config, probe::cgroup(&config.sandbox.cgroup))
}

/// Every finding, with what tarkd found for its workers' cgroups.
pub fn run_with(config: &Config, cgroups: CgroupProbe) -> Vec<Finding> {
    let requires = |layer: &str| config.sandbox.require.iter().any(|l| l == layer);
    let min_abi = config.sandbox.landlock.min_abi;
    let mut findings = vec![
        namespaces(&probe::namespaces(config), config.sandbox.namespaces),
        landlock(probe::landlock_abi(), min_abi),
        seccomp(&probe::seccomp_actions()),
        cgroup(&cgroups),
        probe::worker_binary(config),
        probe::state_dir(&config.state_dir),
        probe::socket_group(config.api.socket_group.as_deref()),
        probe::fs_home(config.fs.home.as_deref()),
    ];
    for f in &mut findings {
        f.required |= match f.name {
            "landlock" => min_abi > 0 || requires("landlock"),
            "worker" | "state_dir" | "socket_group" => true,
            name => requires(name),
        };
    }
    findings
}

/// What unsharing a worker's namespaces as an unprivileged uid gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsProbe {
    /// The errno of the unshare, if it failed.
    pub refused: Option<i32>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`.
    pub apparmor_restricts: bool,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// Debian's older `kernel.unprivileged_userns_clone`.
    pub userns_clone: Option<bool>,
}

fn namespaces(p: &UsernsProbe, wanted: bool) -> Finding {
    let state = match p.refused {
        None => State::Ok,
        Some(errno) => {
            let err = nix::errno::Errno::from_raw(errno);
            let why = if p.apparmor_restricts {
                "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)".to_owned()
            } else if p.max_user_namespaces == Some(0) {
                "user.max_user_namespaces is 0".to_owned()
            } else if p.userns_clone == Some(false) {
                "kernel.unprivileged_userns_clone is 0".to_owned()
            } else {
                format!("unshare: {err}")
            };
            State::Missing(format!(
                "{why}: workers cannot have their own user, network, mount, IPC, UTS and PID namespaces, and command tools cannot run; allow them for tarkd's worker uids (an AppArmor profile granting userns for /usr/libexec/tarkd/tark-worker, or the sysctl)"
            ))
        }
    };
    let detail = if wanted {
        "user, network, mount, IPC, UTS and PID, as an unprivileged uid"
    } else {
        "available; sandbox.namespaces = false leaves wasm workers without them"
    };
    Finding::new("namespaces", state, detail.into())
}

fn landlock(abi: Result<u32, i32>, min_abi: u32) -> Finding {
    let state = match abi {
        Err(errno) if errno == libc::EOPNOTSUPP => State::Missing(
            "landlock is built in but not enabled: add landlock to the lsm= boot parameter".into(),
        ),
        Err(_) => State::Missing("the kernel has no landlock (Linux 5.13 or later has it)".into()),
        Ok(abi) if abi < min_abi => State::Missing(format!(
            "ABI {abi}, below sandbox.landlock.min_abi {min_abi}: a newer kernel, or a lower min_abi"
        )),
        Ok(abi) if abi < tark_proto::landlock::TARGET => State::Degraded {
            why: format!(
                "ABI {abi}: workers and command tools run with it; not enforced: {}",
                tark_proto::landlock::missing(abi).join("; ")
            ),
            fix: "Linux 6.12 or later enforces all of it".into(),
        },
        Ok(_) => State::Ok,
    };
    let detail = match abi {
        Ok(abi) => format!("ABI {abi}"),
        Err(_) => String::new(),
    };
    Finding::new("landlock", state, detail)
}

fn seccomp(actions: &Option<String>) -> Finding {
    let state = match actions {
        None => State::Missing("the kernel has no seccomp filters".into()),
        Some(a)
            if ["kill_process", "trap", "errno"]
                .iter()
                .all(|x| a.split_whitespace().any(|w| w == *x)) =>
        {
            State::Ok
        }
        Some(a) => State::Missing(format!(
            "the kernel's seccomp lacks actions tarkd uses (has: {a})"
        )),
    };
    Finding::new(
        "seccomp",
        state,
        "filters with kill_process, trap and errno".into(),
    )
}

/// What tarkd would find for its workers' cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupProbe {
    Off,
    /// Why workers would get no cgroup: the reason tarkd's own start gives
    /// (no v2 hierarchy, not delegated, the root cgroup).
    Refused(String),
    /// Where workers would go, whether tarkd may write there, and the
    /// controllers it offers.
    At {
        dir: String,
        writable: bool,
        controllers: Vec<String>,
    },
}

fn cgroup(p: &CgroupProbe) -> Finding {
    let (state, detail) = match p {
        CgroupProbe::Off => (
            State::Missing("sandbox.cgroup.place = \"off\": workers share tarkd's memory, task and CPU budget (place = \"auto\" under systemd, Delegate=yes)".into()),
            String::new(),
        ),
        CgroupProbe::Refused(why) => (State::Missing(format!("workers get no cgroup: {why}")), String::new()),
        CgroupProbe::At { dir, writable: false, .. } => (
            State::Missing(format!("{dir} is not writable by tarkd: run it under its unit (Delegate=yes), or set sandbox.cgroup.place to a cgroup it may write")),
            String::new(),
        ),
        CgroupProbe::At { dir, controllers, .. } => {
            let lacking: Vec<&str> = ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| !controllers.iter().any(|have| have == c))
                .collect();
            let detail = format!("{dir}, controllers: {}", controllers.join(" "));
            if lacking.is_empty() {
                (State::Ok, detail)
            } else {
                (
                    State::Degraded {
                        why: format!("{dir} offers no {} controller", lacking.join(", ")),
                        fix: "delegate them (Delegate=yes, or cgroup.subtree_control of the parent)".into(),
                    },
                    detail,
                )
            }
        }
    };
    Finding::new("cgroup", state, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userns(refused: Option<i32>, apparmor: bool, max: Option<u64>) -> UsernsProbe {
        UsernsProbe {
            refused,
            apparmor_restricts: apparmor,
            max_user_namespaces: max,
            userns_clone: None,
        }
    }

    #[test]
    fn namespaces_are_judged_by_the_unshare_and_named_by_the_cause() {
        let cases = [
            (userns(None, true, Some(0)), "ok"),
            (userns(Some(libc::EPERM), true, None), "AppArmor restricts"),
            (
                userns(Some(libc::ENOSPC), false, Some(0)),
                "max_user_namespaces is 0",
            ),
            (
                userns(Some(libc::EPERM), false, Some(100)),
                "unshare: EPERM",
            ),
        ];
        for (probe, expected) in cases {
            let line = namespaces(&probe, true).to_string();
            assert!(line.contains(expected), "{line}");
            assert_eq!(
                line.starts_with("namespaces: ok"),
                expected == "ok",
                "{line}"
            );
        }
    }

    #[test]
    fn landlock_is_judged_against_the_required_abi() {
        let cases: [(Result<u32, i32>, u32, &str); 7] = [
            (Ok(7), 6, "landlock: ok (ABI 7)"),
            (Ok(6), 1, "landlock: ok (ABI 6)"),
            (
                Ok(2),
                1,
                "landlock: degraded (ABI 2: workers and command tools run with it; not enforced: truncate",
            ),
            (
                Ok(2),
                3,
                "landlock: missing (ABI 2, below sandbox.landlock.min_abi 3",
            ),
            (Ok(0), 0, "landlock: degraded (ABI 0"),
            (
                Err(libc::EOPNOTSUPP),
                1,
                "landlock: missing (landlock is built in but not enabled",
            ),
            (
                Err(libc::ENOSYS),
                0,
                "landlock: missing (the kernel has no landlock",
            ),
        ];
        for (abi, min, expected) in cases {
            let line = landlock(abi, min).to_string();
            assert!(line.starts_with(expected), "{line}");
        }
    }

    #[test]
    fn seccomp_needs_the_actions_tarkd_uses() {
        let all = Some("kill_process kill_thread trap errno user_notif trace log allow".into());
        assert_eq!(seccomp(&all).state, State::Ok);
        assert!(matches!(
            seccomp(&Some("kill_thread trap errno".into())).state,
            State::Missing(_)
        ));
        assert!(matches!(seccomp(&None).state, State::Missing(_)));
    }

    #[test]
    fn cgroups_are_judged_by_place_write_access_and_controllers() {
        let at = |writable, controllers: &[&str]| CgroupProbe::At {
            dir: "/sys/fs/cgroup/system.slice/tarkd.service".into(),
            writable,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        };
        let cases = [
            (
                at(true, &["cpuset", "cpu", "io", "memory", "pids"]),
                "cgroup: ok (",
            ),
            (
                at(true, &["memory", "pids"]),
                "cgroup: degraded (/sys/fs/cgroup/system.slice/tarkd.service offers no cpu controller",
            ),
            (
                at(false, &["memory", "pids", "cpu"]),
                "cgroup: missing (/sys/fs/cgroup/system.slice/tarkd.service is not writable",
            ),
            (
                CgroupProbe::Refused("tarkd is in no mounted cgroup v2 hierarchy".into()),
                "cgroup: missing (workers get no cgroup: tarkd is in no mounted cgroup v2",
            ),
            (
                CgroupProbe::Off,
                "cgroup: missing (sandbox.cgroup.place = \"off\"",
            ),
        ];
        for (probe, expected) in cases {
            let line = cgroup(&probe).to_string();
            assert!(line.starts_with(expected), "{line}");
        }
    }

    #[test]
    fn only_a_required_missing_line_fails_the_check() {
        let mut f = Finding::new("cgroup", State::Missing("x".into()), String::new());
        assert!(!f.fails());
        f.required = true;
        assert!(f.fails());
        assert!(f.to_string().ends_with("[required]"));
        f.state = State::Degraded {
            why: "a".into(),
            fix: "b".into(),
        };
        assert!(!f.fails());
    }
}
