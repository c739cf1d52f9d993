//! Provider plugins through real tarkd and worker processes: info, models, chat
//! and streamed chat, with the echo example provider (which needs no upstream).

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Failed, Options, PluginFiles, Tarkd};
use tonic::Code;
use tonic::transport::Channel;

type Providers = pb::providers_client::ProvidersClient<Channel>;

fn chat(model: &str, text: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        plugin: "echo".into(),
        model: model.into(),
        messages: vec![
            pb::ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            pb::ChatMessage {
                role: "user".into(),
                content: text.into(),
            },
        ],
    }
}

/// Reads a whole stream: its chunks, and how it ended.
async fn drain(
    p: &mut Providers,
    req: tonic::Request<pb::ChatRequest>,
) -> anyhow::Result<(Vec<pb::ChatChunk>, Result<(), tonic::Status>)> {
    let mut stream = p.chat_stream(req).await?.into_inner();
    let mut chunks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(c)) => chunks.push(c),
            Ok(None) => return Ok((chunks, Ok(()))),
            Err(s) => return Ok((chunks, Err(s))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_models_chat_and_a_streamed_chat() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::echo()?, PluginFiles::notes()?],
        Options::default(),
    )?;
    let mut p = t.providers().await?;

    let list = t.list_providers().await?;
    assert_eq!(list.errors, Vec::<String>::new());
    let ids: Vec<_> = list
        .providers
        .iter()
        .map(|p| (p.plugin.as_str(), p.id.as_str()))
        .collect();
    assert_eq!(ids, [("echo", "echo")], "only provider plugins are listed");

    let models = p
        .list_models(pb::PluginRef { id: "echo".into() })
        .await?
        .into_inner();
    assert!(
        models
            .models
            .iter()
            .any(|m| m.id == "echo" && m.supports_streaming)
    );

    let reply = p.chat(chat("echo", "hello there")).await?.into_inner();
    assert_eq!(reply.text, "echo: hello there");
    assert_eq!(reply.finish_reason, "stop");
    let usage = reply.usage.unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 3));

    let (chunks, end) = drain(&mut p, tonic::Request::new(chat("echo", "one two three"))).await?;
    assert!(end.is_ok(), "{end:?}");
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, "echo: one two three");
    assert_eq!(chunks.len(), 4, "a chunk per word");
    assert!(chunks.iter().rev().skip(1).all(|c| !c.done));
    let last = chunks.last().cloned().unwrap_or_default();
    assert!(last.done && last.usage.is_some());

    // The plugin's own error, a plugin of another type, and no plugin at all.
    let err = p.chat(chat("nope", "x")).await.failed();
    assert_eq!(err.code(), Code::Unknown);
    assert!(
        err.message().starts_with("plugin echo: unknown model"),
        "{err:?}"
    );
    let err = p
        .list_models(pb::PluginRef { id: "notes".into() })
        .await
        .failed();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "plugin notes is a tool plugin, not a provider plugin"
    );
    let err = p
        .list_models(pb::PluginRef { id: "ghost".into() })
        .await
        .failed();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_interleave_with_other_calls_and_end_at_the_deadline() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::echo()?], Options::default())?;
    let mut p = t.providers().await?;

    // A stream that never ends, read slowly: other calls to the same plugin (and
    // the same worker) still run between its chunks.
    let mut forever = p.chat_stream(chat("forever", "go")).await?.into_inner();
    for _ in 0..3 {
        let c = forever.message().await?.unwrap_or_default();
        assert_eq!((c.text.as_str(), c.done), ("and on ", false));
    }
    let pid = t.worker_pid("echo", "default").await?;
    let reply = p.chat(chat("echo", "meanwhile")).await?.into_inner();
    assert_eq!(reply.text, "echo: meanwhile");
    let (chunks, end) = drain(&mut p, tonic::Request::new(chat("echo", "a b"))).await?;
    assert!(end.is_ok() && chunks.len() == 3, "{chunks:?} {end:?}");
    assert_eq!(
        t.worker_pid("echo", "default").await?,
        pid,
        "one worker served all"
    );
    // The agent goes away: the next calls are unaffected.
    drop(forever);
    let reply = p.chat(chat("echo", "after")).await?.into_inner();
    assert_eq!(reply.text, "echo: after");

    // The agent's deadline ends a stream that does not.
    let mut req = tonic::Request::new(chat("forever", "go"));
    req.set_timeout(Duration::from_millis(400));
    let (chunks, end) = drain(&mut p, req).await?;
    assert!(!chunks.is_empty());
    let err = end.err().unwrap_or_else(|| tonic::Status::ok("ended"));
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let reply = p.chat(chat("echo", "still here")).await?.into_inner();
    assert_eq!(reply.text, "echo: still here");
    Ok(())
}

