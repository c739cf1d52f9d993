//! The tool world: tools the agent can call.

use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::{not_this_world, world_bindings, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::world_bindings!("tool-world", ws);
}

use bindings::exports::tark::plugin::tool_plugin::ToolResult;

world_plumbing!(Tool, bindings::ToolWorld, call);

fn result(r: ToolResult) -> pb::tool_result::Result {
    match r {
        ToolResult::Success(s) => pb::tool_result::Result::Success(s),
        ToolResult::Error(e) => pb::tool_result::Result::Error(e),
    }
}

/// The tool world's `call`, for a bindings module `$bindings`; `$result` turns
/// its `tool-result` into the agent's answer (the one shape the contracts differ
/// in).
macro_rules! tool_calls {
    ($bindings:ident, $result:ident) => {
        async fn call(
            world: &$bindings::ToolWorld,
            store: &mut Store<HostState>,
            call: Call,
        ) -> wasmtime::Result<Result<Outcome, Failure>> {
            use $bindings::exports::tark::plugin::tool_plugin::RiskLevel;
            let tool = world.tark_plugin_tool_plugin();
            Ok(Ok(match call {
                Call::ListTools(_) => {
                    let tools = tool.call_get_tools(&mut *store).await?;
                    Outcome::Tools(pb::ToolList {
                        tools: tools
                            .into_iter()
                            .map(|t| pb::ToolDef {
                                name: t.name,
                                description: t.description,
                                parameters_schema: t.parameters_schema,
                            })
                            .collect(),
                    })
                }
                Call::ExecuteTool(req) => {
                    let r = tool
                        .call_execute(&mut *store, &req.tool, &req.arguments_json)
                        .await?;
                    Outcome::ToolResult(pb::ToolResult {
                        result: Some($result(r)),
                    })
                }
                Call::GetRiskLevel(req) => {
                    let level = match tool.call_get_risk_level(&mut *store, &req.tool).await? {
                        RiskLevel::ReadOnly => pb::RiskLevel::ReadOnly,
                        RiskLevel::Write => pb::RiskLevel::Write,
                        RiskLevel::Risky => pb::RiskLevel::Risky,
                        RiskLevel::Dangerous => pb::RiskLevel::Dangerous,
                    };
                    Outcome::Risk(pb::Risk {
                        level: level as i32,
                    })
                }
                other => return Ok(Err(not_this_world("tool", &other))),
            }))
        }
    };
}
pub(super) use tool_calls;

tool_calls!(bindings, result);
