//! Throughput with many callers, and CPU time per call from `/proc/<pid>/stat`
//! (utime + stime of every process on the path), which this VM's scheduling
//! noise disturbs far less than latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tark_tests::{Tarkd, cpu_ticks, for_tenant, invoke, output};

/// Calls per second and CPU time per call.
pub struct Load {
    pub calls: u64,
    pub per_sec: f64,
    pub cpu_us_per_call: f64,
}

pub fn tick_us() -> f64 {
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e6 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU ticks used so far by these processes.
pub fn ticks(pids: &[u32]) -> u64 {
    pids.iter().map(|p| cpu_ticks(*p)).sum()
}

/// Runs `callers` concurrent loops of `call` for `dur`, and charges the CPU
/// time `pids` used meanwhile to the calls made.
pub async fn run<F, Fut>(
    callers: usize,
    dur: Duration,
    pids: &[u32],
    call: F,
) -> anyhow::Result<Load>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let before = ticks(pids);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..callers {
        let (stop, calls, call) = (Arc::clone(&stop), Arc::clone(&calls), call.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                call(i).await?;
                calls.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let used = ticks(pids).saturating_sub(before) as f64 * tick_us();
    let calls = calls.load(Ordering::Relaxed);
    Ok(Load {
        calls,
        per_sec: calls as f64 / elapsed,
        cpu_us_per_call: used / calls.max(1) as f64,
    })
}

/// `InvokeTool bare-ok` from `callers` callers spread over `tenants` tenants
/// (one worker each); CPU of tarkd and those workers.
pub async fn invoke_load(
    t: &Tarkd,
    tenants: usize,
    callers: usize,
    dur: Duration,
) -> anyhow::Result<Load> {
    let tools = t.tools().await?;
    let tenant = move |i: usize| format!("load-{}", i % tenants);
    let mut pids = vec![t.pid()];
    for i in 0..tenants {
        let r = tools
            .clone()
            .invoke_tool(for_tenant(invoke("bare-ok", "{}"), &tenant(i)))
            .await;
        output(r).map_err(anyhow::Error::msg)?;
        pids.extend(t.worker_pid("bare", &tenant(i)).await?);
    }
    anyhow::ensure!(pids.len() == tenants + 1, "not every worker is running");
    run(callers, dur, &pids, move |i| {
        let (mut c, tenant) = (tools.clone(), tenant(i));
        async move {
            let r = c
                .invoke_tool(for_tenant(invoke("bare-ok", "{}"), &tenant))
                .await;
            output(r).map(drop).map_err(anyhow::Error::msg)
        }
    })
    .await
}

/// The same load on the two-hop echo; CPU of its two processes.
pub async fn two_hops(
    client: &super::echo::Client,
    pids: &[u32],
    callers: usize,
    dur: Duration,
) -> anyhow::Result<Load> {
    let client = client.clone();
    run(callers, dur, pids, move |_| {
        let c = client.clone();
        async move { super::echo::call(&c).await }
    })
    .await
}

/// `tark-bench load`: only the load rows (the two-hop echo, `InvokeTool`
/// bare-ok over 1 and over 8 workers), `TARK_BENCH_ROUNDS` times (default 1),
/// alternating, for `TARK_BENCH_LOAD_S` seconds each (default 3). Quick to run,
/// and what a profiler watches: tarkd's pid and the echo processes' are printed
/// first.
pub async fn only() -> anyhow::Result<()> {
    let env = super::env_or::<u64>;
    let (rounds, secs) = (env("TARK_BENCH_ROUNDS", 1), env("TARK_BENCH_LOAD_S", 3));
    let dur = Duration::from_secs(secs);
    let dir = tempfile::tempdir()?;
    let baselines = super::echo::start(dir.path()).await?;
    let hop_pids: Vec<u32> = baselines
        .children
        .iter()
        .map(std::process::Child::id)
        .collect();
    let bare = tark_tests::fixtures::tool("bare", "", "")?;
    let manifest = tark_tests::fixtures::manifest("bare", "tool", "");
    // TARK_BENCH_STANDBY: the standby pool's size (tarkd's default if unset),
    // to compare the load with and without standby workers.
    let options = match std::env::var("TARK_BENCH_STANDBY") {
        Ok(n) => {
            tark_tests::Options::config(&format!("[workers]\nstandby = {}\n", n.parse::<usize>()?))
        }
        Err(_) => tark_tests::Options::default(),
    };
    let t = Tarkd::start(
        vec![tark_tests::PluginFiles::new("bare", &manifest, Some(bare))],
        options,
    )?;
    println!(
        "tark-bench load: tarkd pid {}, echo pids {hop_pids:?}",
        t.pid()
    );
    let callers = 64;
    // The least disturbed round (lowest ratio) is what --json records: a
    // loaded machine only ever adds to a ratio.
    let (mut best_one, mut best_eight) = (f64::MAX, f64::MAX);
    for round in 1..=rounds {
        let hops = two_hops(&baselines.two_hops, &hop_pids, callers, dur).await?;
        let one = invoke_load(&t, 1, callers, dur).await?;
        let eight = invoke_load(&t, 8, callers, dur).await?;
        for (name, l) in [
            ("echo, two hops (proxy + echo CPU)", &hops),
            ("InvokeTool bare-ok, 1 worker", &one),
            ("InvokeTool bare-ok, 8 workers", &eight),
        ] {
            println!(
                "round {round}: {name:<36} {:>9.0} calls/s {:>8.1} µs CPU/call",
                l.per_sec, l.cpu_us_per_call
            );
            super::report::load(name, l.per_sec, l.cpu_us_per_call, l.calls);
        }
        let (r1, r8) = (
            one.cpu_us_per_call / hops.cpu_us_per_call,
            eight.cpu_us_per_call / hops.cpu_us_per_call,
        );
        println!(
            "round {round}: ratio CPU/call InvokeTool / two-hop echo: 1 worker {r1:.2}, 8 workers {r8:.2}"
        );
        (best_one, best_eight) = (best_one.min(r1), best_eight.min(r8));
    }
    super::report::ratio(super::report::GATED[0], best_one);
    super::report::ratio(super::report::GATED[1], best_eight);
    Ok(())
}
