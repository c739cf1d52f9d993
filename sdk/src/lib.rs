//! Write tark plugins for tarkd (and tark) in a screenful of Rust.
//!
//! Turn on the feature of one world (`auth`, `tool`, `provider`,
//! `streaming-provider`, `hook`, `channel`; add `published` to build against
//! tark's own unversioned WIT), implement its `Guest` trait and export it with
//! that world's macro. The host calls are typed: [`storage`] keeps JSON,
//! [`http`] returns the status and headers, [`env`] reads granted variables,
//! [`info!`] and its siblings log, [`ws`] (tool and channel worlds) talks
//! WebSocket. Every host call is brokered by tarkd and checked against what
//! `plugin.toml` declares: a refusal is an [`Error`], never a trap.
//!
//! A whole tool plugin:
//!
//! ```ignore
//! use tark_plugin_sdk::tool::{Guest, RiskLevel, ToolDef, ToolResult};
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn get_tools() -> Vec<ToolDef> {
//!         vec![ToolDef {
//!             name: "hello".into(),
//!             description: "Greets someone".into(),
//!             parameters_schema: r#"{"type":"object"}"#.into(),
//!         }]
//!     }
//!     fn get_risk_level(_: String) -> RiskLevel {
//!         RiskLevel::ReadOnly
//!     }
//!     fn execute(_: String, args: String) -> ToolResult {
//!         let n: u64 = tark_plugin_sdk::storage::get_json("count").ok().flatten().unwrap_or(0) + 1;
//!         let _ = tark_plugin_sdk::storage::set_json("count", &n);
//!         tark_plugin_sdk::info!("hello #{n}: {args}");
//!         ToolResult::Success(format!("hello #{n}"))
//!     }
//! }
//!
//! tark_plugin_sdk::export_tool!(Hello);
//! ```
//!
//! The plugin crate is a `cdylib`; build it with `cargo build --release
//! --target wasm32-wasip1` (tarkd adapts the module) or `cargo component
//! build`, and put the `.wasm` beside `plugin.toml` as `plugin.wasm`.

mod bindings;
mod host;

pub use bindings::*;
pub use host::{Error, env, fs, http, log, storage};
#[cfg(any(all(feature = "tool", not(feature = "published")), feature = "channel"))]
pub use host::ws;
