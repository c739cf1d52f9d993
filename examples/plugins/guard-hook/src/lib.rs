//! An example tark hook plugin: it looks at each tool call before it runs.
//!
//! - arguments containing `rm -rf` are blocked, with the reason shown to the agent;
//! - a call to the tool `tag` gets `"hooks"` appended to its JSON arguments (one
//!   more element per hook that saw it), which shows how modifications chain;
//! - anything else proceeds. Completions and errors are logged.
//!
//! Three named events misbehave on purpose, for tarkd's containment tests:
//! `test-fail` returns an error, `test-spin` never returns, `test-trap` crashes.

wit_bindgen::generate!({
    world: "hook-world",
    path: "../../../wit",
});

use exports::tark::plugin::hook_plugin::{Guest, HookDecision};
use tark::plugin::log;

struct Guard;

/// `args` with one more element in its `"hooks"` array, or `None` when `args` is
/// not a JSON object.
fn tagged(args: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(args).ok()?;
    let object = value.as_object_mut()?;
    let hooks = object
        .entry("hooks")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let list = hooks.as_array_mut()?;
    let n = list.len() + 1;
    list.push(n.into());
    Some(value.to_string())
}

impl Guest for Guard {
    fn on_tool_execute(tool_name: String, arguments_json: String) -> HookDecision {
        if arguments_json.contains("rm -rf") {
            return HookDecision::Block("guard: refusing a destructive shell command".into());
        }
        if tool_name == "tag" {
            if let Some(args) = tagged(&arguments_json) {
                return HookDecision::Modify(args);
            }
        }
        HookDecision::Proceed
    }

    fn on_tool_complete(tool_name: String, output: String) -> Result<(), String> {
        log::info(&format!("guard: {tool_name} finished ({} bytes)", output.len()));
        Ok(())
    }

    fn on_error(error: String) -> Result<(), String> {
        log::warn(&format!("guard: agent error: {error}"));
        Ok(())
    }

    fn on_event(name: String, _payload_json: String) -> Result<(), String> {
        match name.as_str() {
            "test-fail" => Err("failing on purpose".into()),
            "test-spin" => loop {
                std::hint::spin_loop();
            },
            "test-trap" => panic!("crashing on purpose"),
            _ => Ok(()),
        }
    }
}

export!(Guard);
