//! An example tark provider plugin built against tark's own published WIT
//! (`wit/published/tark.wit`): message roles arrive as an enum, and the auth
//! status has a `not-required` case. It answers with the last message's role and
//! text, whole or as a one-chunk stream. Written with tark-plugin-sdk
//! (`provider` + `published`) and built as a WASI component.

use std::sync::Mutex;

use tark_plugin_sdk::provider::{
    AuthState, ChatResponse, Guest, Message, ModelInfo, ProviderInfo, Role, StreamChunk,
};

struct TarkWitProvider;

/// Replies of open streams, by id (an id is its index + 1).
static STREAMS: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());

fn reply(messages: &[Message]) -> String {
    let Some(last) = messages.last() else {
        return "(no messages)".into();
    };
    let role = match last.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    format!("{role}: {}", last.content)
}

impl Guest for TarkWitProvider {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "tark-wit".into(),
            display_name: "tark WIT example".into(),
            description: "Built against tark's published WIT.".into(),
            requires_auth: false,
        }
    }

    fn models() -> Vec<ModelInfo> {
        vec![ModelInfo {
            id: "last-message".into(),
            display_name: "Last message".into(),
            context_window: 4096,
            supports_streaming: true,
            supports_tools: false,
        }]
    }

    fn auth_status() -> AuthState {
        AuthState::NotRequired
    }

    fn auth_init(_credentials_json: String) -> Result<(), String> {
        Ok(())
    }

    fn auth_logout() -> Result<(), String> {
        Ok(())
    }

    fn chat(messages: Vec<Message>, _model: String) -> Result<ChatResponse, String> {
        Ok(ChatResponse {
            text: reply(&messages),
            usage: None,
            finish_reason: Some("stop".into()),
        })
    }

    fn chat_stream_start(messages: Vec<Message>, _model: String) -> Result<u64, String> {
        let mut streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
        streams.push(Some(reply(&messages)));
        Ok(streams.len() as u64)
    }

    fn chat_stream_poll(stream_id: u64) -> Result<StreamChunk, String> {
        let mut streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
        let slot = usize::try_from(stream_id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| streams.get_mut(i))
            .ok_or_else(|| format!("no stream {stream_id}"))?;
        let text = slot.take().ok_or_else(|| format!("stream {stream_id} is over"))?;
        Ok(StreamChunk {
            text,
            done: true,
            usage: None,
        })
    }
}

tark_plugin_sdk::export_provider!(TarkWitProvider);
