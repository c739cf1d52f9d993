//! Chaos: workers and tarkd killed under load. Every call either succeeds or
//! fails with UNAVAILABLE and a reason, and no acknowledged storage write is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::fixtures;
use tark_tests::{
    Failed, Options, PluginFiles, Tarkd, alive, call, cpu_ticks, eventually, invoke, tool_plugin,
};
use tonic::Code;

const CLIENTS: usize = 4;
const CALLS_PER_CLIENT: usize = 2_500;

fn bare(name: &str) -> anyhow::Result<PluginFiles> {
    tool_plugin(name, "", fixtures::tool(name, "", ""))
}

/// A small deterministic generator (xorshift): the kill schedule is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs one client's share of the workload; returns the notes it saved and was
/// told were saved, or the first call that failed in a way it must not.
async fn client(
    mut tools: pb::tools_client::ToolsClient<tonic::transport::Channel>,
    id: usize,
    calls: usize,
) -> Result<(BTreeMap<String, String>, usize), String> {
    let (mut acked, mut unavailable) = (BTreeMap::new(), 0);
    for j in 0..calls {
        let (title, body) = (format!("c{id}-{j}"), format!("body {j}"));
        let request = match j % 3 {
            0 => invoke(
                "notes_save",
                &format!(r#"{{"title":"{title}","body":"{body}"}}"#),
            ),
            1 => invoke("b1-ok", "{}"),
            _ => invoke("b2-ok", "{}"),
        };
        match tools.invoke_tool(request).await {
            Ok(r) => {
                if j % 3 == 0 {
                    acked.insert(title, body);
                }
                drop(r);
            }
            Err(s) if s.code() == Code::Unavailable && !s.message().is_empty() => unavailable += 1,
            Err(s) => {
                return Err(format!(
                    "client {id} call {j}: {:?}: {}",
                    s.code(),
                    s.message()
                ));
            }
        }
    }
    Ok((acked, unavailable))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_worker_kills_under_load_lose_nothing() -> anyhow::Result<()> {
    let config = "[supervision]\nintensity = 100000\ninitial_backoff_ms = 1\nmax_backoff_ms = 20\n"
        .to_owned();
    let t = Tarkd::start(
        vec![PluginFiles::notes()?, bare("b1")?, bare("b2")?],
        Options::config(&config),
    )?;
    let tarkd = t.pid();
    let tools = t.tools().await?;
    assert_eq!(
        tools
            .clone()
            .list_tools(pb::ListToolsRequest {})
            .await?
            .into_inner()
            .tools
            .len(),
        7
    );

    let mut clients = tokio::task::JoinSet::new();
    for id in 0..CLIENTS {
        clients.spawn(client(tools.clone(), id, CALLS_PER_CLIENT));
    }
    // The killer: a random live worker every 20 ms while the clients run.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0;
    let started = Instant::now();
    while !clients.is_empty() && started.elapsed() < Duration::from_secs(240) {
        tokio::select! {
            joined = clients.join_next() => {
                let (acked, _) = joined.ok_or_else(|| anyhow::anyhow!("no client"))??.map_err(anyhow::Error::msg)?;
                // Nothing acknowledged is lost: every saved note reads back.
                let mut tools = tools.clone();
                for (title, body) in acked {
                    // The killer is still at work: a read whose worker it killed
                    // failed, it did not find the note missing; read again.
                    let args = format!(r#"{{"title":"{title}"}}"#);
                    let mut got = call(&mut tools, "notes_get", &args).await;
                    for _ in 0..50 {
                        if !got.as_ref().is_err_and(|e| e.starts_with("Unavailable")) {
                            break;
                        }
                        got = call(&mut tools, "notes_get", &args).await;
                    }
                    assert_eq!(got.as_deref(), Ok(body.as_str()), "note {title} was acknowledged, then lost");
                }
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let pids = t.worker_pids().await?;
                if !pids.is_empty() {
                    let pid = pids[(rng.next() % pids.len() as u64) as usize];
                    // SAFETY: kill(2) on a worker pid tarkd reported as running.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    kills += 1;
                }
            }
        }
    }
    assert!(clients.is_empty(), "the workload did not finish in time");
    assert!(kills >= 10, "only {kills} kills happened");
    assert!(alive(tarkd) && t.pid() == tarkd, "tarkd restarted or died");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_tarkd_under_load_leaves_no_worker_and_loses_nothing() -> anyhow::Result<()> {
    let mut t = Tarkd::start(
        vec![PluginFiles::notes()?, bare("b1")?, bare("b2")?],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    // Listing tools starts no worker: one call each starts the three.
    for tool in ["b1-ok", "b2-ok"] {
        assert_eq!(call(&mut tools, tool, "{}").await.as_deref(), Ok("ok"));
    }
    // Load that records what was acknowledged, until tarkd disappears under it.
    let acks = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..CLIENTS {
        let mut tools = tools.clone();
        let acks = Arc::clone(&acks);
        clients.spawn(async move {
            let mut acked = BTreeMap::new();
            for j in 0.. {
                let (title, body) = (format!("k{id}-{j}"), format!("v{j}"));
                let req = invoke(
                    "notes_save",
                    &format!(r#"{{"title":"{title}","body":"{body}"}}"#),
                );
                match tools.invoke_tool(req).await {
                    Ok(_) => {
                        acked.insert(title, body);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            acked
        });
    }
    // Once writes are being acknowledged, kill tarkd outright.
    let ready = eventually(Duration::from_secs(60), || {
        acks.load(Ordering::Relaxed) >= 100
    });
    assert!(ready.await, "the load never got going");
    let pids = t.worker_pids().await?;
    assert_eq!(pids.len(), 3, "{pids:?}");
    t.stop(libc::SIGKILL)?;
    let mut acked = BTreeMap::new();
    while let Some(done) = clients.join_next().await {
        acked.extend(done?);
    }
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before the kill"
    );
    for pid in &pids {
        assert!(
            eventually(Duration::from_secs(5), || !alive(*pid)).await,
            "worker {pid} outlived tarkd"
        );
    }
    t.launch()?;
    let mut tools = t.tools().await?;
    for (title, body) in &acked {
        let got = call(
            &mut tools,
            "notes_get",
            &format!(r#"{{"title":"{title}"}}"#),
        )
        .await;
        assert_eq!(
            got.as_deref(),
            Ok(body.as_str()),
            "note {title} was acknowledged, then lost"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_calls_in_flight_finish_then_stops_the_workers() -> anyhow::Result<()> {
    let config = "[limits]\ndeadline_ms = 1500\n".to_owned();
    let mut t = Tarkd::start(
        vec![tool_plugin("spinner", "", fixtures::spinner("spin"))?],
        Options::config(&config),
    )?;
    let mut tools = t.tools().await?;
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    let pid = t.worker_pids().await?.first().copied().unwrap_or(0);
    let mut caller = tools.clone();
    let in_flight = tokio::spawn(async move { caller.invoke_tool(invoke("spin-run", "{}")).await });
    let busy = eventually(Duration::from_secs(10), || cpu_ticks(pid) > 5);
    assert!(busy.await, "the call never started");
    let status = t.stop(libc::SIGTERM)?;
    // The call ran to its own end (the plugin's deadline), not cut off by shutdown.
    let err = in_flight.await?.failed();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::DeadlineExceeded,
            "plugin spinner: deadline of 1500 ms exceeded"
        )
    );
    assert!(status.success(), "tarkd exited with {status}");
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid)).await,
        "worker outlived tarkd's shutdown"
    );
    Ok(())
}
