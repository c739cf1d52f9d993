//! __NAME__: a tark LLM provider. Its one model answers by repeating the last
//! message; replace `chat` with a call to your model's API (tark_plugin_sdk::http).

use std::collections::HashMap;
use std::sync::Mutex;

use tark_plugin_sdk::provider::{
    AuthState, ChatResponse, Guest, Message, ModelInfo, ProviderInfo, StreamChunk,
};

struct Plugin;

/// Streams in progress: what is left to send, by id.
static STREAMS: Mutex<Option<HashMap<u64, Vec<String>>>> = Mutex::new(None);

fn answer(messages: &[Message]) -> String {
    messages.last().map(|m| m.content.clone()).unwrap_or_default()
}

impl Guest for Plugin {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "__NAME__".into(),
            display_name: "__NAME__".into(),
            description: "Repeats the last message".into(),
            requires_auth: false,
        }
    }

    fn models() -> Vec<ModelInfo> {
        vec![ModelInfo {
            id: "repeat".into(),
            display_name: "Repeat".into(),
            context_window: 4096,
            supports_tools: false,
            supports_vision: false,
            supports_streaming: true,
        }]
    }

    fn auth_status() -> AuthState {
        AuthState::Authenticated
    }

    fn auth_init(_credentials_json: String) -> Result<(), String> {
        Ok(())
    }

    fn auth_logout() -> Result<(), String> {
        Ok(())
    }

    fn chat(messages: Vec<Message>, _model: String) -> Result<ChatResponse, String> {
        Ok(ChatResponse {
            text: answer(&messages),
            usage: None,
            finish_reason: Some("stop".into()),
        })
    }

    fn chat_stream_start(messages: Vec<Message>, _model: String) -> Result<u64, String> {
        let mut streams = STREAMS.lock().map_err(|e| e.to_string())?;
        let streams = streams.get_or_insert_with(HashMap::new);
        let id = streams.keys().max().map_or(1, |m| m + 1);
        let mut words: Vec<String> = answer(&messages)
            .split_inclusive(' ')
            .map(str::to_owned)
            .collect();
        words.reverse();
        streams.insert(id, words);
        Ok(id)
    }

    fn chat_stream_poll(stream_id: u64) -> Result<StreamChunk, String> {
        let mut streams = STREAMS.lock().map_err(|e| e.to_string())?;
        let streams = streams.get_or_insert_with(HashMap::new);
        let words = streams.get_mut(&stream_id).ok_or("no such stream")?;
        let text = words.pop().unwrap_or_default();
        let done = words.is_empty();
        if done {
            streams.remove(&stream_id);
        }
        Ok(StreamChunk {
            text,
            done,
            usage: None,
        })
    }
}

tark_plugin_sdk::export_provider!(Plugin);
