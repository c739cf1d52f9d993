// tark's plugin SDK guide, "Minimal Auth Plugin", as the guide writes it, with
// the one line the guide leaves out (its plugin development guide has it): the
// `use` that brings AuthStatus, DeviceCode and PollResult into scope.
use wit_bindgen::generate;

generate!({
    world: "auth-world",
    path: "tark.wit",
});

use exports::tark::plugin::auth_plugin::*;

struct MinimalAuth;

impl exports::tark::plugin::auth_plugin::Guest for MinimalAuth {
    fn display_name() -> String {
        "Minimal Auth".to_string()
    }
    
    fn status() -> AuthStatus {
        AuthStatus::NotAuthenticated
    }
    
    fn start_device_flow() -> Result<DeviceCode, String> {
        Err("Not implemented".to_string())
    }
    
    fn poll(_device_code: String) -> PollResult {
        PollResult::Error("Not implemented".to_string())
    }
    
    fn get_token() -> Result<String, String> {
        Err("Not authenticated".to_string())
    }
    
    fn logout() -> Result<(), String> {
        Ok(())
    }
}

export!(MinimalAuth);
