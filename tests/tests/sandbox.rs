//! The worker sandbox against a compromised worker: with the test-only
//! `escape-hatch` feature, a locked-down worker attempts a named system call, as
//! code that escaped wasmtime would.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::{Failed, Options, PluginFiles, Tarkd, call, invoke, output};
use tonic::Code;

/// (attempt, the system call tarkd must name) — worker/src/escape.rs FORBIDDEN.
const FORBIDDEN: &[(&str, &str)] = &[
    ("execve", "execve"),
    ("socket", "socket"),
    ("connect", "connect"),
    ("openat", "openat"),
    ("ptrace", "ptrace"),
    ("mount", "mount"),
    ("unshare", "unshare"),
    ("setns", "setns"),
    ("bpf", "bpf"),
    ("perf_event_open", "perf_event_open"),
    ("kill", "kill"),
    ("clone", "clone"),
    ("clone3", "clone3"),
    ("io_uring_setup", "io_uring_setup"),
    ("userfaultfd", "userfaultfd"),
    ("keyctl", "keyctl"),
    ("init_module", "init_module"),
    ("mprotect_rwx", "mprotect"),
    ("mmap_exec", "mmap"),
    ("futex_lock_pi", "futex"),
    ("prctl_dumpable", "prctl"),
    ("rt_sigaction", "rt_sigaction"),
];

const ALLOWED: &[&str] = &[
    "mmap_rw",
    "mprotect_r",
    "futex_wake",
    "madvise_dontneed",
    "fcntl_getfl",
    "getrandom",
];

async fn running_pid(t: &Tarkd) -> anyhow::Result<u32> {
    Ok(t.worker_pid("escaper", "default").await?.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_syscalls_kill_the_worker_and_tarkd_names_them() -> anyhow::Result<()> {
    // No quarantine here: every attempt kills a worker on purpose.
    let config =
        "[supervision]\nintensity = 1000\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n".to_owned();
    let wasm = fixtures::tool("esc", "", "")?;
    let t = Tarkd::start(
        vec![PluginFiles::new(
            "escaper",
            &manifest("escaper", "tool", ""),
            Some(wasm),
        )],
        Options::config(&config),
    )?;
    let mut tools = t.tools().await?;
    let tarkd = t.pid();
    let attempt = |name: &str| {
        invoke(
            "esc-run",
            &format!(r#"{{"__escape__":"{name}","pid":{tarkd}}}"#),
        )
    };

    for (name, syscall) in FORBIDDEN {
        let err = tools.invoke_tool(attempt(name)).await.failed();
        assert_eq!(err.code(), Code::Unavailable, "{name}: {err:?}");
        let want = format!(
            "worker for plugin escaper exited: killed by signal 31 (SIGSYS): forbidden system call {syscall} ("
        );
        assert!(
            err.message().starts_with(&want),
            "{name}: {}",
            err.message()
        );
    }
    // The plugin is still served, by a fresh worker, after all of that.
    assert_eq!(call(&mut tools, "esc-ok", "{}").await.as_deref(), Ok("ok"));

    // Allowed calls and arguments go through and the worker lives on.
    let pid = running_pid(&t).await?;
    for name in ALLOWED {
        let err = tools.invoke_tool(attempt(name)).await.failed();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(
            err.message()
                .contains(&format!("escape attempt {name} returned")),
            "{}",
            err.message()
        );
    }
    assert_eq!(
        running_pid(&t).await?,
        pid,
        "an allowed call killed the worker"
    );
    t.wait_for_log("forbidden system call socket", Duration::from_secs(5))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_hold_only_their_channels_and_no_environment() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options {
            env: vec![("SECRET_TOKEN".into(), "hunter2".into())],
            ..Default::default()
        },
    )?;
    let mut tools = t.tools().await?;
    call(&mut tools, "notes_list", "{}")
        .await
        .map_err(anyhow::Error::msg)?;
    let info = t.plugin_info("notes").await?;
    let pid = info.workers.first().map_or(0, |w| w.pid);
    assert!(std::fs::read(format!("/proc/{pid}/environ"))?.is_empty());
    // Every fd is stdio, one of the two channels, or the worker's own event loop
    // (anonymous inodes, and tokio's signal self-pipe: one unnamed, connected
    // socketpair, present because cargo unifies tokio's features with tarkd's).
    // Nothing from the filesystem or the network.
    // The worker has its own network namespace: read its view of Unix sockets.
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix"))?;
    let mut extra_sockets = std::collections::BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let fd = fd?;
        let n: i32 = fd.file_name().to_string_lossy().parse()?;
        let target = std::fs::read_link(fd.path())?
            .to_string_lossy()
            .into_owned();
        let ok = match n {
            0 | 1 => target == "/dev/null",
            2 => target.starts_with("pipe:"),
            3 | 4 => target.starts_with("socket:"),
            _ if target.starts_with("socket:[") => {
                let inode = target
                    .trim_start_matches("socket:[")
                    .trim_end_matches(']')
                    .to_owned();
                // Columns: Num RefCount Protocol Flags Type St Inode [Path].
                let row = unix
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .find(|c| c.get(6) == Some(&inode.as_str()));
                extra_sockets.insert(inode);
                row.is_some_and(|c| c.len() == 7 && c[5] == "03")
            }
            _ => target.starts_with("anon_inode:"),
        };
        assert!(ok, "worker fd {n} -> {target}");
    }
    assert!(
        extra_sockets.len() <= 2,
        "more than one internal socketpair: {extra_sockets:?}"
    );
    Ok(())
}

/// Namespaces a process does not share with this test (and so with tarkd).
fn own_namespaces(pid: u32) -> Vec<&'static str> {
    ["user", "pid", "net", "mnt", "ipc", "uts"]
        .into_iter()
        .filter(|ns| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
            theirs.is_some() && theirs != std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()
        })
        .collect()
}

