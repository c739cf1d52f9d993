//! tark's provider world: message roles are an enum, models have no vision
//! flag, and auth status has a `not-required` case.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::published_bindings;
use crate::abi::component::provider::{ack, plugin_error};
use crate::abi::component::{not_this_world, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::published_bindings!("provider-world");
}

use bindings::exports::tark::plugin::provider_plugin::{
    AuthState as AuthStatus, Message, Role, Usage,
};

world_plumbing!(Provider, bindings::ProviderWorld, call);

fn usage(u: Option<Usage>) -> Option<api::Usage> {
    u.map(|u| api::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
    })
}

/// The agent's messages in tark's shape; a role tark's enum lacks is refused.
fn messages(m: Vec<api::ChatMessage>) -> Result<Vec<Message>, Failure> {
    m.into_iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(Failure::new(
                        pb::FailureKind::BadRequest,
                        format!(
                            "role {other:?} is not one tark's plugin contract knows (system, user, assistant, tool)"
                        ),
                    ));
                }
            };
            Ok(Message {
                role,
                content: m.content,
            })
        })
        .collect()
}

async fn call(
    world: &bindings::ProviderWorld,
    store: &mut Store<HostState>,
    call: Call,
) -> wasmtime::Result<Result<Outcome, Failure>> {
    let p = world.tark_plugin_provider_plugin();
    Ok(Ok(match call {
        Call::ProviderInfo(_) => {
            let i = p.call_info(&mut *store).await?;
            Outcome::ProviderInfo(api::ProviderInfo {
                plugin: String::new(),
                id: i.id,
                display_name: i.display_name,
                description: i.description,
                requires_auth: i.requires_auth,
            })
        }
        Call::ListModels(_) => {
            let models = p.call_models(&mut *store).await?;
            Outcome::Models(api::ListModelsResponse {
                models: models
                    .into_iter()
                    .map(|m| api::ModelInfo {
                        id: m.id,
                        display_name: m.display_name,
                        context_window: m.context_window,
                        supports_tools: m.supports_tools,
                        supports_vision: false,
                        supports_streaming: m.supports_streaming,
                    })
                    .collect(),
            })
        }
        Call::Chat(c) => {
            let msgs = match messages(c.messages) {
                Ok(m) => m,
                Err(f) => return Ok(Err(f)),
            };
            match p.call_chat(&mut *store, &msgs, &c.model).await? {
                Ok(r) => Outcome::Chat(api::ChatResponse {
                    text: r.text,
                    usage: usage(r.usage),
                    finish_reason: r.finish_reason.unwrap_or_default(),
                }),
                Err(e) => plugin_error(e),
            }
        }
        Call::ChatStreamStart(c) => {
            let msgs = match messages(c.messages) {
                Ok(m) => m,
                Err(f) => return Ok(Err(f)),
            };
            match p
                .call_chat_stream_start(&mut *store, &msgs, &c.model)
                .await?
            {
                Ok(stream_id) => Outcome::StreamStarted(pb::StreamStarted { stream_id }),
                Err(e) => plugin_error(e),
            }
        }
        Call::ChatStreamPoll(s) => match p.call_chat_stream_poll(&mut *store, s.stream_id).await? {
            Ok(c) => Outcome::Chunk(api::ChatChunk {
                text: c.text,
                done: c.done,
                usage: usage(c.usage),
            }),
            Err(e) => plugin_error(e),
        },
        Call::AuthStatus(_) => {
            let s = match p.call_auth_status(&mut *store).await? {
                AuthStatus::NotRequired => api::AuthStatus::NotRequired,
                AuthStatus::NotAuthenticated => api::AuthStatus::NotAuthenticated,
                AuthStatus::Authenticated => api::AuthStatus::Authenticated,
                AuthStatus::Expired => api::AuthStatus::Expired,
            };
            Outcome::AuthStatus(s as i32)
        }
        Call::Logout(_) => ack(p.call_auth_logout(&mut *store).await?),
        other => return Ok(Err(not_this_world("provider", &other))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_onto_tarks_enum_or_are_refused() {
        let msg = |role: &str| api::ChatMessage {
            role: role.into(),
            content: "c".into(),
        };
        let roles = |r: &[&str]| messages(r.iter().map(|r| msg(r)).collect());
        let ok = roles(&["system", "user", "assistant", "tool"]).map(|m| m.len());
        assert_eq!(ok.ok(), Some(4));
        for bad in ["developer", "User", "", "function"] {
            let err = roles(&["user", bad]).err().map(|f| f.kind);
            assert_eq!(err, Some(pb::FailureKind::BadRequest), "{bad:?}");
        }
    }
}
