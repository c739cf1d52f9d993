//! tarkd, the supervisor of tark's WebAssembly plugins.
//!
//! tarkd owns everything with authority (the plugin registry, grants, storage,
//! the environment) and never runs plugin code: each tenant × plugin gets its own
//! `tark-worker` process, and every host call the plugin makes comes back here, to
//! the [`broker`], to be checked.
//!
//! The folders are the architecture:
//! - [`api`]: the agent API, one module per gRPC service;
//! - [`plugins`]: what is installed: manifests, the registry, install and approvals;
//! - [`workers`]: worker processes: spawn, channels, restart policy, artifact cache;
//! - [`broker`]: every host call a plugin makes, checked against its grant;
//! - [`oauth`]: the sign-in a manifest's `[oauth]` declares, run by tarkd;
//! - [`access`]: who is calling the agent API, and what each caller may call;
//! - [`transport`]: what is read off the API socket before gRPC sees it;
//! - [`tools`]: which plugin serves which tool;
//! - [`hostcheck`]: `--check-host`, what this host gives the sandbox.

pub mod access;
pub mod api;
pub mod broker;
pub mod commands;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod durable;
pub mod hostcheck;
pub mod logs;
pub mod metrics;
pub mod oauth;
pub mod plugins;
pub mod reasons;
pub mod reload;
pub mod server;
pub mod systemd;
pub mod tools;
pub mod transport;
pub mod workers;
