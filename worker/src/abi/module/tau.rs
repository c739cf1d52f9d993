//! tau's wasm extensions as hook plugins: one export, `tau_extension_invoke`,
//! takes tau's request envelope and returns a JSON object (packed `ptr << 32 |
//! len`). The envelope and what an answer decides are `tark_tau`'s, shared
//! with tarkd's process extensions.

use tark_proto::worker::v1 as pb;
use tark_tau::Answer;

use super::{Abi, Fault, broke};
use crate::abi::{Call, Outcome, plugin_error};

pub async fn call(g: &mut Abi<'_>, call: Call) -> Result<Outcome, Fault> {
    let (id, version) = g.manifest().clone();
    let Some(request) = tark_tau::request(&call, &id, &version) else {
        return Err(g.unserved(&call));
    };
    let max = g.max_response();
    let text = g.tau(&request, max).await?;
    match tark_tau::answer(&call, &text) {
        Ok(Answer::Failed(message)) => Ok(plugin_error(message)),
        Ok(Answer::Decision(d)) => Ok(Outcome::Decision(pb::HookDecision { decision: Some(d) })),
        Ok(Answer::Ack) => Ok(Outcome::Ack(pb::Ack { error: None })),
        Err(e) => Err(broke("tau_extension_invoke", e)),
    }
}
