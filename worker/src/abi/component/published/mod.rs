//! Components built against tark's own published WIT (`wit/published/tark.wit`:
//! `package tark:plugin;`, unversioned), hosted beside tarkd's versioned
//! contract. Each world maps tark's shapes onto the same worker calls, so tarkd
//! cannot tell the two apart: a record `tool-result` becomes the success/error
//! answer, an enum `role` is checked against the agent's role strings, a
//! four-case `auth-status` keeps `not-required`, a channel's `start()` takes no
//! configuration, and inbound messages have no id or time.

mod auth;
mod channel;
mod provider;
mod tool;

pub use auth::Auth;
pub use channel::Channel;
pub use provider::Provider;
pub use tool::Tool;

use super::imports::host_imports;
use crate::abi::host::HostState;

/// tark's host interfaces, generated once and shared by the worlds below.
pub mod imports {
    wasmtime::component::bindgen!({
        inline: "
            package tarkd:published-host;
            world imports {
                import tark:plugin/storage;
                import tark:plugin/http;
                import tark:plugin/env;
                import tark:plugin/log;
                import tark:plugin/fs;
                import tark:plugin/ws;
            }
        ",
        path: "../wit/published/tark.wit",
        world: "imports",
        imports: { default: async },
    });
}

host_imports!(imports::tark::plugin);

/// The bindings of one of tark's worlds, sharing the imports above.
macro_rules! published_bindings {
    ($world:tt $(, $ws:ident)?) => {
        wasmtime::component::bindgen!({
            world: $world,
            path: "../wit/published/tark.wit",
            imports: { default: async },
            exports: { default: async },
            with: {
                "tark:plugin/storage": crate::abi::component::published::imports::tark::plugin::storage,
                "tark:plugin/http": crate::abi::component::published::imports::tark::plugin::http,
                "tark:plugin/env": crate::abi::component::published::imports::tark::plugin::env,
                "tark:plugin/log": crate::abi::component::published::imports::tark::plugin::log,
                "tark:plugin/fs": crate::abi::component::published::imports::tark::plugin::fs,
                $("tark:plugin/ws": crate::abi::component::published::imports::tark::plugin::$ws,)?
            },
        });
    };
}
use published_bindings;
