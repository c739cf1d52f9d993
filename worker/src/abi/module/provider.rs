//! Providers as tark's core modules export them: info, models and auth status
//! always; `provider_chat` when the plugin makes the LLM call itself, or
//! `provider_auth_credentials` when it only signs in and hands the agent's own
//! provider the credentials (auth-only). The ABI has no streaming: a stream is
//! the whole `provider_chat` answer as one chunk.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;

use super::json::{self, ChatResponse, Message, ModelInfo, ProviderInfo};
use super::{Abi, Fault, RESULT_ROOM, ack, broke, decoded};
use crate::abi::{Call, Outcome, plugin_error};

/// tark's `provider_auth_status` codes.
pub fn auth_status(code: i32) -> api::AuthStatus {
    match code {
        0 => api::AuthStatus::NotRequired,
        1 => api::AuthStatus::Authenticated,
        3 => api::AuthStatus::Expired,
        _ => api::AuthStatus::NotAuthenticated,
    }
}

/// Answers a call; [`super::exports::route`] has checked the export exists.
pub async fn call(g: &mut Abi<'_>, call: Call) -> Result<Outcome, Fault> {
    Ok(match call {
        Call::ProviderInfo(_) => {
            let serves_chat = g.has("provider_chat");
            let answer = g.string("provider_info", RESULT_ROOM).await?;
            decoded("provider_info", answer, |i: ProviderInfo| {
                let mut info = i.into_api();
                info.serves_chat = serves_chat;
                Outcome::ProviderInfo(info)
            })?
        }
        Call::ListModels(_) => {
            let answer = g.string("provider_models", RESULT_ROOM).await?;
            decoded("provider_models", answer, |m: Vec<ModelInfo>| {
                Outcome::Models(api::ListModelsResponse {
                    models: m.into_iter().map(ModelInfo::into_api).collect(),
                })
            })?
        }
        Call::AuthStatus(_) => {
            Outcome::AuthStatus(auth_status(g.code("provider_auth_status").await?) as i32)
        }
        Call::Logout(_) => ack(
            "provider_auth_logout",
            g.code("provider_auth_logout").await?,
        ),
        Call::AuthCredentials(_) => {
            const EXPORT: &str = "provider_auth_credentials";
            match g.string(EXPORT, RESULT_ROOM).await? {
                Ok(text) => {
                    let object: serde_json::Map<String, serde_json::Value> =
                        json::decode(EXPORT, &text).map_err(|e| broke(EXPORT, e))?;
                    Outcome::Text(pb::Text {
                        text: serde_json::Value::Object(object).to_string(),
                    })
                }
                Err(message) => plugin_error(message),
            }
        }
        Call::Chat(c) => chat(g, &c).await?,
        Call::ChatStreamStart(c) => {
            let chunk = match chat(g, &c).await? {
                Outcome::Chat(r) => Outcome::Chunk(api::ChatChunk {
                    text: r.text,
                    done: true,
                    usage: r.usage,
                }),
                error => return Ok(error),
            };
            let (streams, next) = g.streams();
            let id = *next;
            *next += 1;
            streams.insert(id, chunk);
            Outcome::StreamStarted(pb::StreamStarted { stream_id: id })
        }
        Call::ChatStreamPoll(s) => match g.streams().0.remove(&s.stream_id) {
            Some(chunk) => chunk,
            None => plugin_error(format!("no open stream {}", s.stream_id)),
        },
        Call::ChatStreamCancel(s) => {
            g.streams().0.remove(&s.stream_id);
            Outcome::Ack(pb::Ack { error: None })
        }
        other => return Err(g.unserved(&other)),
    })
}

async fn chat(g: &mut Abi<'_>, c: &pb::Chat) -> Result<Outcome, Fault> {
    let messages: Vec<Message<'_>> = c
        .messages
        .iter()
        .map(|m| Message {
            role: &m.role,
            content: &m.content,
        })
        .collect();
    let messages = serde_json::to_string(&messages).map_err(|e| broke("provider_chat", e))?;
    let answer = g.chat(&messages, &c.model).await?;
    decoded("provider_chat", answer, |r: ChatResponse| {
        Outcome::Chat(r.into_api())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarks_auth_codes() {
        for (code, want) in [
            (0, api::AuthStatus::NotRequired),
            (1, api::AuthStatus::Authenticated),
            (2, api::AuthStatus::NotAuthenticated),
            (3, api::AuthStatus::Expired),
            (4, api::AuthStatus::NotAuthenticated),
            (-1, api::AuthStatus::NotAuthenticated),
        ] {
            assert_eq!(auth_status(code), want, "{code}");
        }
    }
}
