//! The Auth service's side of a manifest's `[oauth]` (see [`crate::oauth`]):
//! PKCE logins (`StartOAuthLogin`, `CompleteOAuthLogin`) and the token
//! requests of a manifest device flow (polled by the Auth service's device-flow
//! loop). Every request to the provider goes through a broker for the caller's
//! tenant and the plugin, exactly as the plugin's own http calls do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tonic::Status;

use super::{Api, unexpected};
use crate::broker::Broker;
use crate::oauth::{self, token};
use crate::plugins::manifest::OAuth;
use crate::plugins::manifest::oauth::Flow;
use crate::plugins::registry::Plugin;

use pb::poll_device_flow_response::Result as FlowResult;
use wpb::invoke_request::Call;
use wpb::invoke_response::Outcome;

/// Longest one request to the provider's endpoints may take.
const ENDPOINT_BUDGET: Duration = Duration::from_secs(30);

/// One step of a device flow's poll loop.
pub enum Step {
    Pending,
    SlowDown,
    Done(FlowResult),
}

/// Makes one poll of a device flow each time it is called.
pub type StepFn = Box<dyn FnMut() -> BoxFuture<'static, Step> + Send>;

/// A plugin with a valid `[oauth]` table, its placeholders filled.
pub struct Signing {
    pub plugin: Arc<Plugin>,
    pub oauth: OAuth,
    broker: Broker,
}

impl Api {
    /// The plugin `id` and its resolved `[oauth]`, for a tenant. `None` when
    /// the plugin declares no `[oauth]`.
    pub(super) fn signing(&self, tenant: &str, id: &str) -> Result<Option<Signing>, Status> {
        let plugin = self.0.plugin(id)?;
        let Some(oauth) = plugin
            .loaded
            .as_ref()
            .and_then(|l| l.manifest.oauth.clone())
        else {
            return Ok(None);
        };
        let secrets = self.0.config.secrets_dir();
        let oauth = oauth::resolve(&oauth, id, &secrets)
            .map_err(|e| Status::failed_precondition(format!("plugin {id}: {e}")))?;
        let broker = self.broker_for(tenant, &plugin);
        Ok(Some(Signing {
            plugin,
            oauth,
            broker,
        }))
    }

    /// A broker acting for the tenant and the plugin, as its worker's would.
    fn broker_for(&self, tenant: &str, plugin: &Plugin) -> Broker {
        Broker::new(
            tenant.to_owned(),
            plugin.id.clone(),
            plugin.dir.clone(),
            // No process of the plugin's: /proc/self is no one's.
            Arc::default(),
            Arc::clone(&self.0.workers.authority),
        )
    }

    /// Signs a tenant out of a plugin's `[oauth]`: the credentials tarkd keeps
    /// for it are forgotten, so the plugin's next read of its
    /// `credentials_path` finds none. `false` when it declares no `[oauth]`.
    pub(super) async fn forget_oauth(&self, tenant: &str, plugin: &Plugin) -> Result<bool, Status> {
        if plugin
            .loaded
            .as_ref()
            .is_none_or(|l| l.manifest.oauth.is_none())
        {
            return Ok(false);
        }
        self.broker_for(tenant, plugin).forget_credentials().await?;
        tracing::info!(tenant, plugin = %plugin.id, "signed out of [oauth]");
        Ok(true)
    }

    pub(super) fn start_oauth(&self, tenant: &str, id: &str) -> Result<pb::OAuthLogin, Status> {
        let Some(s) = self.signing(tenant, id)? else {
            return Err(Status::failed_precondition(format!(
                "plugin {id} declares no [oauth] sign-in"
            )));
        };
        if s.oauth.flow != Flow::Pkce {
            return Err(Status::failed_precondition(format!(
                "plugin {id} signs in with the device flow: use StartDeviceFlow"
            )));
        }
        let (challenge, state) = self
            .0
            .oauth_logins
            .start(tenant, id)
            .map_err(Status::internal)?;
        let authorize_url = oauth::pkce::authorize_url(&s.oauth, &challenge, &state)
            .map_err(|e| Status::failed_precondition(format!("plugin {id}: {e}")))?;
        Ok(pb::OAuthLogin {
            authorize_url,
            redirect_uri: s.oauth.redirect_uri,
            expires_in: oauth::LOGIN_LIFETIME.as_secs(),
        })
    }

