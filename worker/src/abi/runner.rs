//! Running guest calls under the plugin's limits, whatever the ABI: one [`Runner`]
//! owns the store, the live instance and the watchdog; a [`Guest`] (a component
//! world, or a core module) says how to instantiate and how to make a call.
//!
//! One guest instance lives across calls, so a plugin may keep state in memory
//! between them (a provider's open streams, a channel's session). After a call
//! fails in a way that leaves the instance unusable (trap, deadline, limit), or is
//! cut off by its caller part-way through, the instance is dropped and the next
//! call gets a fresh one.

use std::borrow::BorrowMut;
use std::time::{Duration, Instant};

use tark_proto::worker::v1 as pb;
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
    /// CPU past which a call runs at idle priority (see `priority`).
    pub idle_after_cpu: Option<Duration>,
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
            idle_after_cpu: (l.idle_after_cpu_ms > 0)
                .then(|| Duration::from_millis(l.idle_after_cpu_ms)),
        }
    }
}

/// What a store's data must offer the runner: the host state with the limiter
/// and the call's deadline.
pub trait StoreData: BorrowMut<HostState> + Send + 'static {}
impl<T: BorrowMut<HostState> + Send + 'static> StoreData for T {}

/// One kind of guest: how to make an instance and how to answer tarkd's calls
/// with it. `Err` from either is a guest failure, classified by the runner;
/// `Ok(Err)` from `call` is a request this guest cannot answer.
pub trait Guest: Send + 'static {
    type Data: StoreData;
    type Instance: Send;

    fn instantiate(
        &self,
        store: &mut Store<Self::Data>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;

    fn call(
        &self,
        instance: &mut Self::Instance,
        store: &mut Store<Self::Data>,
        call: Call,
    ) -> impl Future<Output = wasmtime::Result<Result<Outcome, Failure>>> + Send;
}

/// A loaded plugin and, while healthy, its live instance.
pub struct Runner<G: Guest> {
    engine: Engine,
    guest: G,
    limits: CallLimits,
    new_data: Box<dyn Fn(Limiter) -> G::Data + Send + Sync>,
    live: Option<(Store<G::Data>, G::Instance)>,
    /// Set while a call is inside the instance. Still set when the next call
    /// starts means the last one was cut off part-way (its caller went away and
    /// its future was dropped): the instance may be mid-call, so it is replaced.
    entered: bool,
    watchdog: Watchdog,
}

impl<G: Guest> Runner<G> {
    /// Prepares a plugin; `new_data` builds the store data for each new instance.
    pub fn new(
        engine: Engine,
        guest: G,
        limits: CallLimits,
        new_data: Box<dyn Fn(Limiter) -> G::Data + Send + Sync>,
    ) -> wasmtime::Result<Self> {
        let watchdog = Watchdog::start(engine.clone(), Some(TIME_SLICE))?;
        Ok(Self {
            engine,
            guest,
            limits,
            new_data,
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
        crate::priority::call_started();
        let result = tokio::time::timeout(deadline + HOST_CALL_GRACE, self.run(call, until)).await;
        crate::priority::call_ended();
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
            let mut store = Store::new(&self.engine, (self.new_data)(limiter));
            store.limiter(|s| &mut s.borrow_mut().limiter);
            store.epoch_deadline_callback(on_epoch_tick::<G::Data>);
            host(&mut store).call_deadline = Some(until);
            arm(&mut store, &self.limits).map_err(|e| classify(e, None, &self.limits))?;
            let instance = self.guest.instantiate(&mut store).await;
            // What a start function printed goes to the log even when it failed.
            host(&mut store).flush_output().await;
            let instance = instance.map_err(|e| {
                let f = classify(e, host(&mut store).limiter.hit, &self.limits);
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
        host(store).limiter.hit = None;
        host(store).call_deadline = Some(until);
        let answer = self.guest.call(instance, store, call).await;
        host(store).flush_output().await;
        match answer {
            Ok(answer) => answer,
            Err(e) => Err(classify(e, host(store).limiter.hit, &self.limits)),
        }
    }
}

impl<G: Guest> Plugin for Runner<G> {
    fn invoke(&mut self, call: Call) -> Invocation<'_> {
        Box::pin(Runner::invoke(self, call))
    }
}

fn host<T: StoreData>(store: &mut Store<T>) -> &mut HostState {
    store.data_mut().borrow_mut()
}

/// At each epoch tick (every [`TIME_SLICE`] while a call runs): past the call's
/// deadline the guest traps; before it, the guest yields to the runtime, which
/// may drop the call if tarkd cut it off. `yield_now` defers the wake-up until the
/// runtime has polled for I/O, so the reset stream is seen at the first yield.
fn on_epoch_tick<T: StoreData>(
    mut ctx: wasmtime::StoreContextMut<'_, T>,
) -> wasmtime::Result<UpdateDeadline> {
    let deadline = ctx.data_mut().borrow_mut().call_deadline;
    let over = deadline.is_none_or(|d| Instant::now() >= d);
    crate::priority::tick();
    Ok(if over {
        UpdateDeadline::Interrupt
    } else {
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    })
}

/// Sets the per-call epoch deadline and fuel on a store.
fn arm<T>(store: &mut Store<T>, limits: &CallLimits) -> wasmtime::Result<()> {
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
    if let Some(exit) = super::wasi::exit_message(&err) {
        return Failure::new(pb::FailureKind::Trap, exit);
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
