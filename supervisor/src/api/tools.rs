//! The `Tools` service: every tool of every enabled tool plugin, and calls to them.

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tonic::{Request, Response, Status};

use super::convert::risk;
use super::{Api, tenant};

#[tonic::async_trait]
impl pb::tools_server::Tools for Api {
    async fn list_tools(
        &self,
        req: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        // Tool lists are described once for every tenant; each sees the
        // tools of the plugins that may act for it (enabled for it, signed
        // where it requires signatures): what it lists, it can call.
        let tenant = tenant(&req)?;
        let index = self.0.tools().await;
        let registry = self.0.registry();
        let enabled = |plugin: &str| {
            registry
                .get(plugin)
                .is_some_and(|p| self.0.workers.serves(&tenant, p).is_ok())
        };
        let mut refused: Vec<String> = index
            .tools
            .iter()
            .map(|t| t.plugin.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| crate::config::tenants::enabled(&self.0.config.tenants, &tenant, p))
            .filter_map(|p| registry.get(p))
            .filter_map(|p| self.0.workers.serves(&tenant, p).err())
            .map(|e| e.message)
            .collect();
        refused.sort();
        Ok(Response::new(pb::ListToolsResponse {
            tools: index
                .tools
                .into_iter()
                .filter(|t| enabled(&t.plugin))
                .map(|t| pb::ToolDef {
                    name: t.name,
                    description: t.description,
                    parameters_schema: t.parameters_schema,
                    plugin: t.plugin,
                    risk: risk(t.risk) as i32,
                })
                .collect(),
            conflicts: index
                .conflicts
                .into_iter()
                .map(|(tool, plugins)| pb::ToolConflict {
                    tool,
                    plugins: plugins.into_iter().filter(|p| enabled(p)).collect(),
                })
                .filter(|c| c.plugins.len() > 1)
                .collect(),
            // Errors start with the plugin's id ("notes: …"); a plugin
            // enabled for the tenant that may not act for it (unsigned where
            // it requires signatures) says why its tools are missing.
            errors: index
                .errors
                .into_iter()
                .filter(|e| e.split(':').next().is_none_or(enabled))
                .chain(refused)
                .collect(),
        }))
    }

    async fn invoke_tool(
        &self,
        req: Request<pb::InvokeToolRequest>,
    ) -> Result<Response<pb::InvokeToolResponse>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let (plugin, result) = self
            .0
            .invoke_tool(&tenant, &r.tool, &r.arguments_json)
            .await?;
        let result = match result.result {
            Some(wpb::tool_result::Result::Success(s)) => {
                pb::invoke_tool_response::Result::Output(s)
            }
            Some(wpb::tool_result::Result::Error(e)) => pb::invoke_tool_response::Result::Error(e),
            None => {
                return Err(Status::internal(format!(
                    "plugin {plugin}: empty tool result"
                )));
            }
        };
        Ok(Response::new(pb::InvokeToolResponse {
            plugin,
            result: Some(result),
        }))
    }
}
