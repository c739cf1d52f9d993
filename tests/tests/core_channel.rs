//! A channel in tark's core-module ABI, built for wasm32-wasip1 as tark's
//! published channel is, through real tarkd and worker processes: its
//! WebSocket to a real server on loopback is brokered (`tark:ws`), what it
//! prints reaches tarkd's log (WASI `fd_write`), its environment through WASI
//! is empty, and what the server sends arrives as inbound messages.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::servers::WsServer;
use tark_tests::{Options, PluginFiles, Tarkd, eventually_async};

const PATIENCE: Duration = Duration::from_secs(20);

fn plugin() -> pb::PluginRef {
    pb::PluginRef {
        id: "ws-channel".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasip1_channel_talks_over_a_brokered_websocket() -> anyhow::Result<()> {
    let server = WsServer::start()?;
    let t = Tarkd::start(
        vec![PluginFiles::ws_channel(server.port)?],
        Options {
            config: "[channels]\npoll_interval_ms = 20\n".into(),
            env: vec![(
                "WS_CHANNEL_URL".into(),
                format!("ws://127.0.0.1:{}/", server.port),
            )],
            ..Options::default()
        },
    )?;
    let mut c = pb::channels_client::ChannelsClient::new(t.channel().await?);

    let list = c
        .list_channels(pb::ListChannelsRequest {})
        .await?
        .into_inner();
    let info = list
        .channels
        .iter()
        .find(|i| i.plugin == "ws-channel")
        .cloned()
        .unwrap_or_default();
    assert_eq!(info.display_name, "WebSocket chat");
    assert!(info.supports_polling && !info.supports_webhook);
    assert_eq!(
        info.description, "environment variables visible through WASI: 1",
        "WASI shows the one variable the plugin is granted (WS_CHANNEL_URL), none other of tarkd's"
    );

    let started = c
        .start_channel(pb::StartChannelRequest {
            plugin: "ws-channel".into(),
            config_json: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(started.message, "channel ws-channel started");
    t.wait_for_log("ws-channel: connected to ws://127.0.0.1:", PATIENCE)?;
    assert_eq!(server.open(), 1, "one brokered connection");

    let sent = c
        .send_message(pb::SendMessageRequest {
            plugin: "ws-channel".into(),
            conversation: "room-7".into(),
            text: "hello over ws".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(sent.message_id.starts_with("ws-"), "{sent:?}");

    // The echo server sends it back; tarkd's poll of the channel brings it in.
    let inbound = eventually_async(PATIENCE, || {
        let mut c = c.clone();
        async move {
            let r = c.poll_channel(plugin()).await.ok()?.into_inner();
            r.messages.into_iter().find(|m| m.text == "hello over ws")
        }
    })
    .await;
    let inbound = inbound.unwrap_or_default();
    assert_eq!(
        (inbound.conversation.as_str(), inbound.sender.as_str()),
        ("room-7", "ws-server")
    );

    c.stop_channel(plugin()).await?;
    assert!(
        eventually_async(PATIENCE, || async { (server.open() == 0).then_some(()) })
            .await
            .is_some(),
        "stopping closes the connection"
    );
    let info = t.plugin_info("ws-channel").await?;
    assert_eq!(info.wit, "tark core module (channel, wasm32-wasip1)");
    Ok(())
}
