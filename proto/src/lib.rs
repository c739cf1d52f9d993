//! gRPC contracts of tarkd, generated from the `.proto` files beside this crate.
//!
//! - [`plugin::v1`]: the agent API (`tark.plugin.v1`), used by tark and tarkctl.
//! - [`worker::v1`]: the tarkd ⇄ tark-worker channel (`tark.worker.v1`).
//! - [`channel`]: gRPC over the socketpairs that connect the two.

pub mod channel;

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
