// A tool plugin in the shape of tark's plugin SDK guide: wit-bindgen 0.36,
// tark.wit beside it, `cargo build --release --target wasm32-wasip1`.
wit_bindgen::generate!({
    world: "tool-world",
    path: "tark.wit",
});

use exports::tark::plugin::tool_plugin::*;

struct MyTool;

impl Guest for MyTool {
    fn get_tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "greet".to_string(),
            description: "Greets someone and counts the greetings".to_string(),
            parameters_schema: r#"{"type":"object","properties":{"name":{"type":"string"}}}"#
                .to_string(),
        }]
    }

    fn get_risk_level(_tool_name: String) -> RiskLevel {
        RiskLevel::ReadOnly
    }

    fn execute(_tool_name: String, arguments: String) -> ToolResult {
        let name = arguments
            .split('"')
            .skip_while(|s| *s != "name")
            .nth(2)
            .unwrap_or("world")
            .to_string();
        let count = tark::plugin::storage::get("count")
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        if let Err(e) = tark::plugin::storage::set("count", &count.to_string()) {
            return ToolResult { success: false, output: String::new(), error: Some(e) };
        }
        let greeting = tark::plugin::env::get("MY_TOOL_GREETING").unwrap_or("Hello".to_string());
        tark::plugin::log::info(&format!("greeting {name}"));
        println!("greeted {name} ({count})");
        ToolResult {
            success: true,
            output: format!("{greeting}, {name}! (greeting {count})"),
            error: None,
        }
    }
}

export!(MyTool);
