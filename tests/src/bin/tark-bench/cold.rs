//! Cold starts: a plugin's first call after its worker is gone, and a
//! worker's SIGKILL to the next call that succeeds, by a tarkd that spawns
//! each worker and by one that binds a standby worker (timed once its pool is
//! full again, as a first call finds it when calls are not back to back).
//! `tark-bench cold` runs only these, beside the spawn of `/bin/true` from
//! this process, in one run.

use std::time::{Duration, Instant};

use anyhow::Context;
use tark_proto::plugin::v1 as pb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};

/// Standby workers of the tarkds that keep them.
pub const STANDBY: usize = 2;

/// Waits (untimed) until `t`'s standby pool is full.
async fn standby_ready(t: &Tarkd) -> anyhow::Result<()> {
    let mut system = t.system().await?;
    let t0 = Instant::now();
    while system
        .status(pb::StatusRequest {})
        .await?
        .into_inner()
        .standby_ready
        < STANDBY as u32
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "the standby pool was not refilled in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Restarts `t`'s bare plugin, then (once its tools are described again)
/// times its first call, with the compiled module in the cache or not (with
/// `standby`, once the pool is full).
pub async fn cold_start(t: &Tarkd, clear_cache: bool, standby: bool) -> anyhow::Result<Duration> {
    let (mut p, mut c) = (t.plugins().await?, t.tools().await?);
    p.restart_plugin(pb::PluginRef { id: "bare".into() })
        .await?;
    // A restart has the plugin's tools described again, in a worker of its
    // own: listing them waits for that, so the call timed below is the
    // plugin's cold start alone.
    let listed = c.list_tools(pb::ListToolsRequest {}).await?.into_inner();
    anyhow::ensure!(
        listed.tools.iter().any(|t| t.name == "bare-ok"),
        "bare-ok is not listed after the restart"
    );
    if clear_cache {
        for e in std::fs::read_dir(t.dir.path().join("state/cache"))? {
            std::fs::remove_file(e?.path())?;
        }
    }
    if standby {
        standby_ready(t).await?;
    }
    let t0 = Instant::now();
    output(c.invoke_tool(invoke("bare-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    Ok(t0.elapsed())
}

/// Kill to next success: SIGKILL `t`'s bare worker, then call until a call
/// succeeds (with `standby`, once the pool is full), `n` times.
pub async fn kill_to_success(t: &Tarkd, n: usize, standby: bool) -> anyhow::Result<Vec<Duration>> {
    let mut system = t.system().await?;
    let tools = t.tools().await?;
    let mut recovered = Vec::new();
    for _ in 0..n {
        if standby {
            standby_ready(t).await?;
        }
        let status = system.status(pb::StatusRequest {}).await?.into_inner();
        let pid = status
            .plugins
            .iter()
            .filter(|p| p.id == "bare")
            .flat_map(|p| &p.workers)
            .find(|w| w.running)
            .map(|w| w.pid);
        let pid = pid.context("no running worker for bare")?;
        let mut c = tools.clone();
        let t0 = Instant::now();
        // SAFETY: kill(2) on the benchmark's own worker.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        while output(c.invoke_tool(invoke("bare-ok", "{}")).await).is_err() {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "no recovery after a kill"
            );
        }
        recovered.push(t0.elapsed());
    }
    Ok(recovered)
}

/// `tark-bench cold`: `TARK_BENCH_N` (default 50) of each, sampled in turn.
pub async fn only() -> anyhow::Result<()> {
    let n = super::env_or::<usize>("TARK_BENCH_N", 50);
    let start = |standby: usize| {
        let bare = fixtures::tool("bare", "", "")?;
        Tarkd::start(
            vec![PluginFiles::new(
                "bare",
                &manifest("bare", "tool", ""),
                Some(bare),
            )],
            Options::config(&format!(
                "[supervision]\nintensity = 1000000\n[workers]\nstandby = {standby}\n"
            )),
        )
    };
    let (spawning, standby) = (start(0)?, start(STANDBY)?);
    // Warm: the cache holds the compiled module, each tarkd has a worker.
    for t in [&spawning, &standby] {
        cold_start(t, false, false).await?;
    }
    let (mut spawned, mut bound, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        spawned.push(cold_start(&spawning, false, false).await?);
        bound.push(cold_start(&standby, false, true).await?);
        let t0 = Instant::now();
        let status = tokio::process::Command::new("/bin/true").status().await?;
        anyhow::ensure!(status.success(), "/bin/true failed");
        truth.push(t0.elapsed());
    }
    let killed = kill_to_success(&spawning, n, false).await?;
    let killed_bound = kill_to_success(&standby, n, true).await?;
    let rows = [
        ("spawn of /bin/true (baseline)", truth),
        ("cold start, spawned worker", spawned),
        ("cold start, standby worker", bound),
        ("SIGKILL to success, spawned worker", killed),
        ("SIGKILL to success, standby worker", killed_bound),
    ];
    println!(
        "{:<40} {:>6} {:>12} {:>12}",
        "measurement", "n", "p50 µs", "p99 µs"
    );
    let mut p50 = Vec::new();
    for (name, v) in rows {
        let p = super::percentiles(v);
        println!("{name:<40} {n:>6} {:>12.1} {:>12.1}", p.0, p.1);
        p50.push(p.0);
    }
    println!(
        "standby / spawned at p50: cold start {:.2}, SIGKILL to success {:.2}",
        p50[2] / p50[1],
        p50[4] / p50[3]
    );
    Ok(())
}
