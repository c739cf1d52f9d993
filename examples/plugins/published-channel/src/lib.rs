//! A channel against tark's published WIT (`start` takes no configuration,
//! `send` answers a record), written with tark-plugin-sdk (`channel` +
//! `published`) and built as a WASI component: what it sends is echoed back
//! as an inbound message, and each send is printed to stdout, which tarkd
//! puts in the plugin's log.

use std::sync::Mutex;

use tark_plugin_sdk::channel::{
    AuthState, ChannelInfo, Guest, InboundMessage, OutboundMessage, SendResult, WebhookRequest,
    WebhookResponse,
};

struct Echo;

static INBOX: Mutex<Vec<InboundMessage>> = Mutex::new(Vec::new());

impl Guest for Echo {
    fn info() -> ChannelInfo {
        ChannelInfo {
            id: "published-channel".into(),
            display_name: "Published echo".into(),
            description: "Echoes what is sent".into(),
            supports_streaming: false,
            supports_edits: false,
        }
    }

    fn start() -> Result<(), String> {
        Ok(())
    }

    fn stop() -> Result<(), String> {
        Ok(())
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

    fn widget_state() -> Result<String, String> {
        Ok("{}".into())
    }

    fn handle_webhook(_request: WebhookRequest) -> Result<WebhookResponse, String> {
        Err("no webhook".into())
    }

    fn handle_gateway_event(_payload_json: String) -> Result<Vec<InboundMessage>, String> {
        Ok(Vec::new())
    }

    fn poll() -> Result<Vec<InboundMessage>, String> {
        Ok(std::mem::take(&mut *INBOX.lock().map_err(|e| e.to_string())?))
    }

    fn send(message: OutboundMessage) -> Result<SendResult, String> {
        println!("sending to {}: {}", message.conversation_id, message.text);
        INBOX.lock().map_err(|e| e.to_string())?.push(InboundMessage {
            conversation_id: message.conversation_id,
            user_id: "echo".into(),
            text: format!("echo: {}", message.text),
            metadata_json: "{}".into(),
        });
        Ok(SendResult {
            success: true,
            message_id: Some("m1".into()),
            error: None,
        })
    }
}

tark_plugin_sdk::export_channel!(Echo);
