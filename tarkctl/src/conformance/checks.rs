//! The checks of each world: every export the agent API reaches, called with
//! valid input and with invalid input. A plugin conforms when it answers
//! either, with a result or with an error value of its own; it does not when
//! it traps, exits, hits a limit or its deadline, or answers too much.

use std::time::Instant;

use serde_json::{Value, json};
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::{Check, Status};

/// Reasons tarkd gives when a plugin broke its contract (see tarkd's
/// `reasons.rs`), as opposed to answering an error of its own.
const BROKEN: [&str; 6] = [
    "PLUGIN_TRAPPED",
    "PLUGIN_LIMIT_EXCEEDED",
    "DEADLINE_EXCEEDED",
    "WORKER_EXITED",
    "RESPONSE_TOO_LARGE",
    "PLUGIN_NOT_RUNNABLE",
];

/// What a call came to, as a check.
fn judge<T>(
    id: String,
    started: Instant,
    r: Result<tonic::Response<T>, tonic::Status>,
    ok: impl FnOnce(T) -> Check,
) -> Check {
    let ms = started.elapsed().as_millis();
    match r {
        Ok(resp) => {
            let mut c = ok(resp.into_inner());
            c.id = id;
            c.detail = format!("{} ({ms} ms)", c.detail).trim().to_owned();
            c
        }
        Err(s) => {
            let reason = s
                .get_details_error_info()
                .map(|i| i.reason)
                .unwrap_or_default();
            let detail = format!("{:?} {reason}: {} ({ms} ms)", s.code(), s.message());
            if reason == "PLUGIN_NOT_RUNNABLE" && s.message().contains("does not export") {
                // tark's core-module ABI makes some exports optional.
                Check::new(
                    id,
                    Status::Skip,
                    format!("optional export absent: {detail}"),
                )
            } else if reason == "PLUGIN_ERROR" {
                Check::new(
                    id,
                    Status::Pass,
                    format!("answered an error of its own: {detail}"),
                )
            } else if BROKEN.contains(&reason.as_str()) {
                Check::new(id, Status::Fail, detail)
            } else {
                Check::new(
                    id,
                    Status::Skip,
                    format!("tarkd did not let it run: {detail}"),
                )
            }
        }
    }
}

fn pass(detail: impl Into<String>) -> Check {
    Check::new(String::new(), Status::Pass, detail.into())
}

/// Arguments that satisfy a JSON schema's required properties, by type.
pub fn valid_arguments(schema: &Value) -> Value {
    let props = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    let mut args = serde_json::Map::new();
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let kind = props
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        let value = match kind {
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("conformance"),
        };
        args.insert(name.to_owned(), value);
    }
    Value::Object(args)
}

pub async fn tool(ch: &Channel, plugin: &str) -> Vec<Check> {
    let mut c = pb::tools_client::ToolsClient::new(ch.clone());
    let mut checks = Vec::new();
    let listed = match c.list_tools(pb::ListToolsRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            return vec![Check::new(
                "tools.list".into(),
                Status::Fail,
                s.message().into(),
            )];
        }
    };
    let tools: Vec<_> = listed
        .tools
        .into_iter()
        .filter(|t| t.plugin == plugin)
        .collect();
    let errors: Vec<_> = listed
        .errors
        .into_iter()
        .filter(|e| e.starts_with(&format!("{plugin}:")))
        .collect();
    checks.push(if !errors.is_empty() {
        Check::new("tools.list".into(), Status::Fail, errors.join("; "))
    } else if tools.is_empty() {
        Check::new("tools.list".into(), Status::Fail, "lists no tools".into())
    } else {
        Check::new(
            "tools.list".into(),
            Status::Pass,
            format!("{} tools", tools.len()),
        )
    });
    for t in tools {
        let schema = serde_json::from_str::<Value>(&t.parameters_schema);
        checks.push(match &schema {
            Ok(v) if v.is_object() => Check::new(
                format!("tools.schema:{}", t.name),
                Status::Pass,
                String::new(),
            ),
            _ => Check::new(
                format!("tools.schema:{}", t.name),
                Status::Fail,
                format!(
                    "parameters_schema is not a JSON object: {:?}",
                    t.parameters_schema
                ),
            ),
        });
        checks.push(Check::new(
            format!("tools.risk:{}", t.name),
            if t.risk == pb::RiskLevel::Unspecified as i32 {
                Status::Fail
            } else {
                Status::Pass
            },
            format!(
                "{:?}",
                pb::RiskLevel::try_from(t.risk).unwrap_or(pb::RiskLevel::Unspecified)
            ),
        ));
        let valid = schema
            .map(|s| valid_arguments(&s))
            .unwrap_or_else(|_| json!({}));
        for (kind, args) in [
            ("valid", valid.to_string()),
            ("invalid", "not json {".to_owned()),
        ] {
            let at = Instant::now();
            let r = c
                .invoke_tool(pb::InvokeToolRequest {
                    tool: t.name.clone(),
                    arguments_json: args.clone(),
                })
                .await;
            checks.push(judge(
                format!("tools.execute.{kind}:{}", t.name),
                at,
                r,
                |resp| match resp.result {
                    Some(pb::invoke_tool_response::Result::Error(e)) => {
                        pass(format!("{args} → tool error: {e}"))
                    }
                    _ => pass(format!("{args} → output")),
                },
            ));
        }
    }
    checks
}

