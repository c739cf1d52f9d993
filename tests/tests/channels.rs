//! Channel plugins through real tarkd and worker processes: lifecycle held by
//! tarkd across worker restarts, webhooks, polling, subscriptions and sending,
//! and a channel whose poll crashes.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Failed, Options, PluginFiles, Tarkd, eventually_async};
use tonic::Code;
use tonic::transport::Channel;

type Channels = pb::channels_client::ChannelsClient<Channel>;

const PATIENCE: Duration = Duration::from_secs(20);

fn plugin() -> pb::PluginRef {
    pb::PluginRef {
        id: "echo-channel".into(),
    }
}

fn send(to: &str, text: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        plugin: "echo-channel".into(),
        conversation: to.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn webhook(body: serde_json::Value) -> pb::WebhookRequest {
    pb::WebhookRequest {
        plugin: "echo-channel".into(),
        method: "POST".into(),
        path: "/message".into(),
        body: body.to_string(),
        ..Default::default()
    }
}

/// Polls until a message with `text` has waited for PollChannel.
async fn polled(c: &Channels, text: &str) -> Option<pb::InboundMessage> {
    eventually_async(PATIENCE, || {
        let mut c = c.clone();
        async move {
            let r = c.poll_channel(plugin()).await.ok()?.into_inner();
            r.messages.into_iter().find(|m| m.text == text)
        }
    })
    .await
}

fn start() -> anyhow::Result<Tarkd> {
    Tarkd::start(
        vec![PluginFiles::echo_channel()?, PluginFiles::echo()?],
        Options::config("[channels]\npoll_interval_ms = 20\n"),
    )
}

async fn start_channel(c: &mut Channels) -> anyhow::Result<()> {
    let req = pb::StartChannelRequest {
        plugin: "echo-channel".into(),
        config_json: r#"{"room":"general"}"#.into(),
    };
    let r = c.start_channel(req).await?.into_inner();
    assert_eq!(r.message, "channel echo-channel started");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_channel_delivers_and_stays_started_across_worker_restarts() -> anyhow::Result<()>
{
    let t = start()?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);

    let list = c
        .list_channels(pb::ListChannelsRequest {})
        .await?
        .into_inner();
    let shown: Vec<_> = list
        .channels
        .iter()
        .map(|c| (c.plugin.as_str(), c.started))
        .collect();
    assert_eq!(shown, [("echo-channel", false)]);
    assert_eq!(
        c.poll_channel(plugin()).await.failed().code(),
        Code::FailedPrecondition
    );
    let err = c.send_message(send("c1", "early")).await.failed();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "plugin echo-channel: channel not started")
    );

    start_channel(&mut c).await?;
    let list = c
        .list_channels(pb::ListChannelsRequest {})
        .await?
        .into_inner();
    assert!(list.channels[0].started);

    // A subscription gets messages as tarkd polls them: a reply to what the
    // agent sent, and a message posted to the channel's webhook.
    let mut sub = c.subscribe_channel(plugin()).await?.into_inner();
    let sent = c.send_message(send("c1", "hi")).await?.into_inner();
    assert!(!sent.message_id.is_empty());
    let m = tokio::time::timeout(PATIENCE, sub.message())
        .await??
        .unwrap_or_default();
    assert_eq!(
        (m.conversation.as_str(), m.sender.as_str(), m.text.as_str()),
        ("c1", "echo", "echo: hi")
    );
    let hook = c
        .handle_webhook(webhook(
            serde_json::json!({ "conversation": "c2", "sender": "alice", "text": "hello" }),
        ))
        .await?
        .into_inner();
    assert_eq!(hook.status, 200);
    let m = tokio::time::timeout(PATIENCE, sub.message())
        .await??
        .unwrap_or_default();
    assert_eq!((m.sender.as_str(), m.text.as_str()), ("alice", "hello"));
    let bad = c
        .handle_webhook(pb::WebhookRequest {
            path: "/nope".into(),
            ..webhook(serde_json::json!({}))
        })
        .await?;
    assert_eq!(bad.into_inner().status, 404);

    // With no subscriber, messages wait for PollChannel.
    drop(sub);
    c.handle_webhook(webhook(
        serde_json::json!({ "conversation": "c2", "sender": "bob", "text": "waiting" }),
    ))
    .await?;
    assert!(polled(&c, "waiting").await.is_some());

    // The worker is killed: tarkd starts the channel again on the new worker
    // (sending needs a started channel), with no help from the agent.
    let pid = t.worker_pid("echo-channel", "default").await?.unwrap_or(0);
    assert!(pid > 0);
    // SAFETY: kill(2) on the worker this test's tarkd started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let restarted = eventually_async(PATIENCE, || {
        let mut c = c.clone();
        async move { c.send_message(send("c3", "back")).await.ok() }
    })
    .await;
    assert!(restarted.is_some(), "the channel was not started again");
    assert!(polled(&c, "echo: back").await.is_some());
    assert_ne!(t.worker_pid("echo-channel", "default").await?, Some(pid));

    let r = c.stop_channel(plugin()).await?.into_inner();
    assert_eq!(r.message, "channel echo-channel stopped");
    assert_eq!(
        c.poll_channel(plugin()).await.failed().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        c.send_message(send("c1", "x")).await.failed().code(),
        Code::Unknown
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_poll_crashes_is_contained() -> anyhow::Result<()> {
    let t = start()?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    start_channel(&mut c).await?;
    // The next poll crashes the plugin's instance.
    c.handle_webhook(webhook(
        serde_json::json!({ "conversation": "x", "sender": "m", "text": "crash-poll" }),
    ))
    .await?;
    t.wait_for_log("unreachable", PATIENCE)?;
    // tarkd starts the channel again on a fresh instance and goes on polling.
    let back = eventually_async(PATIENCE, || {
        let mut c = c.clone();
        async move { c.send_message(send("c1", "after the crash")).await.ok() }
    })
    .await;
    assert!(back.is_some());
    assert!(polled(&c, "echo: after the crash").await.is_some());
    assert!(
        t.log()
            .iter()
            .any(|l| l.contains("channel poll") && l.contains("unreachable"))
    );
    // Other plugins never noticed.
    let mut p = t.providers().await?;
    let reply = p
        .chat(pb::ChatRequest {
            plugin: "echo".into(),
            model: "echo".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "fine?".into(),
            }],
        })
        .await?
        .into_inner();
    assert_eq!(reply.text, "echo: fine?");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_channel_is_started_again_after_tarkd_restarts() -> anyhow::Result<()> {
    let mut t = start()?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    start_channel(&mut c).await?;
    t.stop(libc::SIGTERM)?;
    t.launch()?;
    let c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    // Sending needs a started channel: tarkd started it again by itself.
    let sent = eventually_async(PATIENCE, || {
        let mut c = c.clone();
        async move { c.send_message(send("c1", "after restart")).await.ok() }
    })
    .await;
    assert!(sent.is_some(), "the channel was not started again");
    assert!(polled(&c, "echo: after restart").await.is_some());
    let list = c
        .clone()
        .list_channels(pb::ListChannelsRequest {})
        .await?
        .into_inner();
    assert!(list.channels[0].started);

    // Stopped, it stays stopped across the next restart.
    c.clone().stop_channel(plugin()).await?;
    t.stop(libc::SIGTERM)?;
    t.launch()?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    let list = c
        .list_channels(pb::ListChannelsRequest {})
        .await?
        .into_inner();
    assert!(!list.channels[0].started);
    Ok(())
}

