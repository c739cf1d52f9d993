//! One plugin call through every layer: agent API → tarkd → tark-worker → plugin →
//! broker → tarkd, through real processes.

use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::{
    Failed, Options, PluginFiles, Tarkd, Victim, alive, call, cpu_ticks, eventually,
    eventually_async, for_tenant, invoke, output, tool_plugin,
};
use tonic::Code;

/// Short limits keep hostile-plugin tests quick; the bounds below are generous.
const LIMITS: &str = "[limits]\ndeadline_ms = 1000\nmemory_mib = 16\nkill_grace_ms = 3000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_tools_work_through_the_api_and_tarkctl() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options {
            env: vec![("NOTES_AUTHOR".into(), "alice".into())],
            ..Default::default()
        },
    )?;
    let mut tools = t.tools().await?;
    let list = tools
        .list_tools(pb::ListToolsRequest {})
        .await?
        .into_inner();
    let names: Vec<_> = list
        .tools
        .iter()
        .map(|t| (t.name.as_str(), t.plugin.as_str(), t.risk()))
        .collect();
    assert_eq!(
        names,
        [
            ("notes_get", "notes", pb::RiskLevel::ReadOnly),
            ("notes_list", "notes", pb::RiskLevel::ReadOnly),
            ("notes_save", "notes", pb::RiskLevel::Write),
        ]
    );
    assert!(
        list.conflicts.is_empty() && list.errors.is_empty(),
        "{list:?}"
    );

    let saved = call(&mut tools, "notes_save", r#"{"title":"t1","body":"hello"}"#).await;
    assert_eq!(saved.as_deref(), Ok("saved t1"));
    // The declared env var (NOTES_*) is read through the broker.
    let got = call(&mut tools, "notes_get", r#"{"title":"t1"}"#).await;
    assert_eq!(got.as_deref(), Ok("hello\n-- alice"));
    // A tool's own failure is a result, not a transport error.
    let missing = tools
        .invoke_tool(invoke("notes_get", r#"{"title":"nope"}"#))
        .await?
        .into_inner();
    assert_eq!(
        missing.result,
        Some(pb::invoke_tool_response::Result::Error(
            "no note named \"nope\"".into()
        ))
    );
    t.wait_for_log(
        "saved note \"t1\" (14 bytes) tenant=default plugin=notes",
        Duration::from_secs(5),
    )?;

    // The same through tarkctl, as an operator types it.
    let out = t.tarkctl(&[
        "invoke",
        "notes_save",
        "--args",
        r#"{"title":"t2","body":"b"}"#,
    ])?;
    assert!(out.status.success(), "{out:?}");
    let out = t.tarkctl(&["--json", "invoke", "notes_list"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["output"], r#"["t1","t2"]"#);
    let out = t.tarkctl(&["tools"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.lines().next().is_some_and(|h| h.starts_with("TOOL")),
        "{text}"
    );
    assert!(
        text.contains("notes_save") && text.contains("write"),
        "{text}"
    );
    let out = t.tarkctl(&["--json", "status"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let w = &v["plugins"][0]["workers"][0];
    assert_eq!(
        (v["plugins"][0]["id"].as_str(), w["running"].as_bool()),
        (Some("notes"), Some(true)),
        "{v}"
    );
    // The five invocations; the tool list was described by tarkd's own worker.
    assert!(
        w["calls"].as_u64() == Some(5) && w["pid"].as_u64().is_some_and(|p| p > 0),
        "{v}"
    );
    let out = t.tarkctl(&["plugin", "info", "notes"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("env:     NOTES_*") && text.contains("storage: true"),
        "{text}"
    );
    for layer in [
        "rlimits",
        "no_new_privs",
        "not_dumpable",
        "landlock",
        "seccomp",
    ] {
        assert!(
            text.contains(&format!("sandbox {layer}: applied")),
            "{layer} missing in {text}"
        );
    }
    let out = t.tarkctl(&["plugin", "list"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("notes") && text.contains("running"), "{text}");

    // Errors are one clear line and a non-zero exit.
    let out = t.tarkctl(&["invoke", "no_such_tool"])?;
    let err = String::from_utf8(out.stderr)?;
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(err.contains("unknown tool \"no_such_tool\""), "{err}");
    let out = t.tarkctl(&["plugin", "info", "ghost"])?;
    assert!(
        !out.status.success()
            && String::from_utf8(out.stderr)?.contains("no plugin named \"ghost\"")
    );
    let out = tark_tests::binary("tarkctl").and_then(|b| {
        Ok(std::process::Command::new(b)
            .args(["--socket", "/nonexistent/tarkd.sock", "status"])
            .output()?)
    })?;
    assert!(!out.status.success() && String::from_utf8(out.stderr)?.contains("cannot reach tarkd"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_survives_tarkd_restart_and_kill() -> anyhow::Result<()> {
    let mut t = Tarkd::start(vec![PluginFiles::notes()?], Options::default())?;
    // SIGTERM: an orderly stop. SIGKILL: the acknowledged write is on disk all
    // the same. Either way the worker dies with tarkd.
    for (signal, body) in [(libc::SIGTERM, "v1"), (libc::SIGKILL, "v2")] {
        let mut tools = t.tools().await?;
        let save = format!(r#"{{"title":"keep","body":"{body}"}}"#);
        let saved = call(&mut tools, "notes_save", &save).await;
        assert_eq!(saved.as_deref(), Ok("saved keep"));
        let worker = t.worker_pid("notes", "default").await?.unwrap_or(0);
        assert!(alive(worker));
        let status = t.stop(signal)?;
        if signal == libc::SIGTERM {
            assert!(status.success(), "{status}");
        }
        let dead = eventually(Duration::from_secs(5), || !alive(worker)).await;
        assert!(dead, "worker outlived tarkd (signal {signal})");
        t.launch()?;
        let mut tools = t.tools().await?;
        let got = call(&mut tools, "notes_get", r#"{"title":"keep"}"#).await;
        assert_eq!(got.as_deref(), Ok(body));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_mid_call_fails_that_call_and_the_next_succeeds() -> anyhow::Result<()> {
    let config = "[limits]\ndeadline_ms = 20000\n".to_owned();
    let t = Tarkd::start(
        vec![tool_plugin("spinner", "", fixtures::spinner("spin"))?],
        Options::config(&config),
    )?;
    let mut tools = t.tools().await?;
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    let pid = t.worker_pid("spinner", "default").await?.unwrap_or(0);
    assert!(pid > 0);

    let mut caller = tools.clone();
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        (
            caller.invoke_tool(invoke("spin-run", "{}")).await,
            started.elapsed(),
        )
    });
    // The call is running once the worker burns CPU in the guest loop.
    let busy = eventually(Duration::from_secs(10), || cpu_ticks(pid) > 10).await;
    assert!(busy, "the spinning call never started");
    // SAFETY: kill(2) on the worker we just looked up.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let (result, elapsed) = in_flight.await?;
    let status = result.failed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "worker for plugin spinner exited: killed by signal 9 (SIGKILL)"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "the caller waited for the deadline: {elapsed:?}"
    );

    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    let new_pid = t.worker_pid("spinner", "default").await?.unwrap_or(0);
    assert!(new_pid != pid && new_pid > 0);
    // The replacement loaded the cached artifact: the module was compiled once.
    let compiled = t
        .log()
        .iter()
        .filter(|l| l.contains("compiled plugin=spinner"))
        .count();
    assert_eq!(compiled, 1, "{:#?}", t.log());
    // Workers start with an empty environment (tarkd's own is not inherited).
    let environ = std::fs::read(format!("/proc/{new_pid}/environ"))?;
    assert!(
        environ.is_empty(),
        "worker environment: {:?}",
        String::from_utf8_lossy(&environ)
    );
    let info = t.plugin_info("spinner").await?;
    assert_eq!(info.workers.first().map(|w| w.restarts), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_plugins_hit_their_limits_while_another_plugin_keeps_serving() -> anyhow::Result<()>
{
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("spinner", "", fixtures::spinner("spin"))?,
            tool_plugin("hog", "", fixtures::memory_hog("hog"))?,
        ],
        Options::config(LIMITS),
    )?;
    let mut tools = t.tools().await?;
    assert_eq!(
        call(&mut tools, "notes_save", r#"{"title":"v","body":"x"}"#)
            .await
            .as_deref(),
        Ok("saved v")
    );

    // A victim workload on the notes plugin runs the whole time.
    let victim = Victim::start(&tools);

    let mut spin = tools.clone();
    let spinning = tokio::spawn(async move {
        let started = Instant::now();
        (
            spin.invoke_tool(invoke("spin-run", "{}")).await,
            started.elapsed(),
        )
    });
    let hog = tools.invoke_tool(invoke("hog-run", "{}")).await;
    let (spun, elapsed) = spinning.await?;

    let status = spun.failed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "plugin spinner: deadline of 1000 ms exceeded"
    );
    assert!(
        elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );

    let status = hog.failed();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("plugin hog: memory limit of 16777216 bytes exceeded"),
        "{}",
        status.message()
    );

    // Both plugins serve again (fresh instances), and the victim never failed.
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    assert_eq!(call(&mut tools, "hog-ok", "{}").await.as_deref(), Ok("ok"));
    victim.finish().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_get_diagnostics_and_leave_the_others_working() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            PluginFiles::new("malformed", "[plugin\nname = ", None),
            PluginFiles::new("nowasm", &manifest("nowasm", "tool", ""), None),
            PluginFiles::new(
                "garbage",
                &manifest("garbage", "tool", ""),
                Some(b"\0asm garbage".to_vec()),
            ),
            tool_plugin("wrongworld", "", fixtures::wrong_world())?,
            PluginFiles::new(
                "badcaps",
                &manifest("badcaps", "tool", "env = [\"*\"]"),
                Some(b"\0asm".to_vec()),
            ),
        ],
        Options::default(),
    )?;
    let plugins = t
        .plugins()
        .await?
        .list_plugins(pb::ListPluginsRequest {})
        .await?
        .into_inner()
        .plugins;
    let diag = |id: &str| {
        let p = plugins.iter().find(|p| p.id == id);
        p.map(|p| (p.state(), p.diagnostics.join(" | ")))
            .unwrap_or((pb::PluginState::Unspecified, String::new()))
    };
    let (state, d) = diag("malformed");
    assert!(
        state == pb::PluginState::Invalid && d.starts_with("plugin.toml: TOML parse error"),
        "{d}"
    );
    let (state, d) = diag("nowasm");
    assert!(
        state == pb::PluginState::Invalid && d.contains("wasm file") && d.contains("not found"),
        "{d}"
    );
    let (state, d) = diag("badcaps");
    assert!(
        state == pb::PluginState::Invalid && d.contains("capabilities.env entry \"*\""),
        "{d}"
    );
    assert_eq!(diag("notes").0, pb::PluginState::Idle);

    // Listing tools reports the plugins that cannot run and still lists the rest.
    let mut tools = t.tools().await?;
    let list = tools
        .list_tools(pb::ListToolsRequest {})
        .await?
        .into_inner();
    assert_eq!(list.tools.len(), 3, "{list:?}");
    let errors = list.errors.join("\n");
    assert!(
        errors.contains("wrongworld: plugin wrongworld cannot be loaded: component does not export tark:plugin/tool-plugin@0.1.x"),
        "{errors}"
    );
    assert!(
        errors.contains("garbage: plugin garbage cannot be loaded: not a valid component"),
        "{errors}"
    );

    // The wrong-world plugin fails fast afterwards and says why in status.
    let info = t.plugin_info("wrongworld").await?;
    let last = info
        .workers
        .first()
        .map(|w| w.last_error.clone())
        .unwrap_or_default();
    assert!(last.contains("it exports run"), "{last}");

    let unknown = tools.invoke_tool(invoke("frobnicate", "{}")).await.failed();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().starts_with("unknown tool \"frobnicate\""),
        "{}",
        unknown.message()
    );
    let saved = call(&mut tools, "notes_save", r#"{"title":"a","body":"b"}"#).await;
    assert_eq!(saved.as_deref(), Ok("saved a"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_env_reads_return_nothing_and_are_logged_as_denials() -> anyhow::Result<()> {
    let notes = PluginFiles::notes()?;
    let toml =
        std::fs::read_to_string(fixtures::repo_root().join("examples/plugins/notes/plugin.toml"))?;
    let undeclared = toml.replace("env = [\"NOTES_*\"]", "env = []");
    assert_ne!(
        toml, undeclared,
        "the notes manifest no longer declares NOTES_*"
    );
    let t = Tarkd::start(
        vec![notes.with_file("plugin.toml", undeclared.as_bytes())],
        Options {
            env: vec![("NOTES_AUTHOR".into(), "alice".into())],
            ..Default::default()
        },
    )?;
    let mut tools = t.tools().await?;
    call(&mut tools, "notes_save", r#"{"title":"x","body":"plain"}"#)
        .await
        .map_err(anyhow::Error::msg)?;
    let got = call(&mut tools, "notes_get", r#"{"title":"x"}"#).await;
    assert_eq!(got.as_deref(), Ok("plain"), "the env value leaked");
    let line = t.wait_for_log("host call denied", Duration::from_secs(5))?;
    for field in [
        "tenant=default",
        "plugin=notes",
        "capability=\"env\"",
        "target_name=\"NOTES_AUTHOR\"",
        "decision=\"deny\"",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    // The same denial in the audit log file, and from tarkctl audit.
    let audit = std::fs::read_to_string(t.dir.path().join("state/audit.log"))?;
    let entry: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap_or_default())?;
    for (field, want) in [
        ("tenant", "default"),
        ("plugin", "notes"),
        ("capability", "env"),
        ("target", "NOTES_AUTHOR"),
        ("decision", "deny"),
    ] {
        assert_eq!(entry[field].as_str(), Some(want), "{field} in {audit}");
    }
    let out = t.tarkctl(&["--json", "audit", "--plugin", "notes"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["entries"][0]["target"], "NOTES_AUTHOR", "{v}");
    assert_eq!(v["counts"][0]["capability"], "env", "{v}");
    assert!(v["counts"][0]["denials"].as_u64() >= Some(1), "{v}");
    let out = t.tarkctl(&["audit"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("NOTES_AUTHOR") && text.contains("not declared in the plugin's manifest"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_name_conflicts_are_reported_not_resolved_by_chance() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            tool_plugin("one", "", fixtures::spinner("dup"))?,
            tool_plugin("two", "", fixtures::spinner("dup"))?,
        ],
        Options::config("[sources]\nconflicts = \"error\""),
    )?;
    let mut tools = t.tools().await?;
    let list = tools
        .list_tools(pb::ListToolsRequest {})
        .await?
        .into_inner();
    let conflicts: Vec<_> = list
        .conflicts
        .iter()
        .map(|c| (c.tool.as_str(), c.plugins.join(",")))
        .collect();
    assert_eq!(
        conflicts,
        [
            ("dup-ok", "one,two".to_owned()),
            ("dup-run", "one,two".to_owned())
        ]
    );
    let err = tools.invoke_tool(invoke("dup-ok", "{}")).await.failed();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("provided by more than one plugin (one, two)"),
        "{}",
        err.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_their_own_workers_and_storage() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::default())?;
    let mut tools = t.tools().await?;
    let save = |body: &str| invoke("notes_save", &format!(r#"{{"title":"k","body":"{body}"}}"#));
    output(tools.invoke_tool(for_tenant(save("from a"), "acme")).await)
        .map_err(anyhow::Error::msg)?;
    output(
        tools
            .invoke_tool(for_tenant(save("from b"), "globex"))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    let get = |tenant| for_tenant(invoke("notes_get", r#"{"title":"k"}"#), tenant);
    assert_eq!(
        output(tools.invoke_tool(get("acme")).await).as_deref(),
        Ok("from a")
    );
    assert_eq!(
        output(tools.invoke_tool(get("globex")).await).as_deref(),
        Ok("from b")
    );
    let none = tools.invoke_tool(get("default")).await?.into_inner();
    assert!(matches!(
        none.result,
        Some(pb::invoke_tool_response::Result::Error(_))
    ));
    let (a, b) = (
        t.worker_pid("notes", "acme").await?,
        t.worker_pid("notes", "globex").await?,
    );
    assert!(a.is_some() && b.is_some() && a != b, "{a:?} {b:?}");
    let bad = tools
        .invoke_tool(for_tenant(invoke("notes_list", "{}"), "Evil/../x"))
        .await;
    assert_eq!(bad.err().map(|s| s.code()), Some(Code::InvalidArgument));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_are_timed_from_their_turn_not_from_arrival() -> anyhow::Result<()> {
    // Deadline 0.25 s, kill backstop 0.25 + 10 s: forty-eight runaway calls
    // queued at once take at least 12 s in all, longer than the backstop, yet
    // none may get the worker killed. Each call has 10 s of slack because a
    // loaded CI machine has taken more than 5 s to deliver a runaway call's
    // deadline; the total stays past the backstop however slow the machine is.
    let t = Tarkd::start(
        vec![tool_plugin("spinner", "", fixtures::spinner("spin"))?],
        Options::config("[limits]\ndeadline_ms = 250\nmemory_mib = 16\nkill_grace_ms = 10000\n"),
    )?;
    let mut tools = t.tools().await?;
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    let pid = t.worker_pid("spinner", "default").await?;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let mut c = tools.clone();
        calls.spawn(async move { c.invoke_tool(invoke("spin-run", "{}")).await });
    }
    while let Some(r) = calls.join_next().await {
        let status = r?.failed();
        assert_eq!(
            status.message(),
            "plugin spinner: deadline of 250 ms exceeded",
            "{status:?}"
        );
    }
    assert_eq!(
        t.worker_pid("spinner", "default").await?,
        pid,
        "the worker was replaced"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_the_size_cap_are_refused_and_the_plugin_keeps_serving() -> anyhow::Result<()>
{
    let config = "[limits]\nmax_response_kib = 64\n".to_owned();
    let t = Tarkd::start(
        vec![tool_plugin(
            "big",
            "",
            fixtures::big_answer("big", 200_000),
        )?],
        Options::config(&config),
    )?;
    let mut tools = t.tools().await?;
    let err = tools.invoke_tool(invoke("big-run", "{}")).await.failed();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().starts_with("plugin big: response of 2000"),
        "{}",
        err.message()
    );
    assert!(
        err.message().ends_with("exceeds the limit of 65536 bytes"),
        "{}",
        err.message()
    );
    assert_eq!(call(&mut tools, "big-ok", "{}").await.as_deref(), Ok("ok"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rpcs_name_a_plugin_that_is_not_installed() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let mut plugins = t.plugins().await?;
    let x = || pb::PluginRef { id: "x".into() };
    let errors = [
        plugins.enable_plugin(x()).await.failed(),
        plugins.disable_plugin(x()).await.failed(),
        plugins
            .remove_plugin(pb::RemovePluginRequest {
                id: "x".into(),
                purge: true,
            })
            .await
            .failed(),
    ];
    for err in errors {
        assert_eq!(
            (err.code(), err.message()),
            (Code::NotFound, "no plugin named \"x\" is installed")
        );
    }
    Ok(())
}

/// `Seccomp` and `NoNewPrivs` of every thread of a process, from /proc.
fn thread_sandbox(pid: u32) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        out.push((field("Name:"), field("Seccomp:"), field("NoNewPrivs:")));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_under_the_sandbox_fail_the_call_and_the_plugin_recovers() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            tool_plugin("trapper", "", fixtures::unreachable("trap"))?,
            tool_plugin("deep", "", fixtures::recursion("deep"))?,
        ],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    for (tool, ok, want) in [
        (
            "trap-run",
            "trap-ok",
            "plugin trapper: wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "deep-run",
            "deep-ok",
            "plugin deep: wasm trap: call stack exhausted",
        ),
    ] {
        let err = tools.invoke_tool(invoke(tool, "{}")).await.failed();
        assert_eq!((err.code(), err.message()), (Code::Aborted, want), "{tool}");
        assert_eq!(
            call(&mut tools, ok, "{}").await.as_deref(),
            Ok("ok"),
            "{ok}"
        );
    }
    // The traps were caught in the guest: no worker died, and every thread of
    // each worker runs under seccomp (mode 2, filter) with no_new_privs.
    for plugin in ["trapper", "deep"] {
        let info = t.plugin_info(plugin).await?;
        let w = info.workers.first().cloned().unwrap_or_default();
        assert!(w.running && w.restarts == 0, "{w:?}");
        let threads = thread_sandbox(w.pid)?;
        assert!(threads.len() >= 2, "{threads:?}");
        for (name, seccomp, nnp) in &threads {
            assert_eq!(
                (seccomp.as_str(), nnp.as_str()),
                ("2", "1"),
                "thread {name} of {plugin}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_crashing_is_quarantined_until_restarted() -> anyhow::Result<()> {
    let config =
        "[limits]\ndeadline_ms = 20000\n[supervision]\nintensity = 3\ninitial_backoff_ms = 50\n"
            .to_owned();
    let t = Tarkd::start(
        vec![tool_plugin("spinner", "", fixtures::spinner("spin"))?],
        Options::config(&config),
    )?;
    let mut tools = t.tools().await?;
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    for crash in 1..=3 {
        let mut caller = tools.clone();
        let in_flight =
            tokio::spawn(async move { caller.invoke_tool(invoke("spin-run", "{}")).await });
        // Wait for the spinning call's worker, then kill it mid-call.
        let found = eventually_async(Duration::from_secs(10), || async {
            match t.worker_pid("spinner", "default").await {
                Ok(Some(p)) if cpu_ticks(p) > 5 => Some(p),
                _ => None,
            }
        })
        .await;
        let pid = found.unwrap_or(0);
        assert!(pid > 0, "crash {crash}: the spinning call never started");
        // SAFETY: kill(2) on the worker we just looked up.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let status = in_flight.await?.failed();
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "crash {crash}: {status:?}"
        );
    }
    // Quarantined: calls fail fast with the last crash, and status says so.
    let started = Instant::now();
    let err = tools.invoke_tool(invoke("spin-ok", "{}")).await.failed();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().starts_with("plugin spinner is quarantined after 3 crashes within 60 s (last: worker for plugin spinner exited: killed by signal 9 (SIGKILL)); run `tarkctl restart spinner`"),
        "{}",
        err.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a quarantined call did not fail fast"
    );
    let info = t.plugin_info("spinner").await?;
    assert_eq!(info.state(), pb::PluginState::Quarantined);

    let out = t.tarkctl(&["restart", "spinner"])?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(call(&mut tools, "spin-ok", "{}").await.as_deref(), Ok("ok"));
    let info = t.plugin_info("spinner").await?;
    assert_eq!(info.state(), pb::PluginState::Running);
    Ok(())
}