fn plugin_ref(plugin: &str) -> pb::PluginRef {
    pb::PluginRef {
        id: plugin.to_owned(),
    }
}

pub async fn provider(ch: &Channel, plugin: &str) -> Vec<Check> {
    let mut c = pb::providers_client::ProvidersClient::new(ch.clone());
    let mut checks = Vec::new();
    let listed = c.list_providers(pb::ListProvidersRequest {}).await;
    let info = listed.as_ref().ok().and_then(|r| {
        r.get_ref()
            .providers
            .iter()
            .find(|p| p.plugin == plugin)
            .cloned()
    });
    checks.push(match (&listed, &info) {
        (_, Some(p)) => Check::new(
            "provider.info".into(),
            Status::Pass,
            format!("{} ({})", p.id, p.display_name),
        ),
        (Ok(r), None) => Check::new(
            "provider.info".into(),
            Status::Fail,
            format!("not listed: {}", r.get_ref().errors.join("; ")),
        ),
        (Err(s), None) => Check::new("provider.info".into(), Status::Fail, s.message().into()),
    });
    let at = Instant::now();
    let models = c.list_models(plugin_ref(plugin)).await;
    let model = models
        .as_ref()
        .ok()
        .and_then(|m| m.get_ref().models.first().map(|m| m.id.clone()))
        .unwrap_or_default();
    checks.push(judge("provider.models".into(), at, models, |m| {
        pass(format!("{} models", m.models.len()))
    }));
    if info.as_ref().is_some_and(|p| !p.serves_chat) {
        checks.push(Check::new(
            "provider.chat".into(),
            Status::Skip,
            "auth-only provider: no chat".into(),
        ));
        return checks;
    }
    let hello = vec![pb::ChatMessage {
        role: "user".into(),
        content: "Say hello.".into(),
    }];
    let cases = [
        ("provider.chat.valid", model.clone(), hello.clone()),
        (
            "provider.chat.invalid",
            "no-such-model".to_owned(),
            Vec::new(),
        ),
    ];
    for (id, model, messages) in cases {
        let at = Instant::now();
        let r = c
            .chat(pb::ChatRequest {
                plugin: plugin.into(),
                model,
                messages,
            })
            .await;
        checks.push(judge(id.into(), at, r, |r| {
            pass(format!("{} bytes of text", r.text.len()))
        }));
    }
    let at = Instant::now();
    let stream = c
        .chat_stream(pb::ChatRequest {
            plugin: plugin.into(),
            model,
            messages: hello,
        })
        .await;
    let check = match stream {
        Err(s) => judge::<()>("provider.chat_stream".into(), at, Err(s), |_| pass("")),
        Ok(s) => {
            let mut s = s.into_inner();
            let mut chunks = 0u32;
            let mut last = Ok(false);
            while let Some(item) = s.message().await.transpose() {
                chunks += 1;
                match item {
                    Ok(chunk) if chunk.done => {
                        last = Ok(true);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        last = Err(e);
                        break;
                    }
                }
            }
            match last {
                Ok(true) => Check::new(
                    "provider.chat_stream".into(),
                    Status::Pass,
                    format!("{chunks} chunks, then done"),
                ),
                Ok(false) => Check::new(
                    "provider.chat_stream".into(),
                    Status::Fail,
                    format!("ended after {chunks} chunks without one marked done"),
                ),
                Err(e) => judge::<()>("provider.chat_stream".into(), at, Err(e), |_| pass("")),
            }
        }
    };
    checks.push(check);
    checks
}

pub async fn auth(ch: &Channel, plugin: &str) -> Vec<Check> {
    let mut c = pb::auth_client::AuthClient::new(ch.clone());
    let mut checks = Vec::new();
    let at = Instant::now();
    let r = c.get_auth_status(plugin_ref(plugin)).await;
    checks.push(judge("auth.status".into(), at, r, |s| {
        if s.display_name.is_empty() {
            Check::new(String::new(), Status::Fail, "no display name".into())
        } else {
            pass(format!(
                "{} {:?}",
                s.display_name,
                pb::AuthStatus::try_from(s.status).unwrap_or_default()
            ))
        }
    }));
    let at = Instant::now();
    let r = c.get_token(plugin_ref(plugin)).await;
    checks.push(judge("auth.token".into(), at, r, |_| pass("a token")));
    let at = Instant::now();
    let r = c.start_device_flow(plugin_ref(plugin)).await;
    checks.push(judge("auth.device_flow".into(), at, r, |d| {
        pass(format!(
            "user code {:?} at {}",
            d.user_code, d.verification_url
        ))
    }));
    let at = Instant::now();
    let r = c.logout(plugin_ref(plugin)).await;
    checks.push(judge("auth.logout".into(), at, r, |_| pass("")));
    checks
}

