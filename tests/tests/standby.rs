//! Standby workers through a real tarkd: spawned ahead of need, bound to a
//! tenant × plugin by its first call or by the call after a crash, never bound
//! twice, run under the same sandbox layers as a worker spawned for the call,
//! refilled in the background, counted under `workers.max_live`, and none at
//! all with `workers.standby = 0`.

use std::collections::BTreeSet;
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, children, eventually_async, for_tenant, invoke};
use tark_tests::{output, parent};

/// Generous: a standby worker starts in milliseconds.
const READY: Duration = Duration::from_secs(60);

/// tarkd's standby workers now: its children spawned as `standby` and not
/// (yet) the parent of a worker tarkd reports.
async fn standby_pids(t: &Tarkd) -> anyhow::Result<BTreeSet<u32>> {
    let bound: BTreeSet<u32> = t
        .worker_pids()
        .await?
        .into_iter()
        .filter_map(parent)
        .collect();
    Ok(children(t.pid())
        .into_iter()
        .filter(|(pid, cmd)| cmd == "tark-worker standby" && !bound.contains(pid))
        .map(|(pid, _)| pid)
        .collect())
}

/// Waits until tarkd reports at least `n` standby workers ready.
async fn ready(t: &Tarkd, n: u32) -> anyhow::Result<()> {
    let found = eventually_async(READY, || async {
        let s = t.status().await.ok()?;
        (s.standby_ready >= n).then_some(())
    })
    .await;
    anyhow::ensure!(found.is_some(), "{n} standby workers never ready");
    Ok(())
}

/// The uid of a process, as the kernel reports it.
fn uid_of(pid: u32) -> anyhow::Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok());
    uid.ok_or_else(|| anyhow::anyhow!("no uid for {pid}"))
}

/// Each sandbox layer's name and whether it is applied.
fn layers(w: &pb::WorkerStatus) -> Vec<(String, bool)> {
    let mut l: Vec<(String, bool)> = w
        .sandbox
        .iter()
        .map(|l| (l.name.clone(), l.applied))
        .collect();
    l.sort();
    l
}

async fn call(t: &Tarkd, tenant: &str) -> anyhow::Result<()> {
    let mut tools = t.tools().await?;
    output(
        tools
            .invoke_tool(for_tenant(invoke("notes_list", "{}"), tenant))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

async fn worker(t: &Tarkd, tenant: &str) -> anyhow::Result<pb::WorkerStatus> {
    let info = t.plugin_info("notes").await?;
    info.workers
        .into_iter()
        .find(|w| w.tenant == tenant && w.running)
        .ok_or_else(|| anyhow::anyhow!("no running notes worker for {tenant}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_calls_and_restarts_bind_standby_workers_each_once() -> anyhow::Result<()> {
    let config =
        "[supervision]\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n[workers]\nstandby = 2\n";
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(config))?;
    ready(&t, 2).await?;
    let waiting = standby_pids(&t).await?;
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    for pid in &waiting {
        let uid = uid_of(*pid)?;
        assert_ne!(uid, 0, "standby worker {pid} runs as root");
    }

    // Each tenant's first call binds one of them: its worker is the child
    // (in its own PID namespace) of a standby process.
    call(&t, "acme").await?;
    call(&t, "globex").await?;
    let acme = worker(&t, "acme").await?;
    let globex = worker(&t, "globex").await?;
    let (pa, pg) = (parent(acme.pid), parent(globex.pid));
    assert!(
        pa.is_some_and(|p| waiting.contains(&p)) && pg.is_some_and(|p| waiting.contains(&p)),
        "workers {} (parent {pa:?}) and {} (parent {pg:?}) are not the standby workers {waiting:?}",
        acme.pid,
        globex.pid
    );
    assert_ne!(pa, pg, "one standby worker bound twice");
    // Their own uids, as spawned: different, never root.
    let (ua, ug) = (uid_of(acme.pid)?, uid_of(globex.pid)?);
    assert!(ua != ug && ua != 0 && ug != 0, "uids {ua} and {ug}");

    // The pool is refilled with new processes.
    ready(&t, 2).await?;
    let refilled = standby_pids(&t).await?;
    assert!(
        refilled.is_disjoint(&waiting),
        "a bound worker went back to the pool: {refilled:?} after {waiting:?}"
    );
    for pid in &refilled {
        let uid = uid_of(*pid)?;
        assert!(
            ![0, ua, ug].contains(&uid),
            "standby worker {pid} shares uid {uid} with a bound worker"
        );
    }

    // A crash: the next call binds a fresh standby worker, never the one
    // another tenant has.
    t.kill_worker("notes", "acme").await?;
    let restarted = eventually_async(READY, || async {
        call(&t, "acme").await.ok()?;
        worker(&t, "acme").await.ok()
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("acme's notes never came back"))?;
    let pr = parent(restarted.pid);
    assert!(
        pr.is_some_and(|p| refilled.contains(&p)),
        "restarted worker {} (parent {pr:?}) is not one of the standby workers {refilled:?}",
        restarted.pid
    );
    assert_ne!(
        uid_of(restarted.pid)?,
        ug,
        "acme's worker runs as globex's uid"
    );

    // Bound workers carry every layer a spawned worker does.
    let cold = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config("[workers]\nstandby = 0\n"),
    )?;
    call(&cold, "acme").await?;
    let spawned = worker(&cold, "acme").await?;
    assert_ne!(
        parent(spawned.pid),
        Some(cold.pid()),
        "the worker runs in its own PID namespace"
    );
    for w in [&acme, &globex, &restarted] {
        assert_eq!(layers(w), layers(&spawned), "{:?}", w.sandbox);
    }
    let applied = layers(&spawned).iter().filter(|(_, a)| *a).count();
    assert!(applied >= 5, "{:?}", spawned.sandbox);
    // workers.standby = 0: none waiting, and status says so.
    let status = cold.status().await?;
    assert_eq!((status.standby_ready, status.standby_size), (0, 0));
    assert!(standby_pids(&cold).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_workers_count_under_max_live_and_give_way() -> anyhow::Result<()> {
    // Room for two workers: both standby at first, then both the tenants'.
    let config = "[workers]\nstandby = 2\nmax_live = 2\n";
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(config))?;
    // tarkd's own describing worker holds a place a while; once it has
    // stopped, the pool fills both.
    ready(&t, 2).await?;
    call(&t, "acme").await?;
    call(&t, "globex").await?;
    let workers = t.worker_pids().await?;
    // Standby workers gave way: neither tenant's worker was stopped for room.
    assert_eq!(workers.len(), 2, "tenants' workers {workers:?}");
    let live = children(t.pid())
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with("tark-worker"))
        .count();
    assert!(
        live <= 2,
        "{live} worker processes under max_live = 2 (workers {workers:?})"
    );
    let status = t.status().await?;
    assert_eq!(
        status.standby_ready, 0,
        "a standby worker holds a place the tenants need"
    );
    Ok(())
}
