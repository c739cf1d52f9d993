//! The agent API (`tark.plugin.v1`) over tarkd's Unix socket.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated default
//! stubs ("Not yet implemented").

use std::sync::Arc;

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tonic::{Request, Response, Status};

use crate::daemon::Daemon;

mod convert;
use crate::manifest;
use crate::registry::Plugin;
use crate::workers::SlotStats;
use convert::{caps_from_pb, caps_to_pb, plugin_type, risk};

/// The tenant a request acts for, from its `tark-tenant` metadata.
pub const TENANT_HEADER: &str = "tark-tenant";

/// Serves every agent API service.
#[derive(Clone)]
pub struct Api(pub Arc<Daemon>);

fn tenant<T>(req: &Request<T>) -> Result<String, Status> {
    match req.metadata().get(TENANT_HEADER) {
        None => Ok("default".to_owned()),
        Some(v) => {
            let t = v
                .to_str()
                .map_err(|_| Status::invalid_argument("tark-tenant is not ASCII"))?;
            if manifest::valid_name(t) {
                Ok(t.to_owned())
            } else {
                Err(Status::invalid_argument(format!(
                    "tenant {t:?} must be lowercase letters, digits and hyphens"
                )))
            }
        }
    }
}

impl Api {
    fn plugin_info(&self, p: &Plugin) -> pb::PluginInfo {
        let workers: Vec<pb::WorkerStatus> = self
            .0
            .workers
            .stats()
            .into_iter()
            .filter(|(k, _)| k.plugin == p.id)
            .map(|(k, s)| worker_status(&k.tenant, &s))
            .collect();
        let running = workers.iter().any(|w| w.running);
        let mut info = pb::PluginInfo {
            id: p.id.clone(),
            diagnostics: p.diagnostics.clone(),
            path: p.dir.display().to_string(),
            workers,
            ..Default::default()
        };
        let Some(l) = &p.loaded else {
            info.set_state(pb::PluginState::Invalid);
            return info;
        };
        let m = &l.manifest;
        info.version = m.version.to_string();
        info.set_type(plugin_type(m.plugin_type));
        info.description = m.description.clone();
        info.author = m.author.clone();
        info.homepage = m.homepage.clone();
        info.license = m.license.clone();
        info.wasm_sha256 = l.sha256.clone();
        info.capabilities = Some(caps_to_pb(&m.capabilities));
        if let Some(grant) = self.0.workers.authority.grants.get(&p.id) {
            info.approved = grant.approved_at_all;
            info.pending_approval = grant.pending.clone();
        }
        info.set_state(if p.runnable().is_none() {
            pb::PluginState::Invalid
        } else if self.0.workers.quarantined(&p.id) {
            pb::PluginState::Quarantined
        } else if running {
            pb::PluginState::Running
        } else {
            pb::PluginState::Idle
        });
        info
    }
}

fn worker_status(tenant: &str, s: &SlotStats) -> pb::WorkerStatus {
    pb::WorkerStatus {
        tenant: tenant.to_owned(),
        pid: s.pid.unwrap_or(0),
        restarts: s.restarts(),
        calls: s.calls,
        last_error: s.last_error.clone(),
        running: s.pid.is_some(),
        sandbox: s.sandbox.iter().cloned().map(Into::into).collect(),
    }
}

#[tonic::async_trait]
impl pb::plugins_server::Plugins for Api {
    async fn list_plugins(
        &self,
        _req: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let plugins = self
            .0
            .registry()
            .plugins
            .values()
            .map(|p| self.plugin_info(p))
            .collect();
        Ok(Response::new(pb::ListPluginsResponse { plugins }))
    }