pub async fn hook(ch: &Channel, plugin: &str) -> Vec<Check> {
    use pb::hook_event::Event;
    let mut c = pb::hooks_client::HooksClient::new(ch.clone());
    let execute = |args: &str| {
        Event::ToolExecute(pb::ToolExecuteEvent {
            tool: "conformance_probe".into(),
            arguments_json: args.into(),
        })
    };
    let cases = [
        (
            "hook.tool_execute.valid",
            execute(r#"{"path":"README.md"}"#),
        ),
        // tarkd passes on only JSON; not the object a tool takes.
        ("hook.tool_execute.invalid", execute("[null, -1]")),
        (
            "hook.tool_complete",
            Event::ToolComplete(pb::ToolCompleteEvent {
                tool: "conformance_probe".into(),
                result: "done".into(),
            }),
        ),
        (
            "hook.error",
            Event::Error("conformance: an error event".into()),
        ),
    ];
    let mut checks = Vec::new();
    for (id, event) in cases {
        let at = Instant::now();
        let r = c
            .dispatch_hook(pb::HookEvent {
                event: Some(event),
                ..Default::default()
            })
            .await;
        checks.push(judge(id.into(), at, r, |o| {
            match o.results.iter().find(|r| r.plugin == plugin) {
                None => Check::new(String::new(), Status::Fail, "the hook did not run".into()),
                Some(r) if r.decision == "failed" => {
                    Check::new(String::new(), Status::Fail, format!("failed: {}", r.detail))
                }
                Some(r) => pass(format!("{} {}", r.decision, r.detail)),
            }
        }));
    }
    checks
}

pub async fn channel(ch: &Channel, plugin: &str) -> Vec<Check> {
    let mut c = pb::channels_client::ChannelsClient::new(ch.clone());
    let mut checks = Vec::new();
    let listed = c.list_channels(pb::ListChannelsRequest {}).await;
    checks.push(match listed.map(|r| r.into_inner()) {
        Ok(r) => match r.channels.iter().find(|x| x.plugin == plugin) {
            Some(x) => Check::new(
                "channel.info".into(),
                Status::Pass,
                format!("{} ({})", x.id, x.display_name),
            ),
            None => Check::new(
                "channel.info".into(),
                Status::Fail,
                format!("not listed: {}", r.errors.join("; ")),
            ),
        },
        Err(s) => Check::new("channel.info".into(), Status::Fail, s.message().into()),
    });
    let at = Instant::now();
    let r = c
        .start_channel(pb::StartChannelRequest {
            plugin: plugin.into(),
            config_json: "{}".into(),
        })
        .await;
    checks.push(judge("channel.start".into(), at, r, |_| pass("")));
    let at = Instant::now();
    let r = c.poll_channel(plugin_ref(plugin)).await;
    checks.push(judge("channel.poll".into(), at, r, |p| {
        pass(format!("{} messages", p.messages.len()))
    }));
    let send = |conversation: &str, text: &str| pb::SendMessageRequest {
        plugin: plugin.into(),
        conversation: conversation.into(),
        text: text.into(),
        reply_to: String::new(),
        metadata_json: String::new(),
    };
    for (id, req) in [
        ("channel.send.valid", send("conformance", "hello")),
        ("channel.send.invalid", send("", "")),
    ] {
        let at = Instant::now();
        let r = c.send_message(req).await;
        checks.push(judge(id.into(), at, r, |s| {
            pass(format!("message {}", s.message_id))
        }));
    }
    let at = Instant::now();
    let r = c
        .handle_webhook(pb::WebhookRequest {
            plugin: plugin.into(),
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: Vec::new(),
            body: "not json {".into(),
        })
        .await;
    checks.push(judge("channel.webhook.invalid".into(), at, r, |w| {
        pass(format!("status {}", w.status))
    }));
    let at = Instant::now();
    let r = c.stop_channel(plugin_ref(plugin)).await;
    checks.push(judge("channel.stop".into(), at, r, |_| pass("")));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_arguments_fill_each_required_property_by_type() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "n": {"type": "integer"}, "b": {"type": "boolean"}, "o": {"type": "object"}},
            "required": ["a", "n", "b", "o", "untyped"]
        });
        assert_eq!(
            valid_arguments(&schema),
            json!({"a": "conformance", "n": 1, "b": true, "o": {}, "untyped": "conformance"})
        );
        assert_eq!(valid_arguments(&json!({})), json!({}));
    }
}
