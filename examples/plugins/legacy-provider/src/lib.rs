//! An echo provider written the way tark's published plugins are: a core wasm
//! module with `alloc`/`dealloc`, JSON strings as `(ptr, len)`, results written
//! at a host-given `ret_ptr`, and tark's host imports declared by hand.
//!
//! `provider_chat` answers the last message; a few messages ask the host for
//! something first, so tests can see each import from inside a real plugin:
//! `count` (storage), `env NAME` (env), `fetch URL` (http). Others misbehave on
//! purpose for the hostile-memory tests: `bad-pointer` passes the host a key
//! outside memory, `overlong` claims more bytes than its buffer holds, `fail`
//! returns an error code, `trap` traps.

use std::alloc::{Layout, alloc as raw_alloc, dealloc as raw_dealloc};

#[link(wasm_import_module = "tark:storage")]
unsafe extern "C" {
    #[link_name = "get"]
    fn storage_get(key_ptr: i32, key_len: i32, ret_ptr: i32) -> i32;
    #[link_name = "set"]
    fn storage_set(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32;
}

#[link(wasm_import_module = "tark:env")]
unsafe extern "C" {
    #[link_name = "get"]
    fn env_get(name_ptr: i32, name_len: i32, ret_ptr: i32) -> i32;
}

#[link(wasm_import_module = "tark:http")]
unsafe extern "C" {
    #[link_name = "get"]
    fn http_get(url_ptr: i32, url_len: i32, hdr_ptr: i32, hdr_len: i32, ret_ptr: i32) -> i32;
}

#[link(wasm_import_module = "tark:log")]
unsafe extern "C" {
    #[link_name = "info"]
    fn log_info(ptr: i32, len: i32);
}

static mut BUFFER: [u8; 131072] = [0; 131072];

fn buffer() -> i32 {
    core::ptr::addr_of_mut!(BUFFER).cast::<u8>() as i32
}

fn buffered(len: i32) -> String {
    let bytes = unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(BUFFER).cast::<u8>(), len as usize) };
    String::from_utf8_lossy(bytes).into_owned()
}

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

fn write(ret_ptr: i32, text: &str) -> i32 {
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), ret_ptr as *mut u8, text.len()) };
    text.len() as i32
}

unsafe fn text(ptr: i32, len: i32) -> String {
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    String::from_utf8_lossy(bytes).into_owned()
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_info(ret_ptr: i32) -> i32 {
    write(ret_ptr, r#"{"id":"legacy-echo","display_name":"Legacy echo","description":"Echoes, in tark's core-module ABI","requires_auth":false}"#)
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_models(ret_ptr: i32) -> i32 {
    write(ret_ptr, r#"[{"id":"echo","display_name":"Echo","context_window":4096,"supports_streaming":false,"supports_tools":false}]"#)
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_status() -> i32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_logout() -> i32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_auth_credentials(ret_ptr: i32) -> i32 {
    write(ret_ptr, r#"{"access_token":"example-token","api_mode":"standard"}"#)
}

fn count() -> String {
    let key = "count";
    let n = unsafe { storage_get(key.as_ptr() as i32, key.len() as i32, buffer()) };
    let next = if n > 0 { buffered(n).parse::<u64>().unwrap_or(0) + 1 } else { 1 };
    let value = next.to_string();
    let code = unsafe { storage_set(key.as_ptr() as i32, key.len() as i32, value.as_ptr() as i32, value.len() as i32) };
    format!("count {value} (set returned {code})")
}

fn reply(last: &str) -> Result<String, i32> {
    if last == "count" {
        return Ok(count());
    }
    if let Some(name) = last.strip_prefix("env ") {
        let n = unsafe { env_get(name.as_ptr() as i32, name.len() as i32, buffer()) };
        return Ok(if n >= 0 { format!("env {name}={}", buffered(n)) } else { format!("env {name} code {n}") });
    }
    if let Some(url) = last.strip_prefix("fetch ") {
        let h = "[]";
        let n = unsafe { http_get(url.as_ptr() as i32, url.len() as i32, h.as_ptr() as i32, h.len() as i32, buffer()) };
        return Ok(if n >= 0 { buffered(n) } else { format!("http code {n}") });
    }
    match last {
        "bad-pointer" => {
            let n = unsafe { storage_get(0x7fff_0000, 16, buffer()) };
            Ok(format!("bad pointer code {n}"))
        }
        "log" => {
            let m = "hello from a core module";
            unsafe { log_info(m.as_ptr() as i32, m.len() as i32) };
            Ok("logged".into())
        }
        "fail" => Err(-7),
        "trap" => core::arch::wasm32::unreachable(),
        other => Ok(format!("echo: {other}")),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn provider_chat(msgs_ptr: i32, msgs_len: i32, model_ptr: i32, model_len: i32, ret_ptr: i32) -> i32 {
    let messages = unsafe { text(msgs_ptr, msgs_len) };
    let model = unsafe { text(model_ptr, model_len) };
    let parsed: serde_json::Value = serde_json::from_str(&messages).unwrap_or_default();
    let last = parsed
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .to_owned();
    if last == "overlong" {
        return 1 << 20;
    }
    match reply(&last) {
        Ok(text) => {
            let answer = serde_json::json!({
                "text": text,
                "usage": {"input_tokens": messages.len(), "output_tokens": text.len()},
                "finish_reason": model,
            });
            write(ret_ptr, &answer.to_string())
        }
        Err(code) => code,
    }
}
