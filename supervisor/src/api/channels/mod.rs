//! The `Channels` service: messaging channels the agent talks through.
//!
//! tarkd holds each channel's lifecycle per tenant. `StartChannel` calls the
//! plugin's `start(config)` and, once it succeeds, a poller polls the channel
//! every `channels.poll_interval_ms`. When the plugin's worker or instance was
//! replaced (a crash, a trap, `tarkctl restart`) or a poll failed, the poller
//! calls `start` with the same config again before its next poll, so a started
//! channel stays started. Inbound messages go to the agent's subscriptions
//! (`SubscribeChannel`) as they are polled; while no one is subscribed they wait
//! (up to `channels.buffer` of them) for `PollChannel`. `StopChannel` ends the
//! poller and the subscriptions and calls `stop`. Started channels are saved
//! ([`saved`]) and started again when tarkd starts.
//!
//! A channel's lifecycle calls take turns ([`Channels::turn`]): the poller holds
//! the turn across a poll (and the start before it), `StartChannel` and
//! `StopChannel` across theirs. A poller is only ever ended between its calls,
//! so no call is cut off part-way (which would cost the plugin its instance, and
//! with it what the instance held, such as an open gateway), and no start the
//! poller made lands after a stop.

pub mod saved;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status};

use super::{Api, acked, tenant, unexpected};
use crate::plugins::manifest::PluginType;
use crate::plugins::registry::Plugin;
use crate::workers::WorkerKey;

use wpb::invoke_request::Call;
use wpb::invoke_response::Outcome;

/// Started channels by tenant and plugin, in memory and on disk.
pub struct Channels {
    started: Mutex<HashMap<WorkerKey, Started>>,
    saved: saved::Saved,
    /// Each channel's lifecycle turn (kept once made: one per tenant and
    /// channel plugin that was ever started or stopped).
    turns: Mutex<HashMap<WorkerKey, Turn>>,
}

/// The right to make a channel's lifecycle calls (start, poll, stop).
type Turn = Arc<tokio::sync::Mutex<()>>;

