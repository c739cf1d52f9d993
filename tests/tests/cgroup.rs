//! Per-worker cgroups through a real tarkd, in a cgroup v2 mount the test makes
//! (the hierarchy is the host's; the mount point is the test's own). Each
//! worker must run in a cgroup of its own from its first instruction, carry the
//! configured limits for every controller the hierarchy offers there, and leave
//! nothing behind. Which controllers are offered depends on the host (a hybrid
//! host keeps memory and pids in cgroup v1): the test reads them and expects
//! exactly the matching outcome.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{
    Failed, Options, PluginFiles, Tarkd, eventually, eventually_async, for_tenant, invoke, output,
    parent,
};

/// A cgroup2 mount in a temporary directory and a cgroup in it for tarkd.
struct Hierarchy {
    mount: tempfile::TempDir,
    group: PathBuf,
}

impl Hierarchy {
    /// `None` (said on stderr) when the test cannot mount one: it needs root.
    fn new() -> anyhow::Result<Option<Self>> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("cgroup test needs root to mount cgroup2 and to be tarkd's delegate");
            return Ok(None);
        }
        let mount = tempfile::tempdir()?;
        nix::mount::mount(
            Some("cgroup2"),
            mount.path(),
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )?;
        // Unique per test in this run (tests run side by side).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let group = mount
            .path()
            .join(format!("tarkd-test-{}-{n}", std::process::id()));
        // Made now so that a failure below still unmounts.
        let h = Self { mount, group };
        // A test run killed earlier may have left it.
        remove_tree(&h.group);
        std::fs::create_dir(&h.group)?;
        Ok(Some(h))
    }

    /// The controllers tarkd may turn on for workers here.
    fn offered(&self) -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(self.group.join("cgroup.controllers"))?;
        Ok(text
            .split_whitespace()
            .filter(|c| ["memory", "pids", "cpu"].contains(c))
            .map(str::to_owned)
            .collect())
    }

    /// Worker cgroups now in tarkd's cgroup, relative to it: those in a
    /// tenant's cgroup as `tenant:<t>/<leaf>` (an empty tenant cgroup as
    /// itself), and any other directory.
    fn leaves(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.group)? {
            let e = e?;
            if !e.file_type()?.is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("tenant:") {
                names.push(name);
                continue;
            }
            let before = names.len();
            for leaf in std::fs::read_dir(e.path())? {
                let leaf = leaf?;
                if leaf.file_type()?.is_dir() {
                    names.push(format!("{name}/{}", leaf.file_name().to_string_lossy()));
                }
            }
            if names.len() == before {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The tenant cgroup a worker cgroup is in, checked to be under `under`.
    fn tenant_of(dir: &Path, under: &Path, tenant: &str) -> bool {
        dir.parent()
            .is_some_and(|p| p == under.join(format!("tenant:{tenant}")))
    }

    /// The directory of the cgroup `pid` is in, read from `/proc/<pid>/cgroup`.
    fn cgroup_of(&self, pid: u32) -> anyhow::Result<PathBuf> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| anyhow::anyhow!("pid {pid} is in no cgroup v2: {text}"))?;
        Ok(self.mount.path().join(rel.trim_start_matches('/')))
    }
}

