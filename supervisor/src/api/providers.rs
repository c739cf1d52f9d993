//! The `Providers` service: LLM provider plugins' info, models and chat.
//!
//! A streamed chat is the plugin's `chat-stream-start`, then one
//! `chat-stream-poll` per chunk, each its own call to the worker. tarkd polls only
//! when the agent has taken the previous chunk (a channel of one), so a slow
//! reader slows the plugin rather than filling tarkd's memory; other calls to
//! the same plugin run between chunks. The stream ends at the plugin's `done`,
//! its error, the agent's deadline (or `limits.stream_max_s`), or when the agent
//! goes away. An abandoned stream's poll in progress is let finish (it is one
//! short call, and cutting it off would replace the instance and every other
//! stream in it), then the plugin's optional `chat-stream-cancel` is called so it
//! can drop the stream.

use std::sync::Arc;
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::{Api, deadline, tenant, unexpected};
use crate::plugins::manifest::PluginType;
use crate::plugins::registry::Plugin;

use wpb::invoke_request::Call;
use wpb::invoke_response::Outcome;

/// Longest pause between polls of a stream whose plugin has nothing new yet.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(100);

/// The stream type tonic's generated service uses for `ChatStream`.
type ChunkStream = tonic::codegen::BoxStream<pb::ChatChunk>;

/// The agent's built-in provider a plugin stands in for ([contributes]).
fn base_provider(plugin: &Plugin) -> String {
    plugin
        .loaded
        .as_ref()
        .map(|l| l.manifest.base_provider().to_owned())
        .unwrap_or_default()
}

fn chat_call(r: pb::ChatRequest) -> wpb::Chat {
    wpb::Chat {
        model: r.model,
        messages: r.messages,
    }
}

#[tonic::async_trait]
impl pb::providers_server::Providers for Api {
    async fn list_providers(
        &self,
        req: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let tenant = tenant(&req)?;
        // Every provider at once; answers in name order.
        let plugins = self.plugins_of(&tenant, PluginType::Provider);
        let infos = futures_util::future::join_all(
            plugins
                .iter()
                .map(|p| self.call(&tenant, p, Call::ProviderInfo(wpb::Nothing {}))),
        )
        .await;
        let mut reply = pb::ListProvidersResponse::default();
        for (plugin, info) in plugins.iter().zip(infos) {
            match info {
                Ok(Outcome::ProviderInfo(mut info)) => {
                    info.plugin = plugin.id.clone();
                    info.base_provider = base_provider(plugin);
                    reply.providers.push(info);
                }
                Ok(_) => reply
                    .errors
                    .push(unexpected(&plugin.id).message().to_owned()),
                Err(s) => reply.errors.push(s.message().to_owned()),
            }
        }
        reply
            .errors
            .extend(self.silenced_of(&tenant, PluginType::Provider));
        Ok(Response::new(reply))
    }

    async fn list_models(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let tenant = tenant(&req)?;
        let plugin = self.plugin_of(&req.into_inner().id, PluginType::Provider)?;
        match self
            .call(&tenant, &plugin, Call::ListModels(wpb::Nothing {}))
            .await?
        {
            Outcome::Models(m) => Ok(Response::new(m)),
            _ => Err(unexpected(&plugin.id)),
        }
    }

