//! `tarkctl channels` and `tarkctl channel <plugin> start|stop|poll|send|watch`.

use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

use crate::render::{print_json, print_table};
use crate::{request, status_error};

type Client = pb::channels_client::ChannelsClient<Channel>;

/// What `tarkctl channel` was asked to do.
#[derive(Debug)]
pub struct Action {
    pub verb: String,
    pub to: Option<String>,
    pub config: String,
    pub message: Option<String>,
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn message_json(m: &pb::InboundMessage) -> serde_json::Value {
    json!({ "id": m.id, "conversation": m.conversation, "sender": m.sender, "text": m.text,
            "timestamp_ms": m.timestamp_ms, "metadata_json": m.metadata_json })
}

fn print_message(m: &pb::InboundMessage, json: bool) {
    if json {
        print_json(&message_json(m));
    } else {
        println!("[{}] {}: {}", m.conversation, m.sender, m.text);
    }
}

pub async fn list(channel: Channel, tenant: &Option<String>, json: bool) -> anyhow::Result<()> {
    let r = Client::new(channel)
        .list_channels(request(pb::ListChannelsRequest {}, tenant)?)
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        let channels: Vec<_> = r
            .channels
            .iter()
            .map(|c| {
                json!({ "plugin": c.plugin, "id": c.id, "display_name": c.display_name, "started": c.started,
                        "supports_webhook": c.supports_webhook, "supports_polling": c.supports_polling,
                        "supports_gateway": c.supports_gateway })
            })
            .collect();
        print_json(&json!({ "channels": channels, "errors": r.errors }));
        return Ok(());
    }
    let rows = r
        .channels
        .iter()
        .map(|c| {
            vec![
                c.plugin.clone(),
                c.display_name.clone(),
                yes(c.started),
                yes(c.supports_webhook),
                yes(c.supports_polling),
                yes(c.supports_gateway),
            ]
        })
        .collect();
    print_table(
        &["PLUGIN", "NAME", "STARTED", "WEBHOOK", "POLLING", "GATEWAY"],
        rows,
    );
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    Ok(())
}

pub async fn run(
    channel: Channel,
    plugin: String,
    a: Action,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = Client::new(channel);
    let id = || pb::PluginRef { id: plugin.clone() };
    let done = |message: String| {
        if json {
            print_json(&json!({ "plugin": plugin, "message": message }));
        } else {
            println!("{message}");
        }
    };
    match a.verb.as_str() {
        "start" => {
            serde_json::from_str::<serde_json::Value>(&a.config)
                .map_err(|e| anyhow::anyhow!("--config is not valid JSON: {e}"))?;
            let req = pb::StartChannelRequest {
                plugin: plugin.clone(),
                config_json: a.config,
            };
            let r = c.start_channel(request(req, tenant)?).await;
            done(r.map_err(status_error)?.into_inner().message);
        }
        "stop" => {
            let r = c.stop_channel(request(id(), tenant)?).await;
            done(r.map_err(status_error)?.into_inner().message);
        }
        "poll" => {
            let r = c.poll_channel(request(id(), tenant)?).await;
            let messages = r.map_err(status_error)?.into_inner().messages;
            if json {
                let all: Vec<_> = messages.iter().map(message_json).collect();
                print_json(&json!({ "messages": all }));
            } else {
                for m in &messages {
                    print_message(m, false);
                }
            }
        }
        "watch" => {
            let r = c.subscribe_channel(request(id(), tenant)?).await;
            let mut stream = r.map_err(status_error)?.into_inner();
            while let Some(m) = stream.message().await.map_err(status_error)? {
                print_message(&m, json);
            }
        }
        "send" => {
            let (Some(to), Some(text)) = (a.to, a.message) else {
                anyhow::bail!("send needs --to CONVERSATION and a MESSAGE");
            };
            let req = pb::SendMessageRequest {
                plugin: plugin.clone(),
                conversation: to,
                text,
                ..Default::default()
            };
            let r = c.send_message(request(req, tenant)?).await;
            let id = r.map_err(status_error)?.into_inner().message_id;
            if json {
                print_json(&json!({ "plugin": plugin, "message_id": id }));
            } else {
                println!("sent ({id})");
            }
        }
        other => {
            anyhow::bail!("unknown channel action {other:?} (start, stop, poll, watch or send)")
        }
    }
    Ok(())
}
