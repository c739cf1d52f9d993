//! The JSON tark's core modules exchange with their host, as tark reads and
//! writes it (`src/plugins/host/mod.rs` in tark): decoded into tarkd's API types
//! here, strictly enough that a malformed answer is an error naming what was
//! wrong, never a panic (fuzzed with the memory accessors).

use serde::{Deserialize, Serialize};
use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as wpb;

/// A decoding failure: the export and what serde said.
pub fn decode<'a, T: Deserialize<'a>>(export: &str, text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("{export} returned malformed JSON: {e}"))
}

#[derive(Deserialize)]
pub struct ProviderInfo {
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub requires_auth: bool,
}

impl ProviderInfo {
    pub fn into_api(self) -> api::ProviderInfo {
        api::ProviderInfo {
            id: self.id,
            display_name: self.display_name,
            description: self.description,
            requires_auth: self.requires_auth,
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
pub struct ModelInfo {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub context_window: u32,
    #[serde(default)]
    pub supports_streaming: bool,
    #[serde(default)]
    pub supports_tools: bool,
    #[serde(default)]
    pub supports_vision: bool,
}

impl ModelInfo {
    pub fn into_api(self) -> api::ModelInfo {
        api::ModelInfo {
            id: self.id,
            display_name: self.display_name,
            context_window: self.context_window,
            supports_tools: self.supports_tools,
            supports_vision: self.supports_vision,
            supports_streaming: self.supports_streaming,
        }
    }
}

#[derive(Serialize)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

#[derive(Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

#[derive(Deserialize)]
pub struct ChatResponse {
    pub text: String,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

impl ChatResponse {
    pub fn into_api(self) -> api::ChatResponse {
        api::ChatResponse {
            text: self.text,
            usage: self.usage.map(|u| api::Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
            }),
            finish_reason: self.finish_reason.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
pub struct ChannelInfo {
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize)]
pub struct Inbound {
    pub conversation_id: String,
    pub user_id: String,
    pub text: String,
    #[serde(default)]
    pub metadata_json: String,
}

impl Inbound {
    pub fn into_api(self) -> api::InboundMessage {
        api::InboundMessage {
            conversation: self.conversation_id,
            sender: self.user_id,
            text: self.text,
            metadata_json: self.metadata_json,
            ..Default::default()
        }
    }
}

pub fn inbound(export: &str, text: &str) -> Result<Vec<api::InboundMessage>, String> {
    let list: Vec<Inbound> = decode(export, text)?;
    Ok(list.into_iter().map(Inbound::into_api).collect())
}

#[derive(Serialize)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a str,
}

impl<'a> WebhookRequest<'a> {
    pub fn of(r: &'a api::WebhookRequest) -> Self {
        Self {
            method: &r.method,
            path: &r.path,
            query: Some(r.query.as_str()).filter(|q| !q.is_empty()),
            headers: r
                .headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect(),
            body: &r.body,
        }
    }
}

#[derive(Deserialize)]
pub struct WebhookResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub messages: Vec<Inbound>,
}

impl WebhookResponse {
    pub fn into_api(self) -> api::WebhookResponse {
        api::WebhookResponse {
            status: self.status.into(),
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| api::Header { name, value })
                .collect(),
            body: self.body,
            messages: self.messages.into_iter().map(Inbound::into_api).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct SendRequest<'a> {
    pub conversation_id: &'a str,
    pub text: &'a str,
    pub message_id: Option<&'a str>,
    pub is_final: bool,
    pub metadata_json: &'a str,
}

impl<'a> SendRequest<'a> {
    pub fn of(r: &'a api::SendMessageRequest) -> Self {
        Self {
            conversation_id: &r.conversation,
            text: &r.text,
            message_id: Some(r.reply_to.as_str()).filter(|m| !m.is_empty()),
            is_final: true,
            metadata_json: &r.metadata_json,
        }
    }
}

#[derive(Deserialize)]
pub struct SendResult {
    pub success: bool,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// An error object some exports write with a negative length: `{"error": …}`.
#[derive(Deserialize)]
pub struct ErrorObject {
    pub error: serde_json::Value,
}

impl ErrorObject {
    pub fn message(self) -> String {
        match self.error {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }
    }
}

/// tark's request headers: a JSON array of `[name, value]` pairs ("" for none).
pub fn parse_headers(json: &str) -> Option<Vec<wpb::HttpHeader>> {
    if json.trim().is_empty() {
        return Some(Vec::new());
    }
    let pairs: Vec<(String, String)> = serde_json::from_str(json).ok()?;
    Some(
        pairs
            .into_iter()
            .map(|(name, value)| wpb::HttpHeader { name, value })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_tarks_pairs() {
        let h = parse_headers(r#"[["Accept","text/plain"],["X-A","b"]]"#);
        assert_eq!(h.map(|h| h.len()), Some(2));
        assert_eq!(parse_headers("").map(|h| h.len()), Some(0));
        assert_eq!(parse_headers("  ").map(|h| h.len()), Some(0));
        for bad in ["{", r#"{"a":"b"}"#, r#"[["a"]]"#, r#"[[1,2]]"#, "null"] {
            assert!(parse_headers(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tarks_shapes_decode() {
        let p: Result<ProviderInfo, _> = decode(
            "provider_info",
            r#"{"id":"x","display_name":"X","provider":"google"}"#,
        );
        assert!(p.is_ok_and(|p| p.id == "x" && !p.requires_auth));
        let m: Result<Vec<ModelInfo>, _> = decode(
            "provider_models",
            r#"[{"id":"m","context_window":8192,"supports_streaming":true}]"#,
        );
        assert!(m.is_ok_and(|m| m[0].context_window == 8192));
        let c: Result<ChatResponse, _> = decode(
            "provider_chat",
            r#"{"text":"hi","usage":{"input_tokens":1,"output_tokens":2}}"#,
        );
        assert!(c.is_ok_and(|c| c.into_api().usage.is_some_and(|u| u.output_tokens == 2)));
        let i = inbound(
            "channel_poll",
            r#"[{"conversation_id":"c","user_id":"u","text":"t"}]"#,
        );
        assert!(i.is_ok_and(|i| i[0].conversation == "c" && i[0].sender == "u"));
        let w: Result<WebhookResponse, _> = decode(
            "channel_handle_webhook",
            r#"{"status":200,"headers":[["a","b"]],"body":"ok"}"#,
        );
        assert!(w.is_ok_and(|w| w.into_api().headers[0].name == "a"));
    }

    #[test]
    fn malformed_answers_name_the_export() {
        for text in [
            "",
            "{",
            "[]",
            r#"{"id":1}"#,
            "null",
            r#"{"display_name":"x"}"#,
        ] {
            let r: Result<ProviderInfo, _> = decode("provider_info", text);
            assert!(
                r.is_err_and(|e| e.starts_with("provider_info returned malformed JSON")),
                "{text}"
            );
        }
        assert!(inbound("channel_poll", r#"{"conversation_id":"c"}"#).is_err());
    }

    #[test]
    fn requests_encode_as_tark_sends_them() {
        let r = api::SendMessageRequest {
            conversation: "c".into(),
            text: "t".into(),
            ..Default::default()
        };
        let j = serde_json::to_string(&SendRequest::of(&r)).unwrap_or_default();
        assert_eq!(
            j,
            r#"{"conversation_id":"c","text":"t","message_id":null,"is_final":true,"metadata_json":""}"#
        );
    }
}
