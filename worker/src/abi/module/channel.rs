//! Channels as tark's core modules export them (`channel_*`): JSON in and out,
//! `channel_start()` without arguments, and webhook, gateway and poll support
//! told by which exports the module has.

use tark_proto::plugin::v1 as api;

use super::json::{self, ChannelInfo, SendRequest, SendResult, WebhookRequest, WebhookResponse};
use super::{Abi, Fault, LARGE_RESULT_ROOM, RESULT_ROOM, ack, broke, decoded};
use crate::abi::{Call, Outcome, plugin_error};

fn inbound(messages: Vec<api::InboundMessage>) -> Outcome {
    Outcome::Inbound(api::PollChannelResponse { messages })
}

/// Answers a call; [`super::exports::route`] has checked the export exists.
pub async fn call(g: &mut Abi<'_>, call: Call) -> Result<Outcome, Fault> {
    Ok(match call {
        Call::ChannelInfo(_) => {
            let (webhook, polling, gateway) = (
                g.has("channel_handle_webhook"),
                g.has("channel_poll"),
                g.has("channel_handle_gateway_event"),
            );
            let answer = g.string("channel_info", RESULT_ROOM).await?;
            decoded("channel_info", answer, |i: ChannelInfo| {
                Outcome::ChannelInfo(api::ChannelInfo {
                    id: i.id,
                    display_name: i.display_name,
                    description: i.description,
                    supports_webhook: webhook,
                    supports_polling: polling,
                    supports_gateway: gateway,
                    ..Default::default()
                })
            })?
        }
        // tark's channel_start takes no configuration.
        Call::ChannelStart(_) => ack("channel_start", g.code("channel_start").await?),
        Call::ChannelStop(_) => ack("channel_stop", g.code("channel_stop").await?),
        Call::ChannelWebhook(w) => {
            const EXPORT: &str = "channel_handle_webhook";
            let request = encode(EXPORT, &WebhookRequest::of(&w))?;
            let answer = g
                .string_to_string(EXPORT, &request, LARGE_RESULT_ROOM)
                .await?;
            decoded(EXPORT, answer, |r: WebhookResponse| {
                Outcome::Webhook(r.into_api())
            })?
        }
        Call::ChannelGatewayEvent(e) => {
            const EXPORT: &str = "channel_handle_gateway_event";
            let answer = g
                .string_to_string(EXPORT, &e.payload_json, LARGE_RESULT_ROOM)
                .await?;
            messages(EXPORT, answer)?
        }
        Call::ChannelPoll(_) => {
            let answer = g.string("channel_poll", RESULT_ROOM).await?;
            messages("channel_poll", answer)?
        }
        Call::ChannelSend(m) => {
            const EXPORT: &str = "channel_send";
            let request = encode(EXPORT, &SendRequest::of(&m))?;
            let answer = g
                .string_to_string(EXPORT, &request, LARGE_RESULT_ROOM)
                .await?;
            decoded(EXPORT, answer, |r: SendResult| {
                if r.success {
                    Outcome::Sent(api::SendMessageResponse {
                        message_id: r.message_id.unwrap_or_default(),
                    })
                } else {
                    plugin_error(r.error.unwrap_or_else(|| "the message was not sent".into()))
                }
            })?
        }
        other => return Err(g.unserved(&other)),
    })
}

fn encode<T: serde::Serialize>(export: &str, value: &T) -> Result<String, Fault> {
    serde_json::to_string(value).map_err(|e| broke(export, e))
}

fn messages(export: &str, answer: Result<String, String>) -> Result<Outcome, Fault> {
    match answer {
        Ok(text) => json::inbound(export, &text)
            .map(inbound)
            .map_err(|e| broke(export, e)),
        Err(message) => Ok(plugin_error(message)),
    }
}
