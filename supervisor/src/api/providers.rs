//! The `Providers` service: LLM provider plugins' info, models and chat.
//!
//! A streamed chat is the plugin's `chat-stream-start`, then one
//! `chat-stream-poll` per chunk, each its own call to the worker. While chunks
//! come, a few polls of the stream are in flight at once ([`AHEAD`]), numbered,
//! and the worker runs them in their order: it goes from one chunk to the next
//! without a round trip through tarkd for each. What is ahead of the agent is
//! bounded (the polls in flight and a channel as long), so a slow reader slows
//! the plugin rather than filling tarkd's memory; other calls to the same
//! plugin run between chunks. The stream ends at the plugin's `done`, its
//! error, the agent's deadline (or `limits.stream_max_s`), or when the agent
//! goes away. The polls still in flight are let finish (each is one short
//! call; cutting one off would replace the instance and every other stream in
//! it; the worker answers those behind an end itself), then an abandoned
//! stream's plugin is called at its optional `chat-stream-cancel` so it can
//! drop the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

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

/// Polls of one stream in flight at once while its chunks come. The worker
/// runs them in order and goes from one to the next without waiting for
/// tarkd; more would only take room in the worker's window (eight calls) from
/// its other calls.
const AHEAD: usize = 4;

/// How long past its deadline an agent that stopped reading is waited for
/// to take a stream's error.
const TELL_GRACE: Duration = Duration::from_secs(1);

/// Numbers the pumps, so a worker never mistakes the polls of an ended stream
/// for those of a new one the plugin gave the same id.
static PUMPS: AtomicU64 = AtomicU64::new(1);

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
        let (tx, rx) = mpsc::channel(AHEAD);
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

/// How a pump stopped.
enum End {
    /// The plugin ended the stream, or failed it.
    Plugin,
    /// The agent went away, or its deadline passed: the plugin is told.
    Abandoned,
}

impl Pump {
    async fn run(self, tx: mpsc::Sender<Result<pb::ChatChunk, Status>>) {
        let pump = PUMPS.fetch_add(1, Ordering::Relaxed);
        let mut polls = FuturesOrdered::new();
        // The deadline and the agent going away end the stream wherever the
        // forwarding is; the polls it leaves in flight are still here.
        let end = tokio::select! {
            end = self.forward(&mut polls, |seq| self.poll(pump, seq), &tx) => end,
            () = tokio::time::sleep_until(self.until) => self.expired(&tx).await,
            () = tx.closed() => End::Abandoned,
        };
        // The agent's stream ends now; the polls still in flight are let
        // finish (the worker answers those behind an end without the plugin,
        // and one cut off part-way would cost the plugin its instance).
        drop(tx);
        while polls.next().await.is_some() {}
        if let End::Abandoned = end {
            self.cancel(pump).await;
        }
    }

    /// Polls the plugin through `poll` and forwards its chunks until the
    /// stream ends.
    async fn forward<F>(
        &self,
        polls: &mut FuturesOrdered<F>,
        poll: impl Fn(u64) -> F,
        tx: &mpsc::Sender<Result<pb::ChatChunk, Status>>,
    ) -> End
    where
        F: Future<Output = Result<Outcome, Status>>,
    {
        let (mut seq, mut idle, mut chunks) = (0, Duration::ZERO, 0);
        loop {
            // While chunks come, up to AHEAD polls in flight, one more for
            // each chunk (the first chunk waits behind no other poll); while
            // the plugin has nothing yet, one at a time, a little further
            // apart each time.
            let ahead = if idle.is_zero() {
                AHEAD.min(chunks + 1)
            } else {
                1
            };
            while polls.len() < ahead {
                seq += 1;
                polls.push_back(poll(seq));
            }
            let Some(answer) = polls.next().await else {
                return End::Plugin;
            };
            let chunk = match answer {
                Ok(Outcome::Chunk(c)) => c,
                Ok(_) => {
                    self.tell(tx, unexpected(&self.plugin.id)).await;
                    return End::Plugin;
                }
                Err(s) => {
                    self.tell(tx, s).await;
                    return End::Plugin;
                }
            };
            let (last, empty) = (chunk.done, chunk.text.is_empty() && chunk.usage.is_none());
            if empty && !last {
                idle = (idle * 2).clamp(Duration::from_millis(1), MAX_IDLE_WAIT);
                if polls.is_empty() {
                    tokio::time::sleep(idle).await;
                }
                continue;
            }
            (idle, chunks) = (Duration::ZERO, chunks + 1);
            // The agent's pace sets the plugin's: at most the channel and the
            // polls in flight are ahead of it.
            if !empty && tx.send(Ok(chunk)).await.is_err() {
                return End::Abandoned;
            }
            if last {
                return End::Plugin;
            }
        }
    }

    /// Poll `seq` of this pump's stream.
    async fn poll(&self, pump: u64, seq: u64) -> Result<Outcome, Status> {
        let poll = Call::ChatStreamPoll(wpb::StreamPoll {
            stream_id: self.stream_id,
            seq,
            pump,
        });
        self.api.call(&self.tenant, &self.plugin, poll).await
    }

    /// The agent's deadline (or `limits.stream_max_s`) passed.
    async fn expired(&self, tx: &mpsc::Sender<Result<pb::ChatChunk, Status>>) -> End {
        let status = Status::deadline_exceeded(format!(
            "plugin {}: stream still open after {} ms",
            self.plugin.id,
            self.limit.as_millis()
        ));
        self.tell(tx, status).await;
        End::Abandoned
    }

    /// Ends the agent's stream with an error, behind the chunks it has not
    /// read yet; an agent that stops reading is not waited for past its
    /// deadline and a grace.
    async fn tell(&self, tx: &mpsc::Sender<Result<pb::ChatChunk, Status>>, status: Status) {
        let patience = self.until.max(Instant::now()) + TELL_GRACE;
        let _ = tokio::time::timeout_at(patience, tx.send(Err(status))).await;
    }

    /// Tells the plugin the agent abandoned the stream.
    async fn cancel(&self, pump: u64) {
        let cancel = Call::ChatStreamCancel(wpb::StreamPoll {
            stream_id: self.stream_id,
            seq: 0,
            pump,
        });
        if let Err(s) = self.api.call(&self.tenant, &self.plugin, cancel).await {
            tracing::debug!(plugin = %self.plugin.id, "cancelling a stream: {}", s.message());
        }
    }
}
