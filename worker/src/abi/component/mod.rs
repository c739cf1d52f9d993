//! Component-model plugins (`wit/tark.wit`): one module per world, each turning
//! tarkd's calls into that world's exports ([`World`]), over one generic host
//! ([`ComponentPlugin`]) that owns the store, the limits and the instance.
//!
//! One guest instance lives across calls, so a plugin may keep state in memory
//! between them (a provider's open streams, a channel's session). After a call
//! fails in a way that leaves the instance unusable (trap, deadline, limit), or is
//! cut off by its caller part-way through, the instance is dropped and the next
//! call gets a fresh one.

mod auth;
mod channel;
mod hook;
pub mod imports;
mod provider;
pub mod published;
mod tool;
pub mod version;

use std::time::{Duration, Instant};

use tark_proto::worker::v1 as pb;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::host::HostState;
use super::{Call, Failure, Invocation, Outcome, Plugin};
use crate::limits::Limiter;
use crate::watchdog::Watchdog;

/// How long past the deadline the worker waits on a call stuck in a host call
/// before giving up on it (the guest itself is interrupted at the deadline).
const HOST_CALL_GRACE: Duration = Duration::from_millis(250);

/// How often a running guest yields to the worker's runtime. A yield lets the
/// runtime see that tarkd cut the call off (the stream was reset), so the guest is
/// stopped there instead of running on to its deadline.
pub const TIME_SLICE: Duration = Duration::from_millis(10);

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

/// One plugin world: how to link and instantiate it, and which of tarkd's calls
/// it answers with which export. A call for another world is refused without
/// entering the guest.
pub trait World: Sized + Send + 'static {
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()>;

    fn instantiate(
        store: &mut Store<HostState>,
        component: &Component,
        linker: &Linker<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;

    /// `Err` is a guest failure (classified by the caller); `Ok(Err)` a request
    /// this world cannot answer.
    fn call(
        &self,
        store: &mut Store<HostState>,
        call: Call,
    ) -> impl Future<Output = wasmtime::Result<Result<Outcome, Failure>>> + Send;
}

/// The refusal for a call a world has no export for.
fn not_this_world(world: &str, call: &Call) -> Failure {
    let name = format!("{call:?}");
    let name = name.split('(').next().unwrap_or("call");
    Failure::new(
        pb::FailureKind::WrongWorld,
        format!("a {world} plugin has no export for {name}"),
    )
}

/// Builds the host for a component of the given plugin type and contract.
pub fn load(
    kind: pb::PluginKind,
    contract: version::Contract,
    engine: Engine,
    component: Component,
    limits: CallLimits,
    new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
) -> wasmtime::Result<Box<dyn Plugin>> {
    fn boxed<W: World>(p: ComponentPlugin<W>) -> Box<dyn Plugin> {
        Box::new(p)
    }
    let (e, c, l, s) = (engine, component, limits, new_state);
    use version::Contract::Published;
    Ok(match (contract, kind) {
        (Published, pb::PluginKind::Tool) => {
            boxed(ComponentPlugin::<published::Tool>::new(e, c, l, s)?)
        }
        (Published, pb::PluginKind::Provider) => {
            boxed(ComponentPlugin::<published::Provider>::new(e, c, l, s)?)
        }
        (Published, pb::PluginKind::Auth) => {
            boxed(ComponentPlugin::<published::Auth>::new(e, c, l, s)?)
        }
        (Published, pb::PluginKind::Channel) => {
            boxed(ComponentPlugin::<published::Channel>::new(e, c, l, s)?)
        }
        (Published, _) => wasmtime::bail!("tark's published WIT has no world for this plugin type"),
        (_, kind) => match kind {
            pb::PluginKind::Tool => boxed(ComponentPlugin::<tool::Tool>::new(e, c, l, s)?),
            pb::PluginKind::Provider => {
                boxed(ComponentPlugin::<provider::Provider>::new(e, c, l, s)?)
            }
            pb::PluginKind::Auth => boxed(ComponentPlugin::<auth::Auth>::new(e, c, l, s)?),
            pb::PluginKind::Hook => boxed(ComponentPlugin::<hook::Hook>::new(e, c, l, s)?),
            pb::PluginKind::Channel => boxed(ComponentPlugin::<channel::Channel>::new(e, c, l, s)?),
            pb::PluginKind::Unspecified => wasmtime::bail!("no plugin type given"),
        },
    })
}

/// A loaded component plugin and, while healthy, its live instance.
pub struct ComponentPlugin<W: World> {
    engine: Engine,
    component: Component,
    linker: Linker<HostState>,
    limits: CallLimits,
    new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
    live: Option<(Store<HostState>, W)>,
    /// Set while a call is inside the instance. Still set when the next call
    /// starts means the last one was cut off part-way (its caller went away and
    /// its future was dropped): the instance may be mid-call, so it is replaced.
    entered: bool,
    watchdog: Watchdog,
}

