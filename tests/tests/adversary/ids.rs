//! Worker uids an operator's config could get wrong: a base of
//! 4294967295 (`setresuid(-1, …)` leaves the worker root while `plugin info`
//! said otherwise), a range that wraps or meets the login uids, a range
//! smaller than `workers.max_live` (tenants sharing a uid). Each is refused
//! by `tarkd --check-config` and at start, naming the setting; and a running
//! worker's uid is what the kernel says, never 0, one per tenant × plugin.

use std::process::Command;

use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};

/// `tarkd --check-config` on a config with `extra`: its exit and output.
fn check_config(extra: &str) -> anyhow::Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tarkd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {:?}\nstate_dir = {:?}\n{extra}\n",
            dir.path().join("s.sock"),
            dir.path().join("state")
        ),
    )?;
    let out = Command::new(tark_tests::binary("tarkd")?)
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .env("NO_COLOR", "1")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn uid_ranges_that_remove_the_layer_are_config_errors() -> anyhow::Result<()> {
    let cases = [
        ("worker_id_base = 4294967295", "wraps"),
        (
            "worker_id_base = 4294967295\nworker_id_count = 1\n[workers]\nmax_live = 1",
            "(uid_t)-1",
        ),
        (
            "worker_id_base = 4294967290\nworker_id_count = 1024",
            "wraps",
        ),
        (
            "worker_id_base = 1000\nworker_id_count = 1024",
            "login uids",
        ),
        ("worker_id_base = 50\nworker_id_count = 1024", "system uids"),
        ("worker_id_count = 2", "below workers.max_live"),
    ];
    for (sandbox, why) in cases {
        let (ok, text) = check_config(&format!("[sandbox]\n{sandbox}"))?;
        assert!(
            !ok && text.contains("sandbox.worker_id") && text.contains(why),
            "[sandbox] {sandbox}: accepted or unclear: {text}"
        );
    }
    let (ok, text) = check_config("[sandbox]\nworker_id_base = 700000")?;
    assert!(ok, "a sound range is accepted: {text}");
    Ok(())
}

/// The uids (real, effective, saved, fs) of a process, from the kernel.
fn uids_of(pid: u32) -> anyhow::Result<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_default();
    Ok(line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_workers_never_run_as_root_nor_share_a_uid() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: per-worker uids need tarkd to run as root");
        return Ok(());
    }
    // As many uids as live workers: a third tenant's worker evicts the
    // least recently used and may take its uid only once it is gone.
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config("[workers]\nmax_live = 2\n[sandbox]\nworker_id_count = 2"),
    )?;
    let mut tools = t.tools().await?;
    for round in 0..3 {
        for tenant in ["t1", "t2", "t3"] {
            output(
                tools
                    .invoke_tool(tark_tests::for_tenant(invoke("notes_list", "{}"), tenant))
                    .await,
            )
            .map_err(|e| anyhow::anyhow!("round {round}, {tenant}: {e}"))?;
            let info = t.plugin_info("notes").await?;
            let mut seen = Vec::new();
            for w in info.workers.iter().filter(|w| w.running) {
                let uids = uids_of(w.pid)?;
                assert!(
                    uids.len() == 4 && uids.iter().all(|&u| u == uids[0] && u != 0),
                    "worker {} of {} runs as {uids:?}",
                    w.pid,
                    w.tenant
                );
                let layer = w.sandbox.iter().find(|l| l.name == "worker_uid");
                assert!(
                    layer.is_some_and(|l| l.applied && l.detail.contains(&uids[0].to_string())),
                    "{layer:?} vs the kernel's {uids:?}"
                );
                seen.push((uids[0], w.tenant.clone()));
            }
            seen.sort();
            assert!(
                seen.windows(2).all(|p| p[0].0 != p[1].0),
                "live workers share a uid: {seen:?}"
            );
        }
    }
    Ok(())
}
