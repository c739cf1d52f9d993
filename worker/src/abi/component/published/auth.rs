//! tark's auth world: the same shapes as tarkd's.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::published_bindings;
use crate::abi::component::provider::{ack, plugin_error};
use crate::abi::component::{not_this_world, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::published_bindings!("auth-world");
}

use bindings::exports::tark::plugin::auth_plugin::{AuthStatus, PollResult};

world_plumbing!(Auth, bindings::AuthWorld, call);

async fn call(
    world: &bindings::AuthWorld,
    store: &mut Store<HostState>,
    call: Call,
) -> wasmtime::Result<Result<Outcome, Failure>> {
    let a = world.tark_plugin_auth_plugin();
    Ok(Ok(match call {
        Call::AuthDisplayName(_) => Outcome::Text(pb::Text {
            text: a.call_display_name(&mut *store).await?,
        }),
        Call::AuthStatus(_) => {
            let s = match a.call_status(&mut *store).await? {
                AuthStatus::NotAuthenticated => api::AuthStatus::NotAuthenticated,
                AuthStatus::Authenticated => api::AuthStatus::Authenticated,
                AuthStatus::Expired => api::AuthStatus::Expired,
            };
            Outcome::AuthStatus(s as i32)
        }
        Call::StartDeviceFlow(_) => match a.call_start_device_flow(&mut *store).await? {
            Ok(d) => Outcome::DeviceCode(api::DeviceCode {
                device_code: d.device_code,
                user_code: d.user_code,
                verification_url: d.verification_url,
                expires_in: d.expires_in,
                interval: d.interval,
            }),
            Err(e) => plugin_error(e),
        },
        Call::PollDeviceFlow(p) => {
            use api::poll_device_flow_response::Result as R;
            let r = match a.call_poll(&mut *store, &p.device_code).await? {
                PollResult::Pending => R::Pending(true),
                PollResult::Success(token) => R::Token(token),
                PollResult::Expired => R::Expired(true),
                PollResult::Error(e) => R::Error(e),
            };
            Outcome::Poll(api::PollDeviceFlowResponse { result: Some(r) })
        }
        Call::GetToken(_) => match a.call_get_token(&mut *store).await? {
            Ok(text) => Outcome::Text(pb::Text { text }),
            Err(e) => plugin_error(e),
        },
        Call::Logout(_) => ack(a.call_logout(&mut *store).await?),
        other => return Ok(Err(not_this_world("auth", &other))),
    }))
}