fn uid_of(pid: u32) -> anyhow::Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default();
    Ok(line.split_whitespace().nth(1).unwrap_or_default().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_get_their_own_namespaces_and_uids() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::default())?;
    let mut tools = t.tools().await?;
    for tenant in ["acme", "globex"] {
        output(
            tools
                .invoke_tool(tark_tests::for_tenant(invoke("notes_list", "{}"), tenant))
                .await,
        )
        .map_err(anyhow::Error::msg)?;
    }
    let info = t.plugin_info("notes").await?;
    let pids: Vec<u32> = info.workers.iter().map(|w| w.pid).collect();
    assert_eq!(pids.len(), 2, "{info:?}");
    let root = nix::unistd::geteuid().is_root();
    for w in &info.workers {
        let ns = own_namespaces(w.pid);
        for want in ["pid", "net", "mnt", "ipc", "uts"] {
            assert!(
                ns.contains(&want),
                "worker {} shares the {want} namespace: {ns:?}",
                w.pid
            );
        }
        assert!(
            w.sandbox
                .iter()
                .any(|l| l.name == "namespaces" && l.applied),
            "{:?}",
            w.sandbox
        );
        if root {
            assert!(
                w.sandbox
                    .iter()
                    .any(|l| l.name == "worker_uid" && l.applied),
                "{:?}",
                w.sandbox
            );
            assert!(
                uid_of(w.pid)? >= 600_000,
                "worker {} runs as uid {}",
                w.pid,
                uid_of(w.pid)?
            );
        }
    }
    if root {
        assert_ne!(
            uid_of(pids[0])?,
            uid_of(pids[1])?,
            "two tenants' workers share a uid"
        );
    }
    // The worker still serves after all of that (storage through the broker).
    let saved = call(&mut tools, "notes_save", r#"{"title":"n","body":"b"}"#).await;
    assert_eq!(saved.as_deref(), Ok("saved n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_layer_that_is_missing_refuses_the_worker() -> anyhow::Result<()> {
    // Namespaces are turned off but required: the worker must be refused.
    let config =
        "[sandbox]\nnamespaces = false\nrequire = [\"seccomp\", \"namespaces\"]\n".to_owned();
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(&config))?;
    let mut tools = t.tools().await?;
    let err = tools.invoke_tool(invoke("notes_list", "{}")).await.failed();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let list = tools
        .list_tools(pb::ListToolsRequest {})
        .await?
        .into_inner();
    let errors = list.errors.join("\n");
    assert!(
        errors.contains("plugin notes: required sandbox layer missing: namespaces: not applied (disabled by sandbox.namespaces)"),
        "{errors}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_start_from_a_binary_their_uid_cannot_reach_by_path() -> anyhow::Result<()> {
    // The worker executable sits in a directory only tarkd's user may search;
    // workers running as their own uid must still start.
    use std::os::unix::fs::PermissionsExt;
    let private = tempfile::tempdir()?;
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700))?;
    let worker = private.path().join("tark-worker");
    let built = tark_tests::binary("tark-worker")?;
    if std::fs::hard_link(&built, &worker).is_err() {
        std::fs::copy(&built, &worker)?;
    }
    let config = format!("worker_path = {:?}\n", worker);
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(&config))?;
    let mut tools = t.tools().await?;
    let saved = call(&mut tools, "notes_save", r#"{"title":"p","body":"b"}"#).await;
    assert_eq!(saved.as_deref(), Ok("saved p"));
    if nix::unistd::geteuid().is_root() {
        let pid = t.worker_pid("notes", "default").await?.unwrap_or(0);
        assert!(
            uid_of(pid)? >= 600_000,
            "the worker did not drop to its own uid"
        );
    }
    Ok(())
}
