//! tark's auth world: the same shapes as tarkd's, so the same calls.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::published_bindings;
use crate::abi::component::provider::ack;
use crate::abi::component::{not_this_world, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::plugin_error;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::published_bindings!("auth-world");
}

world_plumbing!(Auth, bindings::AuthWorld, call);

crate::abi::component::auth::auth_calls!(
    bindings,
    bindings::exports::tark::plugin::auth_plugin::AuthStatus
);
