//! What the cgroup layer decides, as data: which cgroup is tarkd's, what each
//! worker's cgroup is called, and which limit goes in which file. No I/O here, so
//! every decision is tested from a table below.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The controllers tarkd limits workers with. `memory` and `pids` are what makes
/// the layer count as applied; `cpu` only shares the machine out.
pub const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// Without these a worker's cgroup bounds nothing that matters.
pub const ESSENTIAL: [&str; 2] = ["memory", "pids"];

/// `[sandbox.cgroup]`: where workers' cgroups go and what they are held to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// `auto`: the cgroup systemd delegated to tarkd (`Delegate=yes`), found from
    /// `/proc/self/cgroup`; tarkd moves itself to `supervisor/` in it and puts
    /// workers under `workers/`. `off`: no cgroups. A path: a cgroup v2 directory
    /// tarkd may write, created if missing; workers go straight under it and
    /// tarkd stays where it is.
    pub place: String,
    /// memory.max of each worker (its wasm memory, compiled code and runtime;
    /// at least `limits.memory_mib`). Swap is refused and an OOM kills the whole
    /// worker (memory.swap.max 0, memory.oom.group 1).
    pub memory_mib: u64,
    /// pids.max of each worker: its threads, the PID-namespace reaper included.
    pub pids: u64,
    /// cpu.max of each worker as a share of one core (100 = one core); 0 for
    /// no cap.
    pub cpu_percent: u32,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            place: "auto".into(),
            memory_mib: 512,
            pids: 32,
            cpu_percent: 100,
        }
    }
}

/// Where workers' cgroups go, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Off,
    Delegated,
    At(PathBuf),
}

impl CgroupConfig {
    /// The configured place, or why it is not one.
    pub fn place(&self) -> Result<Place, String> {
        match self.place.as_str() {
            "off" => Ok(Place::Off),
            "auto" => Ok(Place::Delegated),
            p if Path::new(p).is_absolute() && !p.split('/').any(|c| c == "..") => {
                Ok(Place::At(PathBuf::from(p)))
            }
            p => Err(format!(
                "sandbox.cgroup.place must be \"auto\", \"off\" or an absolute path without \"..\", not {p:?}"
            )),
        }
    }

    /// The files written in a worker's cgroup, in order, for the controllers
    /// `available` in it. Controllers that are not there are left out: the
    /// caller reports them.
    pub fn files(&self, available: &[&str]) -> Vec<(&'static str, String)> {
        let has = |c: &str| available.contains(&c);
        let mut files = Vec::new();
        if has("memory") {
            files.push(("memory.max", (self.memory_mib << 20).to_string()));
            files.push(("memory.swap.max", "0".to_owned()));
            files.push(("memory.oom.group", "1".to_owned()));
        }
        if has("pids") {
            files.push(("pids.max", self.pids.to_string()));
        }
        if has("cpu") {
            let max = match self.cpu_percent {
                0 => "max".to_owned(),
                // A 100 ms period: quota in µs per period.
                p => (u64::from(p) * 1_000).to_string(),
            };
            files.push(("cpu.max", format!("{max} 100000")));
        }
        files
    }
}

/// The cgroup v2 directory named in `/proc/self/cgroup` (its `0::` line), under
/// the cgroup2 mount found in `/proc/self/mountinfo`. `None` when tarkd is in no
/// v2 hierarchy or none is mounted.
pub fn own_cgroup(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let rel = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options... - fstype source opts
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let point = fields.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape(point)))
    })?;
    Some(mount.join(rel.trim_start_matches('/')))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The name of the `n`th worker cgroup of a tenant's plugin: `tenant:plugin:n`.
/// Bytes outside `[A-Za-z0-9._-]` are %-escaped, so a name is never `.`/`..`,
/// never holds `/`, and (with its colons) never collides with a controller's
/// file such as `memory.max`.
pub fn leaf_name(tenant: &str, plugin: &str, n: u64) -> String {
    format!("{}:{}:{n}", escape(tenant), escape(plugin))
}

