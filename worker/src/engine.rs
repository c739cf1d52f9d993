//! The wasmtime engine a worker compiles and runs its one plugin with.

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

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

/// Compiles raw component bytes.
pub fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
    Component::new(engine, wasm)
}

/// Loads an artifact a worker of the same build compiled earlier.
///
/// The artifact comes from tarkd's private cache, written only with bytes a worker
/// returned from `Load` *before* running any guest code, and wasmtime rejects one
/// made by a different engine or configuration.
pub fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see above; the bytes are a wasmtime artifact from tarkd's own cache,
    // produced by this same worker binary from the plugin's wasm.
    unsafe { Component::deserialize(engine, artifact) }
}
