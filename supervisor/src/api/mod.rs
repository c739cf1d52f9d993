//! The agent API (`tark.plugin.v1`) over tarkd's Unix socket: one module per
//! gRPC service, all served by one [`Api`] over the shared daemon state.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated default
//! stubs ("Not yet implemented").

pub mod auth;
pub mod channels;
mod convert;
pub mod deadline;
pub mod hooks;
mod oauth;
mod plugins;
mod providers;
pub mod standard;
mod system;
mod tools;

use std::sync::Arc;

use tark_proto::plugin::v1 as pb;
use tonic::{Request, Status};

use crate::daemon::Daemon;
use tark_proto::worker::v1 as wpb;

use crate::plugins::manifest::{self, PluginType};
use crate::plugins::registry::Plugin;
use crate::reasons::{self, Reason};
use crate::workers::SlotStats;
use convert::{caps_to_pb, plugin_type};

/// The tenant a request acts for, from its `tark-tenant` metadata (set by
/// [`crate::access`]'s gate to a tenant the caller may act for).
pub use crate::access::TENANT_HEADER;

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
    /// A plugin as `who` may see it: workers of its tenants only.
    fn plugin_info(&self, p: &Plugin, who: &crate::access::Principal) -> pb::PluginInfo {
        let stats: Vec<_> = self
            .0
            .workers
            .stats()
            .into_iter()
            .filter(|(k, _)| k.plugin == p.id && who.may_act_for(&k.tenant))
            .collect();
        let workers: Vec<pb::WorkerStatus> = stats
            .iter()
            .map(|(k, s)| worker_status(&k.tenant, s))
            .collect();
        let running = workers.iter().any(|w| w.running);
        let (wit, provides) = stats
            .into_iter()
            .map(|(_, s)| (s.contract, s.provides))
            .find(|(c, _)| !c.is_empty())
            .unwrap_or_default();
        let mut info = pb::PluginInfo {
            id: p.id.clone(),
            diagnostics: p
                .diagnostics
                .iter()
                .cloned()
                .chain(self.0.registry().notes_of(&p.id))
                .chain(self.0.tool_conflicts_of(&p.id))
                .collect(),
            path: p.dir.display().to_string(),
            workers,
            accepted_wit: tark_proto::ACCEPTED_WIT
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            wit,
            provides,
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
        info.api_version = m.api_version.clone();
        info.activation = m.activation.clone();
        info.oauth_flow = match m.oauth.as_ref().map(|o| o.flow) {
            Some(manifest::oauth::Flow::Pkce) => "pkce",
            Some(manifest::oauth::Flow::DeviceFlow) => "device_flow",
            None => "",
        }
        .to_owned();
        if let Some(grant) = self.0.workers.authority.grants.get(&p.id) {
            info.approved = grant.approved_at_all;
            info.pending_approval = grant.pending.clone();
        }
        (info.signer, info.signature) = p.verdict().shown();
        info.origin = self.0.origins.get(&p.id);
        info.set_state(if p.is_disabled() {
            pb::PluginState::Disabled
        } else if p.runnable().is_none() {
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

impl Api {
    /// The installed plugin `id`, which must be a valid plugin of type `kind`.
    fn plugin_of(&self, id: &str, kind: PluginType) -> Result<Arc<Plugin>, Status> {
        let plugin = self.0.plugin(id)?;
        match &plugin.loaded {
            Some(l) if l.manifest.plugin_type == kind => Ok(plugin),
            Some(l) => Err(reasons::status(
                tonic::Code::FailedPrecondition,
                format!(
                    "plugin {id} is a {} plugin, not a {kind} plugin",
                    l.manifest.plugin_type
                ),
                Reason::WrongPluginType,
                Some(id),
                None,
            )),
            None => Err(reasons::status(
                tonic::Code::FailedPrecondition,
                format!("plugin {id} cannot run: {}", plugin.diagnostics.join("; ")),
                Reason::PluginNotRunnable,
                Some(id),
                None,
            )),
        }
    }

    /// Every valid plugin of type `kind` enabled for `tenant`, in name order.
    fn plugins_of(&self, tenant: &str, kind: PluginType) -> Vec<Arc<Plugin>> {
        let registry = self.0.registry();
        let tenants = &self.0.config.tenants;
        registry
            .plugins
            .values()
            .filter(|p| p.of_type(kind).is_some())
            .filter(|p| crate::config::tenants::enabled(tenants, tenant, &p.id))
            .cloned()
            .collect()
    }

    /// Why each plugin of type `kind` enabled for `tenant` that a conflict
    /// silenced serves nothing: listings name it instead of leaving it out
    /// without a word.
    fn silenced_of(&self, tenant: &str, kind: PluginType) -> Vec<String> {
        let registry = self.0.registry();
        let tenants = &self.0.config.tenants;
        registry
            .plugins
            .values()
            .filter(|p| p.runnable().is_some_and(|l| l.manifest.plugin_type == kind))
            .filter(|p| crate::config::tenants::enabled(tenants, tenant, &p.id))
            .filter_map(|p| {
                let conflict = p.conflict()?;
                Some(format!("plugin {} serves nothing: {conflict}", p.id))
            })
            .collect()
    }

    /// One call to a plugin for a tenant. A plugin's own error value becomes
    /// UNKNOWN with its message, named for the plugin.
    async fn call(
        &self,
        tenant: &str,
        plugin: &Plugin,
        call: wpb::invoke_request::Call,
    ) -> Result<wpb::invoke_response::Outcome, Status> {
        match self.0.workers.call(tenant, plugin, call).await? {
            wpb::invoke_response::Outcome::PluginError(e) => Err(reasons::status(
                tonic::Code::Unknown,
                format!("plugin {}: {}", plugin.id, e.message),
                Reason::PluginError,
                Some(&plugin.id),
                None,
            )),
            outcome => Ok(outcome),
        }
    }
}

/// The error for an answer that does not fit the call (a worker bug, or a
/// compromised worker).
fn unexpected(plugin: &str) -> Status {
    Status::internal(format!("plugin {plugin}: worker answered a different call"))
}

/// A plugin's answer to a call whose result is `result<_, string>`: its error
/// value is UNKNOWN, named for the plugin.
fn acked(plugin: &str, outcome: wpb::invoke_response::Outcome) -> Result<(), Status> {
    match outcome {
        wpb::invoke_response::Outcome::Ack(wpb::Ack { error: None }) => Ok(()),
        wpb::invoke_response::Outcome::Ack(wpb::Ack { error: Some(e) }) => Err(reasons::status(
            tonic::Code::Unknown,
            format!("plugin {plugin}: {e}"),
            Reason::PluginError,
            Some(plugin),
            None,
        )),
        _ => Err(unexpected(plugin)),
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
