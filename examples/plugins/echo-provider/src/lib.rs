//! An example tark provider plugin that needs no upstream: it answers with the
//! last user message, whole (`chat`) or a word per chunk (`chat-stream-*`).
//!
//! A streaming provider keeps each open stream in its instance's memory: tarkd
//! calls `chat-stream-start` once, then `chat-stream-poll` until a chunk says
//! `done`, each a separate call, so other calls can run between chunks. It also
//! exports the optional `chat-stream-cancel` (world `streaming-provider-world`),
//! which tarkd calls when the agent abandons a stream.
//!
//! Besides `echo`, it lists models for tarkd's tests: `forever` never finishes a
//! stream, `oversized` yields a chunk larger than tarkd's response cap, `trap`
//! crashes the instance, `open-streams` answers how many streams are open, and
//! `dawdle` answers "nothing yet" (an empty chunk) before each word.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

wit_bindgen::generate!({
    world: "streaming-provider-world",
    path: "../../../wit",
});

use exports::tark::plugin::provider_plugin::{
    AuthState, ChatResponse, Guest, Message, ModelInfo, ProviderInfo, StreamChunk, Usage,
};

struct Echo;

/// An open stream: the words still to send, and its token counts.
struct Stream {
    words: VecDeque<String>,
    usage: Usage,
    forever: bool,
    /// `dawdle`: the next poll answers "nothing yet".
    dawdling: Option<bool>,
}

static STREAMS: Mutex<Option<(u64, HashMap<u64, Stream>)>> = Mutex::new(None);

fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// The reply to a conversation: its last user message, echoed.
fn reply(messages: &[Message]) -> (String, Usage) {
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.content.as_str());
    let text = format!("echo: {last}");
    let usage = Usage {
        input_tokens: messages.iter().map(|m| words(&m.content)).sum(),
        output_tokens: words(&text),
    };
    (text, usage)
}

fn model(id: &str, display_name: &str) -> ModelInfo {
    ModelInfo {
        id: id.into(),
        display_name: display_name.into(),
        context_window: 8192,
        supports_tools: false,
        supports_vision: false,
        supports_streaming: true,
    }
}

fn check_model(model: &str) -> Result<(), String> {
    match model {
        "echo" | "forever" | "oversized" | "open-streams" | "dawdle" => Ok(()),
        "trap" => panic!("the trap model crashes on purpose"),
        other => Err(format!("unknown model {other:?} (try \"echo\")")),
    }
}

impl Guest for Echo {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "echo".into(),
            display_name: "Echo".into(),
            description: "Replies with your last message; no model, no network.".into(),
            requires_auth: false,
        }
    }

    fn models() -> Vec<ModelInfo> {
        vec![
            model("echo", "Echo"),
            model("forever", "Test: a stream that never ends"),
            model("oversized", "Test: a chunk over tarkd's size cap"),
            model("trap", "Test: crashes the plugin"),
            model("open-streams", "Test: how many streams are open"),
            model("dawdle", "Test: nothing yet before each word"),
        ]
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

    fn chat(messages: Vec<Message>, model: String) -> Result<ChatResponse, String> {
        check_model(&model)?;
        let (mut text, usage) = reply(&messages);
        if model == "open-streams" {
            let streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
            text = streams.as_ref().map_or(0, |s| s.1.len()).to_string();
        }
        Ok(ChatResponse {
            text,
            usage: Some(usage),
            finish_reason: Some("stop".into()),
        })
    }

    fn chat_stream_start(messages: Vec<Message>, model: String) -> Result<u64, String> {
        check_model(&model)?;
        let (text, usage) = reply(&messages);
        let mut words: VecDeque<String> = text.split(' ').map(|w| format!("{w} ")).collect();
        if model == "oversized" {
            words.push_front("x".repeat(4 << 20));
        }
        let mut streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
        let (next, open) = streams.get_or_insert_with(Default::default);
        *next += 1;
        let stream = Stream {
            words,
            usage,
            forever: model == "forever",
            dawdling: (model == "dawdle").then_some(true),
        };
        open.insert(*next, stream);
        Ok(*next)
    }

    fn chat_stream_poll(stream_id: u64) -> Result<StreamChunk, String> {
        let mut streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
        let open = &mut streams.get_or_insert_with(Default::default).1;
        let stream = open
            .get_mut(&stream_id)
            .ok_or_else(|| format!("no open stream {stream_id}"))?;
        if let Some(dawdling) = stream.dawdling.as_mut() {
            *dawdling = !*dawdling;
            if !*dawdling {
                return Ok(StreamChunk {
                    text: String::new(),
                    done: false,
                    usage: None,
                });
            }
        }
        if stream.forever {
            return Ok(StreamChunk {
                text: "and on ".into(),
                done: false,
                usage: None,
            });
        }
        match stream.words.pop_front() {
            Some(text) if !stream.words.is_empty() => Ok(StreamChunk {
                text,
                done: false,
                usage: None,
            }),
            last => {
                let usage = stream.usage;
                open.remove(&stream_id);
                Ok(StreamChunk {
                    text: last.map(|w| w.trim_end().to_owned()).unwrap_or_default(),
                    done: true,
                    usage: Some(usage),
                })
            }
        }
    }
}

impl exports::tark::plugin::provider_stream::Guest for Echo {
    fn chat_stream_cancel(stream_id: u64) {
        if let Ok(mut streams) = STREAMS.lock()
            && let Some((_, open)) = streams.as_mut()
        {
            open.remove(&stream_id);
        }
    }
}

export!(Echo);
