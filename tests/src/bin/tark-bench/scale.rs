//! `tark-bench scale`: many tenants each making one call, then idle. Prints
//! the live worker count, tarkd's memory (RSS and PSS) and the workers' total
//! PSS (each worker's process and the reaper parent outside its PID namespace,
//! from `/proc/<pid>/smaps_rollup`) before the calls, once they are all made,
//! and after the idle timeout has stopped the workers.

use std::time::{Duration, Instant};

use tark_tests::{Options, PluginFiles, Tarkd, for_tenant, invoke, output};

/// A `key: N kB` line of a /proc file, in KiB.
fn kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn pss(pid: u32) -> u64 {
    kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Sample {
    workers: usize,
    tarkd_rss: u64,
    tarkd_pss: u64,
    workers_pss: u64,
}

async fn sample(t: &Tarkd) -> anyhow::Result<Sample> {
    let tarkd = t.pid();
    let pids = t.worker_pids().await?;
    // Each worker, and the reaper that forked it into its PID namespace.
    let workers_pss = pids
        .iter()
        .map(|&p| pss(p) + parent(p).filter(|&pp| pp != tarkd).map_or(0, pss))
        .sum();
    Ok(Sample {
        workers: pids.len(),
        tarkd_rss: kib(&format!("/proc/{tarkd}/status"), "VmRSS:"),
        tarkd_pss: pss(tarkd),
        workers_pss,
    })
}

fn row(phase: &str, s: &Sample) {
    let mib = |k: u64| k as f64 / 1024.0;
    let per = if s.workers == 0 {
        String::from("-")
    } else {
        format!("{:.2}", mib(s.workers_pss) / s.workers as f64)
    };
    println!(
        "{phase:<32} {:>7} {:>12.1} {:>12.1} {:>14.1} {:>14}",
        s.workers,
        mib(s.tarkd_rss),
        mib(s.tarkd_pss),
        mib(s.workers_pss),
        per
    );
}

pub async fn run() -> anyhow::Result<()> {
    let tenants: usize = super::env_or("TARK_BENCH_TENANTS", 1000);
    let idle_s = 10;
    let config = format!(
        "[workers]\nidle_timeout_s = {idle_s}\nmax_live = {}\nmax_live_per_tenant = 4\n",
        tenants + 16
    );
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(&config))?;
    let tools = t.tools().await?;
    println!(
        "tark-bench scale: {tenants} tenants, one notes_save each, then idle ({idle_s} s timeout)"
    );
    println!(
        "{:<32} {:>7} {:>12} {:>12} {:>14} {:>14}",
        "phase", "workers", "tarkd RSS MiB", "tarkd PSS MiB", "workers PSS MiB", "PSS/worker MiB"
    );
    let before = sample(&t).await?;
    row("before", &before);

    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let concurrency = 16;
    for i in 0..tenants {
        if calls.len() >= concurrency
            && let Some(done) = calls.join_next().await
        {
            done??;
        }
        let mut c = tools.clone();
        calls.spawn(async move {
            let req = for_tenant(
                invoke("notes_save", r#"{"title":"n","body":"scale"}"#),
                &format!("t{i}"),
            );
            output(c.invoke_tool(req).await)
                .map(drop)
                .map_err(anyhow::Error::msg)
        });
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    let took = started.elapsed();
    let during = sample(&t).await?;
    row("after the calls", &during);

    // The idle timeout stops them all (checked every timeout/4).
    let deadline = Instant::now() + Duration::from_secs(idle_s * 4);
    let after = loop {
        let s = sample(&t).await?;
        if s.workers == 0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    row("after the idle timeout", &after);
    let status = t.status().await?;
    let running = status
        .plugins
        .iter()
        .flat_map(|p| &p.workers)
        .filter(|w| w.running)
        .count();
    println!(
        "{tenants} first calls in {:.1} s ({:.0} worker starts/s, {concurrency} at a time); {running} running after the timeout",
        took.as_secs_f64(),
        tenants as f64 / took.as_secs_f64()
    );
    let mib = |k: u64| k as f64 / 1024.0;
    let n = during.workers.max(1) as f64;
    println!(
        "tarkd's RSS grew {:.1} MiB for {} live workers ({:.1} MiB per 1,000) and was {:.1} MiB after the idle timeout; PSS per idle worker, its reaper included: {:.2} MiB",
        mib(during.tarkd_rss.saturating_sub(before.tarkd_rss)),
        during.workers,
        mib(during.tarkd_rss.saturating_sub(before.tarkd_rss)) * 1000.0 / n,
        mib(after.tarkd_rss),
        mib(during.workers_pss) / n
    );
    Ok(())
}
