//! tark's tool world: `execute` answers a record `{success, output, error?}`.

use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::published_bindings;
use crate::abi::component::{not_this_world, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::published_bindings!("tool-world");
}

use bindings::exports::tark::plugin::tool_plugin::ToolResult;

world_plumbing!(Tool, bindings::ToolWorld, call);

/// The record as the agent's answer: `success` decides; a failure without an
/// error message reports its output.
fn result(r: ToolResult) -> pb::tool_result::Result {
    if r.success {
        pb::tool_result::Result::Success(r.output)
    } else {
        pb::tool_result::Result::Error(r.error.unwrap_or(r.output))
    }
}

crate::abi::component::tool::tool_calls!(bindings, result);

#[cfg(test)]
mod tests {
    use super::*;
    use pb::tool_result::Result as R;

    #[test]
    fn the_record_becomes_one_answer() {
        let r = |success, output: &str, error: Option<&str>| ToolResult {
            success,
            output: output.into(),
            error: error.map(Into::into),
        };
        let cases = [
            (r(true, "out", None), R::Success("out".into())),
            (r(true, "out", Some("ignored")), R::Success("out".into())),
            (r(false, "out", Some("why")), R::Error("why".into())),
            (r(false, "partial", None), R::Error("partial".into())),
        ];
        for (record, want) in cases {
            assert_eq!(result(record), want);
        }
    }
}
