//! The `Auth` service: sign-in through auth plugins (and a provider's own auth
//! status and logout).
//!
//! `StartDeviceFlow` asks the plugin for a device code and starts tarkd's poll
//! loop: the plugin's `poll` every `interval` (at least 250 ms, at most 60 s)
//! until it reports success, expiry or an error, or `expires_in` passes. The
//! agent then waits on `PollDeviceFlow` (with `wait`) or asks when it likes.
//! One flow per tenant × plugin: a new start replaces the old. The result (a
//! token, on success) is handed to the first caller that reads it and then
//! forgotten; tarkd never logs it — the plugin keeps its token in its storage.
//! A plugin whose manifest declares an `[oauth]` device flow (of any type) has
//! tarkd run it instead: tarkd asks the manifest's endpoints, keeps the tokens
//! for the plugin, and the flow ends `signed_in` (see `oauth`). A manifest's
//! PKCE sign-in is `StartOAuthLogin` / `CompleteOAuthLogin`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::oauth::{Step, StepFn};
use super::{Api, acked, deadline, tenant, unexpected};
use crate::plugins::manifest::PluginType;
use crate::plugins::manifest::oauth::Flow as OAuthFlow;
use crate::plugins::registry::Plugin;

use pb::poll_device_flow_response::Result as FlowResult;
use wpb::invoke_request::Call;
use wpb::invoke_response::Outcome;

const MIN_POLL_INTERVAL: Duration = Duration::from_millis(250);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
const MAX_FLOW: Duration = Duration::from_secs(3600);
/// How long before the caller's deadline a waiting `PollDeviceFlow` answers
/// `pending`, so the answer arrives in time.
const ANSWER_MARGIN: Duration = Duration::from_millis(100);

/// Device flows by tenant and plugin.
#[derive(Default)]
pub struct Flows(Mutex<HashMap<(String, String), Flow>>);