    pub(super) async fn complete_oauth(
        &self,
        tenant: &str,
        req: pb::CompleteOAuthLoginRequest,
    ) -> Result<pb::LifecycleResponse, Status> {
        let id = &req.plugin;
        let Some(s) = self.signing(tenant, id)? else {
            return Err(Status::failed_precondition(format!(
                "plugin {id} declares no [oauth] sign-in"
            )));
        };
        let verifier = self
            .0
            .oauth_logins
            .finish(tenant, id, &req.state, s.oauth.use_state)
            .map_err(|e| {
                s.broker.audit_oauth(&s.oauth.token_url, "deny", &e);
                Status::failed_precondition(format!("plugin {id}: {e}"))
            })?;
        let exchange = token::exchange(&s.oauth, &req.code, &verifier);
        match s.broker.token_call(exchange, ENDPOINT_BUDGET).await? {
            token::Answer::Tokens(tokens) => self.signed_in(tenant, &s, &tokens).await?,
            other => {
                let why = refused(&other);
                s.broker.audit_oauth(&s.oauth.token_url, "deny", &why);
                return Err(Status::unauthenticated(format!(
                    "plugin {id}: the token endpoint refused the code: {why}"
                )));
            }
        }
        Ok(pb::LifecycleResponse {
            message: format!("plugin {id}: signed in for tenant {tenant}"),
        })
    }

    /// A manifest device flow: the code from `auth_url`, and the poll step.
    pub(super) async fn start_manifest_device_flow(
        &self,
        tenant: &str,
        s: Signing,
    ) -> Result<(pb::DeviceCode, StepFn), Status> {
        let request = token::device_authorization(&s.oauth);
        let resp = s.broker.oauth_post(request, ENDPOINT_BUDGET).await?;
        let code = token::device_code(&resp)
            .map_err(|e| Status::unavailable(format!("plugin {}: {e}", s.plugin.id)))?;
        let (api, tenant) = (self.clone(), tenant.to_owned());
        let (s, device_code) = (Arc::new(s), code.device_code.clone());
        let step: StepFn = Box::new(move || {
            let (api, tenant, s) = (api.clone(), tenant.clone(), Arc::clone(&s));
            let poll = token::device_poll(&s.oauth, &device_code);
            Box::pin(async move {
                match s.broker.token_call(poll, ENDPOINT_BUDGET).await {
                    Ok(token::Answer::Pending) => Step::Pending,
                    Ok(token::Answer::SlowDown) => Step::SlowDown,
                    Ok(token::Answer::Expired) => Step::Done(FlowResult::Expired(true)),
                    Ok(token::Answer::Refused(why)) => Step::Done(FlowResult::Error(why)),
                    Ok(token::Answer::Tokens(t)) => match api.signed_in(&tenant, &s, &t).await {
                        Ok(()) => Step::Done(FlowResult::SignedIn(true)),
                        Err(e) => Step::Done(FlowResult::Error(e.message().to_owned())),
                    },
                    Err(e) => Step::Done(FlowResult::Error(e.message().to_owned())),
                }
            })
        });
        Ok((code, step))
    }

    /// Stores a token response for the tenant: through the plugin's
    /// `auth_process_tokens` when its manifest names it.
    async fn signed_in(
        &self,
        tenant: &str,
        s: &Signing,
        tokens: &Map<String, Value>,
    ) -> Result<(), Status> {
        let id = &s.plugin.id;
        let processed = match &s.oauth.process_tokens_callback {
            Some(_) => {
                let text = Value::Object(tokens.clone()).to_string();
                let call = Call::ProcessTokens(wpb::Text { text });
                match self.call(tenant, &s.plugin, call).await? {
                    Outcome::Text(t) => Some(t.text),
                    _ => return Err(unexpected(id)),
                }
            }
            None => None,
        };
        let value = oauth::to_store(tokens, processed.as_deref())
            .map_err(|e| Status::failed_precondition(format!("plugin {id}: {e}")))?;
        s.broker.store_credentials(value).await?;
        s.broker
            .audit_oauth(&s.oauth.token_url, "allow", "signed in");
        tracing::info!(tenant, plugin = %id, "signed in through [oauth]");
        Ok(())
    }
}

fn refused(answer: &token::Answer) -> String {
    match answer {
        token::Answer::Refused(why) => why.clone(),
        token::Answer::Pending | token::Answer::SlowDown => "the grant is still pending".into(),
        token::Answer::Expired => "the code has expired".into(),
        token::Answer::Tokens(_) => String::new(),
    }
}
