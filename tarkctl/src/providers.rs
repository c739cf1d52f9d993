//! `tarkctl providers`, `models` and `chat`: LLM provider plugins.

use std::io::Write;

use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

use crate::render::{print_json, print_table};
use crate::{request, status_error};

type Client = pb::providers_client::ProvidersClient<Channel>;

/// Every provider plugin's info, and the ones that could not be asked.
pub async fn providers(c: &mut Client, tenant: &Option<String>, json: bool) -> anyhow::Result<()> {
    let r = c
        .list_providers(request(pb::ListProvidersRequest {}, tenant)?)
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        let providers: Vec<_> = r
            .providers
            .iter()
            .map(|p| {
                json!({ "plugin": p.plugin, "id": p.id, "display_name": p.display_name,
                        "description": p.description, "requires_auth": p.requires_auth,
                        "serves_chat": p.serves_chat, "base_provider": p.base_provider })
            })
            .collect();
        print_json(&json!({ "providers": providers, "errors": r.errors }));
        return Ok(());
    }
    let rows = r
        .providers
        .iter()
        .map(|p| {
            let auth = if p.requires_auth { "yes" } else { "no" };
            // An auth-only provider's credentials go to the agent's own provider.
            let chat = match (p.serves_chat, p.base_provider.as_str()) {
                (true, _) => "yes".to_owned(),
                (false, "") => "auth-only".to_owned(),
                (false, base) => format!("auth-only ({base})"),
            };
            vec![
                p.plugin.clone(),
                p.display_name.clone(),
                auth.into(),
                chat,
                p.description.clone(),
            ]
        })
        .collect();
    print_table(&["PLUGIN", "NAME", "AUTH", "CHAT", "DESCRIPTION"], rows);
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    Ok(())
}

/// The models one provider plugin offers.
pub async fn models(
    c: &mut Client,
    plugin: String,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let r = c
        .list_models(request(pb::PluginRef { id: plugin }, tenant)?)
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        let models: Vec<_> = r
            .models
            .iter()
            .map(|m| {
                json!({ "id": m.id, "display_name": m.display_name, "context_window": m.context_window,
                        "supports_tools": m.supports_tools, "supports_vision": m.supports_vision,
                        "supports_streaming": m.supports_streaming })
            })
            .collect();
        print_json(&json!({ "models": models }));
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let rows = r
        .models
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.display_name.clone(),
                m.context_window.to_string(),
                yes(m.supports_streaming),
                yes(m.supports_tools),
            ]
        })
        .collect();
    print_table(&["MODEL", "NAME", "CONTEXT", "STREAMING", "TOOLS"], rows);
    Ok(())
}

fn usage_json(u: Option<&pb::Usage>) -> serde_json::Value {
    u.map_or(
        serde_json::Value::Null,
        |u| json!({ "input_tokens": u.input_tokens, "output_tokens": u.output_tokens }),
    )
}

/// One user message to a provider; with `stream`, text is printed as it arrives
/// (with `--json`, one JSON object per chunk).
pub async fn chat(
    c: &mut Client,
    plugin: String,
    model: String,
    message: String,
    stream: bool,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let req = pb::ChatRequest {
        plugin,
        model,
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: message,
        }],
    };
    if !stream {
        let r = c
            .chat(request(req, tenant)?)
            .await
            .map_err(status_error)?
            .into_inner();
        if json {
            print_json(&json!({ "text": r.text, "finish_reason": r.finish_reason,
                                "usage": usage_json(r.usage.as_ref()) }));
        } else {
            println!("{}", r.text);
        }
        return Ok(());
    }
    let mut chunks = c
        .chat_stream(request(req, tenant)?)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut out = std::io::stdout();
    while let Some(chunk) = chunks.message().await.map_err(status_error)? {
        if json {
            print_json(&json!({ "text": chunk.text, "done": chunk.done,
                                "usage": usage_json(chunk.usage.as_ref()) }));
        } else {
            write!(out, "{}", chunk.text)?;
            out.flush()?;
        }
    }
    if !json {
        writeln!(out)?;
    }
    Ok(())
}