/// The cgroup all of a tenant's worker cgroups go in: `tenant:<tenant>`. Its
/// siblings are the other tenants', each at the same `cpu.weight`, so the
/// CPU is shared out by tenant before it is by worker.
pub fn tenant_dir_name(tenant: &str) -> String {
    format!("tenant:{}", escape(tenant))
}

/// Whether `name` is a tenant's cgroup tarkd made.
pub fn is_tenant_dir_name(name: &str) -> bool {
    name.strip_prefix("tenant:")
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| safe(b) || b == b'%'))
}

/// How many processes the kernel's OOM killer ended in a cgroup, from its
/// `memory.events` (`oom_kill N`); none without the memory controller.
pub fn oom_kills(memory_events: &str) -> Option<u64> {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// The `cpu.weight` of every tenant's cgroup: the same for all.
pub const TENANT_CPU_WEIGHT: &str = "100";

/// Whether `name` is a worker cgroup tarkd made (a leftover to sweep).
/// The first of `pids` a `cgroup.procs` text does not list.
pub fn missing(pids: &[u32], procs: &str) -> Option<u32> {
    pids.iter()
        .copied()
        .find(|pid| !procs.lines().any(|l| l.trim().parse() == Ok(*pid)))
}

pub fn is_leaf_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    matches!(parts.as_slice(), [t, p, n]
        if !t.is_empty() && !p.is_empty() && n.parse::<u64>().is_ok()
            && [t, p].iter().all(|s| s.bytes().all(|b| safe(b) || b == b'%')))
}

