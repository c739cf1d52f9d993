//! tau's extension hook protocol, as tarkd speaks it to a tau extension,
//! whether a wasm module in a worker (`tau_extension_invoke`) or a process in
//! a jail (the request on stdin, the answer on stdout). One place, so both
//! runtimes hand an extension the same request and read its answer the same way.
//!
//! tark's hook calls map onto tau's hooks: tool_execute → `pre-tool-call`,
//! tool_complete → `post-tool-call`, error → `run-end` with the error, a named
//! event → the hook of that name (`run-start`, `run-end`, `message-transform`,
//! `policy-override`, …). The request is `{"hook", "payload": {"schema_version":
//! 1, "kind", …}, "manifest_id", "manifest_version"}`; the answer a JSON object.

use serde_json::{Value, json};
use tark_proto::worker::v1 as pb;

/// A hook call as tarkd sends it to a plugin.
pub type Call = pb::invoke_request::Call;

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

/// The request tau hands an extension for `call`, or `None` for a call hooks
/// do not take.
pub fn request(call: &Call, manifest_id: &str, manifest_version: &str) -> Option<String> {
    let (hook, mut payload) = envelope(call)?;
    if let Value::Object(o) = &mut payload {
        o.insert("schema_version".into(), json!(1));
        o.insert("kind".into(), json!(hook));
    } else {
        payload = json!({ "schema_version": 1, "kind": hook, "value": payload });
    }
    Some(
        json!({
            "hook": hook,
            "payload": payload,
            "manifest_id": manifest_id,
            "manifest_version": manifest_version,
        })
        .to_string(),
    )
}

/// What an extension's answer to `call` says.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The extension reported an error (`{"error": …}`).
    Failed(String),
    /// Its decision about a tool call (pre-tool-call).
    Decision(pb::hook_decision::Decision),
    /// Any other hook, handled.
    Ack,
}

/// Reads an extension's answer; `Err` when it is not a JSON object.
pub fn answer(call: &Call, text: &str) -> Result<Answer, String> {
    let answer: Value =
        serde_json::from_str(text).map_err(|e| format!("returned malformed JSON: {e}"))?;
    if !answer.is_object() {
        return Err("returned JSON that is not an object".to_owned());
    }
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        let message = error
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string());
        return Ok(Answer::Failed(message));
    }
    Ok(match call {
        Call::HookToolExecute(_) => Answer::Decision(decision(&answer)),
        _ => Answer::Ack,
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

#[cfg(test)]
mod tests;
