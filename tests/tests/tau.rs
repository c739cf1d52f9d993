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
    }
}

fn named(name: &str) -> pb::HookEvent {
    pb::HookEvent {
        event: Some(pb::hook_event::Event::Named(pb::NamedEvent {
            name: name.into(),
            payload_json: r#"{"run_id":"r1"}"#.into(),
        })),
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
