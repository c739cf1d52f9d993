//! tarkd, the supervisor of tark's WebAssembly plugins.
//!
//! tarkd owns everything with authority (the plugin registry, grants, storage,
//! the environment) and never runs plugin code: each tenant × plugin gets its own
//! `tark-worker` process, and every host call the plugin makes comes back here, to
//! the [`broker`], to be checked.

pub mod addresses;
pub mod api;
pub mod approvals;
pub mod audit;
pub mod broker;
pub mod bundled;
pub mod cache;
pub mod channel;
pub mod config;
pub mod daemon;
pub mod files;
pub mod grants;
pub mod hosts;
pub mod http;
pub mod install;
pub mod manifest;
pub mod policy;
pub mod ratelimit;
pub mod registry;
pub mod restart;
pub mod secrets;
pub mod server;
pub mod spawn;
pub mod storage;
pub mod syscalls;
pub mod workers;
pub mod ws;
