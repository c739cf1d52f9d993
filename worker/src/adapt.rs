//! Turning what tark's plugin SDK guide builds into a component: a
//! `wasm32-wasip1` module from `wit-bindgen` (see `tark_proto::wasm`) is
//! encoded with `wit-component` and the preview-1 reactor adapter, the way
//! `cargo component` does it, and then hosted like any component.
//!
//! It runs in the worker, before lockdown and before any guest code, on bytes
//! that are the plugin's own: a hostile module costs this process, not tarkd.
//! tarkd caches the compiled result by the module's hash, so a module is
//! adapted once, at install or first start.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// The component for a wit-bindgen core module, or what stops it, in the
/// terms of the author's WIT (world, interface, function).
pub fn adapt(wasm: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(wasm)
        .and_then(|e| {
            e.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|mut e| e.encode())
        .map_err(|e| {
            format!(
                "a core module built by wit-bindgen that tarkd cannot make into a component: {e:#}"
            )
        })
}
