//! gRPC contracts of tarkd, generated from the `.proto` files beside this crate.
//!
//! - [`plugin::v1`]: the agent API (`tark.plugin.v1`), used by tark and tarkctl.
//! - [`worker::v1`]: the tarkd ⇄ tark-worker channel (`tark.worker.v1`).
//! - [`channel`]: gRPC over the socketpairs that connect the two.
//! - [`landlock`]: landlock's ABI levels, as both sides report them.
//! - [`wasm`]: which of the two kinds of core module a plugin is.

pub mod channel;
pub mod landlock;
pub mod wasm;

/// The agent API's encoded `FileDescriptorSet` (`tark/plugin/v1/plugin.proto`),
/// for server reflection.
pub const AGENT_API_DESCRIPTOR: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent_api_descriptor.bin"));

/// The namespaces a worker gets, by their names under `/proc/<pid>/ns/`:
/// what tarkd compares with its own and what a worker reports of itself.
pub const NAMESPACES: [&str; 6] = ["user", "pid", "net", "mnt", "ipc", "uts"];

/// The plugin contracts (WIT packages) a tark-worker of this build hosts, as
/// `plugin info` shows them; the worker's `version` module checks them.
pub const ACCEPTED_WIT: &[&str] = &[
    "tark:plugin@0.1.x (tarkd's wit/tark.wit)",
    "tark:plugin, unversioned (tark's published WIT): auth, tool, provider, channel",
];

/// "name: applied", "name: applied (detail)" or "name: not applied (why)": how
/// tarkd's log, its errors and tarkctl show a sandbox layer.
fn describe_layer(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    applied: bool,
    detail: &str,
) -> std::fmt::Result {
    let state = if applied { "applied" } else { "not applied" };
    if detail.is_empty() {
        write!(f, "{name}: {state}")
    } else {
        write!(f, "{name}: {state} ({detail})")
    }
}

impl std::fmt::Display for plugin::v1::SandboxLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        describe_layer(f, &self.name, self.applied, &self.detail)
    }
}

impl std::fmt::Display for worker::v1::SandboxLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        describe_layer(f, &self.name, self.applied, &self.detail)
    }
}

impl From<worker::v1::SandboxLayer> for plugin::v1::SandboxLayer {
    fn from(l: worker::v1::SandboxLayer) -> Self {
        Self {
            name: l.name,
            applied: l.applied,
            detail: l.detail,
        }
    }
}

/// The agent API.
pub mod plugin {
    /// Version 1 of the agent API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("tark.plugin.v1");
    }
}

/// The worker channel.
pub mod worker {
    /// Version 1 of the worker channel.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("tark.worker.v1");
    }
}
