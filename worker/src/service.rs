//! The `Worker` gRPC service: what tarkd can ask of this worker.

use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tark_proto::worker::v1 as pb;
use tark_proto::worker::v1::broker_client::BrokerClient;
use tokio::sync::{Mutex, Notify};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::abi::component::{self, version};
use crate::abi::module;
use crate::abi::runner::CallLimits;
use crate::abi::{Failure, Plugin, host::HostState};
use crate::streams::{self, After, Turn};
use crate::{engine, sandbox};

/// Serves one plugin. Calls are serialised: a worker runs one guest call at a
/// time, and concurrency comes from one worker per tenant × plugin.
pub struct WorkerService {
    start_layers: Vec<sandbox::Layer>,
    broker: BrokerClient<Channel>,
    plugin: Mutex<Option<Loaded>>,
    /// The order of each stream's polls (taken before the plugin's lock).
    order: streams::Order,
    /// How long a stream's poll waits for the one ahead of it: the plugin's
    /// deadline and a grace, set at load.
    patience: std::sync::OnceLock<std::time::Duration>,
    /// Signalled when tarkd asks the worker to end.
    pub shutdown: Arc<Notify>,
}

struct Loaded {
    plugin: Box<dyn Plugin>,
    exports: Vec<String>,
    max_response_bytes: usize,
}

impl WorkerService {
    /// `start_layers`: what [`sandbox::at_start`] did, reported with the rest.
    pub fn new(broker: BrokerClient<Channel>, start_layers: Vec<sandbox::Layer>) -> Self {
        Self {
            start_layers,
            broker,
            plugin: Mutex::new(None),
            order: streams::Order::default(),
            patience: std::sync::OnceLock::new(),
            shutdown: Arc::new(Notify::new()),
        }
    }
}

/// How much longer than the plugin's deadline a stream's poll waits for the
/// poll ahead of it (which the deadline bounds) before giving up.
const POLL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn failure(kind: pb::FailureKind, message: impl Into<String>) -> Response<pb::InvokeResponse> {
    failed(Failure::new(kind, message))
}

/// The answer to a poll behind its stream's end.
fn ended_stream() -> Response<pb::InvokeResponse> {
    Response::new(pb::InvokeResponse {
        outcome: Some(pb::invoke_response::Outcome::Chunk(
            tark_proto::plugin::v1::ChatChunk {
                done: true,
                ..Default::default()
            },
        )),
    })
}

fn failed(f: Failure) -> Response<pb::InvokeResponse> {
    Response::new(pb::InvokeResponse {
        outcome: Some(pb::invoke_response::Outcome::Failure(f.into())),
    })
}

#[tonic::async_trait]
impl pb::worker_server::Worker for WorkerService {
    async fn load(
        &self,
        req: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        let req = req.into_inner();
        let mut slot = self.plugin.lock().await;
        if slot.is_some() {
            return Err(Status::failed_precondition("a plugin is already loaded"));
        }
        let kind = pb::PluginKind::try_from(req.kind).unwrap_or(pb::PluginKind::Unspecified);
        let proto_limits = req.limits.unwrap_or_default();
        let limits = CallLimits::from_proto(&proto_limits);
        crate::priority::set_budget(limits.idle_after_cpu);
        let _ = self.patience.set(limits.deadline + POLL_GRACE);
        let result_buffers = proto_limits.result_buffers;
        let engine = engine::build(limits.fuel.is_some())
            .map_err(|e| Status::internal(format!("engine setup failed: {e:#}")))?;
        let started = Instant::now();
        let (compiled, precompiled) = match req.module {
            Some(pb::load_request::Module::Wasm(wasm)) => {
                // What tark's SDK guide builds is hosted as the component
                // it describes (`crate::adapt`).
                let wasm = match tark_proto::wasm::core_shape(&wasm) {
                    Some(tark_proto::wasm::CoreShape::WitBindgen) => {
                        crate::adapt::adapt(&wasm).map_err(Status::failed_precondition)?
                    }
                    _ => wasm,
                };
                let c = engine::compile(&engine, &wasm).map_err(|e| {
                    let what = if engine::is_core_module(&wasm) {
                        "not a valid core module"
                    } else {
                        "not a valid component"
                    };
                    Status::invalid_argument(format!("{what}: {e:#}"))
                })?;
                let artifact = c.serialize().map_err(|e| {
                    Status::internal(format!("serializing the compiled module: {e:#}"))
                })?;
                (c, artifact)
            }
            Some(pb::load_request::Module::Precompiled(bytes)) => {
                let c = engine::deserialize(&engine, &bytes)
                    .map_err(|e| Status::data_loss(format!("stale precompiled artifact: {e:#}")))?;
                (c, Vec::new())
            }
            None => return Err(Status::invalid_argument("LoadRequest carries no module")),
        };
        let compile_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let imports_wasi = match &compiled {
            engine::Compiled::Component(c) => {
                let ty = c.component_type();
                crate::abi::wasi::component_imports(ty.imports(&engine).map(|(name, _)| name))
                    .map_err(Status::failed_precondition)?
            }
            engine::Compiled::Module(m) => m
                .imports()
                .any(|i| i.module() == crate::abi::wasi::refuse::P1_MODULE),
        };
        // A WASI guest starts with the variables its grant allows, as tarkd
        // checks and reads them; a guest without WASI needs no lookup.
        let env = if imports_wasi {
            self.broker
                .clone()
                .env_list(pb::Empty {})
                .await
                .map(|r| r.into_inner().vars)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let wasi = crate::abi::wasi::Setup::new(env);
        let broker = self.broker.clone();
        let new_state: Box<dyn Fn(crate::limits::Limiter) -> HostState + Send + Sync> =
            Box::new(move |limiter| HostState::new(broker.clone(), limiter, wasi.clone()));
        let max_response_bytes = limits.max_response_bytes;
        let (plugin, exports, export, provides) = match compiled {
            engine::Compiled::Component(component) => {
                let exports = version::exports(&engine, &component);
                let (contract, export) = version::check_world(&exports, kind)
                    .map_err(|f| Status::failed_precondition(f.message))?;
                let plugin = component::load(
                    kind,
                    contract,
                    engine.clone(),
                    (component, imports_wasi),
                    limits,
                    new_state,
                )
                .map_err(|e| Status::internal(format!("linking host imports: {e:#}")))?;
                (plugin, exports, export, Vec::new())
            }
            engine::Compiled::Module(m) => {
                let rooms = module::imports::Rooms::from_proto(&result_buffers);
                let manifest = (req.plugin.clone(), req.version.clone());
                let l = module::load(kind, engine.clone(), m, limits, rooms, manifest, new_state)
                    .map_err(Status::failed_precondition)?;
                (l.plugin, l.provides.clone(), l.contract, l.provides)
            }
        };

        // What compiling or loading freed goes back to the kernel now: an
        // idle worker otherwise keeps its peak heap for the rest of its life.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe {
            libc::malloc_trim(0);
        }
        // Everything the plugin needs is set up: lock down before any guest
        // code (what the priority layer reads, it reads before: seccomp
        // forbids getrlimit).
        let mut layers = self.start_layers.clone();
        let priority = crate::priority::report();
        let namespaces = sandbox::own_namespaces();
        layers.extend(if req.lockdown {
            sandbox::lockdown(req.seccomp_log, req.landlock_min_abi)
        } else {
            Vec::new()
        });
        layers.push(priority);
        *slot = Some(Loaded {
            plugin,
            exports,
            max_response_bytes,
        });
        Ok(Response::new(pb::LoadResponse {
            precompiled,
            compile_micros,
            sandbox: layers,
            contract: export,
            provides,
            namespaces,
        }))
    }

