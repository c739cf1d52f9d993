//! The worker sandbox against a compromised worker: with the test-only
//! `escape-hatch` feature, a locked-down worker attempts a named system call, as
//! code that escaped wasmtime would.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};
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
    let info = t
        .plugins()
        .await?
        .get_plugin(pb::PluginRef {
            id: "escaper".into(),
        })
        .await?
        .into_inner();
    Ok(info.workers.iter().find(|w| w.running).map_or(0, |w| w.pid))
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
        Options {
            config,
            ..Default::default()
        },
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
        let err = tools
            .invoke_tool(attempt(name))
            .await
            .err()
            .unwrap_or_else(|| tonic::Status::ok("went through"));
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
    assert_eq!(
        output(tools.invoke_tool(invoke("esc-ok", "{}")).await).as_deref(),
        Ok("ok")
    );

    // Allowed calls and arguments go through and the worker lives on.
    let pid = running_pid(&t).await?;
    for name in ALLOWED {
        let err = tools
            .invoke_tool(attempt(name))
            .await
            .err()
            .unwrap_or_else(|| tonic::Status::ok(""));
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
    output(tools.invoke_tool(invoke("notes_list", "{}")).await).map_err(anyhow::Error::msg)?;
    let info = t
        .plugins()
        .await?
        .get_plugin(pb::PluginRef { id: "notes".into() })
        .await?
        .into_inner();
    let pid = info.workers.first().map_or(0, |w| w.pid);
    assert!(std::fs::read(format!("/proc/{pid}/environ"))?.is_empty());
    // Every fd is stdio, one of the two channels, or the worker's own event loop
    // (anonymous inodes, and tokio's signal self-pipe: one unnamed, connected
    // socketpair, present because cargo unifies tokio's features with tarkd's).
    // Nothing from the filesystem or the network.
    let unix = std::fs::read_to_string("/proc/net/unix")?;
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
