//! __NAME__: a tark auth plugin. It keeps an API key the operator provides in
//! the plugin's secrets (`__ENV__`) as its token; replace `start_device_flow`
//! and `poll` with your service's device flow.

use tark_plugin_sdk::auth::{AuthStatus, DeviceCode, Guest, PollResult};
use tark_plugin_sdk::{env, storage};

struct Plugin;

impl Guest for Plugin {
    fn display_name() -> String {
        "__NAME__".into()
    }

    fn status() -> AuthStatus {
        if storage::get("token").is_some() {
            AuthStatus::Authenticated
        } else {
            AuthStatus::NotAuthenticated
        }
    }

    fn start_device_flow() -> Result<DeviceCode, String> {
        Ok(DeviceCode {
            device_code: "api-key".into(),
            user_code: "__ENV__".into(),
            verification_url: "set __ENV__ in the plugin's secrets, then wait".into(),
            expires_in: 600,
            interval: 1,
        })
    }

    fn poll(_device_code: String) -> PollResult {
        match env::var("__ENV__") {
            Some(key) => match storage::set("token", &key) {
                Ok(()) => PollResult::Success(key),
                Err(e) => PollResult::Error(e.to_string()),
            },
            None => PollResult::Pending,
        }
    }

    fn get_token() -> Result<String, String> {
        storage::get("token").ok_or_else(|| "not signed in".into())
    }

    fn logout() -> Result<(), String> {
        storage::delete("token").map_err(|e| e.to_string())
    }
}

tark_plugin_sdk::export_auth!(Plugin);
