//! Reloading the plugins dir through a real tarkd (`tarkctl plugin reload`,
//! SIGHUP): a set with a broken new plugin is refused whole and nothing
//! changes; otherwise new plugins appear, changed ones serve their new version
//! from a fresh worker, unchanged ones keep their worker, removed ones go.

use std::time::Duration;

use tark_tests::fixtures;
use tark_tests::{
    Failed, Options, PluginFiles, Tarkd, alive, eventually, invoke, output, tool_plugin,
};
use tonic::Code;

fn write_plugin(t: &Tarkd, p: &PluginFiles) -> anyhow::Result<()> {
    let dir = t.dir.path().join("plugins").join(&p.folder);
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in &p.files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

async fn tool_names(t: &Tarkd) -> anyhow::Result<Vec<String>> {
    let r = t
        .tools()
        .await?
        .list_tools(tark_proto::plugin::v1::ListToolsRequest::default())
        .await?
        .into_inner();
    let mut names: Vec<String> = r.tools.into_iter().map(|t| t.name).collect();
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_to_the_new_set_whole_or_not_at_all() -> anyhow::Result<()> {
    let mut t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("alpha", "", fixtures::tool("a1", "", ""))?,
        ],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    output(tools.invoke_tool(invoke("notes_list", "{}")).await).map_err(anyhow::Error::msg)?;
    output(tools.invoke_tool(invoke("a1-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    let notes = t.worker_pid("notes", "default").await?;
    let alpha = t.running_worker("alpha", "default").await?;
    let before = tool_names(&t).await?;
    assert!(before.contains(&"a1-ok".to_owned()), "{before:?}");

    // A new version of alpha, a new plugin beta, and gamma whose module is a
    // FIFO: the whole reload is refused, naming gamma, and nothing changes.
    write_plugin(&t, &tool_plugin("alpha", "", fixtures::tool("a2", "", ""))?)?;
    write_plugin(&t, &tool_plugin("beta", "", fixtures::tool("b1", "", ""))?)?;
    let gamma = t.dir.path().join("plugins/gamma");
    std::fs::create_dir_all(&gamma)?;
    std::fs::write(
        gamma.join("plugin.toml"),
        fixtures::manifest("gamma", "tool", ""),
    )?;
    nix::unistd::mkfifo(
        &gamma.join("plugin.wasm"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )?;
    let refused = t.tarkctl(&["plugin", "reload"])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("reload refused, nothing changed: plugin gamma:")
            && stderr.contains("plugin.wasm is not a regular file"),
        "{stderr}"
    );
    assert_eq!(tool_names(&t).await?, before);
    assert_eq!(t.worker_pid("alpha", "default").await?, Some(alpha));
    output(tools.invoke_tool(invoke("a1-ok", "{}")).await).map_err(anyhow::Error::msg)?;

    // Without gamma the set is valid: switched in at once.
    std::fs::remove_dir_all(&gamma)?;
    let done = t.tarkctl(&["plugin", "reload"])?;
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        said.trim(),
        "plugins reloaded: added beta; changed alpha; 1 unchanged"
    );
    assert!(
        eventually(Duration::from_secs(30), || !alive(alpha)).await,
        "alpha's old worker {alpha} still runs"
    );
    let after = tool_names(&t).await?;
    for (name, present) in [
        ("a1-ok", false),
        ("a2-ok", true),
        ("b1-ok", true),
        ("notes_list", true),
    ] {
        assert_eq!(
            after.contains(&name.to_owned()),
            present,
            "{name}: {after:?}"
        );
    }
    output(tools.invoke_tool(invoke("a2-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    output(tools.invoke_tool(invoke("b1-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    // The unchanged plugin kept its worker.
    output(tools.invoke_tool(invoke("notes_list", "{}")).await).map_err(anyhow::Error::msg)?;
    assert_eq!(t.worker_pid("notes", "default").await?, notes);

    // SIGHUP does the same: alpha's folder is gone, so alpha is.
    std::fs::remove_dir_all(t.dir.path().join("plugins/alpha"))?;
    let pid = t.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    t.wait_for_log(
        "plugins reloaded: removed alpha; 2 unchanged",
        Duration::from_secs(30),
    )?;
    let gone = t.plugin_info("alpha").await;
    let code = gone
        .err()
        .and_then(|e| e.downcast_ref::<tonic::Status>().map(tonic::Status::code));
    assert_eq!(code, Some(Code::NotFound));
    let err = tools.invoke_tool(invoke("a2-ok", "{}")).await.failed();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A changed config is checked and left for a restart.
    let config = t.dir.path().join("tarkd.toml");
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(&config, format!("{text}\n[limits]\ndeadline_ms = 1234\n"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    t.wait_for_log("takes effect when tarkd restarts", Duration::from_secs(30))?;
    std::fs::write(
        &config,
        format!("{text}\n[limits]\ndeadline_ms = \"soon\"\n"),
    )?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    t.wait_for_log("would not start on this one", Duration::from_secs(30))?;
    // Still serving.
    output(tools.invoke_tool(invoke("b1-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    t.stop(libc::SIGTERM)?;
    Ok(())
}