    async fn get_credentials(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::GetCredentialsResponse>, Status> {
        let tenant = tenant(&req)?;
        let plugin = self.plugin_of(&req.into_inner().id, PluginType::Provider)?;
        let answer = self
            .call(&tenant, &plugin, Call::AuthCredentials(wpb::Nothing {}))
            .await;
        // Credentials leave tarkd here: every hand-out (and refusal) is audited.
        let (decision, reason) = match &answer {
            Ok(Outcome::Text(_)) => ("allow", "credentials handed to the agent"),
            _ => ("deny", "the plugin gave no credentials"),
        };
        self.0.workers.authority.audit.record(
            &tenant,
            &plugin.id,
            "credentials",
            "provider_auth_credentials",
            decision,
            reason,
        );
        match answer? {
            Outcome::Text(t) => Ok(Response::new(pb::GetCredentialsResponse {
                plugin: plugin.id.clone(),
                base_provider: base_provider(&plugin),
                credentials_json: t.text,
            })),
            _ => Err(unexpected(&plugin.id)),
        }
    }

    async fn chat(
        &self,
        req: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::ChatResponse>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let plugin = self.plugin_of(&r.plugin, PluginType::Provider)?;
        match self
            .call(&tenant, &plugin, Call::Chat(chat_call(r)))
            .await?
        {
            Outcome::Chat(c) => Ok(Response::new(c)),
            _ => Err(unexpected(&plugin.id)),
        }
    }

    async fn chat_stream(
        &self,
        req: Request<pb::ChatRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let tenant = tenant(&req)?;
        let max = Duration::from_secs(self.0.config.limits.stream_max_s);
        let limit = deadline::of(&req).map_or(max, |d| d.min(max));
        let until = Instant::now() + limit;
        let r = req.into_inner();
        let plugin = self.plugin_of(&r.plugin, PluginType::Provider)?;
        let stream_id = match self
            .call(&tenant, &plugin, Call::ChatStreamStart(chat_call(r)))
            .await?
        {
            Outcome::StreamStarted(s) => s.stream_id,
            _ => return Err(unexpected(&plugin.id)),
        };
        let (tx, rx) = mpsc::channel(1);
        let pump = Pump {
            api: self.clone(),
            tenant,
            plugin,
            stream_id,
            until,
            limit,
        };
        tokio::spawn(pump.run(tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Moves one stream's chunks from the plugin to the agent.
struct Pump {
    api: Api,
    tenant: String,
    plugin: Arc<Plugin>,
    stream_id: u64,
    until: Instant,
    limit: Duration,
}

impl Pump {
    async fn run(self, tx: mpsc::Sender<Result<pb::ChatChunk, Status>>) {
        let id = &self.plugin.id;
        let expired = || {
            Status::deadline_exceeded(format!(
                "plugin {id}: stream still open after {} ms",
                self.limit.as_millis()
            ))
        };
        let mut idle = Duration::ZERO;
        loop {
            // Room for the next chunk first: the agent's pace sets the plugin's.
            let permit = tokio::select! {
                p = tx.reserve() => match p {
                    Ok(p) => p,
                    Err(_) => return self.cancel().await,
                },
                () = tokio::time::sleep_until(self.until) => {
                    let _ = tx.send(Err(expired())).await;
                    return self.cancel().await;
                }
            };
            let poll = Call::ChatStreamPoll(wpb::StreamPoll {
                stream_id: self.stream_id,
            });
            let polling = self.api.call(&self.tenant, &self.plugin, poll);
            tokio::pin!(polling);
            let answer = tokio::select! {
                a = &mut polling => a,
                () = tokio::time::sleep_until(self.until) => {
                    permit.send(Err(expired()));
                    let _ = polling.await;
                    return self.cancel().await;
                }
            };
            let chunk = match answer {
                Ok(Outcome::Chunk(c)) => c,
                Ok(_) => {
                    permit.send(Err(unexpected(id)));
                    return;
                }
                Err(s) => {
                    permit.send(Err(s));
                    return;
                }
            };
            if chunk.done {
                if !chunk.text.is_empty() || chunk.usage.is_some() {
                    permit.send(Ok(chunk));
                }
                return;
            }
            if chunk.text.is_empty() {
                // Nothing yet: wait a little longer each time, up to a bound.
                drop(permit);
                idle = (idle * 2).clamp(Duration::from_millis(1), MAX_IDLE_WAIT);
                tokio::time::sleep(idle).await;
            } else {
                idle = Duration::ZERO;
                permit.send(Ok(chunk));
            }
        }
    }

    /// Tells the plugin the agent abandoned the stream.
    async fn cancel(&self) {
        let cancel = Call::ChatStreamCancel(wpb::StreamPoll {
            stream_id: self.stream_id,
        });
        if let Err(s) = self.api.call(&self.tenant, &self.plugin, cancel).await {
            tracing::debug!(plugin = %self.plugin.id, "cancelling a stream: {}", s.message());
        }
    }
}
