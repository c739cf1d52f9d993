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

fn tick_us() -> f64 {
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e6 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU ticks used so far by these processes.
fn ticks(pids: &[u32]) -> u64 {
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
