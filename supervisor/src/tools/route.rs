//! `InvokeTool`: a tool sent to the plugin that serves it.

use std::sync::Arc;

use tark_proto::worker::v1 as wpb;
use tonic::Code;

use super::catalog::Lookup;
use super::{by_precedence, unexpected};
use crate::daemon::Daemon;
use crate::workers::CallError;

impl Daemon {
    /// Runs a tool by name, routed to the one plugin that provides it. The
    /// route comes from what is known of each plugin's tools: when some
    /// plugin is known to offer the tool, the call goes on at once, whatever
    /// other plugins' describes are doing. Only when none is known to, the
    /// plugins not described yet are waited for (at most the describe
    /// deadline).
    pub async fn invoke_tool(
        self: &Arc<Self>,
        tenant: &str,
        tool: &str,
        arguments_json: &str,
    ) -> Result<(String, wpb::ToolResult), CallError> {
        let registry = self.registry();
        let enabled = |p: &str| crate::config::tenants::enabled(&self.config.tenants, tenant, p);
        let claims = |daemon: &Daemon| {
            let mut claimants = Vec::new();
            let mut unknown = Vec::new();
            let mut errors = Vec::new();
            for (plugin, lookup) in daemon.listings(&registry) {
                if !enabled(&plugin.id) {
                    continue;
                }
                match lookup {
                    Lookup::Listed(tools) if tools.iter().any(|t| t.name == tool) => {
                        claimants.push(plugin.id.clone());
                    }
                    Lookup::Listed(_) => {}
                    Lookup::Failed(why) => errors.push(format!("{}: {why}", plugin.id)),
                    Lookup::Unknown => unknown.push(plugin),
                }
            }
            (claimants, unknown, errors)
        };
        let (mut claimants, unknown, mut errors) = claims(self);
        if claimants.is_empty() && !unknown.is_empty() {
            self.await_described(unknown.iter()).await;
            let (found, still, failed) = claims(self);
            claimants = found;
            errors = failed;
            errors.extend(
                still
                    .iter()
                    .map(|p| format!("{}: its tools are still being listed", p.id)),
            );
        }
        if claimants.len() > 1 {
            by_precedence(&registry, &mut claimants);
        }
        let policy = self.config.sources.conflicts;
        let found = match (claimants.as_slice(), policy.winner(claimants.len())) {
            ([], _) => {
                let mut message = format!("unknown tool {tool:?}");
                if !errors.is_empty() {
                    message.push_str(&format!(
                        " (some plugins could not be asked: {})",
                        errors.join("; ")
                    ));
                }
                return Err(CallError {
                    reason: Some(crate::reasons::Reason::ToolNotFound),
                    ..CallError::new(Code::NotFound, message)
                });
            }
            // The winner is one of the claimants, by `winner`'s contract.
            (many, Some(w)) => &many[w],
            (many, None) => {
                return Err(CallError {
                    reason: Some(crate::reasons::Reason::ToolConflict),
                    ..CallError::new(
                        Code::FailedPrecondition,
                        format!(
                            "tool {tool:?} is provided by more than one plugin ({}); disable or remove all but one (or set sources.conflicts)",
                            many.join(", ")
                        ),
                    )
                });
            }
        };
        let plugin = self.plugin(found)?;
        if let Some(command) = plugin
            .runnable()
            .and_then(|l| l.manifest.commands.iter().find(|c| c.name == tool))
        {
            let jail = self.workers.jail(tenant, &plugin)?;
            let result =
                crate::commands::run(jail, tenant, &plugin, command, arguments_json).await?;
            return Ok((plugin.id.clone(), result));
        }
        let call = wpb::invoke_request::Call::ExecuteTool(wpb::ExecuteTool {
            tool: tool.to_owned(),
            arguments_json: arguments_json.to_owned(),
        });
        match self.workers.call(tenant, &plugin, call).await? {
            wpb::invoke_response::Outcome::ToolResult(r) => Ok((plugin.id.clone(), r)),
            _ => Err(unexpected(&plugin.id)),
        }
    }
}
