//! Component-model plugins (`wit/tark.wit`).
//!
//! One guest instance lives across calls, so a plugin may keep state in memory
//! between them; after a call fails in a way that leaves the instance unusable
//! (trap, deadline, limit) it is dropped and the next call gets a fresh one.

use std::time::Duration;

use tark_proto::worker::v1 as pb;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

use super::host::HostState;
use super::{Call, Failure, Outcome};
use crate::limits::Limiter;
use crate::watchdog::Watchdog;

mod bindings {
    wasmtime::component::bindgen!({
        world: "tool-world",
        path: "../wit/tark.wit",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::exports::tark::plugin::tool_plugin;
use bindings::tark::plugin::{env, fs, http, log, storage, ws};

/// The package every supported world belongs to; any 0.1.x is accepted.
const PACKAGE: &str = "tark:plugin/";
const SUPPORTED_VERSION_PREFIX: &str = "@0.1.";

/// How long past the deadline the worker waits on a call stuck in a host call
/// before giving up on it (the guest itself is interrupted at the deadline).
const HOST_CALL_GRACE: Duration = Duration::from_millis(250);

/// The limits a call runs under (from tarkd's `Limits`, defaults filled in).
#[derive(Debug, Clone)]
pub struct CallLimits {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub instances: usize,
    pub fuel: Option<u64>,
    pub max_response_bytes: usize,
}

impl CallLimits {
    pub fn from_proto(l: &pb::Limits) -> Self {
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        Self {
            deadline: Duration::from_millis(or(l.deadline_ms, 5_000)),
            memory_bytes: usize::try_from(or(l.memory_bytes, 64 << 20)).unwrap_or(usize::MAX),
            table_elements: usize::try_from(or(l.table_elements.into(), 20_000))
                .unwrap_or(usize::MAX),
            instances: usize::try_from(or(l.instances.into(), 10)).unwrap_or(usize::MAX),
            fuel: (l.fuel > 0).then_some(l.fuel),
            max_response_bytes: usize::try_from(or(l.max_response_bytes, 1 << 20))
                .unwrap_or(usize::MAX),
        }
    }
}

/// The export a plugin of this kind must provide.
pub fn required_export(kind: pb::PluginKind) -> Option<&'static str> {
    match kind {
        pb::PluginKind::Auth => Some("auth-plugin"),
        pb::PluginKind::Tool => Some("tool-plugin"),
        pb::PluginKind::Provider => Some("provider-plugin"),
        pb::PluginKind::Channel => Some("channel-plugin"),
        pb::PluginKind::Hook => Some("hook-plugin"),
        pb::PluginKind::Unspecified => None,
    }
}

/// The exported interface names of a component, e.g. `tark:plugin/tool-plugin@0.1.0`.
pub fn exports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Checks that the component exports the interface its manifest type promises, at
/// a version this host supports. Done at load, so a wrong-world plugin is reported
/// before anything runs.
pub fn check_world(exports: &[String], kind: pb::PluginKind) -> Result<(), Failure> {
    let Some(iface) = required_export(kind) else {
        return Err(Failure::new(
            pb::FailureKind::BadRequest,
            "no plugin type given",
        ));
    };
    let want = format!("{PACKAGE}{iface}");
    let found = exports
        .iter()
        .find(|e| e.split('@').next() == Some(want.as_str()));
    match found {
        Some(e) if e.contains(SUPPORTED_VERSION_PREFIX) => {}
        Some(e) => {
            return Err(Failure::new(
                pb::FailureKind::WrongWorld,
                format!("component exports {e}, but this tarkd supports {want}@0.1.x"),
            ));
        }
        None => {
            let listed = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            };
            return Err(Failure::new(
                pb::FailureKind::WrongWorld,
                format!(
                    "component does not export {want}@0.1.x, so it is not a {iface:?} plugin (it exports {listed})"
                ),
            ));
        }
    }
    if kind != pb::PluginKind::Tool {
        return Err(Failure::new(
            pb::FailureKind::WrongWorld,
            format!("{iface} plugins are not hosted by this worker yet; only tool plugins are"),
        ));
    }
    Ok(())
}

/// A loaded component plugin and, while healthy, its live instance.
pub struct ComponentPlugin {
    engine: Engine,
    component: Component,
    linker: Linker<HostState>,
    limits: CallLimits,
    new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
    live: Option<(Store<HostState>, bindings::ToolWorld)>,
    watchdog: Watchdog,
}

impl ComponentPlugin {
    /// Prepares a plugin; `new_state` builds the host state for each new instance.
    pub fn new(
        engine: Engine,
        component: Component,
        limits: CallLimits,
        new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
    ) -> wasmtime::Result<Self> {
        let mut linker = Linker::new(&engine);
        bindings::ToolWorld::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        let watchdog = Watchdog::start(engine.clone())?;
        Ok(Self {
            engine,
            component,
            linker,
            limits,
            new_state,
            live: None,
            watchdog,
        })
    }