impl<W: World> ComponentPlugin<W> {
    /// Prepares a plugin; `new_state` builds the host state for each new instance.
    pub fn new(
        engine: Engine,
        component: Component,
        limits: CallLimits,
        new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
    ) -> wasmtime::Result<Self> {
        let mut linker = Linker::new(&engine);
        W::add_to_linker(&mut linker)?;
        let watchdog = Watchdog::start(engine.clone(), Some(TIME_SLICE))?;
        Ok(Self {
            engine,
            component,
            linker,
            limits,
            new_state,
            live: None,
            entered: false,
            watchdog,
        })
    }

    /// Runs one call under the deadline, fuel and memory limits.
    async fn invoke(&mut self, call: Call) -> Result<Outcome, Failure> {
        if std::mem::take(&mut self.entered) {
            self.live = None;
        }
        let deadline = self.limits.deadline;
        let until = Instant::now() + deadline;
        // The guest is interrupted at the deadline by an epoch tick; the engine
        // belongs to this plugin alone, so the ticks touch no one else.
        let armed = self.watchdog.arm(until);
        self.entered = true;
        let result = tokio::time::timeout(deadline + HOST_CALL_GRACE, self.run(call, until)).await;
        self.entered = false;
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

    async fn run(&mut self, call: Call, until: Instant) -> Result<Outcome, Failure> {
        if self.live.is_none() {
            let limiter = Limiter::new(
                self.limits.memory_bytes,
                self.limits.table_elements,
                self.limits.instances,
            );
            let mut store = Store::new(&self.engine, (self.new_state)(limiter));
            store.limiter(|s| &mut s.limiter);
            store.epoch_deadline_callback(on_epoch_tick);
            store.data_mut().call_deadline = Some(until);
            arm(&mut store, &self.limits).map_err(|e| classify(e, None, &self.limits))?;
            let instance = W::instantiate(&mut store, &self.component, &self.linker)
                .await
                .map_err(|e| {
                    let f = classify(e, store.data().limiter.hit, &self.limits);
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
        store.data_mut().call_deadline = Some(until);
        match instance.call(store, call).await {
            Ok(answer) => answer,
            Err(e) => Err(classify(e, store.data().limiter.hit, &self.limits)),
        }
    }
}

impl<W: World> Plugin for ComponentPlugin<W> {
    fn invoke(&mut self, call: Call) -> Invocation<'_> {
        Box::pin(ComponentPlugin::invoke(self, call))
    }
}

/// At each epoch tick (every [`TIME_SLICE`] while a call runs): past the call's
/// deadline the guest traps; before it, the guest yields to the runtime, which
/// may drop the call if tarkd cut it off. `yield_now` defers the wake-up until the
/// runtime has polled for I/O, so the reset stream is seen at the first yield.
fn on_epoch_tick(
    ctx: wasmtime::StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    let over = ctx.data().call_deadline.is_none_or(|d| Instant::now() >= d);
    Ok(if over {
        UpdateDeadline::Interrupt
    } else {
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    })
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

/// The bindings of one world, sharing the host imports generated in [`imports`].
macro_rules! world_bindings {
    ($world:tt $(, $ws:ident)?) => {
        wasmtime::component::bindgen!({
            world: $world,
            path: "../wit/tark.wit",
            imports: { default: async },
            exports: { default: async },
            with: {
                "tark:plugin/storage": crate::abi::component::imports::storage,
                "tark:plugin/http": crate::abi::component::imports::http,
                "tark:plugin/env": crate::abi::component::imports::env,
                "tark:plugin/log": crate::abi::component::imports::log,
                "tark:plugin/fs": crate::abi::component::imports::fs,
                $("tark:plugin/ws": crate::abi::component::imports::$ws,)?
            },
        });
    };
}
use world_bindings;

/// Implements [`World`] for a world's bindings: linking and instantiation are
/// the same for every world; `$call` maps tarkd's calls onto its exports.
macro_rules! world_plumbing {
    ($name:ident, $bindings:ty, $call:path) => {
        pub struct $name($bindings);

        impl crate::abi::component::World for $name {
            fn add_to_linker(
                linker: &mut wasmtime::component::Linker<HostState>,
            ) -> wasmtime::Result<()> {
                <$bindings>::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
                    linker,
                    |s| s,
                )
            }

            async fn instantiate(
                store: &mut wasmtime::Store<HostState>,
                component: &wasmtime::component::Component,
                linker: &wasmtime::component::Linker<HostState>,
            ) -> wasmtime::Result<Self> {
                <$bindings>::instantiate_async(store, component, linker)
                    .await
                    .map(Self)
            }

            async fn call(
                &self,
                store: &mut wasmtime::Store<HostState>,
                call: crate::abi::Call,
            ) -> wasmtime::Result<Result<crate::abi::Outcome, crate::abi::Failure>> {
                $call(&self.0, store, call).await
            }
        }
    };
}
use world_plumbing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_when_zero() {
        let l = CallLimits::from_proto(&pb::Limits::default());
        assert_eq!(l.deadline, Duration::from_secs(5));
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.max_response_bytes, 1 << 20);
        assert_eq!(l.fuel, None);
    }
}