    async fn get_plugin(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::PluginInfo>, Status> {
        let plugin = self.0.plugin(&req.into_inner().id)?;
        Ok(Response::new(self.plugin_info(&plugin)))
    }

    async fn install_plugin(
        &self,
        req: Request<pb::InstallPluginRequest>,
    ) -> Result<Response<pb::InstallPluginResponse>, Status> {
        let caller = req
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|c| c.peer_cred)
            .map(|c| c.uid());
        let req = req.into_inner();
        let plan = self.0.plan(&req.source, caller)?;
        // The plugin as it would be: its approval state is the plan's, not the
        // installed copy's.
        let mut planned = self.plugin_info(&plan.plugin);
        planned.approved = plan.current.is_some();
        planned.pending_approval = plan.needs_approval.clone();
        let mut reply = pb::InstallPluginResponse {
            plugin: Some(planned),
            installed: false,
            requested: Some(caps_to_pb(&plan.plugin.declared())),
            current: plan.current.as_ref().map(caps_to_pb),
            needs_approval: plan.needs_approval.clone(),
        };
        if let Some(approved) = req.approved {
            let installed = self.plugin_info(&*self.0.install(plan, caps_from_pb(approved)).await?);
            reply.needs_approval = installed.pending_approval.clone();
            reply.plugin = Some(installed);
            reply.installed = true;
        }
        Ok(Response::new(reply))
    }

    async fn get_grants(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::Grants>, Status> {
        let id = req.into_inner().id;
        Ok(Response::new(convert::grants(&self.0, &id)?))
    }

    async fn set_grants(
        &self,
        req: Request<pb::SetGrantsRequest>,
    ) -> Result<Response<pb::Grants>, Status> {
        let req = req.into_inner();
        self.0
            .set_grants(&req.id, caps_from_pb(req.approved.unwrap_or_default()))?;
        Ok(Response::new(convert::grants(&self.0, &req.id)?))
    }

    async fn restart_plugin(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let plugin = self.0.plugin(&req.into_inner().id)?;
        let stopped = self.0.workers.restart(&plugin.id).await;
        tracing::info!(plugin = %plugin.id, stopped, "restarted by request");
        let message = format!(
            "plugin {}: stopped {stopped} worker(s); the next call starts a fresh one",
            plugin.id
        );
        Ok(Response::new(pb::LifecycleResponse { message }))
    }
}

#[tonic::async_trait]
impl pb::tools_server::Tools for Api {
    async fn list_tools(
        &self,
        req: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let index = self.0.tools(&tenant(&req)?).await;
        Ok(Response::new(pb::ListToolsResponse {
            tools: index
                .tools
                .into_iter()
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
                .map(|(tool, plugins)| pb::ToolConflict { tool, plugins })
                .collect(),
            errors: index.errors,
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

#[tonic::async_trait]
impl pb::system_server::System for Api {
    async fn audit(
        &self,
        req: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let req = req.into_inner();
        let audit = &self.0.workers.authority.audit;
        let plugin = (!req.plugin.is_empty()).then_some(req.plugin.as_str());
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit as usize
        };
        let entries = audit
            .recent(plugin, limit)
            .into_iter()
            .map(|e| pb::AuditEntry {
                time_ms: e.time_ms,
                tenant: e.tenant,
                plugin: e.plugin,
                capability: e.capability,
                target: e.target,
                decision: e.decision,
                reason: e.reason,
            })
            .collect();
        let counts = audit
            .counts()
            .into_iter()
            .filter(|((p, _), _)| plugin.is_none_or(|want| p == want))
            .map(|((plugin, capability), denials)| pb::AuditCount {
                plugin,
                capability,
                denials,
            })
            .collect();
        Ok(Response::new(pb::AuditResponse { entries, counts }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let d = &self.0;
        Ok(Response::new(pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_seconds: d.started.elapsed().as_secs(),
            socket: d.config.socket.display().to_string(),
            state_dir: d.config.state_dir.display().to_string(),
            plugins_dir: d.config.plugins_dir.display().to_string(),
            plugins: d
                .registry()
                .plugins
                .values()
                .map(|p| self.plugin_info(p))
                .collect(),
        }))
    }
}

// Services whose RPCs later work implements; every RPC answers UNIMPLEMENTED.
#[tonic::async_trait]
impl pb::auth_server::Auth for Api {}
#[tonic::async_trait]
impl pb::providers_server::Providers for Api {}
#[tonic::async_trait]
impl pb::hooks_server::Hooks for Api {}
#[tonic::async_trait]
impl pb::channels_server::Channels for Api {}
