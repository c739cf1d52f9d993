//! Components built against tark's own published, unversioned WIT run beside
//! those built against tarkd's `tark:plugin@0.1.x`, through real processes.

use tark_proto::plugin::v1 as pb;
use tark_tests::{Failed, Options, PluginFiles, Tarkd, call};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tark_wit_plugins_run_beside_tarkd_wit_plugins() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::example("wordcount", "wordcount")?,
            PluginFiles::example("tark-wit-provider", "tark-wit-provider")?,
            PluginFiles::notes()?,
        ],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;

    // A tool: tark's result record becomes the agent's output or error.
    let out = call(&mut tools, "wordcount", r#"{"text":"one two\nthree"}"#).await;
    assert_eq!(out, Ok(r#"{"chars":13,"lines":2,"words":3}"#.to_owned()));
    let r = tools
        .invoke_tool(tark_tests::invoke("wordcount", r#"{"txt":1}"#))
        .await?
        .into_inner();
    assert_eq!(
        r.result,
        Some(pb::invoke_tool_response::Result::Error(
            r#"wordcount: "text" (a string) is required"#.into()
        ))
    );
    call(&mut tools, "notes_save", r#"{"title":"t","body":"b"}"#)
        .await
        .map_err(anyhow::Error::msg)?;

    // plugin info tells which contract each component was built against.
    let info = t.plugin_info("wordcount").await?;
    assert_eq!(info.wit, "tark:plugin/tool-plugin");
    assert_eq!(info.accepted_wit.len(), 2, "{:?}", info.accepted_wit);
    assert!(
        t.plugin_info("notes")
            .await?
            .wit
            .starts_with("tark:plugin/tool-plugin@0.1.")
    );

    // A provider: roles go in as tark's enum; `not-required` comes back.
    let mut p = t.providers().await?;
    let chat = |role: &str, text: &str| pb::ChatRequest {
        plugin: "tark-wit-provider".into(),
        model: "last-message".into(),
        messages: vec![pb::ChatMessage {
            role: role.into(),
            content: text.into(),
        }],
    };
    let r = p.chat(chat("assistant", "hi")).await?.into_inner();
    assert_eq!(r.text, "assistant: hi");
    let mut stream = p.chat_stream(chat("user", "streamed")).await?.into_inner();
    let chunk = stream.message().await?.unwrap_or_default();
    assert_eq!((chunk.text.as_str(), chunk.done), ("user: streamed", true));
    assert!(stream.message().await?.is_none());
    let err = p.chat(chat("developer", "x")).await.failed();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"role "developer" is not one tark's plugin contract knows"#),
        "{err:?}"
    );
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let s = a
        .get_auth_status(pb::PluginRef {
            id: "tark-wit-provider".into(),
        })
        .await?
        .into_inner();
    assert_eq!(s.status(), pb::AuthStatus::NotRequired);
    Ok(())
}

/// A channel against tark's published WIT, written with the SDK and built as
/// a WASI component (examples/plugins/published-channel): started, sent to and
/// polled through tarkctl; its `println!` lands in the plugin's log.
#[test]
fn a_published_channel_with_wasi_runs() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::example(
            "published-channel",
            "published-channel",
        )?],
        Options::config("[channels]\npoll_interval_ms = 20\n"),
    )?;
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = t.tarkctl(args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::ensure!(out.status.success(), "tarkctl {args:?}: {text}");
        Ok(text)
    };
    run(&["channel", "published-channel", "start"])?;
    let sent = run(&["channel", "published-channel", "send", "--to", "c1", "hi"])?;
    assert!(sent.starts_with("sent ("), "{sent}");
    t.wait_for_log("sending to c1: hi", std::time::Duration::from_secs(10))?;
    let mut polled = String::new();
    let started = std::time::Instant::now();
    while !polled.contains("echo: hi") {
        anyhow::ensure!(started.elapsed().as_secs() < 20, "nothing polled: {polled}");
        polled.push_str(&run(&["channel", "published-channel", "poll"])?);
    }
    Ok(())
}
