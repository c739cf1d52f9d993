//! The auth world: sign-in to an upstream service with the OAuth device flow.
//! tarkd runs the poll loop; the plugin keeps its tokens in its own storage.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;
use wasmtime::Store;

use super::provider::ack;
use super::{not_this_world, world_bindings, world_plumbing};
use crate::abi::host::HostState;
use crate::abi::plugin_error;
use crate::abi::{Call, Failure, Outcome};

mod bindings {
    super::world_bindings!("auth-world");
}

// Types only: nothing to implement.
impl bindings::tark::plugin::types::Host for HostState {}

world_plumbing!(Auth, bindings::AuthWorld, call);

/// The auth world's `call`, for a bindings module `$bindings` whose auth-plugin
/// has tarkd's shapes (tark's published contract has the same ones) and whose
/// status enum is `$status`.
macro_rules! auth_calls {
    ($bindings:ident, $($status:ident)::+) => {
        async fn call(
            world: &$bindings::AuthWorld,
            store: &mut Store<HostState>,
            call: Call,
        ) -> wasmtime::Result<Result<Outcome, Failure>> {
            use $bindings::exports::tark::plugin::auth_plugin::PollResult;
            let a = world.tark_plugin_auth_plugin();
            Ok(Ok(match call {
                Call::AuthDisplayName(_) => Outcome::Text(pb::Text {
                    text: a.call_display_name(&mut *store).await?,
                }),
                Call::AuthStatus(_) => {
                    use $($status)::+ as S;
                    let s = match a.call_status(&mut *store).await? {
                        S::NotAuthenticated => api::AuthStatus::NotAuthenticated,
                        S::Authenticated => api::AuthStatus::Authenticated,
                        S::Expired => api::AuthStatus::Expired,
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
    };
}
pub(super) use auth_calls;

auth_calls!(bindings, bindings::tark::plugin::types::AuthStatus);
