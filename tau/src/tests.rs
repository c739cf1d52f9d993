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

#[test]
fn requests_carry_the_hook_the_payload_and_the_manifest() {
    let named = Call::HookNamed(tark_proto::plugin::v1::NamedEvent {
        name: "run-start".into(),
        payload_json: r#"{"run_id":"r1"}"#.into(),
    });
    let r: Value = request(&named, "ext", "0.1.0")
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_default();
    assert_eq!(
        r,
        json!({"hook": "run-start", "manifest_id": "ext", "manifest_version": "0.1.0",
               "payload": {"run_id": "r1", "schema_version": 1, "kind": "run-start"}})
    );
    let scalar = Call::HookError(pb::HookError { error: "e".into() });
    let r: Value = request(&scalar, "ext", "1.0.0")
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_default();
    assert_eq!(r["payload"]["error"], "e");
    assert!(request(&Call::ChannelPoll(pb::Nothing {}), "ext", "1").is_none());
}

#[test]
fn answers_table() {
    let exec = Call::HookToolExecute(tark_proto::plugin::v1::ToolExecuteEvent {
        tool: "shell".into(),
        arguments_json: "{}".into(),
    });
    let named = Call::HookNamed(tark_proto::plugin::v1::NamedEvent {
        name: "run-start".into(),
        payload_json: "{}".into(),
    });
    let cases: [(&Call, &str, Result<Answer, &str>); 8] = [
        (
            &named,
            r#"{"ok":true,"result":"hook-processed"}"#,
            Ok(Answer::Ack),
        ),
        (
            &named,
            r#"{"error":"nope"}"#,
            Ok(Answer::Failed("nope".into())),
        ),
        (
            &named,
            r#"{"error":{"code":1}}"#,
            Ok(Answer::Failed(r#"{"code":1}"#.into())),
        ),
        (&named, r#"{"error":null}"#, Ok(Answer::Ack)),
        (
            &exec,
            r#"{"block":true,"reason":"no"}"#,
            Ok(Answer::Decision(Decision::BlockReason("no".into()))),
        ),
        (
            &exec,
            "{}",
            Ok(Answer::Decision(Decision::Proceed(pb::Nothing {}))),
        ),
        (&named, "not-json", Err("malformed JSON")),
        (&named, "[1]", Err("not an object")),
    ];
    for (call, text, want) in cases {
        match (answer(call, text), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
            (got, want) => panic!("{text}: {got:?}, wanted {want:?}"),
        }
    }
}