    /// Runs one call under the deadline, fuel and memory limits.
    pub async fn invoke(&mut self, call: Call) -> Result<Outcome, Failure> {
        let deadline = self.limits.deadline;
        // The guest is interrupted at the deadline by one epoch tick; the engine
        // belongs to this plugin alone, so the tick touches no one else.
        let armed = self.watchdog.arm(std::time::Instant::now() + deadline);
        let result = tokio::time::timeout(deadline + HOST_CALL_GRACE, self.run(call)).await;
        drop(armed);
        let result = result.unwrap_or_else(|_| {
            Err(Failure::new(
                pb::FailureKind::Deadline,
                format!(
                    "deadline of {} ms exceeded (stuck in a host call)",
                    deadline.as_millis()
                ),
            ))
        });
        if let Err(f) = &result
            && f.poisons_instance()
        {
            self.live = None;
        }
        result
    }

    async fn run(&mut self, call: Call) -> Result<Outcome, Failure> {
        if self.live.is_none() {
            let limiter = Limiter::new(
                self.limits.memory_bytes,
                self.limits.table_elements,
                self.limits.instances,
            );
            let mut store = Store::new(&self.engine, (self.new_state)(limiter));
            store.limiter(|s| &mut s.limiter);
            store.epoch_deadline_trap();
            arm(&mut store, &self.limits).map_err(|e| self.classify(e, None))?;
            let instance =
                bindings::ToolWorld::instantiate_async(&mut store, &self.component, &self.linker)
                    .await
                    .map_err(|e| {
                        let f = self.classify(e, store.data().limiter.hit);
                        if f.kind == pb::FailureKind::Trap {
                            Failure::new(
                                pb::FailureKind::Instantiate,
                                format!("instantiation failed: {}", f.message),
                            )
                        } else {
                            f
                        }
                    })?;
            self.live = Some((store, instance));
        } else if let Some((store, _)) = self.live.as_mut() {
            arm(store, &self.limits)
                .map_err(|e| Failure::new(pb::FailureKind::Trap, format!("{e:#}")))?;
        }
        let Some((store, instance)) = self.live.as_mut() else {
            return Err(Failure::new(pb::FailureKind::NotLoaded, "no instance"));
        };
        store.data_mut().limiter.hit = None;
        store.data_mut().call_deadline = Some(std::time::Instant::now() + self.limits.deadline);
        let tool = instance.tark_plugin_tool_plugin();
        let result = match call {
            Call::ListTools(_) => tool.call_get_tools(&mut *store).await.map(|tools| {
                Outcome::Tools(pb::ToolList {
                    tools: tools
                        .into_iter()
                        .map(|t| pb::ToolDef {
                            name: t.name,
                            description: t.description,
                            parameters_schema: t.parameters_schema,
                        })
                        .collect(),
                })
            }),
            Call::ExecuteTool(req) => tool
                .call_execute(&mut *store, &req.tool, &req.arguments_json)
                .await
                .map(|r| {
                    Outcome::ToolResult(pb::ToolResult {
                        result: Some(match r {
                            tool_plugin::ToolResult::Success(s) => {
                                pb::tool_result::Result::Success(s)
                            }
                            tool_plugin::ToolResult::Error(e) => pb::tool_result::Result::Error(e),
                        }),
                    })
                }),
            Call::GetRiskLevel(req) => {
                tool.call_get_risk_level(&mut *store, &req.tool)
                    .await
                    .map(|r| {
                        let level = match r {
                            tool_plugin::RiskLevel::ReadOnly => pb::RiskLevel::ReadOnly,
                            tool_plugin::RiskLevel::Write => pb::RiskLevel::Write,
                            tool_plugin::RiskLevel::Risky => pb::RiskLevel::Risky,
                            tool_plugin::RiskLevel::Dangerous => pb::RiskLevel::Dangerous,
                        };
                        Outcome::Risk(pb::Risk {
                            level: level as i32,
                        })
                    })
            }
        };
        let hit = store.data().limiter.hit;
        result.map_err(|e| self.classify(e, hit))
    }

    fn classify(&self, err: wasmtime::Error, hit: Option<crate::limits::LimitHit>) -> Failure {
        classify(err, hit, &self.limits)
    }
}

/// Sets the per-call epoch deadline and fuel on a store.
fn arm(store: &mut Store<HostState>, limits: &CallLimits) -> wasmtime::Result<()> {
    store.set_epoch_deadline(1);
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel)?;
    }
    Ok(())
}

/// Names the limit or fault behind a failed guest call.
pub fn classify(
    err: wasmtime::Error,
    hit: Option<crate::limits::LimitHit>,
    limits: &CallLimits,
) -> Failure {
    use crate::limits::LimitHit;
    match hit {
        Some(h @ LimitHit::Memory { .. }) => {
            return Failure::new(pb::FailureKind::MemoryLimit, h.to_string());
        }
        Some(h @ LimitHit::Table { .. }) => {
            return Failure::new(pb::FailureKind::TableLimit, h.to_string());
        }
        None => {}
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::new(
            pb::FailureKind::Deadline,
            format!("deadline of {} ms exceeded", limits.deadline.as_millis()),
        ),
        Some(Trap::OutOfFuel) => Failure::new(
            pb::FailureKind::Fuel,
            format!("fuel limit of {} exhausted", limits.fuel.unwrap_or(0)),
        ),
        Some(trap) => Failure::new(pb::FailureKind::Trap, trap.to_string()),
        None => Failure::new(pb::FailureKind::Trap, format!("plugin failed: {err:#}")),
    }
}

