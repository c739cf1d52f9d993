//! An example tark channel plugin with no service behind it.
//!
//! - `start(config)` must come first: until then `poll` and `send` refuse, which
//!   shows tarkd calling `start` again after a worker restart;
//! - `send` answers with an inbound message `echo: <text>` in the same
//!   conversation, delivered by the next `poll`;
//! - `handle-webhook` takes `POST /message` with `{"conversation", "sender",
//!   "text"}` and queues it as inbound;
//! - a queued message whose text is `crash-poll` makes `poll` crash (for tarkd's
//!   containment tests).

use std::sync::Mutex;

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "channel-world",
    path: "../../../wit",
});

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
        with(|s| s.started = Some(config_json))
    }

    fn stop() -> Result<(), String> {
        with(|s| s.started = None)
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
            if s.inbound.iter().any(|m| m.text == "crash-poll") {
                panic!("poll crashes on purpose");
            }
            Ok(std::mem::take(&mut s.inbound))
        })?
    }

    fn send(message: OutboundMessage) -> Result<SendResult, String> {
        with(|s| {
            started(s)?;
            let text = format!("echo: {}", message.text);
            queue(s, &message.conversation, "echo", &text);
            s.next_id += 1;
            Ok(SendResult {
                message_id: format!("out{}", s.next_id),
            })
        })?
    }
}

export!(EchoChannel);
