//! The `Plugins` service: what is installed, installing and approving, restarts.

use tark_proto::plugin::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::{self, caps_from_pb, caps_to_pb};

#[tonic::async_trait]
impl pb::plugins_server::Plugins for Api {
    async fn list_plugins(
        &self,
        req: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let who = crate::access::caller(&req);
        let plugins = self
            .0
            .registry()
            .plugins
            .values()
            .map(|p| self.plugin_info(p, &who))
            .collect();
        Ok(Response::new(pb::ListPluginsResponse { plugins }))
    }

    async fn get_plugin(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::PluginInfo>, Status> {
        let who = crate::access::caller(&req);
        let plugin = self.0.plugin(&req.into_inner().id)?;
        Ok(Response::new(self.plugin_info(&plugin, &who)))
    }

    async fn install_plugin(
        &self,
        req: Request<pb::InstallPluginRequest>,
    ) -> Result<Response<pb::InstallPluginResponse>, Status> {
        let who = crate::access::caller(&req);
        let caller = req
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|c| c.peer_cred)
            .map(|c| c.uid());
        let req = req.into_inner();
        let plan = self.0.plan(&req.source, caller)?;
        // The plugin as it would be: its approval state is the plan's, not the
        // installed copy's.
        let mut planned = self.plugin_info(&plan.plugin, &who);
        planned.approved = plan.current.is_some();
        planned.pending_approval = plan.needs_approval.clone();
        let mut reply = pb::InstallPluginResponse {
            plugin: Some(planned),
            installed: false,
            requested: Some(caps_to_pb(&plan.plugin.declared())),
            current: plan.current.as_ref().map(caps_to_pb),
            needs_approval: plan.needs_approval.clone(),
            notes: plan.notes.clone(),
        };
        if let Some(approved) = req.approved {
            let installed = self
                .0
                .install(plan, caps_from_pb(approved), false, req.allow_unsigned)
                .await?;
            if let Err(e) = self.0.origins.set(&installed.id, &req.origin) {
                tracing::warn!(plugin = %installed.id, "its source was not recorded: {e}");
            }
            // What its tools mean for the names already in use.
            self.0.describe_all();
            reply.notes.extend(self.0.tool_clashes(&installed.id).await);
            let installed = self.plugin_info(&installed, &who);
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

    async fn remove_plugin(
        &self,
        req: Request<pb::RemovePluginRequest>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let who = crate::access::caller(&req);
        let req = req.into_inner();
        let message = self.0.remove_plugin(&req.id, req.purge).await?;
        tracing::info!(plugin = %req.id, principal = %who.name, "removed by request");
        Ok(Response::new(pb::LifecycleResponse { message }))
    }

    async fn plugin_history(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::PluginHistoryResponse>, Status> {
        let id = req.into_inner().id;
        let plugin = self.0.plugin(&id)?;
        let mut versions: Vec<pb::PluginVersion> = plugin
            .loaded
            .iter()
            .map(|l| pb::PluginVersion {
                version: l.manifest.version.to_string(),
                sha256: l.sha256.clone(),
                installed: true,
                replaced_unix_ms: 0,
            })
            .collect();
        versions.extend(
            self.0
                .history
                .list(&id, &self.0.host_version)
                .into_iter()
                .map(|k| pb::PluginVersion {
                    version: k
                        .version
                        .map_or_else(|| "(no longer loads)".into(), |v| v.to_string()),
                    sha256: k.sha256,
                    installed: false,
                    replaced_unix_ms: k.replaced_ms,
                }),
        );
        Ok(Response::new(pb::PluginHistoryResponse { versions }))
    }

    async fn rollback_plugin(
        &self,
        req: Request<pb::RollbackPluginRequest>,
    ) -> Result<Response<pb::InstallPluginResponse>, Status> {
        let who = crate::access::caller(&req);
        let req = req.into_inner();
        let (installed, approved) = self.0.rollback(&req.id, &req.version).await?;
        self.0.describe_all();
        let info = self.plugin_info(&installed, &who);
        Ok(Response::new(pb::InstallPluginResponse {
            needs_approval: info.pending_approval.clone(),
            requested: Some(caps_to_pb(&installed.declared())),
            // What stays approved: the approval before, narrowed.
            current: Some(caps_to_pb(&approved)),
            notes: vec![format!(
                "rolled back to {} (the version it replaced is kept)",
                info.version
            )],
            installed: true,
            plugin: Some(info),
        }))
    }

    async fn add_trusted_key(
        &self,
        req: Request<pb::AddTrustedKeyRequest>,
    ) -> Result<Response<pb::TrustedKey>, Status> {
        let who = crate::access::caller(&req);
        let r = req.into_inner();
        let key = self
            .0
            .trust
            .add(
                &r.public_key,
                (r.expires_unix != 0).then_some(r.expires_unix),
                (!r.rotate_from.is_empty()).then_some(r.rotate_from.as_str()),
                &r.comment,
                crate::plugins::trust::now_unix(),
            )
            .map_err(crate::workers::CallError::from)?;
        tracing::info!(key = %key.key_id, principal = %who.name, rotated_from = ?key.rotated_from, "trusted key added");
        self.0.judge_again();
        Ok(Response::new(convert::trusted_key(key)))
    }

    async fn list_trusted_keys(
        &self,
        _req: Request<pb::ListTrustedKeysRequest>,
    ) -> Result<Response<pb::ListTrustedKeysResponse>, Status> {
        let keys = self
            .0
            .trust
            .list()
            .map_err(crate::workers::CallError::from)?;
        Ok(Response::new(pb::ListTrustedKeysResponse {
            keys: keys.into_iter().map(convert::trusted_key).collect(),
        }))
    }

    async fn revoke_trusted_key(
        &self,
        req: Request<pb::TrustedKeyRef>,
    ) -> Result<Response<pb::TrustedKey>, Status> {
        let who = crate::access::caller(&req);
        let id = req.into_inner().key_id;
        let key = self
            .0
            .trust
            .revoke(&id, crate::plugins::trust::now_unix())
            .map_err(crate::workers::CallError::from)?;
        tracing::warn!(key = %id, principal = %who.name, "trusted key revoked");
        self.0.judge_again();
        Ok(Response::new(convert::trusted_key(key)))
    }

    async fn enable_plugin(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let message = self.0.set_enabled(&req.into_inner().id, true).await?;
        self.0.describe_all();
        Ok(Response::new(pb::LifecycleResponse { message }))
    }

    async fn disable_plugin(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let message = self.0.set_enabled(&req.into_inner().id, false).await?;
        Ok(Response::new(pb::LifecycleResponse { message }))
    }

    async fn reload_plugins(
        &self,
        req: Request<pb::ReloadPluginsRequest>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let who = crate::access::caller(&req);
        let change = self.0.reload_plugins().await?;
        self.0.describe_all();
        tracing::info!(principal = %who.name, "plugins reloaded by request");
        Ok(Response::new(pb::LifecycleResponse {
            message: change.summary(),
        }))
    }

    async fn restart_plugin(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        // An operator restarts its tenants' workers; an admin every tenant's.
        let who = crate::access::caller(&req);
        let plugin = self.0.plugin(&req.into_inner().id)?;
        let stopped = self
            .0
            .workers
            .restart_where(&plugin.id, |t| who.may_act_for(t))
            .await;
        // Its tool list is asked for again (a quarantined describe too).
        self.0.forget_tools(&plugin.id);
        self.0.describe_all();
        tracing::info!(plugin = %plugin.id, principal = %who.name, stopped, "restarted by request");
        let message = format!(
            "plugin {}: stopped {stopped} worker(s); the next call starts a fresh one",
            plugin.id
        );
        Ok(Response::new(pb::LifecycleResponse { message }))
    }
}