    async fn describe(
        &self,
        _req: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        let slot = self.plugin.lock().await;
        let loaded = slot
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("no plugin loaded"))?;
        Ok(Response::new(pb::DescribeResponse {
            exports: loaded.exports.clone(),
        }))
    }

    async fn invoke(
        &self,
        req: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeResponse>, Status> {
        let Some(call) = req.into_inner().call else {
            return Ok(failure(
                pb::FailureKind::BadRequest,
                "InvokeRequest carries no call",
            ));
        };
        // A numbered poll waits for its turn; the polls behind a stream's end
        // are answered here (`streams`).
        let running = match &call {
            pb::invoke_request::Call::ChatStreamPoll(p) if p.seq > 0 && p.pump > 0 => {
                let patience = self.patience.get().copied().unwrap_or(POLL_GRACE);
                match self.order.turn(p.pump, p.seq, patience).await {
                    Turn::Run => Some(streams::Running::new(&self.order, p.pump, p.seq)),
                    Turn::Ended => return Ok(ended_stream()),
                    Turn::Stuck => {
                        return Ok(failure(
                            pb::FailureKind::Deadline,
                            format!(
                                "poll {} of stream {}: the poll ahead of it did not finish",
                                p.seq, p.stream_id
                            ),
                        ));
                    }
                }
            }
            pb::invoke_request::Call::ChatStreamCancel(p) if p.pump > 0 => {
                self.order.end(p.pump);
                None
            }
            _ => None,
        };
        let mut slot = self.plugin.lock().await;
        let Some(loaded) = slot.as_mut() else {
            return Ok(failure(pb::FailureKind::NotLoaded, "no plugin loaded"));
        };
        #[cfg(feature = "escape-hatch")]
        if let pb::invoke_request::Call::ExecuteTool(t) = &call
            && let Some(((name, attempt), pid)) = crate::escape::requested(&t.arguments_json)
        {
            // Only reached if the sandbox let the call through.
            let returned = attempt(pid);
            return Ok(failure(
                pb::FailureKind::BadRequest,
                format!("escape attempt {name} returned {returned}"),
            ));
        }
        let outcome = match loaded.plugin.invoke(call).await {
            Ok(o) => o,
            Err(f) => return Ok(failed(f)),
        };
        let reply = pb::InvokeResponse {
            outcome: Some(outcome),
        };
        let size = reply.encoded_len();
        if size > loaded.max_response_bytes {
            // `running`, dropped, ends its stream: the chunk is lost.
            return Ok(failure(
                pb::FailureKind::ResponseTooLarge,
                format!(
                    "response of {size} bytes exceeds the limit of {} bytes",
                    loaded.max_response_bytes
                ),
            ));
        }
        if let Some(running) = running {
            let more = matches!(
                &reply.outcome,
                Some(pb::invoke_response::Outcome::Chunk(c)) if !c.done
            );
            running.ran(if more { After::More } else { After::End });
        }
        Ok(Response::new(reply))
    }

    async fn shutdown(
        &self,
        _req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        self.shutdown.notify_one();
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}