// ----- host imports: each forwards to the broker --------------------------------

impl storage::Host for HostState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.storage_get(key).await
    }
    async fn set(&mut self, key: String, value: String) -> Result<(), String> {
        self.storage_set(key, value).await
    }
    async fn delete(&mut self, key: String) -> Result<(), String> {
        self.storage_delete(key).await
    }
    async fn list_keys(&mut self) -> Vec<String> {
        self.storage_list_keys().await
    }
}

impl env::Host for HostState {
    async fn get(&mut self, name: String) -> Option<String> {
        self.env_get(name).await
    }
}

impl log::Host for HostState {
    async fn debug(&mut self, message: String) {
        self.log(pb::LogLevel::Debug, message).await;
    }
    async fn info(&mut self, message: String) {
        self.log(pb::LogLevel::Info, message).await;
    }
    async fn warn(&mut self, message: String) {
        self.log(pb::LogLevel::Warn, message).await;
    }
    async fn error(&mut self, message: String) {
        self.log(pb::LogLevel::Error, message).await;
    }
}

impl fs::Host for HostState {
    async fn read(&mut self, path: String) -> Result<String, String> {
        self.fs_read(path).await
    }
}

impl ws::Host for HostState {
    async fn connect(&mut self, url: String, headers_json: String) -> String {
        self.ws_connect(url, headers_json).await
    }
    async fn send(&mut self, handle: i64, data: String) -> String {
        self.ws_send(handle, data).await
    }
    async fn recv(&mut self, handle: i64, timeout_ms: i64, max_bytes: i64) -> String {
        self.ws_recv(handle, timeout_ms, max_bytes).await
    }
    async fn close(&mut self, handle: i64) -> String {
        self.ws_close(handle).await
    }
}

impl http::Host for HostState {
    async fn get(
        &mut self,
        url: String,
        headers: Vec<(String, String)>,
    ) -> Result<http::HttpResponse, http::HttpError> {
        self.request(http::HttpRequest {
            method: "GET".into(),
            url,
            headers,
            body: None,
        })
        .await
    }

    async fn post(
        &mut self,
        url: String,
        body: String,
        headers: Vec<(String, String)>,
    ) -> Result<http::HttpResponse, http::HttpError> {
        let req = http::HttpRequest {
            method: "POST".into(),
            url,
            headers,
            body: Some(body),
        };
        self.request(req).await
    }

    async fn request(
        &mut self,
        req: http::HttpRequest,
    ) -> Result<http::HttpResponse, http::HttpError> {
        let headers = |h: Vec<(String, String)>| {
            h.into_iter()
                .map(|(name, value)| pb::HttpHeader { name, value })
                .collect()
        };
        let req = pb::HttpRequest {
            method: req.method,
            url: req.url,
            headers: headers(req.headers),
            body: req.body,
        };
        match self.http(req).await {
            Ok(r) => Ok(http::HttpResponse {
                status: u16::try_from(r.status).unwrap_or(0),
                headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                body: r.body,
            }),
            Err(message) => Err(http::HttpError {
                message,
                status: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn world_check_table() {
        use pb::FailureKind::{BadRequest, WrongWorld};
        use pb::PluginKind::{Hook, Tool, Unspecified};
        let cases: &[(&[&str], pb::PluginKind, Option<pb::FailureKind>)] = &[
            (&["tark:plugin/tool-plugin@0.1.0"], Tool, None),
            (&["tark:plugin/tool-plugin@0.1.7"], Tool, None),
            (&["tark:plugin/tool-plugin@0.2.0"], Tool, Some(WrongWorld)),
            (&["tark:plugin/tool-plugin"], Tool, Some(WrongWorld)),
            (&["tark:plugin/hook-plugin@0.1.0"], Tool, Some(WrongWorld)),
            (&["evil:plugin/tool-plugin@0.1.0"], Tool, Some(WrongWorld)),
            (&["tark:plugin/tool-plugin-x@0.1.0"], Tool, Some(WrongWorld)),
            (&[], Tool, Some(WrongWorld)),
            (
                &["tark:plugin/tool-plugin@0.1.0"],
                Unspecified,
                Some(BadRequest),
            ),
            (&["tark:plugin/hook-plugin@0.1.0"], Hook, Some(WrongWorld)),
        ];
        for (exports, kind, want) in cases {
            let got = check_world(&names(exports), *kind).err().map(|f| f.kind);
            assert_eq!(got, *want, "exports {exports:?} as {kind:?}");
        }
    }

    #[test]
    fn limits_default_when_zero() {
        let l = CallLimits::from_proto(&pb::Limits::default());
        assert_eq!(l.deadline, Duration::from_secs(5));
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.max_response_bytes, 1 << 20);
        assert_eq!(l.fuel, None);
    }
}
