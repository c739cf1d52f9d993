//! Bounded workers through real processes: an idle worker is stopped after
//! `workers.idle_timeout_s` and the next call starts another with the
//! plugin's storage intact; starts past `workers.max_live` or
//! `max_live_per_tenant` stop the least recently used idle worker in scope,
//! and fail RESOURCE_EXHAUSTED, naming the cap, only when all are busy.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{
    Options, PluginFiles, Tarkd, alive, call, cpu_ticks, eventually, fixtures, for_tenant, invoke,
    output, tool_plugin,
};
use tonic::Code;

async fn save(t: &Tarkd, tenant: &str, body: &str) -> anyhow::Result<()> {
    let args = format!(r#"{{"title":"n","body":"{body}"}}"#);
    t.tools()
        .await?
        .invoke_tool(for_tenant(invoke("notes_save", &args), tenant))
        .await?;
    Ok(())
}

async fn get(t: &Tarkd, tenant: &str) -> anyhow::Result<String> {
    let r = t
        .tools()
        .await?
        .invoke_tool(for_tenant(invoke("notes_get", r#"{"title":"n"}"#), tenant))
        .await?
        .into_inner();
    Ok(match r.result {
        Some(pb::invoke_tool_response::Result::Output(o)) => o,
        other => format!("{other:?}"),
    })
}

async fn pid(t: &Tarkd, tenant: &str) -> anyhow::Result<u32> {
    t.running_worker("notes", tenant).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_stopped_and_storage_outlives_it() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config("[workers]\nidle_timeout_s = 1\n"),
    )?;
    save(&t, "default", "kept").await?;
    let first = pid(&t, "default").await?;
    assert!(
        eventually(Duration::from_secs(30), || !alive(first)).await,
        "the idle worker {first} was not stopped"
    );
    assert_eq!(t.worker_pid("notes", "default").await?, None);
    let log = t.log().join("\n");
    assert!(log.contains("stopping idle worker"), "{log}");
    // Not a crash: no restart backoff, and the next call starts a worker.
    assert!(get(&t, "default").await?.contains("kept"));
    assert_ne!(pid(&t, "default").await?, first);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_stop_the_least_recently_used_idle_worker() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("spinner", "", fixtures::spinner("spin"))?,
        ],
        Options::config("[workers]\nidle_timeout_s = 0\nmax_live = 2\nmax_live_per_tenant = 1\n"),
    )?;
    save(&t, "a", "note of a").await?;
    save(&t, "b", "note of b").await?;
    let (a, b) = (pid(&t, "a").await?, pid(&t, "b").await?);
    // Full: c's start stops a's worker, the least recently used.
    save(&t, "c", "note of c").await?;
    assert!(eventually(Duration::from_secs(10), || !alive(a)).await);
    assert!(alive(b));
    // a comes back (b's worker gives way) with its storage.
    assert!(get(&t, "a").await?.contains("note of a"));
    assert!(eventually(Duration::from_secs(10), || !alive(b)).await);
    // Per tenant: c's spinner takes the place of c's notes worker.
    let c = pid(&t, "c").await?;
    let spun = t
        .tools()
        .await?
        .invoke_tool(for_tenant(invoke("spin-ok", "{}"), "c"))
        .await;
    assert_eq!(output(spun).as_deref(), Ok("ok"));
    assert!(eventually(Duration::from_secs(10), || !alive(c)).await);
    let log = t.log().join("\n");
    assert!(
        log.contains("stopping the least recently used idle worker"),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_worker_busy_a_start_is_refused_with_the_cap() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("spinner", "", fixtures::spinner("spin"))?,
        ],
        Options::config("[workers]\nmax_live = 1\n[limits]\ndeadline_ms = 20000\n"),
    )?;
    let mut tools = t.tools().await?;
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    let spinner = t.worker_pid("spinner", "default").await?.unwrap_or(0);
    let mut caller = tools.clone();
    let busy = tokio::spawn(async move { caller.invoke_tool(invoke("spin-run", "{}")).await });
    assert!(
        eventually(Duration::from_secs(10), || cpu_ticks(spinner) > 10).await,
        "the spinning call never started"
    );
    let refused = t
        .tools()
        .await?
        .invoke_tool(for_tenant(invoke("notes_get", r#"{"title":"n"}"#), "b"))
        .await
        .err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|s| s.code() == Code::ResourceExhausted
                && s.message()
                    .contains("tarkd runs its maximum of 1 workers (workers.max_live)")),
        "{refused:?}"
    );
    assert!(alive(spinner), "a busy worker is never stopped for room");
    busy.abort();
    Ok(())
}

/// Tool lists are described once per plugin version, by a worker of no
/// tenant's, and serve every tenant: with 200 tenants × 5 plugins, listing
/// starts no worker of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_tools_starts_no_tenant_worker() -> anyhow::Result<()> {
    let mut plugins = vec![
        PluginFiles::notes()?,
        tool_plugin("spinner", "", fixtures::spinner("spin"))?,
    ];
    for name in ["t1", "t2", "t3"] {
        plugins.push(tool_plugin(name, "", fixtures::tool(name, "", ""))?);
    }
    let t = Tarkd::start(plugins, Options::default())?;
    let mut tools = t.tools().await?;
    for i in 0..200 {
        let tenant = format!("tenant-{i}");
        let listed = tools
            .list_tools(for_tenant(pb::ListToolsRequest::default(), &tenant))
            .await?
            .into_inner();
        assert_eq!(
            listed.tools.len(),
            11,
            "{tenant}: {:?} {:?}",
            listed.tools,
            listed.errors
        );
    }
    let status = t.status().await?;
    let workers: Vec<_> = status
        .plugins
        .iter()
        .flat_map(|p| p.workers.iter().map(move |w| (p.id.clone(), w)))
        .collect();
    assert!(
        workers.iter().all(|(_, w)| !w.running),
        "no worker stays running: {workers:?}"
    );
    assert!(
        workers.iter().all(|(_, w)| w.tenant == "@describe"),
        "only tarkd's own describing workers ran: {workers:?}"
    );
    // The first call of a tenant starts that tenant's worker only.
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    assert!(t.worker_pid("spinner", "default").await?.is_some());
    assert_eq!(t.worker_pid("notes", "default").await?, None);
    Ok(())
}
