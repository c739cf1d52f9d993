//! Component-model plugins (`wit/tark.wit`): one module per world, each turning
//! tarkd's calls into that world's exports ([`World`]), run by the shared
//! [`Runner`](crate::abi::runner::Runner) through [`ComponentGuest`].

mod auth;
mod channel;
mod hook;
pub mod imports;
mod provider;
pub mod published;
mod tool;
pub mod version;

use tark_proto::worker::v1 as pb;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::host::HostState;
use super::runner::{CallLimits, Guest, Runner};
use super::{Call, Failure, Outcome, Plugin};
use crate::limits::Limiter;

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
    Failure::new(
        pb::FailureKind::WrongWorld,
        format!(
            "a {world} plugin has no export for {}",
            super::call_name(call)
        ),
    )
}

/// Builds the host for a component of the given plugin type and contract;
/// `wasi`: whether it imports WASI (linked only then: it costs every start).
pub fn load(
    kind: pb::PluginKind,
    contract: version::Contract,
    engine: Engine,
    (component, wasi): (Component, bool),
    limits: CallLimits,
    new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
) -> wasmtime::Result<Box<dyn Plugin>> {
    fn boxed<W: World>(
        engine: Engine,
        (component, wasi): (Component, bool),
        limits: CallLimits,
        new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
    ) -> wasmtime::Result<Box<dyn Plugin>> {
        let guest = ComponentGuest::<W>::new(&engine, component, wasi)?;
        Ok(Box::new(Runner::new(engine, guest, limits, new_state)?))
    }
    let (e, c, l, s) = (engine, (component, wasi), limits, new_state);
    use version::Contract::Published;
    Ok(match (contract, kind) {
        (Published, pb::PluginKind::Tool) => boxed::<published::Tool>(e, c, l, s)?,
        (Published, pb::PluginKind::Provider) => boxed::<published::Provider>(e, c, l, s)?,
        (Published, pb::PluginKind::Auth) => boxed::<published::Auth>(e, c, l, s)?,
        (Published, pb::PluginKind::Channel) => boxed::<published::Channel>(e, c, l, s)?,
        (Published, _) => wasmtime::bail!("tark's published WIT has no world for this plugin type"),
        (_, kind) => match kind {
            pb::PluginKind::Tool => boxed::<tool::Tool>(e, c, l, s)?,
            pb::PluginKind::Provider => boxed::<provider::Provider>(e, c, l, s)?,
            pb::PluginKind::Auth => boxed::<auth::Auth>(e, c, l, s)?,
            pb::PluginKind::Hook => boxed::<hook::Hook>(e, c, l, s)?,
            pb::PluginKind::Channel => boxed::<channel::Channel>(e, c, l, s)?,
            pb::PluginKind::Unspecified => wasmtime::bail!("no plugin type given"),
        },
    })
}

/// A component and its linker, for one world `W`.
pub struct ComponentGuest<W: World> {
    component: Component,
    linker: Linker<HostState>,
    world: std::marker::PhantomData<fn() -> W>,
}

impl<W: World> ComponentGuest<W> {
    /// `wasi`: link WASI 0.2 (what std and the preview-1 adapter import,
    /// locked down: `crate::abi::wasi`), only for a component importing it.
    pub fn new(engine: &Engine, component: Component, wasi: bool) -> wasmtime::Result<Self> {
        let mut linker = Linker::new(engine);
        W::add_to_linker(&mut linker)?;
        if wasi {
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            crate::abi::wasi::refuse::add_p2(&mut linker)?;
        }
        Ok(Self {
            component,
            linker,
            world: std::marker::PhantomData,
        })
    }
}

impl<W: World> Guest for ComponentGuest<W> {
    type Data = HostState;
    type Instance = W;

    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<W> {
        W::instantiate(store, &self.component, &self.linker).await
    }

    async fn call(
        &self,
        instance: &mut W,
        store: &mut Store<HostState>,
        call: Call,
    ) -> wasmtime::Result<Result<Outcome, Failure>> {
        instance.call(store, call).await
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