impl Drop for Hierarchy {
    fn drop(&mut self) {
        remove_tree(&self.group);
        let _ = nix::mount::umount2(self.mount.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes a cgroup and the cgroups under it, deepest first (cgroupfs has no
/// recursive rmdir; their files go with their directory).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn config(group: &Path, extra: &str) -> String {
    format!(
        "[supervision]\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n[sandbox]\n{extra}\n[sandbox.cgroup]\nplace = {:?}\nmemory_mib = 300\npids = 48\ncpu_percent = 50\n",
        group.display()
    )
}

fn cgroup_layer(w: &pb::WorkerStatus) -> anyhow::Result<&pb::SandboxLayer> {
    w.sandbox
        .iter()
        .find(|l| l.name == "cgroup")
        .ok_or_else(|| anyhow::anyhow!("no cgroup layer reported: {:?}", w.sandbox))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_runs_in_its_own_cgroup_with_limits_and_leaves_none() -> anyhow::Result<()> {
    let Some(h) = Hierarchy::new()? else {
        return Ok(());
    };
    // A worker cgroup a killed tarkd left behind, and a directory not tarkd's.
    std::fs::create_dir(h.group.join("acme:notes:9"))?;
    std::fs::create_dir(h.group.join("operator-made"))?;
    let offered = h.offered()?;
    let mut t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config(&config(&h.group, "")),
    )?;
    // (tarkd's describing workers may have leaves of their own by now.)
    let leaves = h.leaves()?;
    assert!(
        !leaves.iter().any(|l| l == "acme:notes:9") && leaves.iter().any(|l| l == "operator-made"),
        "the leftover was not swept, or the operator's directory was: {leaves:?}"
    );

    // The first calls bind the two standby workers (workers.standby's
    // default): their processes must have moved into the tenants' cgroups.
    let pool = eventually_async(Duration::from_secs(60), || async {
        let s = t.status().await.ok()?;
        (s.standby_ready == 2).then_some(())
    })
    .await;
    assert!(pool.is_some(), "the standby pool never filled");
    let mut tools = t.tools().await?;
    for tenant in ["acme", "globex"] {
        output(
            tools
                .invoke_tool(for_tenant(invoke("notes_list", "{}"), tenant))
                .await,
        )
        .map_err(anyhow::Error::msg)?;
    }
    let info = t.plugin_info("notes").await?;
    assert_eq!(info.workers.len(), 2, "{info:?}");
    let mut dirs = Vec::new();
    for w in &info.workers {
        let dir = h.cgroup_of(w.pid)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            name.starts_with(&format!("{}:notes:", w.tenant)),
            "worker {} of {} is in {}",
            w.pid,
            w.tenant,
            dir.display()
        );
        // In its tenant's cgroup, which weighs as much as any other tenant's.
        assert!(
            Hierarchy::tenant_of(&dir, &h.group, &w.tenant),
            "{} is not in tenant:{}",
            dir.display(),
            w.tenant
        );
        if offered.iter().any(|c| c == "cpu") {
            let tenant = dir.parent().unwrap_or(&dir);
            assert_eq!(
                std::fs::read_to_string(tenant.join("cpu.weight"))?.trim(),
                "100"
            );
        }
        // A standby worker bound to the tenant: the process it was spawned as
        // (the PID-namespace reaper) and the worker both moved in.
        let spawned = parent(w.pid).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{spawned}/cmdline"))?;
        assert_eq!(
            cmdline, b"tark-worker\0standby\0",
            "worker {} was not a standby",
            w.pid
        );
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
        assert_eq!(procs.lines().count(), 2, "{procs}");
        assert!(procs.lines().any(|p| p == w.pid.to_string()), "{procs}");
        assert!(procs.lines().any(|p| p == spawned.to_string()), "{procs}");

        let layer = cgroup_layer(w)?;
        assert!(
            layer.detail.starts_with(&*dir.to_string_lossy()),
            "{layer:?}"
        );
        let want = [
            ("memory", "memory.max", "314572800"),
            ("memory", "memory.oom.group", "1"),
            ("pids", "pids.max", "48"),
            ("cpu", "cpu.max", "50000 100000"),
        ];
        for (controller, file, value) in want {
            if offered.iter().any(|c| c == controller) {
                assert_eq!(std::fs::read_to_string(dir.join(file))?.trim(), value);
            } else {
                assert!(!dir.join(file).exists(), "{file} without {controller}");
            }
        }
        if offered.iter().any(|c| c == "pids") {
            // The worker runs within its limit (its threads are tasks too).
            let current: u64 = std::fs::read_to_string(dir.join("pids.current"))?
                .trim()
                .parse()?;
            eprintln!("worker {} has {current} tasks (pids.max 48)", w.pid);
            assert!((2..48).contains(&current), "{current}");
        }
        let essential = ["memory", "pids"];
        let missing: Vec<&str> = essential
            .into_iter()
            .filter(|c| !offered.iter().any(|o| o == c))
            .collect();
        assert_eq!(
            layer.applied,
            missing.is_empty(),
            "{layer:?}, offered {offered:?}"
        );
        if !missing.is_empty() {
            let says = format!(
                "the {} controller(s) are not delegated there",
                missing.join(" and ")
            );
            assert!(layer.detail.contains(&says), "{layer:?}");
        }
        dirs.push(dir);
    }
    assert_ne!(dirs[0], dirs[1], "two tenants share a cgroup");

    // A crashed worker's cgroup goes with it; its successor gets a new one.
    let acme = info
        .workers
        .iter()
        .find(|w| w.tenant == "acme")
        .map(|w| w.pid)
        .unwrap_or(0);
    let acme_dir = h.cgroup_of(acme)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(acme as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    assert!(
        eventually(Duration::from_secs(30), || !acme_dir.exists()).await,
        "{} outlived its worker",
        acme_dir.display()
    );
    // Its exit is on record once its cgroup is gone, and with no backoff
    // configured the next call starts its successor.
    output(
        tools
            .invoke_tool(for_tenant(invoke("notes_list", "{}"), "acme"))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    let next = t.running_worker("notes", "acme").await?;
    let next_dir = h.cgroup_of(next)?;
    assert_ne!(next_dir, acme_dir);
    assert!(Hierarchy::tenant_of(&next_dir, &h.group, "acme"));

    // A graceful stop removes every worker cgroup; the operator's stays.
    t.stop(libc::SIGTERM)?;
    assert_eq!(h.leaves()?, ["operator-made"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_cgroup_layer_refuses_workers_when_limits_cannot_be_set() -> anyhow::Result<()> {
    let Some(h) = Hierarchy::new()? else {
        return Ok(());
    };
    let offered = h.offered()?;
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config(&config(&h.group, "require = [\"cgroup\"]")),
    )?;
    let mut tools = t.tools().await?;
    let r = tools.invoke_tool(invoke("notes_list", "{}")).await;
    let essential = ["memory", "pids"]
        .iter()
        .all(|c| offered.iter().any(|o| o == c));
    if essential {
        output(r).map_err(anyhow::Error::msg)?;
    } else {
        let err = r.failed();
        assert!(
            err.message()
                .contains("plugin notes: required sandbox layer missing: cgroup: not applied"),
            "{err:?}"
        );
        assert!(err.message().contains("not delegated there"), "{err:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgroup_place_that_is_not_cgroup_v2_is_reported_not_fatal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config(&config(dir.path(), "")),
    )?;
    let mut tools = t.tools().await?;
    output(tools.invoke_tool(invoke("notes_list", "{}")).await).map_err(anyhow::Error::msg)?;
    let info = t.plugin_info("notes").await?;
    let w = info
        .workers
        .first()
        .ok_or_else(|| anyhow::anyhow!("no worker: {info:?}"))?;
    let layer = cgroup_layer(w)?;
    assert!(!layer.applied);
    let want = format!(
        "{} is not in a cgroup v2 hierarchy; rlimits only",
        dir.path().display()
    );
    assert_eq!(layer.detail, want);
    assert!(
        t.log().join("\n").contains("workers get no cgroups"),
        "no warning at start"
    );
    Ok(())
}

/// tarkd with `place = "auto"`, started in the test's cgroup as systemd starts
/// a unit in its own.
fn start_in_group(h: &Hierarchy) -> anyhow::Result<Tarkd> {
    Tarkd::start(
        vec![PluginFiles::notes()?],
        Options {
            config: "[sandbox.cgroup]\nplace = \"auto\"\n".into(),
            cgroup: Some(h.group.clone()),
            ..Options::default()
        },
    )
}

/// Marks a cgroup delegated, as systemd does for a unit with `Delegate=yes`.
fn mark_delegated(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: NUL-terminated strings and a one-byte value.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"trusted.delegate".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_delegated_cgroup_tarkd_moves_aside_and_workers_go_under_it() -> anyhow::Result<()> {
    let Some(h) = Hierarchy::new()? else {
        return Ok(());
    };
    mark_delegated(&h.group)?;
    let mut t = start_in_group(&h)?;
    // tarkd left its own cgroup for a leaf, so its children may hold workers.
    assert_eq!(h.cgroup_of(t.pid())?, h.group.join("supervisor"));
    output(
        t.tools()
            .await?
            .invoke_tool(invoke("notes_list", "{}"))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    let pid = t.running_worker("notes", "default").await?;
    let dir = h.cgroup_of(pid)?;
    assert!(Hierarchy::tenant_of(
        &dir,
        &h.group.join("workers"),
        "default"
    ));
    let offered = h.offered()?;
    let on = std::fs::read_to_string(h.group.join("workers").join("cgroup.subtree_control"))?;
    let on: Vec<&str> = on.split_whitespace().collect();
    assert_eq!(on, offered, "controllers turned on for workers");
    t.stop(libc::SIGTERM)?;
    assert!(!dir.exists(), "{} outlived tarkd", dir.display());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgroup_not_delegated_is_left_alone() -> anyhow::Result<()> {
    let Some(h) = Hierarchy::new()? else {
        return Ok(());
    };
    let t = start_in_group(&h)?;
    assert_eq!(h.cgroup_of(t.pid())?, h.group, "tarkd moved itself");
    assert!(h.leaves()?.is_empty());
    output(
        t.tools()
            .await?
            .invoke_tool(invoke("notes_list", "{}"))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    let info = t.plugin_info("notes").await?;
    let w = info
        .workers
        .first()
        .ok_or_else(|| anyhow::anyhow!("no worker: {info:?}"))?;
    let layer = cgroup_layer(w)?;
    assert!(!layer.applied);
    assert!(
        layer
            .detail
            .contains("is not delegated to tarkd (no trusted.delegate mark"),
        "{layer:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_tool_runs_in_a_cgroup_of_its_own_removed_after() -> anyhow::Result<()> {
    let Some(h) = Hierarchy::new()? else {
        return Ok(());
    };
    let manifest = "[plugin]\nname = \"napper\"\nversion = \"1.0.0\"\ntype = \"tool\"\n\n[capabilities]\nshell = true\n\n[[tools]]\nname = \"nap\"\ncommand = \"sleep\"\nargs = [\"{s}\"]\n";
    let t = Tarkd::start(
        vec![PluginFiles::new("napper", manifest, None)],
        Options::config(&config(&h.group, "")),
    )?;
    let mut tools = t.tools().await?;
    let call = tokio::spawn(async move { tools.invoke_tool(invoke("nap", r#"{"s":"2"}"#)).await });
    // The command's cgroup, once something runs in it (it is made just
    // before the command is started).
    let running = |name: &String| {
        std::fs::read_to_string(h.group.join(name).join("cgroup.procs"))
            .is_ok_and(|p| !p.trim().is_empty())
    };
    let mut leaf = None;
    let found = eventually(Duration::from_secs(10), || {
        leaf = h.leaves().ok().and_then(|names| {
            names
                .into_iter()
                .find(|n| n.contains(":napper:") && running(n))
        });
        leaf.is_some()
    })
    .await;
    assert!(
        found,
        "the command ran in no cgroup of its own: {:?}",
        h.leaves()
    );
    let dir = h.group.join(leaf.unwrap_or_default());
    output(call.await?).map_err(anyhow::Error::msg)?;
    assert!(
        eventually(Duration::from_secs(10), || !dir.exists()).await,
        "{} outlived the command",
        dir.display()
    );
    Ok(())
}
