//! The channel world: a messaging channel the agent talks through. tarkd holds
//! the start/stop lifecycle and drives polling; the plugin reaches its service
//! through the broker's http and ws.

use tark_proto::plugin::v1 as api;
use wasmtime::Store;

use super::provider::ack;
use super::{not_this_world, world_bindings, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::plugin_error;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::world_bindings!("channel-world", ws);
}

use bindings::exports::tark::plugin::channel_plugin::{OutboundMessage, WebhookRequest};

// Types only: nothing to implement.
impl bindings::tark::plugin::types::Host for HostState {}

world_plumbing!(Channel, bindings::ChannelWorld, call);

fn headers(h: Vec<api::Header>) -> Vec<(String, String)> {
    h.into_iter().map(|h| (h.name, h.value)).collect()
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
            Outcome::ChannelInfo(api::ChannelInfo {
                plugin: String::new(),
                id: i.id,
                display_name: i.display_name,
                description: i.description,
                supports_webhook: i.supports_webhook,
                supports_polling: i.supports_polling,
                supports_gateway: i.supports_gateway,
                started: false,
            })
        }
        Call::ChannelStart(s) => ack(c.call_start(&mut *store, &s.config_json).await?),
        Call::ChannelStop(_) => ack(c.call_stop(&mut *store).await?),
        Call::ChannelWebhook(w) => {
            let req = WebhookRequest {
                method: w.method,
                path: w.path,
                query: w.query,
                headers: headers(w.headers),
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
                    messages: Vec::new(),
                }),
                Err(e) => plugin_error(e),
            }
        }
        Call::ChannelGatewayEvent(e) => ack(c
            .call_handle_gateway_event(&mut *store, &e.payload_json)
            .await?),
        Call::ChannelPoll(_) => match c.call_poll(&mut *store).await? {
            Ok(messages) => Outcome::Inbound(api::PollChannelResponse {
                messages: messages
                    .into_iter()
                    .map(|m| api::InboundMessage {
                        id: m.id,
                        conversation: m.conversation,
                        sender: m.sender,
                        text: m.text,
                        timestamp_ms: m.timestamp,
                        metadata_json: m.metadata_json,
                    })
                    .collect(),
            }),
            Err(e) => plugin_error(e),
        },
        Call::ChannelSend(m) => {
            let msg = OutboundMessage {
                conversation: m.conversation,
                text: m.text,
                reply_to: (!m.reply_to.is_empty()).then_some(m.reply_to),
                metadata_json: m.metadata_json,
            };
            match c.call_send(&mut *store, &msg).await? {
                Ok(r) => Outcome::Sent(api::SendMessageResponse {
                    message_id: r.message_id,
                }),
                Err(e) => plugin_error(e),
            }
        }
        other => return Ok(Err(not_this_world("channel", &other))),
    }))
}
