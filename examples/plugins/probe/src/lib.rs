//! An example tark tool plugin that makes exactly the host calls it is asked to
//! and reports what came back, allowed or refused. Operators use it to check what
//! a deployment grants (`tarkctl invoke probe --args '{"op":"http","url":...}'`);
//! tarkd's tests use it to exercise every host interface through real processes.

use serde::Deserialize;
use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "tool-world",
    path: "../../../wit",
});

use exports::tark::plugin::tool_plugin::{Guest, RiskLevel, ToolDef, ToolResult};
use tark::plugin::{env, fs, http, log, storage, ws};

struct Probe;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Http {
        url: String,
        #[serde(default = "get")]
        method: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    Env { name: String },
    Fs { path: String },
    StorageSet { key: String, value: String },
    StorageGet { key: String, #[serde(default = "one")] times: u32 },
    StorageDelete { key: String },
    StorageList,
    Log { message: String },
    /// Connects, sends `send` (if any), waits for one message, and closes unless
    /// `keep_open` (then the connection lives until the worker ends).
    Ws {
        url: String,
        #[serde(default)]
        headers: String,
        send: Option<String>,
        #[serde(default)]
        keep_open: bool,
    },
    Batch { ops: Vec<Value> },
}

fn get() -> String {
    "GET".into()
}

fn one() -> u32 {
    1
}

fn run(op: Op) -> Value {
    match op {
        Op::Http { url, method, headers, body } => {
            let req = http::HttpRequest { method, url, headers, body };
            match http::request(&req) {
                Ok(r) => json!({ "ok": true, "status": r.status, "headers": r.headers, "body": r.body }),
                Err(e) => json!({ "ok": false, "error": e.message }),
            }
        }
        Op::Env { name } => json!({ "ok": true, "value": env::get(&name) }),
        Op::Fs { path } => match fs::read(&path) {
            Ok(content) => json!({ "ok": true, "content": content }),
            Err(e) => json!({ "ok": false, "error": e }),
        },
        Op::StorageSet { key, value } => match storage::set(&key, &value) {
            Ok(()) => json!({ "ok": true }),
            Err(e) => json!({ "ok": false, "error": e }),
        },
        Op::StorageGet { key, times } => {
            let mut value = None;
            // `times` > 1 is for benchmarks (host-call cost without the invoke's);
            // 0 makes no call at all, their baseline.
            for _ in 0..times {
                value = storage::get(&key);
            }
            json!({ "ok": true, "value": value })
        }
        Op::StorageDelete { key } => match storage::delete(&key) {
            Ok(()) => json!({ "ok": true }),
            Err(e) => json!({ "ok": false, "error": e }),
        },
        Op::StorageList => json!({ "ok": true, "keys": storage::list_keys() }),
        Op::Log { message } => {
            log::info(&message);
            json!({ "ok": true })
        }
        Op::Ws { url, headers, send, keep_open } => ws_round(&url, &headers, send, keep_open),
        Op::Batch { ops } => Value::Array(
            ops.into_iter()
                .map(|v| match serde_json::from_value(v) {
                    Ok(op) => run(op),
                    Err(e) => json!({ "ok": false, "error": format!("invalid op: {e}") }),
                })
                .collect(),
        ),
    }
}

fn ws_round(url: &str, headers: &str, send: Option<String>, keep_open: bool) -> Value {
    let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null);
    let connected = parse(ws::connect(url, headers));
    let Some(handle) = connected.get("handle").and_then(Value::as_i64) else {
        return connected;
    };
    let mut out = json!({ "ok": true, "handle": handle });
    if let Some(data) = send {
        out["sent"] = parse(ws::send(handle, &data));
        out["received"] = parse(ws::recv(handle, 2000, 65536));
    }
    if !keep_open {
        out["closed"] = parse(ws::close(handle));
    }
    out
}

impl Guest for Probe {
    fn get_tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "probe".into(),
            description: "Make one host call (op: http, env, fs, storage_set, storage_get, \
                          storage_delete, storage_list, log, ws, batch) and report tarkd's answer."
                .into(),
            parameters_schema: r#"{"type":"object","properties":{"op":{"type":"string"}},"required":["op"]}"#.into(),
        }]
    }

    fn get_risk_level(_tool_name: String) -> RiskLevel {
        RiskLevel::Risky
    }

    fn execute(tool_name: String, arguments_json: String) -> ToolResult {
        if tool_name != "probe" {
            return ToolResult::Error(format!("unknown tool {tool_name:?}"));
        }
        match serde_json::from_str::<Op>(&arguments_json) {
            Ok(op) => ToolResult::Success(run(op).to_string()),
            Err(e) => ToolResult::Error(format!("probe: invalid arguments: {e}")),
        }
    }
}

export!(Probe);
