//! tark's core-module ABI: the plugins published for tark before components,
//! plain wasm modules exchanging `(ptr, len)` strings and JSON with their host.
//! [`load`] checks the module's shape; [`ModuleGuest`] runs it under the same
//! [`Runner`] (limits, watchdog, instance replacement) as components; the
//! host's imports are in [`imports`] and WASI in [`crate::abi::wasi`], tarkd's calls map onto the
//! exports of each plugin type in [`provider`], [`channel`], [`auth`] and
//! [`tau`] (which export answers which call is one table,
//! [`exports::route`]). Guest memory is hostile input throughout ([`memory`]).

mod auth;
mod channel;
pub mod exports;
pub mod imports;
pub mod json;
pub mod memory;
mod provider;
mod tau;

use std::collections::HashMap;

use tark_proto::worker::v1 as pb;
use wasmtime::{
    Engine, Instance, Linker, Memory, Module, Store, TypedFunc, WasmParams, WasmResults,
};

use super::host::HostState;
use super::runner::{CallLimits, Guest, Runner};
use super::wasi::refuse::{self, P1_MODULE};
use super::{Call, Failure, Outcome, Plugin, plugin_error};
use crate::limits::Limiter;
use exports::Route;
use imports::{ModuleState, Rooms};

/// Buffer tark allocates for an export's string result (`call_string_return_fn`).
pub const RESULT_ROOM: usize = 8 << 10;
/// Buffer tark allocates for an export that takes and returns a string, and
/// for `provider_chat`'s answer.
pub const LARGE_RESULT_ROOM: usize = 64 << 10;

/// A core module ready to run: the plugin, the ABI's exports it has, and how
/// `plugin info` names it.
pub struct Loaded {
    pub plugin: Box<dyn Plugin>,
    pub provides: Vec<String>,
    pub contract: String,
}

/// Checks a core module and builds its host.
pub fn load(
    kind: pb::PluginKind,
    engine: Engine,
    module: Module,
    limits: CallLimits,
    rooms: Rooms,
    manifest: (String, String),
    new_state: Box<dyn Fn(Limiter) -> HostState + Send + Sync>,
) -> Result<Loaded, String> {
    exports::check_imports(&module).map_err(|e| format!("not a usable tark core module: {e}"))?;
    let provides = exports::check(&module, kind)?;
    let uses_wasi = module.imports().any(|i| i.module() == P1_MODULE);
    let contract = format!(
        "tark core module ({}{})",
        exports::kind_name(kind),
        if uses_wasi { ", wasm32-wasip1" } else { "" }
    );
    let mut linker = Linker::new(&engine);
    // Preview 1 only for a module importing it: linking it costs every start.
    imports::add_to_linker(&mut linker)
        .and_then(|()| match uses_wasi {
            true => wasmtime_wasi::p1::add_to_linker_async(&mut linker, ModuleState::p1)
                .and_then(|()| refuse::add_p1(&mut linker, &module)),
            false => Ok(()),
        })
        .map_err(|e| format!("linking host imports: {e:#}"))?;
    let guest = ModuleGuest {
        kind,
        module,
        linker,
        provides: provides.clone(),
        manifest,
        max_response: limits.max_response_bytes,
    };
    let new_data = Box::new(move |limiter| ModuleState {
        host: new_state(limiter),
        rooms,
        p1: None,
    });
    let runner = Runner::new(engine, guest, limits, new_data).map_err(|e| format!("{e:#}"))?;
    Ok(Loaded {
        plugin: Box::new(runner),
        provides,
        contract,
    })
}

/// A checked core module, its linker, and the known exports it has.
pub struct ModuleGuest {
    kind: pb::PluginKind,
    module: Module,
    linker: Linker<ModuleState>,
    provides: Vec<String>,
    /// The plugin's name and version (tau extensions are told them).
    manifest: (String, String),
    /// The most a result read from guest memory may hold (tau's own limit).
    max_response: usize,
}

/// A live instance of a core module.
pub struct ModuleInstance {
    instance: Instance,
    memory: Memory,
    /// Streams emulated over `provider_chat` (the ABI has no streaming): the
    /// whole answer, sent as one chunk on the first poll.
    streams: HashMap<u64, pb::invoke_response::Outcome>,
    next_stream: u64,
}

