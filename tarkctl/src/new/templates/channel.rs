//! __NAME__: a tark messaging channel. It echoes what is sent to it back as
//! an inbound message; replace `send` and `poll` with your service's API.

use std::sync::Mutex;

use tark_plugin_sdk::channel::{
    AuthState, ChannelInfo, Guest, InboundMessage, OutboundMessage, SendResult, WebhookRequest,
    WebhookResponse,
};

struct Plugin;

static INBOX: Mutex<Vec<InboundMessage>> = Mutex::new(Vec::new());
static STARTED: Mutex<bool> = Mutex::new(false);

impl Guest for Plugin {
    fn info() -> ChannelInfo {
        ChannelInfo {
            id: "__NAME__".into(),
            display_name: "__NAME__".into(),
            description: "Echoes what is sent".into(),
            supports_webhook: false,
            supports_polling: true,
            supports_gateway: false,
        }
    }

    fn start(_config_json: String) -> Result<(), String> {
        *STARTED.lock().map_err(|e| e.to_string())? = true;
        Ok(())
    }

    fn stop() -> Result<(), String> {
        *STARTED.lock().map_err(|e| e.to_string())? = false;
        Ok(())
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
        "{}".into()
    }

    fn handle_webhook(_request: WebhookRequest) -> Result<WebhookResponse, String> {
        Err("this channel has no webhook".into())
    }

    fn handle_gateway_event(_payload_json: String) -> Result<(), String> {
        Ok(())
    }

    fn poll() -> Result<Vec<InboundMessage>, String> {
        Ok(std::mem::take(&mut *INBOX.lock().map_err(|e| e.to_string())?))
    }

    fn send(message: OutboundMessage) -> Result<SendResult, String> {
        if !*STARTED.lock().map_err(|e| e.to_string())? {
            return Err("not started".into());
        }
        let mut inbox = INBOX.lock().map_err(|e| e.to_string())?;
        let id = format!("m{}", inbox.len() + 1);
        inbox.push(InboundMessage {
            id: id.clone(),
            conversation: message.conversation,
            sender: "echo".into(),
            text: message.text,
            timestamp: 0,
            metadata_json: "{}".into(),
        });
        Ok(SendResult { message_id: id })
    }
}

tark_plugin_sdk::export_channel!(Plugin);