fn safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if safe(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), Some(1));
        assert_eq!(oom_kills("low 0\nmax 0\noom 0\noom_kill 0\n"), Some(0));
        // `oom_group_kill` is not `oom_kill`; nothing readable is none.
        assert_eq!(oom_kills("oom_group_kill 3\n"), None);
        assert_eq!(oom_kills("oom_kill many\n"), None);
        assert_eq!(oom_kills(""), None);
    }

    #[test]
    fn tenant_cgroups_are_named_apart_from_leaves_and_files() {
        for (tenant, dir) in [
            ("acme", "tenant:acme"),
            ("@describe", "tenant:%40describe"),
            ("a/b", "tenant:a%2Fb"),
        ] {
            assert_eq!(tenant_dir_name(tenant), dir);
            assert!(is_tenant_dir_name(dir), "{dir}");
            assert!(!is_leaf_name(dir), "{dir}");
        }
        for name in [
            "tenant:",
            "tenant",
            "tenants:x",
            "operator-made",
            "acme:notes:4",
            "tenant:a b",
            "memory.max",
        ] {
            assert!(!is_tenant_dir_name(name), "{name}");
        }
    }

    #[test]
    fn places() {
        let cases = [
            ("auto", Ok(Place::Delegated)),
            ("off", Ok(Place::Off)),
            (
                "/sys/fs/cgroup/tarkd",
                Ok(Place::At("/sys/fs/cgroup/tarkd".into())),
            ),
            ("sys/fs/cgroup", Err(())),
            ("/sys/fs/cgroup/../etc", Err(())),
            ("", Err(())),
            ("AUTO", Err(())),
        ];
        for (place, want) in cases {
            let c = CgroupConfig {
                place: place.into(),
                ..CgroupConfig::default()
            };
            assert_eq!(c.place().map_err(|_| ()), want, "{place:?}");
        }
    }

    #[test]
    fn files_follow_the_controllers_available() {
        let c = CgroupConfig {
            memory_mib: 256,
            pids: 32,
            cpu_percent: 50,
            ..CgroupConfig::default()
        };
        let all = [
            ("memory.max", "268435456".to_owned()),
            ("memory.swap.max", "0".to_owned()),
            ("memory.oom.group", "1".to_owned()),
            ("pids.max", "32".to_owned()),
            ("cpu.max", "50000 100000".to_owned()),
        ];
        let cases: [(&[&str], &[usize]); 6] = [
            (
                &["cpuset", "cpu", "io", "memory", "hugetlb", "pids"],
                &[0, 1, 2, 3, 4],
            ),
            (&["memory"], &[0, 1, 2]),
            (&["pids"], &[3]),
            (&["cpu"], &[4]),
            (&["hugetlb"], &[]),
            (&[], &[]),
        ];
        for (available, want) in cases {
            let want: Vec<_> = want.iter().map(|i| all[*i].clone()).collect();
            assert_eq!(c.files(available), want, "{available:?}");
        }
        let uncapped = CgroupConfig {
            cpu_percent: 0,
            ..c.clone()
        };
        assert_eq!(uncapped.files(&["cpu"]), [("cpu.max", "max 100000".into())]);
        let cores = CgroupConfig {
            cpu_percent: 250,
            ..c
        };
        assert_eq!(cores.files(&["cpu"]), [("cpu.max", "250000 100000".into())]);
    }

    #[test]
    fn own_cgroup_from_proc() {
        let unified = "35 25 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        let hybrid = "24 1 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                      26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      33 24 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        // A bind of a sub-cgroup (a container's view) is not the hierarchy's root.
        let bound = "40 1 0:30 /system.slice /mnt/cg rw - cgroup2 cgroup2 rw\n";
        let spaced = "41 1 0:30 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        let v1_only = "26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let service = "0::/system.slice/tarkd.service\n";
        let with_v1 = "4:memory:/x\n0::/user.slice\n";
        let cases: [(&str, &str, Option<&str>); 7] = [
            (
                service,
                unified,
                Some("/sys/fs/cgroup/system.slice/tarkd.service"),
            ),
            (with_v1, hybrid, Some("/sys/fs/cgroup/unified/user.slice")),
            ("0::/\n", unified, Some("/sys/fs/cgroup/")),
            (service, bound, None),
            ("0::/a\n", spaced, Some("/mnt/my cg/a")),
            (service, v1_only, None),
            ("4:memory:/x\n", unified, None),
        ];
        for (cgroup, mountinfo, want) in cases {
            assert_eq!(
                own_cgroup(cgroup, mountinfo),
                want.map(PathBuf::from),
                "{cgroup:?} in {mountinfo:?}"
            );
        }
    }

    #[test]
    fn moved_processes_are_found_in_cgroup_procs() {
        let cases: &[(&[u32], &str, Option<u32>)] = &[
            (&[10, 11], "10\n11\n", None),
            (&[10, 11], "11\n10\n12\n", None),
            (&[10, 11], "10\n", Some(11)),
            (&[10], "100\n", Some(10)),
            (&[10], "", Some(10)),
            (&[10], "1 0\n", Some(10)),
            (&[], "", None),
        ];
        for &(pids, procs, want) in cases {
            assert_eq!(missing(pids, procs), want, "{pids:?} in {procs:?}");
        }
    }

    #[test]
    fn leaf_names_are_single_safe_components() {
        let cases = [
            ("acme", "echo", 1, "acme:echo:1"),
            ("a.b", "c", 2, "a%2Eb:c:2"),
            ("..", "..", 3, "%2E%2E:%2E%2E:3"),
            ("a/b", "x:y", 4, "a%2Fb:x%3Ay:4"),
            ("memory", "max", 5, "memory:max:5"),
            ("", "p", 6, "%:p:6"),
            ("t", "é", 7, "t:%C3%A9:7"),
        ];
        for (tenant, plugin, n, want) in cases {
            let name = leaf_name(tenant, plugin, n);
            assert_eq!(name, want);
            assert!(is_leaf_name(&name), "{name}");
            assert!(!name.contains('/') && name != "." && name != "..");
        }
        let not_ours = [
            "supervisor",
            "workers",
            "memory.max",
            "cgroup.procs",
            "a:b",
            "a:b:c",
            "a:b:1:2",
            ":b:1",
            "a b:c:1",
            "a.b:c:1",
        ];
        for name in not_ours {
            assert!(!is_leaf_name(name), "{name}");
        }
    }
}
