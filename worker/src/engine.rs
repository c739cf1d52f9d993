//! The wasmtime engine a worker compiles and runs its one plugin with.

use wasmtime::component::Component;
use wasmtime::{Config, Engine, Module, Precompiled};

/// A compiled plugin: a component, or a core module (tark's older ABI).
pub enum Compiled {
    Component(Component),
    Module(Module),
}

impl Compiled {
    pub fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Compiled::Component(c) => c.serialize(),
            Compiled::Module(m) => m.serialize(),
        }
    }
}

/// A core module's preamble: magic and version 1 (a component has layer 1).
pub fn is_core_module(wasm: &[u8]) -> bool {
    wasm.starts_with(b"\0asm\x01\0\0\0")
}

/// Builds the engine. Fuel metering changes generated code, so it is part of the
/// engine's compatibility hash (and of tarkd's artifact cache key).
pub fn build(fuel: bool) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(fuel)
        // Initialise memories by copying: copy-on-write images are memfds created
        // at first instantiation, after lockdown, which forbids file writes.
        .memory_init_cow(false)
        // Compile on this thread: once seccomp is on, the worker spawns no threads.
        .parallel_compilation(false);
    Engine::new(&config)
}

/// wasmtime's once-per-process set-up (the host's ISA flags, its signal
/// handlers) runs at the first engine a process builds, and costs a few
/// hundred microseconds: a worker does it before tarkd sends `Load`, so that a
/// standby worker has done it ahead of need.
pub fn warm_up() {
    if let Err(e) = build(false) {
        tracing::debug!("warming the engine up: {e:#}");
    }
}

/// Compiles raw plugin bytes, a component or a core module.
pub fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Compiled> {
    if is_core_module(wasm) {
        Module::new(engine, wasm).map(Compiled::Module)
    } else {
        Component::new(engine, wasm).map(Compiled::Component)
    }
}

/// Loads an artifact a worker of the same build compiled earlier.
///
/// The artifact comes from tarkd's private cache, written only with bytes a worker
/// returned from `Load` *before* running any guest code, and wasmtime rejects one
/// made by a different engine or configuration.
pub fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Compiled> {
    // SAFETY: see above; the bytes are a wasmtime artifact from tarkd's own cache,
    // produced by this same worker binary from the plugin's wasm.
    unsafe {
        match Engine::detect_precompiled(artifact) {
            Some(Precompiled::Module) => {
                Module::deserialize(engine, artifact).map(Compiled::Module)
            }
            _ => Component::deserialize(engine, artifact).map(Compiled::Component),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles() {
        assert!(is_core_module(b"\0asm\x01\0\0\0rest"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0rest"));
        assert!(!is_core_module(b"\0asm"));
        assert!(!is_core_module(b""));
    }
}
