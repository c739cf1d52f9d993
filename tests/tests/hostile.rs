//! Hostile plugins, all at once: each gets a clear error and leaves a working
//! worker (or a clear diagnostic), while a victim workload on another plugin sees
//! no failure at all.

use tark_proto::plugin::v1 as pb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::{Failed, Options, PluginFiles, Tarkd, Victim, call, invoke, tool_plugin};
use tonic::Code;

const LIMITS: &str =
    "[limits]\ndeadline_ms = 1000\nmemory_mib = 16\nmax_response_kib = 64\nkill_grace_ms = 3000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_plugin_fails_alone_and_the_victim_never_notices() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("spinner", "", fixtures::spinner("spin"))?,
            tool_plugin("hog", "", fixtures::memory_hog("hog"))?,
            tool_plugin("tables", "", fixtures::table_bomb("tables"))?,
            tool_plugin("deep", "", fixtures::recursion("deep"))?,
            tool_plugin("big", "", fixtures::big_answer("big", 200_000))?,
            tool_plugin("trapper", "", fixtures::unreachable("trap"))?,
            tool_plugin(
                "retry",
                "env = [\"FIXTURE_*\"]",
                fixtures::host_call_loop("retry"),
            )?,
            tool_plugin("starttrap", "", fixtures::start_trap("st"))?,
            tool_plugin("otherworld", "", fixtures::wrong_world())?,
            PluginFiles::new(
                "garbage",
                &manifest("garbage", "tool", ""),
                Some(b"\0asm\x01\0\0\0garbage".to_vec()),
            ),
        ],
        Options::config(LIMITS),
    )?;
    let mut tools = t.tools().await?;
    call(&mut tools, "notes_save", r#"{"title":"v","body":"x"}"#)
        .await
        .map_err(anyhow::Error::msg)?;

    let victim = Victim::start(&tools);

    // (tool, expected code, expected message prefix, tool that must work after)
    let cases: &[(&str, Code, &str, &str)] = &[
        (
            "spin-run",
            Code::DeadlineExceeded,
            "plugin spinner: deadline of 1000 ms exceeded",
            "spin-ok",
        ),
        (
            "hog-run",
            Code::ResourceExhausted,
            "plugin hog: memory limit of 16777216 bytes exceeded",
            "hog-ok",
        ),
        (
            "tables-run",
            Code::ResourceExhausted,
            "plugin tables: table limit of 20000 elements exceeded",
            "tables-ok",
        ),
        (
            "deep-run",
            Code::Aborted,
            "plugin deep: wasm trap: call stack exhausted",
            "deep-ok",
        ),
        (
            "big-run",
            Code::ResourceExhausted,
            "plugin big: response of 2000",
            "big-ok",
        ),
        (
            "trap-run",
            Code::Aborted,
            "plugin trapper: wasm trap: wasm `unreachable` instruction executed",
            "trap-ok",
        ),
        (
            "retry-run",
            Code::DeadlineExceeded,
            "plugin retry: deadline of 1000 ms exceeded",
            "retry-ok",
        ),
    ];
    let mut calls = tokio::task::JoinSet::new();
    for (tool, code, prefix, _) in cases {
        let mut c = tools.clone();
        calls.spawn(async move {
            (
                *tool,
                *code,
                *prefix,
                c.invoke_tool(invoke(tool, "{}")).await,
            )
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (tool, code, prefix, result) = joined?;
        let err = result.failed();
        assert_eq!(err.code(), code, "{tool}: {err:?}");
        assert!(
            err.message().starts_with(prefix),
            "{tool}: {}",
            err.message()
        );
    }
    for (tool, _, _, after) in cases {
        assert_eq!(
            call(&mut tools, after, "{}").await.as_deref(),
            Ok("ok"),
            "{after} after {tool}"
        );
    }

    // Plugins that can never run say why, in the tool listing and in their status.
    let list = tools
        .list_tools(pb::ListToolsRequest {})
        .await?
        .into_inner();
    let errors = list.errors.join("\n");
    for want in [
        "starttrap: plugin starttrap: instantiation failed: wasm trap: wasm `unreachable` instruction executed",
        "otherworld: plugin otherworld cannot be loaded: component does not export tark:plugin/tool-plugin@0.1.x",
        "garbage: plugin garbage cannot be loaded: not a valid core module: failed to parse WebAssembly module",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }

    // No hostile plugin cost a worker its life: every worker started once.
    let status = t
        .system()
        .await?
        .status(pb::StatusRequest {})
        .await?
        .into_inner();
    for p in &status.plugins {
        for w in &p.workers {
            assert_eq!(w.restarts, 0, "{} restarted: {w:?}", p.id);
        }
    }
    victim.finish().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_flooding_the_log_is_held_to_its_rate() -> anyhow::Result<()> {
    let config = "[limits]\ndeadline_ms = 1000\n[logs]\nper_second = 50.0\nburst = 100.0\n";
    let t = Tarkd::start(
        vec![tool_plugin("flood", "", fixtures::log_flood("flood"))?],
        Options::config(config),
    )?;
    let mut tools = t.tools().await?;
    for _ in 0..2 {
        let err = tools.invoke_tool(invoke("flood-run", "{}")).await.failed();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    }
    let lines = t
        .log()
        .iter()
        .filter(|l| l.contains("flooding") && l.contains("plugin=flood"))
        .count();
    // Two 1 s floods: the burst plus about 2 s at 50/s, with a generous margin.
    assert!(
        lines > 0 && lines <= 100 + 50 * 6,
        "{lines} lines went through"
    );
    t.wait_for_log(
        "log lines dropped: over 50 lines/s",
        std::time::Duration::from_secs(5),
    )?;
    Ok(())
}