/// Waits (up to PATIENCE) until the gateway has exactly `n` connections open.
async fn open_within(gateway: &tark_tests::servers::WsServer, n: usize) -> Option<()> {
    eventually_async(PATIENCE, || async { (gateway.open() == n).then_some(()) }).await
}

/// tarkd with echo-channel allowed to reach a loopback WebSocket gateway, and
/// the configuration that starts it on that gateway.
fn gateway_channel(
    gateway: &tark_tests::servers::WsServer,
    poll_interval_ms: u64,
) -> anyhow::Result<(Tarkd, String)> {
    let t = Tarkd::start(
        vec![PluginFiles::example_edited(
            "echo-channel",
            "echo-channel",
            "# No capabilities: it needs nothing from the host.",
            &format!(
                "[capabilities]\nhttp = [\"http://127.0.0.1:{}\"]",
                gateway.port
            ),
        )?],
        Options::config(&format!(
            "[channels]\npoll_interval_ms = {poll_interval_ms}\n"
        )),
    )?;
    let config = format!(r#"{{"gateway":"ws://127.0.0.1:{}"}}"#, gateway.port);
    Ok((t, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_reaches_its_gateway_through_the_ws_broker() -> anyhow::Result<()> {
    let gateway = tark_tests::servers::WsServer::start()?;
    let (t, config) = gateway_channel(&gateway, 20)?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    c.start_channel(pb::StartChannelRequest {
        plugin: "echo-channel".into(),
        config_json: config,
    })
    .await?;
    let open = open_within(&gateway, 1).await;
    assert!(open.is_some(), "the gateway connection is not open");
    // Sent to the gateway (an echo server), which sends it back as inbound.
    c.send_message(send("c1", "over the gateway")).await?;
    let m = polled(&c, "over the gateway").await.unwrap_or_default();
    assert_eq!(m.sender, "gateway");

    // A gateway the operator did not grant is refused, and the start fails.
    let err = c
        .start_channel(pb::StartChannelRequest {
            plugin: "echo-channel".into(),
            config_json: r#"{"gateway":"ws://127.0.0.1:1"}"#.into(),
        })
        .await
        .failed();
    assert_eq!(err.code(), Code::Unknown);
    assert!(err.message().contains("127.0.0.1"), "{err:?}");

    // Stopping closes it.
    c.stop_channel(plugin()).await?;
    let closed = open_within(&gateway, 0).await;
    assert!(
        closed.is_some(),
        "the gateway connection stayed open; tarkd's log:\n{}",
        t.log().join("\n")
    );
    Ok(())
}

/// A stop (or a start) that arrives while tarkd's poller is in the middle of a
/// poll waits for the poll to end instead of cutting it off: a poll cut off
/// costs the plugin its instance, and the instance held the gateway, which the
/// stop then could not close. Polls run back to back here (each waits 5 ms on
/// the gateway), so most stops land in one; with the poll cut off, one of the
/// rounds almost surely leaves the gateway open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_stopped_mid_poll_still_closes_its_gateway() -> anyhow::Result<()> {
    let gateway = tark_tests::servers::WsServer::start()?;
    let (t, config) = gateway_channel(&gateway, 10)?;
    let c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    for round in 0..12 {
        let start = pb::StartChannelRequest {
            plugin: "echo-channel".into(),
            config_json: config.clone(),
        };
        // Started twice: the second start replaces the first poller.
        c.clone().start_channel(start.clone()).await?;
        c.clone().start_channel(start).await?;
        let open = open_within(&gateway, 1).await;
        assert!(open.is_some(), "round {round}: open {}", gateway.open());
        // Some polls, then a stop that lands in one.
        tokio::time::sleep(Duration::from_millis(15 + 7 * round)).await;
        c.clone().stop_channel(plugin()).await?;
        let closed = open_within(&gateway, 0).await;
        assert!(
            closed.is_some(),
            "round {round}: the gateway connection stayed open after the stop; tarkd's log:\n{}",
            t.log().join("\n")
        );
    }
    Ok(())
}

/// An instance that traps cannot close the gateway it opened; the worker closes
/// it for the instance, so the channel, started again on a fresh instance,
/// holds one connection and not one more per crash (which would, in time, use
/// up the worker's WebSocket limit). echo-channel's poll panics when it reads
/// "crash-poll", here from the gateway, which echoes what was sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_held_by_a_crashed_instance_is_closed() -> anyhow::Result<()> {
    let gateway = tark_tests::servers::WsServer::start()?;
    let (t, config) = gateway_channel(&gateway, 20)?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);
    c.start_channel(pb::StartChannelRequest {
        plugin: "echo-channel".into(),
        config_json: config,
    })
    .await?;
    for crash in 1..=3 {
        let open = open_within(&gateway, 1).await;
        assert!(open.is_some(), "crash {crash}: open {}", gateway.open());
        c.send_message(send("c1", "crash-poll")).await?;
        // The poll crashed and the channel was started again: a new connection.
        let again = eventually_async(PATIENCE, || async {
            (gateway.accepted() > crash).then_some(())
        })
        .await;
        assert!(
            again.is_some(),
            "crash {crash}: the channel was not started again"
        );
    }
    let one = open_within(&gateway, 1).await;
    assert!(
        one.is_some(),
        "{} gateway connections open after 3 crashes; tarkd's log:\n{}",
        gateway.open(),
        t.log().join("\n")
    );
    c.stop_channel(plugin()).await?;
    let closed = open_within(&gateway, 0).await;
    assert!(closed.is_some(), "open {} after the stop", gateway.open());
    Ok(())
}
