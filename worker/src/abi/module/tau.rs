//! tau's wasm extensions as hook plugins: one export, `tau_extension_invoke`,
//! takes a JSON envelope `{"hook", "payload": {"schema_version": 1, "kind", …},
//! "manifest_id", "manifest_version"}` and returns a JSON object (packed
//! `ptr << 32 | len`). tarkd's hook events map onto tau's hooks:
//! tool_execute → `pre-tool-call`, tool_complete → `post-tool-call`, error →
//! `run-end` with the error, a named event → the hook of that name
//! (`run-start`, `run-end`, `message-transform`, `policy-override`, …).

use serde_json::{Value, json};
use tark_proto::worker::v1 as pb;

use super::{Abi, Fault, broke};
use crate::abi::{Call, Outcome, plugin_error};

/// The hook and payload for a call, or `None` for a call hooks do not take.
pub fn envelope(call: &Call) -> Option<(String, Value)> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.to_owned()));
    Some(match call {
        Call::HookToolExecute(e) => (
            "pre-tool-call".into(),
            json!({ "tool_name": e.tool, "arguments": parse(&e.arguments_json) }),
        ),
        Call::HookToolComplete(e) => (
            "post-tool-call".into(),
            json!({ "tool_name": e.tool, "result": e.result }),
        ),
        Call::HookError(e) => ("run-end".into(), json!({ "error": e.error })),
        Call::HookNamed(e) => (e.name.clone(), parse(&e.payload_json)),
        _ => return None,
    })
}

/// What a pre-tool-call answer decides: block (with a reason), new arguments,
/// or proceed. Accepts `{"block": true, "reason"}`, `{"decision"|"action":
/// "block"|"deny"|"modify"|"allow", "reason", "arguments"}`.
pub fn decision(answer: &Value) -> pb::hook_decision::Decision {
    use pb::hook_decision::Decision;
    let verdict = answer
        .get("decision")
        .or_else(|| answer.get("action"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let reason = || {
        answer
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("blocked by a tau extension")
            .to_owned()
    };
    if answer.get("block").and_then(Value::as_bool) == Some(true)
        || matches!(verdict, "block" | "deny")
    {
        return Decision::BlockReason(reason());
    }
    match answer.get("arguments") {
        Some(args) if verdict != "allow" => Decision::ModifyArgumentsJson(args.to_string()),
        _ => Decision::Proceed(pb::Nothing {}),
    }
}

pub async fn call(g: &mut Abi<'_>, call: Call) -> Result<Outcome, Fault> {
    let Some((hook, mut payload)) = envelope(&call) else {
        return Err(g.unserved(&call));
    };
    if let Value::Object(o) = &mut payload {
        o.insert("schema_version".into(), json!(1));
        o.insert("kind".into(), json!(hook));
    } else {
        payload = json!({ "schema_version": 1, "kind": hook, "value": payload });
    }
    let request = json!({
        "hook": hook,
        "payload": payload,
        "manifest_id": g.manifest().0,
        "manifest_version": g.manifest().1,
    })
    .to_string();
    let max = g.max_response();
    let text = g.tau(&request, max).await?;
    let answer: Value = serde_json::from_str(&text).map_err(|e| {
        broke(
            "tau_extension_invoke",
            format!("returned malformed JSON: {e}"),
        )
    })?;
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        let message = error
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string());
        return Ok(plugin_error(message));
    }
    Ok(match call {
        Call::HookToolExecute(_) => Outcome::Decision(pb::HookDecision {
            decision: Some(decision(&answer)),
        }),
        _ => Outcome::Ack(pb::Ack { error: None }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::hook_decision::Decision;

    #[test]
    fn decisions() {
        let cases = [
            (json!({}), Decision::Proceed(pb::Nothing {})),
            (
                json!({"decision": "allow"}),
                Decision::Proceed(pb::Nothing {}),
            ),
            (
                json!({"block": true, "reason": "no"}),
                Decision::BlockReason("no".into()),
            ),
            (
                json!({"action": "deny"}),
                Decision::BlockReason("blocked by a tau extension".into()),
            ),
            (
                json!({"decision": "modify", "arguments": {"a": 1}}),
                Decision::ModifyArgumentsJson(r#"{"a":1}"#.into()),
            ),
            (
                json!({"decision": "allow", "arguments": {"a": 1}}),
                Decision::Proceed(pb::Nothing {}),
            ),
            (json!({"block": false}), Decision::Proceed(pb::Nothing {})),
        ];
        for (answer, want) in cases {
            assert_eq!(decision(&answer), want, "{answer}");
        }
    }

    #[test]
    fn events_map_onto_taus_hooks() {
        let exec = Call::HookToolExecute(tark_proto::plugin::v1::ToolExecuteEvent {
            tool: "shell".into(),
            arguments_json: r#"{"cmd":"ls"}"#.into(),
        });
        let (hook, payload) = envelope(&exec).unwrap_or_default();
        assert_eq!(hook, "pre-tool-call");
        assert_eq!(payload["arguments"]["cmd"], "ls");
        let named = Call::HookNamed(tark_proto::plugin::v1::NamedEvent {
            name: "run-start".into(),
            payload_json: "not json".into(),
        });
        assert_eq!(envelope(&named).map(|e| e.0).as_deref(), Some("run-start"));
        assert!(envelope(&Call::ChannelPoll(pb::Nothing {})).is_none());
    }
}
