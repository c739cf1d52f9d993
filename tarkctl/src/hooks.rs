//! `tarkctl hook`: send one event to every hook plugin (or one, `--plugin`)
//! and show each decision.

use anyhow::Context;
use serde_json::{Value, json};
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

use crate::render::{print_json, print_table};
use crate::{request, status_error};

fn text(payload: &Value, key: &str) -> String {
    match payload.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The event named on the command line: `before-tool` (payload
/// `{"tool":…, "arguments":{…}}`), `after-tool` (`{"tool":…, "result":…}`),
/// `error` (`{"error":…}`), or any other name with its payload as is.
pub fn event(name: &str, payload: &str) -> anyhow::Result<pb::HookEvent> {
    use pb::hook_event::Event;
    let p: Value = serde_json::from_str(payload).context("the payload is not valid JSON")?;
    let event = match name {
        "before-tool" => Event::ToolExecute(pb::ToolExecuteEvent {
            tool: text(&p, "tool"),
            arguments_json: p.get("arguments").map_or("{}".into(), Value::to_string),
        }),
        "after-tool" => Event::ToolComplete(pb::ToolCompleteEvent {
            tool: text(&p, "tool"),
            result: text(&p, "result"),
        }),
        "error" => Event::Error(text(&p, "error")),
        _ => Event::Named(pb::NamedEvent {
            name: name.to_owned(),
            payload_json: payload.to_owned(),
        }),
    };
    Ok(pb::HookEvent {
        event: Some(event),
        ..Default::default()
    })
}

/// Sends the event to every hook plugin, or only to `only` when it names one.
pub async fn dispatch(
    channel: Channel,
    name: &str,
    payload: &str,
    only: &str,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = pb::hooks_client::HooksClient::new(channel);
    let mut e = event(name, payload)?;
    only.clone_into(&mut e.plugin);
    let o = c
        .dispatch_hook(request(e, tenant)?)
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        let results: Vec<_> = o
            .results
            .iter()
            .map(|r| json!({ "plugin": r.plugin, "decision": r.decision, "detail": r.detail, "fail_closed": r.fail_closed }))
            .collect();
        print_json(
            &json!({ "blocked": o.blocked, "block_reason": o.block_reason,
                            "arguments_json": o.arguments_json, "errors": o.errors, "results": results }),
        );
        return Ok(());
    }
    let rows = o
        .results
        .iter()
        .map(|r| {
            let policy = if r.fail_closed { "closed" } else { "open" };
            vec![
                r.plugin.clone(),
                r.decision.clone(),
                policy.into(),
                r.detail.clone(),
            ]
        })
        .collect();
    print_table(&["HOOK", "DECISION", "FAILS", "DETAIL"], rows);
    if o.blocked {
        println!("blocked: {}", o.block_reason);
    } else if name == "before-tool" {
        println!("proceeds with arguments {}", o.arguments_json);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::hook_event::Event;

    #[test]
    fn events_from_the_command_line() -> anyhow::Result<()> {
        let e = event(
            "before-tool",
            r#"{"tool":"shell","arguments":{"cmd":"ls"}}"#,
        )?;
        assert_eq!(
            e.event,
            Some(Event::ToolExecute(pb::ToolExecuteEvent {
                tool: "shell".into(),
                arguments_json: r#"{"cmd":"ls"}"#.into()
            }))
        );
        let e = event("error", r#"{"error":"oops"}"#)?;
        assert_eq!(e.event, Some(Event::Error("oops".into())));
        let e = event("session-start", r#"{"a":1}"#)?;
        assert!(
            matches!(e.event, Some(Event::Named(n)) if n.name == "session-start" && n.payload_json == r#"{"a":1}"#)
        );
        assert!(event("error", "not json").is_err());
        Ok(())
    }
}