impl Channels {
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self {
            started: Mutex::default(),
            saved: saved::Saved::new(state_dir),
            turns: Mutex::default(),
        }
    }

    /// The lifecycle turn of one tenant's channel.
    fn turn(&self, k: &WorkerKey) -> Turn {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(turns.entry(k.clone()).or_default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkerKey, Started>> {
        self.started.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a started channel's inbound messages go: its subscriptions...
type Subscribers = broadcast::Sender<pb::InboundMessage>;
/// ...or, while there are none, the queue PollChannel takes them from.
type Waiting = Arc<Mutex<VecDeque<pb::InboundMessage>>>;

struct Started {
    inbound: Subscribers,
    waiting: Waiting,
    poller: tokio::task::AbortHandle,
}

/// To the subscribers, or to wait for PollChannel when there are none.
fn deliver(
    inbound: &Subscribers,
    waiting: &Waiting,
    m: pb::InboundMessage,
    cap: usize,
    plugin: &str,
) {
    if let Err(broadcast::error::SendError(m)) = inbound.send(m) {
        let mut waiting = waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.push_back(m);
        if waiting.len() > cap {
            waiting.pop_front();
            tracing::warn!(plugin = %plugin, "channel buffer full ({cap}): dropped the oldest inbound message");
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

fn key(tenant: &str, plugin: &str) -> WorkerKey {
    WorkerKey {
        tenant: tenant.to_owned(),
        plugin: plugin.to_owned(),
    }
}

type Inbound = tonic::codegen::BoxStream<pb::InboundMessage>;

#[tonic::async_trait]
impl pb::channels_server::Channels for Api {
    async fn list_channels(
        &self,
        req: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let tenant = tenant(&req)?;
        let plugins = self.plugins_of(&tenant, PluginType::Channel);
        let infos = futures_util::future::join_all(
            plugins
                .iter()
                .map(|p| self.call(&tenant, p, Call::ChannelInfo(wpb::Nothing {}))),
        )
        .await;
        let mut reply = pb::ListChannelsResponse::default();
        for (plugin, info) in plugins.iter().zip(infos) {
            match info {
                Ok(Outcome::ChannelInfo(mut info)) => {
                    info.started = self
                        .0
                        .channels
                        .lock()
                        .contains_key(&key(&tenant, &plugin.id));
                    info.plugin = plugin.id.clone();
                    reply.channels.push(info);
                }
                Ok(_) => reply
                    .errors
                    .push(unexpected(&plugin.id).message().to_owned()),
                Err(s) => reply.errors.push(s.message().to_owned()),
            }
        }
        reply
            .errors
            .extend(self.silenced_of(&tenant, PluginType::Channel));
        Ok(Response::new(reply))
    }

    async fn start_channel(
        &self,
        req: Request<pb::StartChannelRequest>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let plugin = self.plugin_of(&r.plugin, PluginType::Channel)?;
        self.start_for(&tenant, &plugin, r.config_json).await?;
        Ok(Response::new(pb::LifecycleResponse {
            message: format!("channel {} started", plugin.id),
        }))
    }

    async fn stop_channel(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        let tenant = tenant(&req)?;
        let plugin = self.plugin_of(&req.into_inner().id, PluginType::Channel)?;
        let k = key(&tenant, &plugin.id);
        let turn = self.0.channels.turn(&k);
        let _turn = turn.lock().await;
        // The poller waits for the turn or sleeps: ended here, it is between calls.
        let was = self.0.channels.lock().remove(&k);
        drop(was);
        if let Err(e) = self.0.channels.saved.remove(&k) {
            tracing::warn!(plugin = %plugin.id, tenant = %tenant, "forgetting the started channel: {e}");
        }
        let stop = Call::ChannelStop(wpb::Nothing {});
        acked(&plugin.id, self.call(&tenant, &plugin, stop).await?)?;
        Ok(Response::new(pb::LifecycleResponse {
            message: format!("channel {} stopped", plugin.id),
        }))
    }

    async fn handle_webhook(
        &self,
        req: Request<pb::WebhookRequest>,
    ) -> Result<Response<pb::WebhookResponse>, Status> {
        let tenant = tenant(&req)?;
        let mut r = req.into_inner();
        let plugin = self.plugin_of(&r.plugin, PluginType::Channel)?;
        r.plugin.clear();
        match self.call(&tenant, &plugin, Call::ChannelWebhook(r)).await? {
            Outcome::Webhook(w) => {
                // Messages the webhook produced go where polled ones go.
                if let Ok((inbound, waiting)) = self.started(&tenant, &plugin.id) {
                    let cap = self.0.config.channels.buffer;
                    for m in &w.messages {
                        deliver(&inbound, &waiting, m.clone(), cap, &plugin.id);
                    }
                }
                Ok(Response::new(w))
            }
            _ => Err(unexpected(&plugin.id)),
        }
    }

    async fn poll_channel(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<pb::PollChannelResponse>, Status> {
        let tenant = tenant(&req)?;
        let plugin = self.plugin_of(&req.into_inner().id, PluginType::Channel)?;
        let waiting = self.started(&tenant, &plugin.id)?.1;
        let messages = waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        Ok(Response::new(pb::PollChannelResponse { messages }))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let tenant = tenant(&req)?;
        let mut r = req.into_inner();
        let plugin = self.plugin_of(&r.plugin, PluginType::Channel)?;
        r.plugin.clear();
        match self.call(&tenant, &plugin, Call::ChannelSend(r)).await? {
            Outcome::Sent(s) => Ok(Response::new(s)),
            _ => Err(unexpected(&plugin.id)),
        }
    }

    async fn subscribe_channel(
        &self,
        req: Request<pb::PluginRef>,
    ) -> Result<Response<Inbound>, Status> {
        let tenant = tenant(&req)?;
        let plugin = self.plugin_of(&req.into_inner().id, PluginType::Channel)?;
        // Subscribe first, then take what waited: nothing falls between the two.
        let (inbound, waiting) = self.started(&tenant, &plugin.id)?;
        let mut rx = inbound.subscribe();
        drop(inbound);
        let backlog: Vec<_> = waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        let (tx, out) = mpsc::channel(16);
        let id = plugin.id.clone();
        tokio::spawn(async move {
            for m in backlog {
                if tx.send(Ok(m)).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    m = rx.recv() => m,
                    () = tx.closed() => return,
                };
                let item = match next {
                    Ok(m) => Ok(m),
                    Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(n)) => Err(Status::data_loss(format!(
                        "channel {id}: this subscriber fell {n} messages behind and missed them"
                    ))),
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}

impl Api {
    /// Starts a channel for a tenant (again, with a new config, if it was) and
    /// saves it, so it is started again after a tarkd restart.
    async fn start_for(
        &self,
        tenant: &str,
        plugin: &Arc<Plugin>,
        config_json: String,
    ) -> Result<(), Status> {
        let k = key(tenant, &plugin.id);
        let turn = self.0.channels.turn(&k);
        let _turn = turn.lock().await;
        let start = Call::ChannelStart(wpb::ChannelStart {
            config_json: config_json.clone(),
        });
        acked(&plugin.id, self.call(tenant, plugin, start).await?)?;
        self.0.channels.saved.put(&k, &config_json).map_err(|e| {
            Status::internal(format!("channel {}: saving its start: {e}", plugin.id))
        })?;
        let cfg = &self.0.config.channels;
        let (inbound, _) = broadcast::channel(cfg.buffer.max(1));
        let waiting = Arc::new(Mutex::new(VecDeque::new()));
        let poller = Poller {
            api: self.clone(),
            key: k.clone(),
            turn: Arc::clone(&turn),
            plugin: Arc::clone(plugin),
            config_json,
            inbound: inbound.clone(),
            waiting: Arc::clone(&waiting),
        };
        let poller = tokio::spawn(poller.run()).abort_handle();
        let started = Started {
            inbound,
            waiting,
            poller,
        };
        // Starting again replaces the earlier poller (with the new config),
        // which is between calls while this holds the turn.
        let old = self.0.channels.lock().insert(k, started);
        drop(old);
        Ok(())
    }

    /// Starts the channels that were started when tarkd last stopped. One that
    /// cannot start stays saved (it is tried again at the next start) and is
    /// reported in the log.
    pub async fn resume_channels(&self) {
        for (k, config) in self.0.channels.saved.all() {
            let started = match self.plugin_of(&k.plugin, PluginType::Channel) {
                Ok(plugin) => self.start_for(&k.tenant, &plugin, config).await,
                Err(s) => Err(s),
            };
            match started {
                Ok(()) => {
                    tracing::info!(plugin = %k.plugin, tenant = %k.tenant, "channel started again after tarkd's restart")
                }
                Err(s) => {
                    tracing::warn!(plugin = %k.plugin, tenant = %k.tenant, "saved channel not started: {}", s.message())
                }
            }
        }
    }

    /// A started channel's delivery ends: its subscriptions and waiting messages.
    fn started(&self, tenant: &str, plugin: &str) -> Result<(Subscribers, Waiting), Status> {
        let channels = self.0.channels.lock();
        let s = channels.get(&key(tenant, plugin)).ok_or_else(|| {
            Status::failed_precondition(format!(
                "channel {plugin} is not started (StartChannel first)"
            ))
        })?;
        Ok((s.inbound.clone(), Arc::clone(&s.waiting)))
    }
}

/// Polls one started channel, restarting it on a new worker or instance.
struct Poller {
    api: Api,
    key: WorkerKey,
    turn: Turn,
    plugin: Arc<Plugin>,
    config_json: String,
    inbound: Subscribers,
    waiting: Waiting,
}

impl Poller {
    /// The worker generation the channel was started on: starts so far, and
    /// whether that worker still runs.
    fn generation(&self) -> (u64, bool) {
        let s = self.api.0.workers.slot_stats(&self.key).unwrap_or_default();
        (s.starts, s.pid.is_some())
    }

    async fn run(mut self) {
        let cfg = self.api.0.config.channels.clone();
        let interval = Duration::from_millis(cfg.poll_interval_ms.max(10));
        let mut started_on = self.generation().0;
        let mut restart = false;
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(interval).await;
            let turn = Arc::clone(&self.turn);
            let _turn = turn.lock().await;
            // The plugin as installed now: an update replaces it (and its workers),
            // and the channel is started again on the new version.
            match self.api.plugin_of(&self.key.plugin, PluginType::Channel) {
                Ok(p) if !Arc::ptr_eq(&p, &self.plugin) => {
                    self.plugin = p;
                    restart = true;
                }
                Ok(_) => {}
                Err(s) => {
                    self.report(&mut last_error, s.message());
                    continue;
                }
            }
            let (id, tenant) = (&self.key.plugin, &self.key.tenant);
            let (starts, running) = self.generation();
            if restart || !running || starts != started_on {
                let start = Call::ChannelStart(wpb::ChannelStart {
                    config_json: self.config_json.clone(),
                });
                let r = self.api.call(tenant, &self.plugin, start).await;
                match r.and_then(|o| acked(id, o)) {
                    Ok(()) => {
                        tracing::info!(plugin = %id, tenant = %tenant, "channel started again on a new worker, instance or version");
                        started_on = self.generation().0;
                        restart = false;
                    }
                    Err(s) => {
                        self.report(&mut last_error, s.message());
                        restart = true;
                        continue;
                    }
                }
            }
            match self
                .api
                .call(tenant, &self.plugin, Call::ChannelPoll(wpb::Nothing {}))
                .await
            {
                Ok(Outcome::Inbound(r)) => {
                    last_error.clear();
                    for m in r.messages {
                        deliver(&self.inbound, &self.waiting, m, cfg.buffer, id);
                    }
                }
                Ok(_) => self.report(&mut last_error, unexpected(id).message()),
                Err(s) => {
                    // The instance may have been replaced: start it again first.
                    restart = true;
                    self.report(&mut last_error, s.message());
                }
            }
        }
    }

    /// Logs a polling failure once, not at every poll.
    fn report(&self, last: &mut String, message: &str) {
        if last != message {
            tracing::warn!(plugin = %self.plugin.id, tenant = %self.key.tenant, "channel poll: {message}");
            message.clone_into(last);
        }
    }
}
