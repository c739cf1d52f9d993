//! tark's provider world: message roles are an enum, models have no vision
//! flag, and auth status has a `not-required` case.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::published_bindings;
use crate::abi::component::provider::ack;
use crate::abi::component::{not_this_world, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::plugin_error;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::published_bindings!("provider-world");
}

use bindings::exports::tark::plugin::provider_plugin::{
    AuthState as AuthStatus, Message, ModelInfo, Role,
};

world_plumbing!(Provider, bindings::ProviderWorld, call);

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

fn model(m: ModelInfo) -> api::ModelInfo {
    api::ModelInfo {
        id: m.id,
        display_name: m.display_name,
        context_window: m.context_window,
        supports_tools: m.supports_tools,
        supports_vision: false,
        supports_streaming: m.supports_streaming,
    }
}

fn auth(s: AuthStatus) -> api::AuthStatus {
    match s {
        AuthStatus::NotRequired => api::AuthStatus::NotRequired,
        AuthStatus::NotAuthenticated => api::AuthStatus::NotAuthenticated,
        AuthStatus::Authenticated => api::AuthStatus::Authenticated,
        AuthStatus::Expired => api::AuthStatus::Expired,
    }
}

crate::abi::component::provider::provider_calls!(bindings, messages, model, auth);

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
