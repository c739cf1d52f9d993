//! CPU fairness without cgroups: 200 tenants calling one spinning plugin
//! pushed a victim plugin's median from 6 ms to 90 ms (p90 354 ms, max 526
//! ms): every worker, the spinners' too, competed for the two cores as an
//! equal. Now a call past its CPU budget runs at idle priority, so light
//! calls (and tarkd) always go first: the victim's median stays within three
//! times its idle median (and 20 ms of outside load), and none of its calls
//! misses its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, fixtures, for_tenant, invoke, output, tool_plugin};

/// (p50, p99) of `n` victim calls, one after another.
async fn victim(
    tools: &mut pb::tools_client::ToolsClient<tonic::transport::Channel>,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let req = for_tenant(invoke("notes_get", r#"{"title":"v"}"#), "victim");
        let got = output(tools.invoke_tool(req).await).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(got == "x", "{got}");
        took.push(started.elapsed());
    }
    took.sort();
    Ok((took[n / 2], took[n * 99 / 100]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_spinning_tenants_leave_a_light_plugin_its_latency() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("spinner", "", fixtures::spinner("spin"))?,
        ],
        Options::config(
            "[limits]\ndeadline_ms = 1000\n[workers]\nmax_live = 512\nmax_live_per_tenant = 4\n",
        ),
    )?;
    let mut tools = t.tools().await?;
    let save = for_tenant(
        invoke("notes_save", r#"{"title":"v","body":"x"}"#),
        "victim",
    );
    output(tools.invoke_tool(save).await).map_err(anyhow::Error::msg)?;
    victim(&mut tools, 20).await?;
    let (idle_p50, idle_p99) = victim(&mut tools, 100).await?;

    // 200 tenants, each calling the spinner over and over (four
    // connections: one holds at most 128 calls at once).
    let stop = Arc::new(AtomicBool::new(false));
    let mut spinners = tokio::task::JoinSet::new();
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(t.tools().await?);
    }
    for i in 0..200 {
        let (mut client, stop) = (channels[i % 4].clone(), Arc::clone(&stop));
        spinners.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = for_tenant(invoke("spin-run", "{}"), &format!("t{i}"));
                let _ = client.invoke_tool(req).await;
            }
        });
    }
    // Until (almost) every tenant's spinner runs.
    let started = Instant::now();
    loop {
        let running = t
            .plugin_info("spinner")
            .await?
            .workers
            .iter()
            .filter(|w| w.running)
            .count();
        if running >= 190 || started.elapsed() > Duration::from_secs(60) {
            eprintln!("{running} spinners after {:?}", started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And each past its first call (the one that finds it heavy).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let measured = victim(&mut tools, 100).await;
    stop.store(true, Ordering::Relaxed);
    while spinners.join_next().await.is_some() {}
    let (p50, p99) = measured?;
    eprintln!(
        "victim idle p50 {idle_p50:?} p99 {idle_p99:?}; under 200 spinning tenants p50 {p50:?} p99 {p99:?}"
    );
    // Three times the idle median and 20 ms for a machine loaded from
    // outside (10 ms seen beside a qemu guest): the old code's was 15 times.
    assert!(
        p50 <= idle_p50 * 3 + Duration::from_millis(20),
        "victim p50 {p50:?} against {idle_p50:?} idle"
    );
    // The tail is tarkd's queue of 200 calls a second to route (in a debug
    // build), and on a loaded CI host it has been seen at 710 ms: what the
    // old code failed was the deadline itself (1 s), which `victim` holds
    // every call to, so the tail is printed, not bounded.
    Ok(())
}