/// tarkd keeps several polls of a stream in flight; the worker runs them in
/// their order. Two long streams read at once, one by a slow reader, each
/// arrive whole and in order, and neither is left open in the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_arrive_whole_and_in_order() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::echo()?], Options::default())?;
    let p = t.providers().await?;
    let words = |tag: &str, n: usize| (0..n).map(|i| format!("{tag}{i}")).collect::<Vec<_>>();
    let read = |tag: &'static str, n: usize, pause: Duration| {
        let mut p = p.clone();
        let sent = words(tag, n).join(" ");
        async move {
            let mut stream = p.chat_stream(chat("echo", &sent)).await?.into_inner();
            let mut text = String::new();
            while let Some(c) = stream.message().await? {
                text.push_str(&c.text);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            anyhow::Ok((sent, text))
        }
    };
    let (fast, slow) = tokio::join!(
        read("a", 400, Duration::ZERO),
        read("b", 60, Duration::from_millis(2))
    );
    for (sent, text) in [fast?, slow?] {
        assert_eq!(text, format!("echo: {sent}"));
    }
    let mut p = p.clone();
    let open = p.chat(chat("open-streams", "?")).await?.into_inner();
    assert_eq!(open.text, "0", "every stream ended in the plugin");
    Ok(())
}

/// A plugin with nothing yet (an empty chunk, not done) is polled one call at
/// a time after a pause; its words still arrive whole and in order, and the
/// empty chunks never reach the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_yet_is_waited_out_and_never_forwarded() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::echo()?], Options::default())?;
    let mut p = t.providers().await?;
    let sent = (0..20)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let (chunks, end) = drain(&mut p, tonic::Request::new(chat("dawdle", &sent))).await?;
    assert!(end.is_ok(), "{end:?}");
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, format!("echo: {sent}"));
    assert_eq!(chunks.len(), 21, "a chunk per word, no empty ones");
    assert!(chunks.iter().all(|c| !c.text.is_empty()));
    let open = p.chat(chat("open-streams", "?")).await?.into_inner();
    assert_eq!(open.text, "0", "the stream ended in the plugin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_streams_are_contained() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::echo()?],
        Options::config("[limits]\nmax_response_kib = 64\n"),
    )?;
    let mut p = t.providers().await?;

    // A chunk over the response cap ends the stream with the reason.
    let (chunks, end) = drain(&mut p, tonic::Request::new(chat("oversized", "x"))).await?;
    assert!(chunks.is_empty());
    let err = end.err().unwrap_or_else(|| tonic::Status::ok("ended"));
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().starts_with("plugin echo: response of"),
        "{err:?}"
    );

    // A plugin that crashes: the call fails, the next one works.
    let err = p.chat_stream(chat("trap", "x")).await.failed();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(
        p.chat(chat("echo", "ok")).await?.into_inner().text,
        "echo: ok"
    );

    // The worker is killed mid-stream: the stream ends UNAVAILABLE with the
    // reason, and the next chat gets a new worker.
    let mut forever = p.chat_stream(chat("forever", "go")).await?.into_inner();
    assert!(forever.message().await?.is_some());
    let pid = t.worker_pid("echo", "default").await?.unwrap_or(0);
    assert!(pid > 0);
    // SAFETY: kill(2) on the worker this test's tarkd started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let err = loop {
        match forever.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break tonic::Status::ok("ended"),
            Err(s) => break s,
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("killed by signal 9"), "{err:?}");
    assert_eq!(
        p.chat(chat("echo", "again")).await?.into_inner().text,
        "echo: again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_compatible_example_talks_to_a_local_endpoint() -> anyhow::Result<()> {
    let server = tark_tests::servers::OpenAiServer::start("test-key")?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let t = Tarkd::start(
        vec![PluginFiles::example_edited(
            "openai-compat",
            "openai-compat",
            "http://127.0.0.1:11434",
            &base,
        )?],
        Options {
            env: vec![
                ("OPENAI_COMPAT_URL".into(), format!("{base}/v1")),
                ("OPENAI_COMPAT_API_KEY".into(), "test-key".into()),
            ],
            ..Options::default()
        },
    )?;
    let mut p = t.providers().await?;
    let models = p
        .list_models(pb::PluginRef {
            id: "openai-compat".into(),
        })
        .await?
        .into_inner();
    let ids: Vec<_> = models.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["tiny"]);
    let req = |text: &str| pb::ChatRequest {
        plugin: "openai-compat".into(),
        model: "tiny".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: text.into(),
        }],
    };
    let r = p.chat(req("hello")).await?.into_inner();
    assert_eq!(
        (r.text.as_str(), r.finish_reason.as_str()),
        ("you said: hello", "stop")
    );
    let (chunks, end) = drain(&mut p, tonic::Request::new(req("a b"))).await?;
    assert!(end.is_ok(), "{end:?}");
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, "you said: a b");
    let last = chunks.last().cloned().unwrap_or_default();
    assert!(last.done);
    assert_eq!(last.usage.map(|u| u.output_tokens), Some(4));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_streams_are_cancelled_in_the_plugin_and_the_rest_live_on() -> anyhow::Result<()>
{
    let t = Tarkd::start(vec![PluginFiles::echo()?], Options::default())?;
    let mut p = t.providers().await?;
    let open = |p: &Providers| {
        let mut p = p.clone();
        async move {
            let r = p.chat(chat("open-streams", "?")).await.ok()?.into_inner();
            Some(r.text)
        }
    };
    let mut a = p.chat_stream(chat("forever", "a")).await?.into_inner();
    let mut b = p.chat_stream(chat("forever", "b")).await?.into_inner();
    assert!(a.message().await?.is_some() && b.message().await?.is_some());
    assert_eq!(open(&p).await.as_deref(), Some("2"));
    let pid = t.worker_pid("echo", "default").await?;

    // The agent drops one stream: the plugin is told, and only that one goes.
    drop(a);
    let one = tark_tests::eventually_async(Duration::from_secs(20), || async {
        (open(&p).await.as_deref() == Some("1")).then_some(())
    })
    .await;
    assert!(one.is_some(), "the dropped stream was not cancelled");
    let c = b.message().await?.unwrap_or_default();
    assert_eq!(c.text, "and on ", "the other stream lives on");

    // A stream whose deadline passes is cancelled the same way.
    let mut req = tonic::Request::new(chat("forever", "c"));
    req.set_timeout(Duration::from_millis(300));
    let (_, end) = drain(&mut p, req).await?;
    assert_eq!(end.err().map(|s| s.code()), Some(Code::DeadlineExceeded));
    let back = tark_tests::eventually_async(Duration::from_secs(20), || async {
        (open(&p).await.as_deref() == Some("1")).then_some(())
    })
    .await;
    assert!(back.is_some(), "the expired stream was not cancelled");
    assert_eq!(
        t.worker_pid("echo", "default").await?,
        pid,
        "same worker, same instance"
    );
    drop(b);
    Ok(())
}