struct Flow {
    device_code: String,
    result: watch::Receiver<Option<FlowResult>>,
    poller: tokio::task::AbortHandle,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Flows {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Flow>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The poll interval and lifetime tarkd uses for a device code.
fn pacing(code: &pb::DeviceCode) -> (Duration, Duration) {
    let interval = Duration::from_secs(code.interval).clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL);
    let life = Duration::from_secs(code.expires_in).clamp(Duration::from_secs(1), MAX_FLOW);
    (interval, life)
}

fn auth_status(code: i32) -> pb::AuthStatus {
    pb::AuthStatus::try_from(code).unwrap_or(pb::AuthStatus::Unspecified)
}

impl Api {
    /// A plugin whose sign-in this service answers for: an auth plugin, or a
    /// provider (its auth status and logout). NOT_FOUND for no such plugin.
    fn signs_in(&self, id: &str) -> Result<(Arc<Plugin>, PluginType), Status> {
        let plugin = self.0.plugin(id)?;
        match plugin.loaded.as_ref().map(|l| l.manifest.plugin_type) {
            Some(kind @ (PluginType::Auth | PluginType::Provider)) => {
                Ok((self.plugin_of(id, kind)?, kind))
            }
            Some(other) => Err(Status::failed_precondition(format!(
                "plugin {id} is a {other} plugin, neither an auth nor a provider plugin"
            ))),
            // Invalid: say why.
            None => self
                .plugin_of(id, PluginType::Auth)
                .map(|p| (p, PluginType::Auth)),
        }
    }
}

/// Polls a device flow every `interval` (longer after a `slow_down`) until it
/// ends or `life` passes, and publishes the result.
async fn poll_loop(
    mut interval: Duration,
    life: Duration,
    mut step: StepFn,
    tx: watch::Sender<Option<FlowResult>>,
) {
    let until = Instant::now() + life;
    let result = loop {
        tokio::time::sleep(interval).await;
        if Instant::now() >= until {
            break FlowResult::Expired(true);
        }
        match step().await {
            Step::Pending => {}
            // RFC 8628 §3.5: five seconds more from now on.
            Step::SlowDown => {
                interval = (interval + Duration::from_secs(5)).min(MAX_POLL_INTERVAL);
            }
            Step::Done(r) => break r,
        }
    };
    let _ = tx.send(Some(result));
}

impl Api {
    /// An auth plugin's own device flow: its code, and its poll as the step.
    async fn start_plugin_device_flow(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(pb::DeviceCode, StepFn), Status> {
        let plugin = self.plugin_of(id, PluginType::Auth)?;
        let code = match self
            .call(tenant, &plugin, Call::StartDeviceFlow(wpb::Nothing {}))
            .await?
        {
            Outcome::DeviceCode(c) => c,
            _ => return Err(unexpected(&plugin.id)),
        };
        let (api, t, id, device_code) = (
            self.clone(),
            tenant.to_owned(),
            plugin.id.clone(),
            code.device_code.clone(),
        );
        let step: StepFn = Box::new(move || {
            let (api, t, id) = (api.clone(), t.clone(), id.clone());
            let poll = Call::PollDeviceFlow(wpb::PollDeviceFlow {
                device_code: device_code.clone(),
            });
            Box::pin(async move {
                // The plugin as installed now (an update replaces it).
                let p = match api.plugin_of(&id, PluginType::Auth) {
                    Ok(p) => p,
                    Err(s) => return Step::Done(FlowResult::Error(s.message().to_owned())),
                };
                match api.call(&t, &p, poll).await {
                    Ok(Outcome::Poll(pb::PollDeviceFlowResponse {
                        result: Some(FlowResult::Pending(_)),
                    })) => Step::Pending,
                    Ok(Outcome::Poll(pb::PollDeviceFlowResponse { result: Some(r) })) => {
                        Step::Done(r)
                    }
                    Ok(_) => Step::Done(FlowResult::Error(unexpected(&p.id).message().to_owned())),
                    Err(s) => Step::Done(FlowResult::Error(s.message().to_owned())),
                }
            })
        });
        Ok((code, step))
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for Api {
    async fn get_auth_status(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let tenant = tenant(&req)?;
        let id = req.into_inner().id;
        let (plugin, kind) = self.signs_in(&id)?;
        let name = if kind == PluginType::Auth {
            Call::AuthDisplayName(wpb::Nothing {})
        } else {
            Call::ProviderInfo(wpb::Nothing {})
        };
        let display_name = match self.call(&tenant, &plugin, name).await? {
            Outcome::Text(t) => t.text,
            Outcome::ProviderInfo(i) => i.display_name,
            _ => return Err(unexpected(&id)),
        };
        let status = match self
            .call(&tenant, &plugin, Call::AuthStatus(wpb::Nothing {}))
            .await?
        {
            Outcome::AuthStatus(s) => auth_status(s),
            _ => return Err(unexpected(&id)),
        };
        Ok(Response::new(pb::AuthStatusResponse {
            display_name,
            status: status as i32,
        }))
    }

    async fn start_device_flow(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::DeviceCode>, Status> {
        let tenant = tenant(&req)?;
        let id = req.into_inner().id;
        // A manifest's [oauth] device flow is run by tarkd; otherwise the auth
        // plugin runs its own.
        let (code, step) = match self.signing(&tenant, &id)? {
            Some(s) if s.oauth.flow == OAuthFlow::DeviceFlow => {
                self.start_manifest_device_flow(&tenant, s).await?
            }
            _ => self.start_plugin_device_flow(&tenant, &id).await?,
        };
        let (interval, life) = pacing(&code);
        let (tx, rx) = watch::channel(None);
        let poller = tokio::spawn(poll_loop(interval, life, step, tx)).abort_handle();
        let flow = Flow {
            device_code: code.device_code.clone(),
            result: rx,
            poller,
        };
        // A new flow replaces the tenant's earlier one for this plugin.
        let old = self.0.flows.lock().insert((tenant, id), flow);
        drop(old);
        Ok(Response::new(code))
    }

    async fn poll_device_flow(
        &self,
        req: Request<pb::PollDeviceFlowRequest>,
    ) -> Result<Response<pb::PollDeviceFlowResponse>, Status> {
        let tenant = tenant(&req)?;
        let caller_deadline = deadline::of(&req);
        let r = req.into_inner();
        let key = (tenant, r.plugin.clone());
        let mut result = {
            let flows = self.0.flows.lock();
            match flows.get(&key) {
                Some(f) if f.device_code == r.device_code => f.result.clone(),
                _ => {
                    return Err(Status::not_found(format!(
                        "plugin {}: no device flow with that code (start one with StartDeviceFlow)",
                        r.plugin
                    )));
                }
            }
        };
        if r.wait {
            let wait = caller_deadline.map_or(MAX_FLOW, |d| d.saturating_sub(ANSWER_MARGIN));
            let _ = tokio::time::timeout(wait, result.wait_for(Option::is_some)).await;
        }
        let answer = result.borrow().clone();
        let Some(done) = answer else {
            return Ok(Response::new(pb::PollDeviceFlowResponse {
                result: Some(FlowResult::Pending(true)),
            }));
        };
        // Handed over once, then forgotten (the token with it).
        let mut flows = self.0.flows.lock();
        if flows
            .get(&key)
            .is_some_and(|f| f.device_code == r.device_code)
        {
            flows.remove(&key);
        }
        Ok(Response::new(pb::PollDeviceFlowResponse {
            result: Some(done),
        }))
    }

    async fn get_token(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let tenant = tenant(&req)?;
        let plugin = self.plugin_of(&req.into_inner().id, PluginType::Auth)?;
        match self
            .call(&tenant, &plugin, Call::GetToken(wpb::Nothing {}))
            .await?
        {
            Outcome::Text(t) => Ok(Response::new(pb::TokenResponse { token: t.text })),
            _ => Err(unexpected(&plugin.id)),
        }
    }

    async fn start_o_auth_login(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::OAuthLogin>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(
            self.start_oauth(&tenant, &req.into_inner().id)?,
        ))
    }

    async fn complete_o_auth_login(
        &self,
        req: Request<pb::CompleteOAuthLoginRequest>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(
            self.complete_oauth(&tenant, req.into_inner()).await?,
        ))
    }

    async fn logout(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let tenant = tenant(&req)?;
        let id = req.into_inner().id;
        let (plugin, _) = self.signs_in(&id)?;
        // tarkd's own record first: a plugin whose logout fails is still
        // signed out of what tarkd keeps for it.
        let forgot = self.forget_oauth(&tenant, &plugin).await?;
        match self
            .call(&tenant, &plugin, Call::Logout(wpb::Nothing {}))
            .await
        {
            Ok(out) => acked(&id, out)?,
            // An [oauth] plugin need not export a logout of its own.
            Err(s) if forgot && s.code() == tonic::Code::FailedPrecondition => {}
            Err(s) => return Err(s),
        }
        Ok(Response::new(pb::LifecycleResponse {
            message: format!("plugin {id}: signed out"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_pacing_is_bounded() {
        let code = |interval, expires_in| pb::DeviceCode {
            interval,
            expires_in,
            ..Default::default()
        };
        let s = Duration::from_secs;
        let cases = [
            ((5, 600), (s(5), s(600))),
            ((0, 0), (MIN_POLL_INTERVAL, s(1))),
            ((3600, u64::MAX), (MAX_POLL_INTERVAL, MAX_FLOW)),
        ];
        for ((i, e), want) in cases {
            assert_eq!(pacing(&code(i, e)), want, "{i} {e}");
        }
    }
}
