//! An example tark auth plugin: the OAuth 2.0 device authorization grant
//! (RFC 8628) against the server named by `DEVICE_AUTH_URL`, which must expose
//! `POST /device/code` and `POST /token`.
//!
//! tarkd drives it: `start-device-flow` once, then `poll` at the server's interval
//! until the user has approved. The access token is kept in the plugin's own
//! storage (`get-token` reads it back) and never logged.

wit_bindgen::generate!({
    world: "auth-world",
    path: "../../../wit",
});

use exports::tark::plugin::auth_plugin::{AuthStatus, DeviceCode, Guest, PollResult};
use serde_json::Value;
use tark::plugin::{env, http, storage};

const TOKEN_KEY: &str = "access_token";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

struct DeviceAuth;

fn base_url() -> Result<String, String> {
    env::get("DEVICE_AUTH_URL")
        .map(|u| u.trim_end_matches('/').to_owned())
        .ok_or_else(|| "DEVICE_AUTH_URL is not set (or not granted)".to_owned())
}

fn client_id() -> String {
    env::get("DEVICE_AUTH_CLIENT_ID").unwrap_or_else(|| "tark".into())
}

/// A form POST; the JSON body, and whether the status was a success.
fn post_form(path: &str, form: &str) -> Result<(bool, Value), String> {
    let url = format!("{}{path}", base_url()?);
    let headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let r = http::post(&url, form, &headers).map_err(|e| e.message)?;
    let body: Value = serde_json::from_str(&r.body)
        .map_err(|e| format!("{url}: answer is not JSON ({e})"))?;
    Ok(((200..300).contains(&r.status), body))
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Guest for DeviceAuth {
    fn display_name() -> String {
        "Device flow (example)".into()
    }

    fn status() -> AuthStatus {
        if storage::get(TOKEN_KEY).is_some() {
            AuthStatus::Authenticated
        } else {
            AuthStatus::NotAuthenticated
        }
    }

    fn start_device_flow() -> Result<DeviceCode, String> {
        let (ok, v) = post_form("/device/code", &format!("client_id={}", client_id()))?;
        if !ok {
            return Err(field(&v, "error").unwrap_or("device code refused").to_owned());
        }
        let text = |k: &str| field(&v, k).map(str::to_owned).ok_or(format!("answer lacks {k}"));
        let number = |k: &str, default: u64| v.get(k).and_then(Value::as_u64).unwrap_or(default);
        Ok(DeviceCode {
            device_code: text("device_code")?,
            user_code: text("user_code")?,
            verification_url: text("verification_uri")?,
            expires_in: number("expires_in", 600),
            interval: number("interval", 5),
        })
    }

    fn poll(device_code: String) -> PollResult {
        let form = format!(
            "grant_type={DEVICE_GRANT}&device_code={device_code}&client_id={}",
            client_id()
        );
        let (ok, v) = match post_form("/token", &form) {
            Ok(r) => r,
            Err(e) => return PollResult::Error(e),
        };
        if ok {
            let Some(token) = field(&v, "access_token") else {
                return PollResult::Error("token answer lacks access_token".into());
            };
            return match storage::set(TOKEN_KEY, token) {
                Ok(()) => PollResult::Success(token.to_owned()),
                Err(e) => PollResult::Error(format!("storing the token: {e}")),
            };
        }
        match field(&v, "error") {
            Some("authorization_pending" | "slow_down") => PollResult::Pending,
            Some("expired_token") => PollResult::Expired,
            Some(other) => PollResult::Error(other.to_owned()),
            None => PollResult::Error("token request refused".into()),
        }
    }

    fn get_token() -> Result<String, String> {
        storage::get(TOKEN_KEY).ok_or_else(|| "not signed in".to_owned())
    }

    fn logout() -> Result<(), String> {
        storage::delete(TOKEN_KEY)
    }
}

export!(DeviceAuth);
