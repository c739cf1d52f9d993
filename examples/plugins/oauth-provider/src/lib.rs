//! An auth-only provider in tark's core-module ABI, shaped like tark's
//! published chatgpt-oauth: no `provider_chat` (the agent's own provider makes
//! the LLM call with the credentials this plugin hands over), credentials read
//! with `fs_read` from the manifest's `credentials_path`, and
//! `auth_process_tokens` shaping the token response at sign-in.

use std::alloc::{Layout, alloc as raw_alloc, dealloc as raw_dealloc};

use serde_json::{Value, json};

#[link(wasm_import_module = "tark:fs")]
unsafe extern "C" {
    #[link_name = "read"]
    fn fs_read(path_ptr: i32, path_len: i32, ret_ptr: i32) -> i32;
}

const CREDENTIALS: &str = "~/.config/tark/oauth-provider.json";

static mut BUFFER: [u8; 131072] = [0; 131072];

#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: i32) -> i32 {
    match Layout::from_size_align(len.max(1) as usize, 1) {
        Ok(layout) => unsafe { raw_alloc(layout) as i32 },
        Err(_) => 0,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn dealloc(ptr: i32, len: i32) {
    if let Ok(layout) = Layout::from_size_align(len.max(1) as usize, 1) {
        unsafe { raw_dealloc(ptr as *mut u8, layout) }
    }
}

fn write(ret: i32, text: &str) -> i32 {
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), ret as *mut u8, text.len()) };
    text.len() as i32
}

/// The stored credentials, if the tenant has signed in.
fn credentials() -> Option<Value> {
    let buffer = core::ptr::addr_of_mut!(BUFFER).cast::<u8>();
    let n = unsafe { fs_read(CREDENTIALS.as_ptr() as i32, CREDENTIALS.len() as i32, buffer as i32) };
    if n <= 0 {
        return None;
    }
    let bytes = unsafe { core::slice::from_raw_parts(buffer, n as usize) };
    serde_json::from_slice(bytes).ok()
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_info(ret: i32) -> i32 {
    write(
        ret,
        r#"{"id":"oauth-example","display_name":"OAuth example","description":"Signs in through tarkd","requires_auth":true}"#,
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_models(ret: i32) -> i32 {
    write(ret, r#"[{"id":"gpt-example","display_name":"Example model","context_window":8192}]"#)
}

/// tark's codes: 1 authenticated, 2 not authenticated.
#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_status() -> i32 {
    match credentials() {
        Some(c) if c["access_token"].is_string() => 1,
        _ => 2,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_init(_ptr: i32, _len: i32) -> i32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_logout() -> i32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_credentials(ret: i32) -> i32 {
    let Some(c) = credentials() else {
        return -1;
    };
    let out = json!({ "access_token": c["access_token"], "account_id": c["account_id"] });
    write(ret, &out.to_string())
}

/// Called by the host with the token endpoint's answer; returns what to keep.
#[unsafe(no_mangle)]
pub extern "C" fn auth_process_tokens(ptr: i32, len: i32, ret: i32) -> i32 {
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    let Ok(tokens) = serde_json::from_slice::<Value>(bytes) else {
        return -1;
    };
    let out = json!({
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "account_id": format!("acct-{}", tokens["scope"].as_str().unwrap_or("none")),
    });
    write(ret, &out.to_string())
}
