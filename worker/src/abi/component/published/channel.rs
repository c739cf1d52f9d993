//! tark's channel world: `start()` takes no configuration, inbound messages
//! carry no id or time, a webhook's answer carries the messages it produced, and
//! sending reports success in a record.

use tark_proto::plugin::v1 as api;
use wasmtime::Store;

use super::published_bindings;
use crate::abi::component::provider::ack;
use crate::abi::component::{not_this_world, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::plugin_error;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::published_bindings!("channel-world", ws);
}

use bindings::exports::tark::plugin::channel_plugin::{
    InboundMessage, OutboundMessage, SendResult, WebhookRequest,
};

world_plumbing!(Channel, bindings::ChannelWorld, call);

fn inbound(m: InboundMessage) -> api::InboundMessage {
    api::InboundMessage {
        id: String::new(),
        conversation: m.conversation_id,
        sender: m.user_id,
        text: m.text,
        timestamp_ms: 0,
        metadata_json: m.metadata_json,
    }
}

fn sent(r: SendResult) -> Outcome {
    if r.success {
        Outcome::Sent(api::SendMessageResponse {
            message_id: r.message_id.unwrap_or_default(),
        })
    } else {
        plugin_error(r.error.unwrap_or_else(|| "sending failed".into()))
    }
}

async fn call(
    world: &bindings::ChannelWorld,
    store: &mut Store<HostState>,
    call: Call,
) -> wasmtime::Result<Result<Outcome, Failure>> {
    let c = world.tark_plugin_channel_plugin();
    Ok(Ok(match call {
        Call::ChannelInfo(_) => {
            let i = c.call_info(&mut *store).await?;
            // tark's channels export every entry point; its record does not say
            // which they use.
            Outcome::ChannelInfo(api::ChannelInfo {
                plugin: String::new(),
                id: i.id,
                display_name: i.display_name,
                description: i.description,
                supports_webhook: true,
                supports_polling: true,
                supports_gateway: true,
                started: false,
            })
        }
        Call::ChannelStart(_) => ack(c.call_start(&mut *store).await?),
        Call::ChannelStop(_) => ack(c.call_stop(&mut *store).await?),
        Call::ChannelWebhook(w) => {
            let req = WebhookRequest {
                method: w.method,
                path: w.path,
                query: (!w.query.is_empty()).then_some(w.query),
                headers: w.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                body: w.body,
            };
            match c.call_handle_webhook(&mut *store, &req).await? {
                Ok(r) => Outcome::Webhook(api::WebhookResponse {
                    status: r.status.into(),
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(name, value)| api::Header { name, value })
                        .collect(),
                    body: r.body,
                    messages: r.messages.into_iter().map(inbound).collect(),
                }),
                Err(e) => plugin_error(e),
            }
        }
        Call::ChannelGatewayEvent(e) => {
            match c
                .call_handle_gateway_event(&mut *store, &e.payload_json)
                .await?
            {
                Ok(m) => Outcome::Inbound(api::PollChannelResponse {
                    messages: m.into_iter().map(inbound).collect(),
                }),
                Err(e) => plugin_error(e),
            }
        }
        Call::ChannelPoll(_) => match c.call_poll(&mut *store).await? {
            Ok(m) => Outcome::Inbound(api::PollChannelResponse {
                messages: m.into_iter().map(inbound).collect(),
            }),
            Err(e) => plugin_error(e),
        },
        Call::ChannelSend(m) => {
            let msg = OutboundMessage {
                conversation_id: m.conversation,
                text: m.text,
                message_id: None,
                is_final: true,
                metadata_json: m.metadata_json,
            };
            match c.call_send(&mut *store, &msg).await? {
                Ok(r) => sent(r),
                Err(e) => plugin_error(e),
            }
        }
        other => return Ok(Err(not_this_world("channel", &other))),
    }))
}
