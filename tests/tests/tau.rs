//! tau wasm extensions as hook plugins, through real tarkd and worker
//! processes: tau's hooks answer DispatchHook events, the envelope carries
//! the manifest's name and version, and tau's own limits (fuel, response size)
//! hold, lowered further, never raised, by tarkd's policy.

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd};

fn before(tool: &str, args: &str) -> pb::HookEvent {
    pb::HookEvent {
        event: Some(pb::hook_event::Event::ToolExecute(pb::ToolExecuteEvent {
            tool: tool.into(),
            arguments_json: args.into(),
        })),
        ..Default::default()
    }
}

fn named(name: &str) -> pb::HookEvent {
    pb::HookEvent {
        event: Some(pb::hook_event::Event::Named(pb::NamedEvent {
            name: name.into(),
            payload_json: r#"{"run_id":"r1"}"#.into(),
        })),
        ..Default::default()
    }
}

async fn dispatch(t: &Tarkd, e: pb::HookEvent) -> anyhow::Result<pb::HookOutcome> {
    let mut h = pb::hooks_client::HooksClient::new(t.channel().await?);
    Ok(h.dispatch_hook(e).await?.into_inner())
}

fn only(o: &pb::HookOutcome) -> (String, String) {
    let r = o.results.first().cloned().unwrap_or_default();
    (r.decision, r.detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tau_extension_answers_hook_events() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::tau_guard()?], Options::default())?;

    let o = dispatch(&t, before("shell", r#"{"cmd":"rm -rf /"}"#)).await?;
    assert!(o.blocked, "{o:?}");
    assert_eq!(
        o.block_reason,
        "blocked by hook tau-guard: tau-guard: rm -rf is not allowed"
    );

    let o = dispatch(&t, before("deploy", r#"{"env":"prod"}"#)).await?;
    assert!(!o.blocked);
    let args: serde_json::Value = serde_json::from_str(&o.arguments_json)?;
    assert_eq!(
        args,
        serde_json::json!({
            "env": "prod",
            "dry_run": true,
            "checked_by": "tau-guard@0.1.0 (pre-tool-call v1)",
        })
    );

    let o = dispatch(&t, before("shell", r#"{"cmd":"ls"}"#)).await?;
    assert_eq!(only(&o).0, "proceed");
    for hook in [
        "run-start",
        "run-end",
        "message-transform",
        "policy-override",
    ] {
        let o = dispatch(&t, named(hook)).await?;
        assert_eq!(only(&o).0, "ok", "{hook}: {o:?}");
    }
    let o = dispatch(&t, named("fail")).await?;
    assert_eq!(
        only(&o),
        (
            "failed".into(),
            "plugin tau-guard: tau-guard: asked to fail".into()
        )
    );

    let info = t.plugin_info("tau-guard").await?;
    assert_eq!(info.wit, "tark core module (hook, tau extension)");
    assert_eq!(info.diagnostics, Vec::<String>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taus_limits_hold_and_tarkds_policy_caps_them() -> anyhow::Result<()> {
    // tarkd meters no fuel by default: the extension's own 2,000,000 applies.
    let t = Tarkd::start(vec![PluginFiles::tau_guard()?], Options::default())?;
    let o = dispatch(&t, named("spin")).await?;
    let (decision, detail) = only(&o);
    assert_eq!(decision, "failed");
    assert!(
        detail.contains("fuel limit of 2000000 exhausted"),
        "{detail}"
    );
    let pid = t.worker_pid("tau-guard", "default").await?;
    let o = dispatch(&t, named("flood")).await?;
    let (decision, detail) = only(&o);
    assert_eq!(decision, "failed");
    assert!(detail.contains("256000"), "{detail}");
    // The worker survived both and keeps answering.
    assert_eq!(only(&dispatch(&t, named("run-start")).await?).0, "ok");
    assert_eq!(t.worker_pid("tau-guard", "default").await?, pid);
    drop(t);

    // A tighter policy wins over the manifest; a looser one does not raise it.
    let t = Tarkd::start(
        vec![PluginFiles::tau_guard()?],
        Options::config("[limits]\nfuel = 500000\nmax_response_kib = 4096\n"),
    )?;
    let (_, detail) = only(&dispatch(&t, named("spin")).await?);
    assert!(
        detail.contains("fuel limit of 500000 exhausted"),
        "{detail}"
    );
    let (_, detail) = only(&dispatch(&t, named("flood")).await?);
    assert!(detail.contains("256000"), "{detail}");
    Ok(())
}

/// tau-guard's folder as tau's guide lays an extension out: `extension.json`
/// beside the module, no `plugin.toml`. `over` replaces fields of the manifest.
fn extension_folder(root: &std::path::Path, over: serde_json::Value) -> anyhow::Result<String> {
    let dir = root.join("tau-guard");
    std::fs::create_dir_all(&dir)?;
    let mut manifest = serde_json::json!({
        "schema_version": 1,
        "id": "tau-guard",
        "version": "0.1.0",
        "runtime": "wasm",
        "entrypoint": "hook.wasm",
        "hooks": ["run-start", "run-end", "pre-tool-call", "post-tool-call",
                  "message-transform", "policy-override"],
        "permissions": ["run-commands"],
        "timeout_ms": 2000,
        "wasm": {
            "fuel_limit": 2000000,
            "memory_limit_bytes": 33554432,
            "max_response_bytes": 256000,
            "filesystem_mode": "deny",
            "network_mode": "deny"
        }
    });
    if let (Some(m), Some(over)) = (manifest.as_object_mut(), over.as_object()) {
        m.extend(over.clone());
    }
    std::fs::write(
        dir.join("extension.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let wasm = tark_tests::fixtures::repo_root().join("examples/plugins/tau-guard/plugin.wasm");
    std::fs::copy(wasm, dir.join("hook.wasm"))?;
    Ok(dir.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_json_folder_installs_lists_and_answers_its_hooks() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = extension_folder(src.path(), serde_json::json!({}))?;
    let added = t.ctl_ok(&["plugin", "add", &dir, "--yes"])?;
    assert!(added.contains("installed tau-guard 0.1.0"), "{added}");
    let listed = t.ctl_ok(&["plugin", "list"])?;
    assert!(listed.contains("tau-guard"), "{listed}");

    let o = dispatch(&t, before("shell", r#"{"cmd":"rm -rf /"}"#)).await?;
    assert!(o.blocked, "{o:?}");
    let o = dispatch(&t, before("deploy", r#"{"env":"prod"}"#)).await?;
    let args: serde_json::Value = serde_json::from_str(&o.arguments_json)?;
    assert_eq!(args["checked_by"], "tau-guard@0.1.0 (pre-tool-call v1)");
    assert_eq!(only(&dispatch(&t, named("run-start")).await?).0, "ok");
    // tau-guard's test events ("spin", "flood") are no tau hooks: an
    // extension.json cannot subscribe to them, so they do not reach it.
    assert!(dispatch(&t, named("spin")).await?.results.is_empty());

    let info = t.plugin_info("tau-guard").await?;
    assert_eq!(info.wit, "tark core module (hook, tau extension)");
    assert_eq!(info.diagnostics, Vec::<String>::new());
    assert_eq!(info.activation[0], "onHook:run-start");
    assert_eq!(info.activation.len(), 6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_extension_json_is_refused_by_name() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    for (over, problem) in [
        (
            serde_json::json!({"entrypoint": "../hook.wasm"}),
            "must not contain parent traversals",
        ),
        (
            serde_json::json!({"wasm": {"fuel_limit": 0}}),
            "tau.wasm.fuel_limit must be positive",
        ),
        (
            serde_json::json!({"hooks": ["on-start"]}),
            "unsupported extension hooks entry",
        ),
        (
            serde_json::json!({"entrypoint": "missing.wasm"}),
            "missing.wasm not found",
        ),
    ] {
        let src = tempfile::tempdir()?;
        let dir = extension_folder(src.path(), over.clone())?;
        let refused = t.ctl(&["plugin", "add", &dir, "--yes"])?;
        let message = refused.err().unwrap_or_default();
        assert!(
            message.contains("tau-guard") && message.contains(problem),
            "{over}: {message:?}"
        );
        assert!(
            t.plugin_info("tau-guard").await.is_err(),
            "{over}: installed"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_validate_checks_either_manifest_and_installs_nothing() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = extension_folder(
        src.path(),
        serde_json::json!({"permissions": ["run-commands", "network"]}),
    )?;
    let file = format!("{dir}/extension.json");
    for source in [&dir, &file] {
        let shown = t.ctl_ok(&["plugin", "validate", source])?;
        assert!(shown.contains(": valid"), "{shown}");
        assert!(shown.contains("tau-guard 0.1.0 (hook)"), "{shown}");
        assert!(shown.contains("onHook:pre-tool-call"), "{shown}");
        assert!(
            shown.contains("permission \"network\" grants nothing by itself"),
            "{shown}"
        );
    }
    let toml = tark_tests::fixtures::repo_root().join("examples/plugins/tau-guard/plugin.toml");
    let shown = t.ctl_ok(&["plugin", "validate", &toml.display().to_string()])?;
    assert!(shown.contains("tau-guard 0.1.0 (hook)"), "{shown}");

    let bad = tempfile::tempdir()?;
    let bad = extension_folder(bad.path(), serde_json::json!({"schema_version": 2}))?;
    let refused = t.ctl(&["plugin", "validate", &bad])?;
    let message = refused.err().unwrap_or_default();
    assert!(
        message.contains("unsupported extension manifest schema"),
        "{message}"
    );
    assert!(
        t.plugin_info("tau-guard").await.is_err(),
        "validate installed it"
    );
    Ok(())
}

/// tau's exec: one extension's hook with a payload file, the other hook
/// plugins left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarkctl_hook_runs_one_plugins_hook_with_a_payload_file() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::tau_guard()?, PluginFiles::guard("guard-a")?],
        Options::default(),
    )?;
    let dir = tempfile::tempdir()?;
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, r#"{"run_id":"r1","prompt":"hello"}"#)?;
    let payload = payload.display().to_string();
    let all = t.ctl_ok(&["--json", "hook", "run-start", "--payload-file", &payload])?;
    let all: serde_json::Value = serde_json::from_str(&all)?;
    assert_eq!(all["results"].as_array().map(Vec::len), Some(2), "{all}");

    let one = t.ctl_ok(&[
        "--json",
        "hook",
        "run-start",
        "--plugin",
        "tau-guard",
        "--payload-file",
        &payload,
    ])?;
    let one: serde_json::Value = serde_json::from_str(&one)?;
    let results = one["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 1, "{one}");
    assert_eq!(results[0]["plugin"], "tau-guard");
    assert_eq!(results[0]["decision"], "ok");

    let none = t.ctl(&["hook", "run-start", "--plugin", "no-such-hook"])?;
    let message = none.err().unwrap_or_default();
    assert!(
        message.contains("no hook plugin \"no-such-hook\""),
        "{message}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json")?;
    let refused = t.ctl(&[
        "hook",
        "run-start",
        "--payload-file",
        &bad.display().to_string(),
    ])?;
    assert!(refused.err().unwrap_or_default().contains("not valid JSON"));
    Ok(())
}

/// An extension receives the hooks its extension.json declares, as tau runs
/// them, and no others; a plugin.toml hook plugin declares none and gets all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_receives_only_the_hooks_it_declares() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::guard("guard-a")?], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = extension_folder(src.path(), serde_json::json!({"hooks": ["run-start"]}))?;
    t.ctl_ok(&["plugin", "add", &dir, "--yes"])?;
    let ran = |o: &pb::HookOutcome| -> Vec<String> {
        o.results.iter().map(|r| r.plugin.clone()).collect()
    };
    let o = dispatch(&t, named("run-start")).await?;
    assert_eq!(ran(&o), ["guard-a", "tau-guard"]);
    for other in ["run-end", "policy-override", "session-start"] {
        assert_eq!(
            ran(&dispatch(&t, named(other)).await?),
            ["guard-a"],
            "{other}"
        );
    }
    // Not subscribed to pre-tool-call: it does not see the tool call, so it
    // does not make this deploy a dry run as it otherwise does.
    let o = dispatch(&t, before("deploy", r#"{"env":"prod"}"#)).await?;
    assert_eq!(ran(&o), ["guard-a"]);
    let args: serde_json::Value = serde_json::from_str(&o.arguments_json)?;
    assert_eq!(args, serde_json::json!({"env": "prod"}), "{o:?}");
    let refused = t.ctl(&["hook", "run-end", "--plugin", "tau-guard"])?;
    let message = refused.err().unwrap_or_default();
    assert!(
        message.contains("tau-guard does not declare hook \"run-end\""),
        "{message}"
    );
    Ok(())
}

/// A tau process extension as tau's guide shapes one (issue-assistant's
/// `runtime.sh`): tau's request on stdin, `{"ok":true,"result":…}` on stdout.
/// This one also blocks a tool call whose request mentions `rm -rf`, fails
/// when the request says `"fail"`, spins on `"spin"` and answers garbage on
/// `"garbage"`.
const RUNTIME_SH: &str = r#"#!/bin/sh
read -r request
case "$request" in
  *'"hook":"pre-tool-call"'*'rm -rf'*) printf '{"block":true,"reason":"issue-assistant: no rm -rf"}' ;;
  *'"fail"'*) echo "asked to fail" >&2; exit 3 ;;
  *'"spin"'*) while :; do :; done ;;
  *'"garbage"'*) printf 'not-json' ;;
  *'"manifest_id":"issue-assistant"'*) printf '{"ok":true,"result":"hook-processed"}' ;;
  *) printf '{"error":"no manifest_id in the request"}' ;;
esac
"#;

fn process_extension(root: &std::path::Path, timeout_ms: u64) -> anyhow::Result<String> {
    let dir = root.join("issue-assistant");
    std::fs::create_dir_all(&dir)?;
    let manifest = serde_json::json!({
        "schema_version": 1,
        "id": "issue-assistant",
        "version": "0.1.0",
        "runtime": "process",
        "entrypoint": "runtime.sh",
        "hooks": ["run-start", "pre-tool-call"],
        "permissions": ["run-commands"],
        "timeout_ms": timeout_ms
    });
    std::fs::write(
        dir.join("extension.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    std::fs::write(dir.join("runtime.sh"), RUNTIME_SH)?;
    std::fs::write(
        dir.join("payload.json"),
        r#"{"run_id":"r1","prompt":"triage"}"#,
    )?;
    Ok(dir.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_extension_runs_its_hooks_in_the_jail() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = process_extension(src.path(), 1500)?;
    // run-commands is the shell capability, which needs the operator's approval.
    let plan = t.tarkctl(&["plugin", "add", &dir])?;
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(!plan.status.success(), "{shown}");
    assert!(
        shown.contains("shell") && shown.contains("approval needed"),
        "{shown}"
    );
    t.ctl_ok(&["plugin", "add", &dir, "--yes"])?;

    // tau's exec: run-start with tau's payload file.
    let payload = format!("{dir}/payload.json");
    let ran = t.ctl_ok(&[
        "--json",
        "hook",
        "run-start",
        "--plugin",
        "issue-assistant",
        "--payload-file",
        &payload,
    ])?;
    let ran: serde_json::Value = serde_json::from_str(&ran)?;
    assert_eq!(ran["results"][0]["decision"], "ok", "{ran}");

    let o = dispatch(&t, before("shell", r#"{"cmd":"rm -rf /"}"#)).await?;
    assert!(o.blocked, "{o:?}");
    assert_eq!(
        o.block_reason,
        "blocked by hook issue-assistant: issue-assistant: no rm -rf"
    );
    assert_eq!(
        only(&dispatch(&t, before("shell", r#"{"cmd":"ls"}"#)).await?).0,
        "proceed"
    );

    let failing = |o: &pb::HookOutcome| only(o);
    let named_with = |payload: &str| pb::HookEvent {
        event: Some(pb::hook_event::Event::Named(pb::NamedEvent {
            name: "run-start".into(),
            payload_json: payload.into(),
        })),
        ..Default::default()
    };
    let (decision, detail) = failing(&dispatch(&t, named_with(r#"{"x":"fail"}"#)).await?);
    assert_eq!(decision, "failed");
    assert!(
        detail.contains("exited with exit status: 3") && detail.contains("asked to fail"),
        "{detail}"
    );
    let (_, detail) = failing(&dispatch(&t, named_with(r#"{"x":"garbage"}"#)).await?);
    assert!(detail.contains("malformed JSON"), "{detail}");
    let (_, detail) = failing(&dispatch(&t, named_with(r#"{"x":"spin"}"#)).await?);
    assert!(detail.contains("deadline of 1500 ms exceeded"), "{detail}");

    // Without the shell capability approved, no hook runs, and the refusal is audited.
    t.ctl_ok(&["plugin", "grants", "issue-assistant", "--revoke", "shell"])?;
    let (decision, detail) = only(&dispatch(&t, named("run-start")).await?);
    assert_eq!(decision, "failed");
    assert!(detail.contains("hook run-start runs a process"), "{detail}");
    let audit = t.ctl_ok(&["audit", "--plugin", "issue-assistant"])?;
    assert!(audit.contains("shell"), "{audit}");
    Ok(())
}

/// What a process extension can reach from its jail: it cannot write its own
/// folder or /tmp, and sees none of the host's home folders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_extension_writes_nothing_and_sees_little() -> anyhow::Result<()> {
    const PROBE_SH: &str = r#"#!/bin/sh
read -r request
own=no; (echo x > ./written) 2>/dev/null && own=yes
tmp=no; (echo x > /tmp/written-by-extension) 2>/dev/null && tmp=yes
root=no; ls /root >/dev/null 2>&1 && root=yes
printf '{"block":true,"reason":"own=%s tmp=%s root=%s"}' "$own" "$tmp" "$root"
"#;
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = process_extension(src.path(), 5000)?;
    std::fs::write(format!("{dir}/runtime.sh"), PROBE_SH)?;
    t.ctl_ok(&["plugin", "add", &dir, "--yes"])?;
    let o = dispatch(&t, before("shell", "{}")).await?;
    assert_eq!(
        o.block_reason, "blocked by hook issue-assistant: own=no tmp=no root=no",
        "{o:?}"
    );
    Ok(())
}

/// tau runs no hook of an extension that does not declare `run-commands`;
/// neither does tarkd, and it says so in tau's words (and audits it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_extension_without_run_commands_runs_nothing() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = process_extension(src.path(), 1500)?;
    let manifest = format!("{dir}/extension.json");
    let text = std::fs::read_to_string(&manifest)?.replace("\"run-commands\"", "");
    std::fs::write(&manifest, text)?;
    let shown = t.ctl_ok(&["plugin", "validate", &dir])?;
    assert!(shown.contains("runs none of its hooks"), "{shown}");
    // It asks for nothing: no shell capability to approve.
    let added = t.ctl_ok(&["plugin", "add", &dir, "--yes"])?;
    assert!(!added.contains("shell"), "{added}");
    let (decision, detail) = only(&dispatch(&t, named("run-start")).await?);
    assert_eq!(decision, "failed");
    assert!(
        detail.contains("hook 'run-start' requires permission 'run-commands'"),
        "{detail}"
    );
    let audit = t.ctl_ok(&["audit", "--plugin", "issue-assistant"])?;
    assert!(audit.contains("run-commands"), "{audit}");
    Ok(())
}

/// tau's rule holds for wasm extensions too: without `run-commands` tau runs
/// none of an extension's hooks, and tarkd refuses each in tau's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_extension_without_run_commands_runs_no_hook() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = extension_folder(src.path(), serde_json::json!({"permissions": []}))?;
    let shown = t.ctl_ok(&["plugin", "validate", &dir])?;
    assert!(shown.contains("runs none of its hooks"), "{shown}");
    t.ctl_ok(&["plugin", "add", &dir, "--yes"])?;
    let o = dispatch(&t, before("shell", r#"{"cmd":"rm -rf /"}"#)).await?;
    assert!(!o.blocked, "{o:?}");
    let (decision, detail) = only(&o);
    assert_eq!(decision, "failed");
    assert!(
        detail.contains("hook 'pre-tool-call' requires permission 'run-commands'"),
        "{detail}"
    );
    let audit = t.ctl_ok(&["audit", "--plugin", "tau-guard"])?;
    assert!(audit.contains("run-commands"), "{audit}");
    Ok(())
}
