//! A stalled tarkd never blames a plugin. When tarkd itself could not run
//! (four HPACK bombs kept its runtime threads busy for 16 s), its kill
//! backstop fired late, and it SIGKILLed a worker that had answered in time
//! ("did not answer within 7000 ms"), counting a restart against the plugin.
//! Here tarkd is stopped outright (SIGSTOP) for longer than the backstop
//! while a call is under way: the worker's own answer (its deadline) must
//! be what the caller gets, and the worker must live on.

use std::time::Duration;

use tark_tests::{Failed, Options, Tarkd, fixtures, invoke, tool_plugin};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tarkd_does_not_kill_the_worker_that_answered() -> anyhow::Result<()> {
    // Deadline 1 s, backstop 1 s + 2 s of grace.
    let t = Tarkd::start(
        vec![tool_plugin("spinner", "", fixtures::spinner("spin"))?],
        Options::config("[limits]\ndeadline_ms = 1000\nkill_grace_ms = 2000"),
    )?;
    let mut tools = t.tools().await?;
    // A first call starts the worker (and shows what its own answer is).
    let first = tools.invoke_tool(invoke("spin-run", "{}")).await.failed();
    assert_eq!(first.code(), Code::DeadlineExceeded, "{first:?}");
    let worker = t.running_worker("spinner", "default").await?;
    let pid = t.pid() as libc::pid_t;
    let call =
        tokio::spawn(async move { tools.invoke_tool(invoke("spin-run", "{}")).await.failed() });
    // Stopped while the call runs, past the worker's deadline and tarkd's
    // backstop; the worker answers meanwhile, into its channel.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: kill(2) with tarkd's pid, our child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    tokio::time::sleep(Duration::from_secs(5)).await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = call.await?;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("deadline of 1000 ms exceeded")
            && !status.message().contains("was killed"),
        "the worker's own answer, not tarkd's backstop: {status:?}"
    );
    let info = t.plugin_info("spinner").await?;
    let w = info.workers.iter().find(|w| w.tenant == "default");
    assert!(
        w.is_some_and(|w| w.pid == worker && w.running && w.restarts == 0),
        "the worker was killed: {w:?}"
    );
    Ok(())
}
