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
        // tools of the plugins enabled for it.
        let tenant = tenant(&req)?;
        let index = self.0.tools().await;
        let enabled =
            |plugin: &str| crate::tenants::enabled(&self.0.config.tenants, &tenant, plugin);
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
            // Errors start with the plugin's id ("notes: …").
            errors: index
                .errors
                .into_iter()
                .filter(|e| e.split(':').next().is_none_or(enabled))
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
