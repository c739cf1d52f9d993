//! __NAME__: a tark tool plugin. `greet` says hello and counts how often it has.

use serde::Deserialize;
use tark_plugin_sdk::tool::{Guest, RiskLevel, ToolDef, ToolResult};
use tark_plugin_sdk::{info, storage};

struct Plugin;

#[derive(Deserialize)]
struct Args {
    name: String,
}

impl Guest for Plugin {
    fn get_tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "greet".into(),
            description: "Greets someone by name".into(),
            parameters_schema: r#"{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}"#.into(),
        }]
    }

    fn get_risk_level(_tool: String) -> RiskLevel {
        RiskLevel::ReadOnly
    }

    fn execute(_tool: String, arguments_json: String) -> ToolResult {
        let args: Args = match serde_json::from_str(&arguments_json) {
            Ok(a) => a,
            Err(e) => return ToolResult::Error(format!("bad arguments: {e}")),
        };
        let count: u64 = storage::get_json("greeted").ok().flatten().unwrap_or(0) + 1;
        if let Err(e) = storage::set_json("greeted", &count) {
            return ToolResult::Error(e.to_string());
        }
        info!("greeting {} (#{count})", args.name);
        ToolResult::Success(format!("Hello, {}! (greeting #{count})", args.name))
    }
}

tark_plugin_sdk::export_tool!(Plugin);
