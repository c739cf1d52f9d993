//! A plugin's OAuth credentials, as the broker hands them over and keeps them.
//!
//! A plugin signed in through its manifest's `[oauth]` reads its tokens the way
//! it does under tark, with `fs_read` of its `credentials_path`. The broker
//! answers that read (when the plugin's fs grant allows the path, like any
//! read) from the tenant's stored sign-in instead of the host's file system,
//! refreshing it first at the token endpoint when it has expired. The token
//! endpoint is called as the plugin would call it: through [`Broker::http`], so
//! its grant, the address rules and the audit apply.

use std::time::Duration;

use tark_proto::worker::v1 as pb;
use tark_proto::worker::v1::broker_server::Broker as _;
use tonic::{Request, Response, Status};

use super::Broker;
use super::files::{self, FsError};
use super::grants::Grant;
use crate::config::Trust;
use crate::oauth::{self, CREDENTIALS_KEY, EXPIRY_KEY, Stored, token};
use crate::plugins::manifest::OAuth;

impl Broker {
    /// Whether `path` is the plugin's OAuth credentials path (as written, or
    /// once expanded), with its `[oauth]` table.
    pub(super) fn credentials_read(
        &self,
        grant: &Grant,
        path: &str,
    ) -> Option<std::sync::Arc<OAuth>> {
        let oauth = grant.oauth.clone()?;
        let own = oauth::credentials_path(&oauth, &self.ns.plugin);
        let expanded = |p: &str| files::expand(p, &self.roots);
        (path == own || expanded(path).is_some_and(|p| Some(p) == expanded(&own))).then_some(oauth)
    }

    /// Answers an `fs_read` of the credentials path.
    pub(super) async fn read_credentials(
        &self,
        grant: &Grant,
        oauth: &OAuth,
        path: &str,
        budget: Duration,
    ) -> Result<Response<pb::FsContent>, Status> {
        match files::permitted(path, &grant.fs_sources(path), &self.roots) {
            Ok(p) => {
                if let Some(reason) = p.unlisted
                    && grant.trust == Trust::Warn
                {
                    self.record("fs", path, "allow-undeclared", &reason);
                }
            }
            Err(FsError::Denied(reason)) => return Err(self.deny("fs", path, &reason)),
            Err(e) => return Err(Status::invalid_argument(e.to_string())),
        }
        let stored = self
            .shared
            .storage
            .get(&self.ns, CREDENTIALS_KEY)
            .map_err(|e| self.storage_status(e))?;
        let Some(mut stored) = stored else {
            return Err(Status::not_found(format!(
                "{path:?}: plugin {} has not signed in for tenant {} (tarkctl auth {} login)",
                self.ns.plugin, self.ns.tenant, self.ns.plugin
            )));
        };
        let recorded = self
            .shared
            .storage
            .get(&self.ns, EXPIRY_KEY)
            .map_err(|e| self.storage_status(e))?
            .and_then(|t| t.parse().ok());
        if let Some(refresh_token) = oauth::refresh_due(&stored, recorded) {
            match self.refresh(oauth, &stored, &refresh_token, budget).await {
                Ok(fresh) => stored = fresh,
                // The plugin gets the expired tokens and may refresh them itself.
                Err(e) => tracing::warn!(
                    tenant = %self.ns.tenant,
                    plugin = %self.ns.plugin,
                    "OAuth refresh failed: {}",
                    e.message()
                ),
            }
        }
        Ok(Response::new(pb::FsContent { content: stored }))
    }

    async fn refresh(
        &self,
        oauth: &OAuth,
        stored: &str,
        refresh_token: &str,
        budget: Duration,
    ) -> Result<String, Status> {
        let secrets = self.shared.config.secrets_dir();
        let oauth = oauth::resolve(oauth, &self.ns.plugin, &secrets)
            .map_err(|e| Status::failed_precondition(format!("plugin {}: {e}", self.ns.plugin)))?;
        let tokens = match self
            .token_call(token::refresh(&oauth, refresh_token), budget)
            .await?
        {
            token::Answer::Tokens(t) => t,
            other => {
                return Err(Status::unauthenticated(format!(
                    "the token endpoint refused the refresh: {other:?}"
                )));
            }
        };
        let fresh = oauth::refreshed(stored, &tokens);
        let credentials = fresh.credentials.clone();
        self.keep(fresh).await?;
        self.record("oauth", &oauth.token_url, "allow", "credentials refreshed");
        Ok(credentials)
    }

    /// Sends an OAuth endpoint request as the plugin's own http call would go.
    pub async fn oauth_post(
        &self,
        req: pb::HttpRequest,
        budget: Duration,
    ) -> Result<pb::HttpResponse, Status> {
        let mut request = Request::new(req);
        if let Ok(ms) = budget.as_millis().to_string().parse() {
            request.metadata_mut().insert("tark-budget-ms", ms);
        }
        Ok(self.http(request).await?.into_inner())
    }

    /// A token-endpoint request and what its answer means.
    pub async fn token_call(
        &self,
        req: pb::HttpRequest,
        budget: Duration,
    ) -> Result<token::Answer, Status> {
        Ok(token::answer(&self.oauth_post(req, budget).await?))
    }

    /// Stores a tenant's signed-in credentials (the plugin's storage grant
    /// applies: credentials are kept in its storage).
    pub async fn store_credentials(&self, stored: Stored) -> Result<(), Status> {
        self.check_storage(CREDENTIALS_KEY).map_err(|s| {
            Status::permission_denied(format!(
                "{}; the plugin keeps its OAuth credentials in its storage",
                s.message()
            ))
        })?;
        self.keep(stored).await
    }

    /// Forgets a tenant's signed-in credentials (a sign-out).
    pub async fn forget_credentials(&self) -> Result<(), Status> {
        self.blocking(|s, ns| {
            s.delete(ns, CREDENTIALS_KEY)?;
            s.delete(ns, EXPIRY_KEY)
        })
        .await?;
        self.record("oauth", CREDENTIALS_KEY, "allow", "signed out");
        Ok(())
    }

    /// Writes the credentials and tarkd's record of their expiry (removed
    /// when the token endpoint gave none, so an old one is not applied).
    async fn keep(&self, stored: Stored) -> Result<(), Status> {
        self.blocking(move |s, ns| {
            s.set(ns, CREDENTIALS_KEY, &stored.credentials)?;
            match stored.expires_at {
                Some(t) => s.set(ns, EXPIRY_KEY, &t.to_string()),
                None => s.delete(ns, EXPIRY_KEY),
            }
        })
        .await
    }

    /// Audits a sign-in step (capability `oauth`).
    pub fn audit_oauth(&self, target: &str, decision: &str, reason: &str) {
        self.record("oauth", target, decision, reason);
    }
}
