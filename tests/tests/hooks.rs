//! Hook plugins through real tarkd and worker processes: order, the combination
//! rule, fail open and fail closed, and hooks that fail, hang or crash.

use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd};
use tonic::transport::Channel;

type Hooks = pb::hooks_client::HooksClient<Channel>;

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
            payload_json: "{}".into(),
        })),
        ..Default::default()
    }
}

fn decisions(o: &pb::HookOutcome) -> Vec<(&str, &str)> {
    o.results
        .iter()
        .map(|r| (r.plugin.as_str(), r.decision.as_str()))
        .collect()
}

async fn dispatch(h: &mut Hooks, e: pb::HookEvent) -> anyhow::Result<pb::HookOutcome> {
    Ok(h.dispatch_hook(e).await?.into_inner())
}

fn two_guards(config: &str) -> anyhow::Result<Tarkd> {
    Tarkd::start(
        vec![
            PluginFiles::guard("guard-b")?,
            PluginFiles::guard("guard-a")?,
            PluginFiles::notes()?,
        ],
        Options::config(config),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_in_name_order_and_combine_by_the_rule() -> anyhow::Result<()> {
    let t = two_guards("")?;
    let mut h = pb::hooks_client::HooksClient::new(t.channel().await?);

    let o = dispatch(&mut h, before("shell", r#"{"cmd":"ls"}"#)).await?;
    assert_eq!(
        decisions(&o),
        [("guard-a", "proceed"), ("guard-b", "proceed")]
    );
    assert!(!o.blocked);
    assert_eq!(o.arguments_json, r#"{"cmd":"ls"}"#);

    // Modifications chain: guard-b sees what guard-a left.
    let o = dispatch(&mut h, before("tag", r#"{"x":1}"#)).await?;
    assert_eq!(
        decisions(&o),
        [("guard-a", "modify"), ("guard-b", "modify")]
    );
    let args: serde_json::Value = serde_json::from_str(&o.arguments_json)?;
    assert_eq!(args, serde_json::json!({ "x": 1, "hooks": [1, 2] }));

    // The first block wins and the rest are skipped.
    let o = dispatch(&mut h, before("shell", r#"{"cmd":"rm -rf /"}"#)).await?;
    assert_eq!(
        decisions(&o),
        [("guard-a", "block"), ("guard-b", "skipped")]
    );
    assert!(o.blocked);
    assert_eq!(
        o.block_reason,
        "blocked by hook guard-a: guard: refusing a destructive shell command"
    );

    // Other events reach every hook; a hook's error fails open by default.
    let o = dispatch(&mut h, named("session-start")).await?;
    assert_eq!(decisions(&o), [("guard-a", "ok"), ("guard-b", "ok")]);
    let o = dispatch(&mut h, named("test-fail")).await?;
    assert_eq!(
        decisions(&o),
        [("guard-a", "failed"), ("guard-b", "failed")]
    );
    assert!(!o.blocked);
    assert_eq!(
        o.errors,
        [
            "plugin guard-a: failing on purpose",
            "plugin guard-b: failing on purpose"
        ]
    );

    let err = h
        .dispatch_hook(before("shell", "not json"))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(err, Some(tonic::Code::InvalidArgument));

    // tarkctl shows each hook's decision.
    let out = t.tarkctl(&[
        "hook",
        "before-tool",
        "--payload",
        r#"{"tool":"shell","arguments":{"cmd":"rm -rf ~"}}"#,
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("guard-a  block") && text.contains("guard-b  skipped"),
        "{text}"
    );
    assert!(text.contains("blocked: blocked by hook guard-a"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hanging_and_crashing_hooks_cost_at_most_their_deadline() -> anyhow::Result<()> {
    let t = two_guards("[hooks]\ndeadline_ms = 1000\nfail_closed = [\"guard-b\"]\n")?;
    let mut h = pb::hooks_client::HooksClient::new(t.channel().await?);
    // The hook deadline also bounds a worker's cold start, which a loaded
    // machine can stretch past it: start both workers first.
    dispatch(&mut h, before("shell", r#"{"cmd":"ls"}"#)).await?;

    // guard-b fails closed: its failure blocks.
    let o = dispatch(&mut h, named("test-fail")).await?;
    assert!(o.blocked);
    assert_eq!(
        o.block_reason,
        "hook guard-b failed and fails closed: plugin guard-b: failing on purpose"
    );

    // Hooks that never answer: the event returns after the hook deadline (both
    // run at once), not after the plugins' 5 s call deadline.
    let started = Instant::now();
    let o = dispatch(&mut h, named("test-spin")).await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        decisions(&o),
        [("guard-a", "failed"), ("guard-b", "failed")]
    );
    assert_eq!(o.errors[0], "plugin guard-a: no answer within 1000 ms");

    // Hooks that crash.
    let o = dispatch(&mut h, named("test-trap")).await?;
    assert_eq!(
        decisions(&o),
        [("guard-a", "failed"), ("guard-b", "failed")]
    );
    assert!(o.errors[0].contains("unreachable"), "{:?}", o.errors);

    // Every hook still answers the next event.
    let o = dispatch(&mut h, before("tag", "{}")).await?;
    assert_eq!(
        decisions(&o),
        [("guard-a", "modify"), ("guard-b", "modify")]
    );
    assert!(!o.blocked);
    Ok(())
}
