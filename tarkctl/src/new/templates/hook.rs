//! __NAME__: a tark hook. It blocks tool calls whose arguments mention
//! `rm -rf` and logs every event.

use tark_plugin_sdk::hook::{Guest, HookDecision};
use tark_plugin_sdk::info;

struct Plugin;

impl Guest for Plugin {
    fn on_tool_execute(tool_name: String, arguments_json: String) -> HookDecision {
        if arguments_json.contains("rm -rf") {
            HookDecision::Block(format!("{tool_name}: refusing to run rm -rf"))
        } else {
            HookDecision::Proceed
        }
    }

    fn on_tool_complete(tool_name: String, _output: String) -> Result<(), String> {
        info!("{tool_name} completed");
        Ok(())
    }

    fn on_error(error: String) -> Result<(), String> {
        info!("error: {error}");
        Ok(())
    }

    fn on_event(name: String, _payload_json: String) -> Result<(), String> {
        info!("event {name}");
        Ok(())
    }
}

tark_plugin_sdk::export_hook!(Plugin);