impl Guest for ModuleGuest {
    type Data = ModuleState;
    type Instance = ModuleInstance;

    async fn instantiate(
        &self,
        store: &mut Store<ModuleState>,
    ) -> wasmtime::Result<ModuleInstance> {
        let instance = self
            .linker
            .instantiate_async(&mut *store, &self.module)
            .await?;
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| wasmtime::Error::msg("the module exports no memory"))?;
        // A reactor's constructors (wasip1 builds' static initialisers) run once.
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
            init.call_async(&mut *store, ()).await?;
        }
        Ok(ModuleInstance {
            instance,
            memory,
            streams: HashMap::new(),
            next_stream: 1,
        })
    }

    async fn call(
        &self,
        instance: &mut ModuleInstance,
        store: &mut Store<ModuleState>,
        call: Call,
    ) -> wasmtime::Result<Result<Outcome, Failure>> {
        let route = exports::route(self.kind, &call);
        let missing = match route {
            Route::Export(export) => !self.provides.iter().any(|p| p == export),
            Route::Worker => false,
            Route::Unserved => true,
        };
        if missing {
            return Ok(Err(exports::refusal(self.kind, &call, route)));
        }
        let mut g = Abi {
            guest: self,
            instance,
            store,
        };
        let answer = match (self.kind, call) {
            (_, Call::ProcessTokens(t)) => process_tokens(&mut g, &t.text).await,
            (pb::PluginKind::Provider, call) => provider::call(&mut g, call).await,
            (pb::PluginKind::Channel, call) => channel::call(&mut g, call).await,
            (pb::PluginKind::Auth, call) => auth::call(&mut g, call).await,
            (pb::PluginKind::Hook, call) => tau::call(&mut g, call).await,
            (_, call) => Err(g.unserved(&call)),
        };
        // A guest's own fault with memory or results is a failure of the call
        // (the instance is replaced); its error values are answers.
        match answer {
            Ok(answer) => Ok(Ok(answer)),
            Err(Fault::Guest(e)) => Err(e),
            Err(Fault::Call(f)) => Ok(Err(f)),
        }
    }
}

/// `auth_process_tokens(p, l, ret) -> len`: the plugin's view of an OAuth token
/// response (tark calls it after an exchange; it returns what to store).
async fn process_tokens(g: &mut Abi<'_>, tokens: &str) -> Result<Outcome, Fault> {
    const EXPORT: &str = "auth_process_tokens";
    Ok(
        match g
            .string_to_string(EXPORT, tokens, LARGE_RESULT_ROOM)
            .await?
        {
            Ok(text) => Outcome::Text(pb::Text { text }),
            Err(message) => plugin_error(message),
        },
    )
}

/// Why a core-module call produced no answer: the guest trapped (classified by
/// the runner), or the call failed with a named reason.
pub enum Fault {
    Guest(wasmtime::Error),
    Call(Failure),
}

impl From<wasmtime::Error> for Fault {
    fn from(e: wasmtime::Error) -> Self {
        Fault::Guest(e)
    }
}

/// A guest breaking the ABI (bad pointer, no room, malformed answer).
fn broke(export: &str, what: impl std::fmt::Display) -> Fault {
    Fault::Call(Failure::new(
        pb::FailureKind::Trap,
        format!("{export}: {what}"),
    ))
}

/// tark's calling conventions over one instance and its store.
pub struct Abi<'a> {
    guest: &'a ModuleGuest,
    instance: &'a mut ModuleInstance,
    store: &'a mut Store<ModuleState>,
}

