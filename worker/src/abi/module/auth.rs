//! Auth plugins as tark's core modules export them: `status`, `get_token`,
//! `display_name` and `logout`. Sign-in itself (OAuth) is driven by tarkd from
//! the manifest's `[oauth]` table, never by the plugin's own network access.

use tark_proto::plugin::v1 as api;
use tark_proto::worker::v1 as pb;

use super::{Abi, Fault, ack};
use crate::abi::{Call, Outcome, plugin_error};

/// tark's auth-plugin `status` codes (they differ from a provider's).
pub fn status(code: i32) -> api::AuthStatus {
    match code {
        1 => api::AuthStatus::Authenticated,
        2 => api::AuthStatus::Expired,
        _ => api::AuthStatus::NotAuthenticated,
    }
}

/// Buffers tark allocates for these results.
const TOKEN_ROOM: usize = 4096;
const NAME_ROOM: usize = 256;

/// Answers a call; [`super::exports::route`] has checked the export exists.
pub async fn call(g: &mut Abi<'_>, call: Call) -> Result<Outcome, Fault> {
    let text = |r: Result<String, String>| match r {
        Ok(text) => Outcome::Text(pb::Text { text }),
        Err(message) => plugin_error(message),
    };
    Ok(match call {
        Call::AuthStatus(_) => Outcome::AuthStatus(status(g.code("status").await?) as i32),
        Call::AuthDisplayName(_) => text(g.string("display_name", NAME_ROOM).await?),
        Call::GetToken(_) => text(g.string("get_token", TOKEN_ROOM).await?),
        Call::Logout(_) => ack("logout", g.code("logout").await?),
        other => return Err(g.unserved(&other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarks_auth_codes() {
        for (code, want) in [
            (0, api::AuthStatus::NotAuthenticated),
            (1, api::AuthStatus::Authenticated),
            (2, api::AuthStatus::Expired),
            (3, api::AuthStatus::NotAuthenticated),
            (-1, api::AuthStatus::NotAuthenticated),
        ] {
            assert_eq!(status(code), want, "{code}");
        }
    }
}
