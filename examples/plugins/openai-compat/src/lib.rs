//! An example tark provider plugin for OpenAI-compatible chat endpoints
//! (`GET /models`, `POST /chat/completions`), such as a local Ollama.
//!
//! The host's http is request/response, so a streamed completion arrives whole:
//! `chat-stream-start` makes the request with `"stream": true` and splits the
//! server-sent events of the body into chunks, which `chat-stream-poll` hands out
//! one by one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "provider-world",
    path: "../../../wit",
});

use exports::tark::plugin::provider_plugin::{
    AuthState, ChatResponse, Guest, Message, ModelInfo, ProviderInfo, StreamChunk, Usage,
};
use tark::plugin::{env, http};

const DEFAULT_URL: &str = "http://127.0.0.1:11434/v1";

struct OpenAiCompat;

/// Chunks still to hand out, by stream id.
static STREAMS: Mutex<Option<(u64, HashMap<u64, VecDeque<StreamChunk>>)>> = Mutex::new(None);

fn base() -> String {
    env::get("OPENAI_COMPAT_URL")
        .unwrap_or_else(|| DEFAULT_URL.into())
        .trim_end_matches('/')
        .to_owned()
}

fn headers() -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = env::get("OPENAI_COMPAT_API_KEY") {
        h.push(("authorization".into(), format!("Bearer {key}")));
    }
    h
}

/// The body of a successful response, or the error to give the agent.
fn checked(r: Result<http::HttpResponse, http::HttpError>, url: &str) -> Result<String, String> {
    let r = r.map_err(|e| format!("{url}: {}", e.message))?;
    if !(200..300).contains(&r.status) {
        let detail: String = r.body.chars().take(200).collect();
        return Err(format!("{url}: HTTP {}: {detail}", r.status));
    }
    Ok(r.body)
}

fn request(messages: &[Message], model: &str, stream: bool) -> Result<String, String> {
    let url = format!("{}/chat/completions", base());
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "role": m.role, "content": m.content }))
        .collect();
    let body = json!({ "model": model, "messages": msgs, "stream": stream }).to_string();
    checked(http::post(&url, &body, &headers()), &url)
}

fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let n = |k: &str| {
        u.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    Some(Usage {
        input_tokens: n("prompt_tokens"),
        output_tokens: n("completion_tokens"),
    })
}

/// The chunks of a streamed completion's server-sent events.
fn chunks(sse: &str) -> Result<VecDeque<StreamChunk>, String> {
    let mut out = VecDeque::new();
    let mut last_usage = None;
    for data in sse.lines().filter_map(|l| l.strip_prefix("data:")) {
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).map_err(|e| format!("bad event: {e}"))?;
        last_usage = usage(&v).or(last_usage);
        let text = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
        if !text.is_empty() {
            out.push_back(StreamChunk {
                text: text.into(),
                done: false,
                usage: None,
            });
        }
    }
    out.push_back(StreamChunk {
        text: String::new(),
        done: true,
        usage: last_usage,
    });
    Ok(out)
}

impl Guest for OpenAiCompat {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "openai-compat".into(),
            display_name: "OpenAI-compatible".into(),
            description: format!("Chat completions at {}", base()),
            requires_auth: false,
        }
    }

    fn models() -> Vec<ModelInfo> {
        let url = format!("{}/models", base());
        let Ok(body) = checked(http::get(&url, &headers()), &url) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let ids = v["data"].as_array().cloned().unwrap_or_default();
        ids.iter()
            .filter_map(|m| m["id"].as_str())
            .map(|id| ModelInfo {
                id: id.into(),
                display_name: id.into(),
                context_window: 0,
                supports_tools: false,
                supports_vision: false,
                supports_streaming: true,
            })
            .collect()
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
        let body = request(&messages, &model, false)?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("bad answer: {e}"))?;
        let choice = &v["choices"][0];
        Ok(ChatResponse {
            text: choice["message"]["content"].as_str().unwrap_or("").into(),
            usage: usage(&v),
            finish_reason: choice["finish_reason"].as_str().map(Into::into),
        })
    }

    fn chat_stream_start(messages: Vec<Message>, model: String) -> Result<u64, String> {
        let chunks = chunks(&request(&messages, &model, true)?)?;
        let mut streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
        let (next, open) = streams.get_or_insert_with(Default::default);
        *next += 1;
        open.insert(*next, chunks);
        Ok(*next)
    }

    fn chat_stream_poll(stream_id: u64) -> Result<StreamChunk, String> {
        let mut streams = STREAMS.lock().map_err(|_| "state poisoned".to_string())?;
        let open = &mut streams.get_or_insert_with(Default::default).1;
        let queue = open
            .get_mut(&stream_id)
            .ok_or_else(|| format!("no open stream {stream_id}"))?;
        let chunk = queue.pop_front().ok_or("stream is over")?;
        if chunk.done {
            open.remove(&stream_id);
        }
        Ok(chunk)
    }
}

export!(OpenAiCompat);