impl Abi<'_> {
    pub fn manifest(&self) -> &(String, String) {
        &self.guest.manifest
    }

    /// The plugin's response limit (a tau extension's `max_response_bytes`,
    /// capped by tarkd).
    pub fn max_response(&self) -> usize {
        self.guest.max_response
    }

    pub fn has(&self, export: &str) -> bool {
        self.guest.provides.iter().any(|p| p == export)
    }

    /// The refusal for a call this plugin type's ABI does not serve.
    pub fn unserved(&self, call: &Call) -> Fault {
        Fault::Call(exports::refusal(self.guest.kind, call, Route::Unserved))
    }

    fn func<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Fault> {
        // Signatures were checked at load; this fails only for a missing export.
        self.instance
            .instance
            .get_typed_func::<P, R>(&mut *self.store, name)
            .map_err(|e| broke(name, e))
    }

    /// Calls the guest's `alloc` (or `tau_extension_alloc`) for `len` bytes on
    /// behalf of `export`, and checks the buffer it returned.
    async fn alloc(&mut self, export: &str, len: usize) -> Result<std::ops::Range<usize>, Fault> {
        let name = if self.has("alloc") {
            "alloc"
        } else {
            "tau_extension_alloc"
        };
        let n = i32::try_from(len)
            .map_err(|_| broke(export, format!("{len} bytes is too large to pass")))?;
        let alloc = self.func::<i32, i32>(name)?;
        let ptr = alloc.call_async(&mut *self.store, n).await?;
        let size = self.instance.memory.data_size(&*self.store);
        memory::allocated(size, ptr, len)
            .map_err(|e| broke(export, format!("{name}({len}) returned {ptr:#x}: {e}")))
    }

    /// Hands buffers the host asked for back to the guest's `dealloc`, if it
    /// has one (tark never does; a long-lived instance would fill up).
    async fn free(&mut self, buffers: &[&std::ops::Range<usize>]) -> Result<(), Fault> {
        if !self.has("dealloc") {
            return Ok(());
        }
        let dealloc = self.func::<(i32, i32), ()>("dealloc")?;
        for r in buffers.iter().filter(|r| !r.is_empty()) {
            let (p, l) = (r.start as i32, (r.end - r.start) as i32);
            dealloc.call_async(&mut *self.store, (p, l)).await?;
        }
        Ok(())
    }

    /// Copies `bytes` into a fresh guest buffer: its `(ptr, len)`.
    async fn pass(
        &mut self,
        export: &str,
        bytes: &[u8],
    ) -> Result<(i32, i32, std::ops::Range<usize>), Fault> {
        if bytes.is_empty() {
            // Nothing to allocate: any non-null pointer is a valid empty string.
            return Ok((1, 0, 0..0));
        }
        let r = self.alloc(export, bytes.len()).await?;
        let data = self.instance.memory.data_mut(&mut *self.store);
        // `allocated` checked the range against this same memory.
        let Some(dest) = data.get_mut(r.clone()) else {
            return Err(broke(export, "buffer outside memory"));
        };
        dest.copy_from_slice(bytes);
        let (p, l) = (r.start as i32, bytes.len() as i32);
        Ok((p, l, r))
    }

    /// Reads the `len` bytes an export reported writing into its `room`-byte
    /// buffer at `buf`. A negative `len` is the export's error: `Err(Ok(message))`.
    fn result(
        &self,
        export: &str,
        buf: &std::ops::Range<usize>,
        len: i32,
        room: usize,
    ) -> Result<Result<String, String>, Fault> {
        let data = self.instance.memory.data(&*self.store);
        if len < 0 {
            // Some exports leave `{"error": …}` of length -len in the buffer.
            let message = len
                .checked_neg()
                .and_then(|n| memory::read_str(data, buf.start as i32, n, room).ok())
                .and_then(|t| serde_json::from_str::<json::ErrorObject>(t).ok())
                .map(json::ErrorObject::message)
                .unwrap_or_else(|| format!("{export} returned error code {len}"));
            return Ok(Err(message));
        }
        if len as usize > room {
            return Err(broke(
                export,
                format!("reported {len} bytes written into a {room}-byte buffer"),
            ));
        }
        memory::read_str(data, buf.start as i32, len, room)
            .map(|s| Ok(s.to_owned()))
            .map_err(|e| broke(export, format!("its result: {e}")))
    }

    /// `export(ret) -> len`: a string result in a buffer of `room` bytes.
    pub async fn string(
        &mut self,
        export: &str,
        room: usize,
    ) -> Result<Result<String, String>, Fault> {
        let buf = self.alloc(export, room).await?;
        let f = self.func::<i32, i32>(export)?;
        let len = f.call_async(&mut *self.store, buf.start as i32).await?;
        let answer = self.result(export, &buf, len, room);
        self.free(&[&buf]).await?;
        answer
    }

    /// `export() -> i32`.
    pub async fn code(&mut self, export: &str) -> Result<i32, Fault> {
        let f = self.func::<(), i32>(export)?;
        Ok(f.call_async(&mut *self.store, ()).await?)
    }

    /// `export(p, l) -> i32`: a string argument, a status code back.
    pub async fn with_string(&mut self, export: &str, arg: &str) -> Result<i32, Fault> {
        let (p, l, input) = self.pass(export, arg.as_bytes()).await?;
        let f = self.func::<(i32, i32), i32>(export)?;
        let code = f.call_async(&mut *self.store, (p, l)).await?;
        self.free(&[&input]).await?;
        Ok(code)
    }

    /// `export(p, l, ret) -> len`: a string in, a string out (`room` bytes).
    pub async fn string_to_string(
        &mut self,
        export: &str,
        arg: &str,
        room: usize,
    ) -> Result<Result<String, String>, Fault> {
        let (p, l, input) = self.pass(export, arg.as_bytes()).await?;
        let buf = self.alloc(export, room).await?;
        memory::disjoint(&input, &buf).map_err(|e| broke(export, format!("alloc returned {e}")))?;
        let f = self.func::<(i32, i32, i32), i32>(export)?;
        let len = f
            .call_async(&mut *self.store, (p, l, buf.start as i32))
            .await?;
        let answer = self.result(export, &buf, len, room);
        self.free(&[&input, &buf]).await?;
        answer
    }

    /// `provider_chat(msgs_p, msgs_l, model_p, model_l, ret) -> len`.
    pub async fn chat(
        &mut self,
        messages: &str,
        model: &str,
    ) -> Result<Result<String, String>, Fault> {
        const EXPORT: &str = "provider_chat";
        let (mp, ml, a) = self.pass(EXPORT, messages.as_bytes()).await?;
        let (op, ol, b) = self.pass(EXPORT, model.as_bytes()).await?;
        let buf = self.alloc(EXPORT, LARGE_RESULT_ROOM).await?;
        for (x, y) in [(&a, &b), (&a, &buf), (&b, &buf)] {
            memory::disjoint(x, y).map_err(|e| broke(EXPORT, format!("alloc returned {e}")))?;
        }
        let f = self.func::<(i32, i32, i32, i32, i32), i32>(EXPORT)?;
        let len = f
            .call_async(&mut *self.store, (mp, ml, op, ol, buf.start as i32))
            .await?;
        let answer = self.result(EXPORT, &buf, len, LARGE_RESULT_ROOM);
        self.free(&[&a, &b, &buf]).await?;
        answer
    }

    /// `tau_extension_invoke(p, l) -> (ptr << 32) | len`.
    pub async fn tau(&mut self, request: &str, max: usize) -> Result<String, Fault> {
        const EXPORT: &str = "tau_extension_invoke";
        let (p, l, _) = self.pass(EXPORT, request.as_bytes()).await?;
        let f = self.func::<(i32, i32), i64>(EXPORT)?;
        let packed = f.call_async(&mut *self.store, (p, l)).await?;
        let (ptr, len) = ((packed >> 32) as u32 as i32, packed as u32);
        let len =
            i32::try_from(len).map_err(|_| broke(EXPORT, format!("returned a length of {len}")))?;
        let data = self.instance.memory.data(&*self.store);
        memory::read_str(data, ptr, len, max)
            .map(str::to_owned)
            .map_err(|e| broke(EXPORT, format!("its result: {e}")))
    }

    pub fn streams(&mut self) -> (&mut HashMap<u64, Outcome>, &mut u64) {
        (&mut self.instance.streams, &mut self.instance.next_stream)
    }
}

/// The answer to a call whose export returns a status code (negative: failed).
pub fn ack(export: &str, code: i32) -> Outcome {
    Outcome::Ack(pb::Ack {
        error: (code < 0).then(|| format!("{export} returned error code {code}")),
    })
}

/// Decodes an export's JSON answer, or the export's error value.
pub fn decoded<T: serde::de::DeserializeOwned>(
    export: &str,
    answer: Result<String, String>,
    into: impl FnOnce(T) -> Outcome,
) -> Result<Outcome, Fault> {
    match answer {
        Ok(text) => json::decode(export, &text)
            .map(into)
            .map_err(|e| broke(export, e)),
        Err(message) => Ok(plugin_error(message)),
    }
}
