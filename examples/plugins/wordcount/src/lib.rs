//! An example tark tool plugin built against tark's own published WIT
//! (`wit/published/tark.wit`, `package tark:plugin;` with no version), the
//! contract tark's plugin authors use: its `execute` answers the record
//! `{success, output, error?}` rather than tarkd's success/error variant.
//! tarkd hosts it unchanged beside plugins built against `tark:plugin@0.1.x`.
//! Written with tark-plugin-sdk (`tool` + `published`) and built as a WASI
//! component (`wasm32-wasip1` and the preview-1 adapter).

use tark_plugin_sdk::tool::{Guest, RiskLevel, ToolDef, ToolResult};
use serde_json::Value;

struct WordCount;

fn failed(error: String) -> ToolResult {
    ToolResult {
        success: false,
        output: String::new(),
        error: Some(error),
    }
}

impl Guest for WordCount {
    fn get_tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "wordcount".into(),
            description: "Count the words, lines and characters of a text.".into(),
            parameters_schema: r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#.into(),
        }]
    }

    fn get_risk_level(_tool_name: String) -> RiskLevel {
        RiskLevel::ReadOnly
    }

    fn execute(tool_name: String, arguments: String) -> ToolResult {
        if tool_name != "wordcount" {
            return failed(format!("unknown tool {tool_name:?}"));
        }
        let args: Value = match serde_json::from_str(&arguments) {
            Ok(v) => v,
            Err(e) => return failed(format!("wordcount: invalid arguments: {e}")),
        };
        let Some(text) = args.get("text").and_then(Value::as_str) else {
            return failed("wordcount: \"text\" (a string) is required".into());
        };
        let counts = serde_json::json!({
            "words": text.split_whitespace().count(),
            "lines": text.lines().count(),
            "chars": text.chars().count(),
        });
        ToolResult {
            success: true,
            output: counts.to_string(),
            error: None,
        }
    }
}

tark_plugin_sdk::export_tool!(WordCount);
