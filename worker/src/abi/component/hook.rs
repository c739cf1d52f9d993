//! The hook world: a plugin's say on the agent's tool calls and other events.

use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::provider::ack;
use super::{not_this_world, world_bindings, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::world_bindings!("hook-world");
}

use bindings::exports::tark::plugin::hook_plugin::HookDecision;

world_plumbing!(Hook, bindings::HookWorld, call);

async fn call(
    world: &bindings::HookWorld,
    store: &mut Store<HostState>,
    call: Call,
) -> wasmtime::Result<Result<Outcome, Failure>> {
    let h = world.tark_plugin_hook_plugin();
    Ok(Ok(match call {
        Call::HookToolExecute(e) => {
            use pb::hook_decision::Decision as D;
            let d = match h
                .call_on_tool_execute(&mut *store, &e.tool, &e.arguments_json)
                .await?
            {
                HookDecision::Proceed => D::Proceed(pb::Nothing {}),
                HookDecision::Modify(args) => D::ModifyArgumentsJson(args),
                HookDecision::Block(reason) => D::BlockReason(reason),
            };
            Outcome::Decision(pb::HookDecision { decision: Some(d) })
        }
        Call::HookToolComplete(e) => ack(h
            .call_on_tool_complete(&mut *store, &e.tool, &e.result)
            .await?),
        Call::HookError(e) => ack(h.call_on_error(&mut *store, &e.error).await?),
        Call::HookNamed(e) => ack(h
            .call_on_event(&mut *store, &e.name, &e.payload_json)
            .await?),
        other => return Ok(Err(not_this_world("hook", &other))),
    }))
}
