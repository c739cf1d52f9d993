//! The provider world: an LLM behind the agent's chat. Streaming is the plugin's
//! `chat-stream-start` then one `chat-stream-poll` per chunk, each its own call,
//! so tarkd interleaves other calls between chunks and stops polling when the
//! agent goes away.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, TypedFunc};

use super::{World, not_this_world, world_bindings};
use crate::abi::host::HostState;
use crate::abi::{Call, Failure, Outcome, plugin_error};

mod bindings {
    super::world_bindings!("provider-world");
}

use bindings::exports::tark::plugin::provider_plugin::{Message, ModelInfo};
use bindings::tark::plugin::types::AuthStatus;

// Types only: nothing to implement.
impl bindings::tark::plugin::types::Host for HostState {}

/// A provider instance, and its optional `chat-stream-cancel` (interface
/// `provider-stream`, found by name among the component's exports).
pub struct Provider {
    world: bindings::ProviderWorld,
    cancel: Option<TypedFunc<(u64,), ()>>,
}

/// The exported `provider-stream` interface (any 0.1.x), if the component has it.
fn stream_interface(store: &Store<HostState>, component: &Component) -> Option<String> {
    component
        .component_type()
        .exports(store.engine())
        .map(|(name, _)| name)
        .find(|n| n.starts_with("tark:plugin/provider-stream@0.1."))
        .map(str::to_owned)
}

impl World for Provider {
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        bindings::ProviderWorld::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            linker,
            |s| s,
        )
    }

    async fn instantiate(
        store: &mut Store<HostState>,
        component: &Component,
        linker: &Linker<HostState>,
    ) -> wasmtime::Result<Self> {
        let instance = linker.instantiate_async(&mut *store, component).await?;
        let world = bindings::ProviderWorld::new(&mut *store, &instance)?;
        let cancel = match stream_interface(store, component) {
            Some(name) => {
                let iface = instance.get_export_index(&mut *store, None, &name);
                let func = iface.and_then(|i| {
                    instance.get_export_index(&mut *store, Some(&i), "chat-stream-cancel")
                });
                match func {
                    Some(f) => Some(instance.get_typed_func::<(u64,), ()>(&mut *store, f)?),
                    None => None,
                }
            }
            None => None,
        };
        Ok(Self { world, cancel })
    }

    async fn call(
        &self,
        store: &mut Store<HostState>,
        request: Call,
    ) -> wasmtime::Result<Result<Outcome, Failure>> {
        match (request, &self.cancel) {
            (Call::ChatStreamCancel(s), Some(cancel)) => {
                cancel.call_async(&mut *store, (s.stream_id,)).await?;
                Ok(Ok(ack(Ok(()))))
            }
            (request, _) => call(&self.world, store, request).await,
        }
    }
}

fn messages(m: Vec<api::ChatMessage>) -> Result<Vec<Message>, Failure> {
    Ok(m.into_iter()
        .map(|m| Message {
            role: m.role,
            content: m.content,
        })
        .collect())
}

fn model(m: ModelInfo) -> api::ModelInfo {
    api::ModelInfo {
        id: m.id,
        display_name: m.display_name,
        context_window: m.context_window,
        supports_tools: m.supports_tools,
        supports_vision: m.supports_vision,
        supports_streaming: m.supports_streaming,
    }
}

fn auth(s: AuthStatus) -> api::AuthStatus {
    match s {
        AuthStatus::NotAuthenticated => api::AuthStatus::NotAuthenticated,
        AuthStatus::Authenticated => api::AuthStatus::Authenticated,
        AuthStatus::Expired => api::AuthStatus::Expired,
    }
}

/// The provider world's `call`, for a bindings module `$bindings`, with the
/// three shapes the contracts differ in converted by `$messages` (the agent's
/// messages in; may refuse), `$model` and `$auth` (model info and auth status
/// out).
macro_rules! provider_calls {
    ($bindings:ident, $messages:ident, $model:ident, $auth:ident) => {
        async fn call(
            world: &$bindings::ProviderWorld,
            store: &mut Store<HostState>,
            call: Call,
        ) -> wasmtime::Result<Result<Outcome, Failure>> {
            use $bindings::exports::tark::plugin::provider_plugin::Usage;
            let usage = |u: Option<Usage>| {
                u.map(|u| api::Usage {
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                })
            };
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
                        serves_chat: true,
                        base_provider: String::new(),
                    })
                }
                Call::ListModels(_) => {
                    let models = p.call_models(&mut *store).await?;
                    Outcome::Models(api::ListModelsResponse {
                        models: models.into_iter().map($model).collect(),
                    })
                }
                Call::Chat(c) => {
                    let msgs = match $messages(c.messages) {
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
                    let msgs = match $messages(c.messages) {
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
                Call::ChatStreamPoll(s) => {
                    match p.call_chat_stream_poll(&mut *store, s.stream_id).await? {
                        Ok(c) => Outcome::Chunk(api::ChatChunk {
                            text: c.text,
                            done: c.done,
                            usage: usage(c.usage),
                        }),
                        Err(e) => plugin_error(e),
                    }
                }
                Call::AuthStatus(_) => {
                    Outcome::AuthStatus($auth(p.call_auth_status(&mut *store).await?) as i32)
                }
                Call::Logout(_) => ack(p.call_auth_logout(&mut *store).await?),
                // A plugin with nothing to cancel has done it.
                Call::ChatStreamCancel(_) => ack(Ok(())),
                other => return Ok(Err(not_this_world("provider", &other))),
            }))
        }
    };
}
pub(super) use provider_calls;

provider_calls!(bindings, messages, model, auth);

/// The answer to a call whose result is `result<_, string>`.
pub(super) fn ack(r: Result<(), String>) -> Outcome {
    Outcome::Ack(pb::Ack { error: r.err() })
}
