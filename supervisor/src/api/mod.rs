//! The agent API (`tark.plugin.v1`) over tarkd's Unix socket: one module per
//! gRPC service, all served by one [`Api`] over the shared daemon state.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated default
//! stubs ("Not yet implemented").

mod convert;
mod plugins;
mod system;
mod tools;

use std::sync::Arc;

use tark_proto::plugin::v1 as pb;
use tonic::{Request, Status};

use crate::daemon::Daemon;
use crate::plugins::manifest;
use crate::plugins::registry::Plugin;
use crate::workers::SlotStats;
use convert::{caps_to_pb, plugin_type};

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

// Services whose RPCs later work implements; every RPC answers UNIMPLEMENTED.
#[tonic::async_trait]
impl pb::auth_server::Auth for Api {}
#[tonic::async_trait]
impl pb::providers_server::Providers for Api {}
#[tonic::async_trait]
impl pb::hooks_server::Hooks for Api {}
#[tonic::async_trait]
impl pb::channels_server::Channels for Api {}
