//! An example tark channel plugin with no service behind it.
//!
//! - `start(config)` must come first: until then `poll` and `send` refuse, which
//!   shows tarkd calling `start` again after a worker restart;
//! - `send` answers with an inbound message `echo: <text>` in the same
//!   conversation, delivered by the next `poll`;
//! - `handle-webhook` takes `POST /message` with `{"conversation", "sender",
//!   "text"}` and queues it as inbound;
//! - with `{"gateway": "ws://…"}` in its configuration, `start` opens a WebSocket
//!   to that gateway through tarkd's broker (its host must be granted like http),
//!   `send` writes to it and `poll` reads what the gateway sent as inbound
//!   messages from `gateway`, instead of echoing;
//! - a queued message whose text is `crash-poll` makes `poll` crash (for tarkd's
//!   containment tests).

use std::sync::Mutex;

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "channel-world",
    path: "../../../wit",
});

use tark::plugin::ws;

use exports::tark::plugin::channel_plugin::{
    AuthState, ChannelInfo, Guest, InboundMessage, OutboundMessage, SendResult, WebhookRequest,
    WebhookResponse,
};

struct EchoChannel;

#[derive(Default)]
struct State {
    started: Option<String>,
    next_id: u64,
    inbound: Vec<InboundMessage>,
    /// The gateway's WebSocket, when the configuration names one.
    gateway: Option<i64>,
}

/// A field of one of the broker's JSON answers.
fn answer(json: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("bad ws answer: {e}"))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(v["error"].as_str().unwrap_or("ws call failed").to_owned())
    }
}

/// Opens the gateway named by the configuration, if any.
fn connect(config_json: &str) -> Result<Option<i64>, String> {
    let config: Value = serde_json::from_str(config_json).unwrap_or(Value::Null);
    let Some(url) = config["gateway"].as_str() else {
        return Ok(None);
    };
    let v = answer(&ws::connect(url, "{}"))?;
    v["handle"].as_i64().map(Some).ok_or("ws answer lacks a handle".into())
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut State) -> T) -> Result<T, String> {
    let mut guard = STATE.lock().map_err(|_| "state poisoned".to_owned())?;
    Ok(f(guard.get_or_insert_with(State::default)))
}

fn queue(s: &mut State, conversation: &str, sender: &str, text: &str) -> String {
    s.next_id += 1;
    let id = format!("m{}", s.next_id);
    s.inbound.push(InboundMessage {
        id: id.clone(),
        conversation: conversation.into(),
        sender: sender.into(),
        text: text.into(),
        timestamp: 0,
        metadata_json: "{}".into(),
    });
    id
}

fn started(s: &State) -> Result<(), String> {
    match s.started {
        Some(_) => Ok(()),
        None => Err("channel not started".into()),
    }
}

fn reply(status: u16, body: Value) -> WebhookResponse {
    WebhookResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

impl Guest for EchoChannel {
    fn info() -> ChannelInfo {
        ChannelInfo {
            id: "echo-channel".into(),
            display_name: "Echo channel".into(),
            description: "A loopback chat for trying the channel API.".into(),
            supports_webhook: true,
            supports_polling: true,
            supports_gateway: false,
        }
    }

    fn start(config_json: String) -> Result<(), String> {
        let gateway = connect(&config_json)?;
        with(|s| {
            if let Some(old) = s.gateway.take() {
                ws::close(old);
            }
            s.gateway = gateway;
            s.started = Some(config_json);
        })
    }

    fn stop() -> Result<(), String> {
        with(|s| {
            if let Some(h) = s.gateway.take() {
                ws::close(h);
            }
            s.started = None;
        })
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

    fn widget_state() -> String {
        let queued = with(|s| s.inbound.len()).unwrap_or(0);
        json!({ "queued": queued }).to_string()
    }

    fn handle_webhook(request: WebhookRequest) -> Result<WebhookResponse, String> {
        if request.method != "POST" || request.path != "/message" {
            return Ok(reply(404, json!({ "error": "POST /message only" })));
        }
        let Ok(v) = serde_json::from_str::<Value>(&request.body) else {
            return Ok(reply(400, json!({ "error": "body is not JSON" })));
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let id = with(|s| queue(s, &field("conversation"), &field("sender"), &field("text")))?;
        Ok(reply(200, json!({ "ok": true, "id": id })))
    }

    fn handle_gateway_event(_payload_json: String) -> Result<(), String> {
        Err("this channel has no gateway".into())
    }

    fn poll() -> Result<Vec<InboundMessage>, String> {
        with(|s| {
            started(s)?;
            if let Some(h) = s.gateway {
                // Whatever the gateway sent since the last poll.
                loop {
                    let v = answer(&ws::recv(h, 5, 65536))?;
                    let Some(text) = v["data"].as_str() else {
                        break;
                    };
                    queue(s, "gateway", "gateway", text);
                }
            }
            if s.inbound.iter().any(|m| m.text == "crash-poll") {
                panic!("poll crashes on purpose");
            }
            Ok(std::mem::take(&mut s.inbound))
        })?
    }

    fn send(message: OutboundMessage) -> Result<SendResult, String> {
        with(|s| {
            started(s)?;
            if let Some(h) = s.gateway {
                answer(&ws::send(h, &message.text))?;
            } else {
                let text = format!("echo: {}", message.text);
                queue(s, &message.conversation, "echo", &text);
            }
            s.next_id += 1;
            Ok(SendResult {
                message_id: format!("out{}", s.next_id),
            })
        })?
    }
}

export!(EchoChannel);
