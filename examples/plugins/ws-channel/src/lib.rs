//! A channel plugin written the way tark's published ones are (the discord
//! plugin is the model): a core module for `wasm32-wasip1`, `alloc`/`dealloc`,
//! JSON strings as `(ptr, len)`, results at a host-given `ret_ptr`, and tark's
//! `tark:ws` imports for its connection.
//!
//! `channel_start` connects to the server in `WS_CHANNEL_URL` (read through
//! `tark:env`) and keeps the handle in plugin storage; `channel_send` sends the
//! text; `channel_poll` takes what the server sent since. std's WASI pieces are
//! used on purpose: `println!` (fd_write → the plugin's log), `SystemTime`
//! (clock_time_get) and `std::env::vars` (environ, empty under tarkd).

use std::alloc::{Layout, alloc as raw_alloc, dealloc as raw_dealloc};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

#[link(wasm_import_module = "tark:ws")]
unsafe extern "C" {
    #[link_name = "connect"]
    fn ws_connect(url_ptr: i32, url_len: i32, hdr_ptr: i32, hdr_len: i32, ret_ptr: i32) -> i32;
    #[link_name = "send"]
    fn ws_send(handle: i64, data_ptr: i32, data_len: i32, ret_ptr: i32) -> i32;
    #[link_name = "recv"]
    fn ws_recv(handle: i64, timeout_ms: i64, max_bytes: i64, ret_ptr: i32) -> i32;
    #[link_name = "close"]
    fn ws_close(handle: i64, ret_ptr: i32) -> i32;
}

#[link(wasm_import_module = "tark:env")]
unsafe extern "C" {
    #[link_name = "get"]
    fn env_get(name_ptr: i32, name_len: i32, ret_ptr: i32) -> i32;
}

#[link(wasm_import_module = "tark:storage")]
unsafe extern "C" {
    #[link_name = "get"]
    fn storage_get(key_ptr: i32, key_len: i32, ret_ptr: i32) -> i32;
    #[link_name = "set"]
    fn storage_set(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32;
}

static mut BUFFER: [u8; 131072] = [0; 131072];

fn buffer() -> i32 {
    core::ptr::addr_of_mut!(BUFFER).cast::<u8>() as i32
}

/// The host's answer in the shared buffer, or `None` for an error code.
fn answer(len: i32) -> Option<String> {
    if len < 0 {
        return None;
    }
    let bytes = unsafe {
        core::slice::from_raw_parts(core::ptr::addr_of!(BUFFER).cast::<u8>(), len as usize)
    };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

fn json_answer(len: i32) -> Value {
    answer(len)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(json!({ "ok": false, "error": format!("host returned {len}") }))
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

fn input(ptr: i32, len: i32) -> String {
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `text` at the host's `ret` (8 KiB for info and poll, 64 KiB for
/// send), cut to fit; returns its length.
fn output(ret: i32, text: &str, room: usize) -> i32 {
    let n = text.len().min(room);
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), ret as *mut u8, n) };
    n as i32
}

fn env(name: &str) -> Option<String> {
    answer(unsafe { env_get(name.as_ptr() as i32, name.len() as i32, buffer()) })
        .filter(|v| !v.is_empty())
}

fn handle() -> Option<i64> {
    let key = "handle";
    answer(unsafe { storage_get(key.as_ptr() as i32, key.len() as i32, buffer()) })?
        .parse()
        .ok()
}

fn set_handle(value: &str) {
    let key = "handle";
    unsafe {
        storage_set(
            key.as_ptr() as i32,
            key.len() as i32,
            value.as_ptr() as i32,
            value.len() as i32,
        )
    };
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_info(ret: i32) -> i32 {
    let info = json!({
        "id": "ws",
        "display_name": "WebSocket chat",
        "description": format!("environment variables visible through WASI: {}", std::env::vars().count()),
    });
    output(ret, &info.to_string(), 8 << 10)
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_start() -> i32 {
    let Some(url) = env("WS_CHANNEL_URL") else {
        println!("ws-channel: WS_CHANNEL_URL is not set");
        return -1;
    };
    let reply = json_answer(unsafe {
        ws_connect(url.as_ptr() as i32, url.len() as i32, 0, 0, buffer())
    });
    let Some(h) = reply["handle"].as_i64().filter(|_| reply["ok"] == true) else {
        println!("ws-channel: cannot connect to {url}: {reply}");
        return -1;
    };
    set_handle(&h.to_string());
    println!("ws-channel: connected to {url} at {} ms", now_ms());
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_stop() -> i32 {
    if let Some(h) = handle() {
        unsafe { ws_close(h, buffer()) };
        set_handle("");
    }
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_auth_status() -> i32 {
    0 // no sign-in
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_auth_init(_ptr: i32, _len: i32) -> i32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_auth_logout() -> i32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_send(ptr: i32, len: i32, ret: i32) -> i32 {
    let request: Value = serde_json::from_str(&input(ptr, len)).unwrap_or(Value::Null);
    let Some(h) = handle() else {
        let r = json!({ "success": false, "error": "ws-channel is not started" });
        return output(ret, &r.to_string(), 64 << 10);
    };
    let text = json!({
        "conversation_id": request["conversation_id"],
        "text": request["text"],
    })
    .to_string();
    let reply = json_answer(unsafe { ws_send(h, text.as_ptr() as i32, text.len() as i32, buffer()) });
    let result = if reply["ok"] == true {
        json!({ "success": true, "message_id": format!("ws-{}", now_ms()) })
    } else {
        json!({ "success": false, "error": reply["error"] })
    };
    output(ret, &result.to_string(), 64 << 10)
}

#[unsafe(no_mangle)]
pub extern "C" fn channel_poll(ret: i32) -> i32 {
    let mut inbound = Vec::new();
    if let Some(h) = handle() {
        // What has arrived: short waits until one times out.
        for _ in 0..16 {
            let reply = json_answer(unsafe { ws_recv(h, 50, 16 << 10, buffer()) });
            let Some(data) = reply["data"].as_str() else {
                break;
            };
            let message: Value = serde_json::from_str(data).unwrap_or(json!({ "text": data }));
            inbound.push(json!({
                "conversation_id": message["conversation_id"].as_str().unwrap_or("ws"),
                "user_id": "ws-server",
                "text": message["text"].as_str().unwrap_or(data),
            }));
        }
    }
    output(ret, &Value::Array(inbound).to_string(), 8 << 10)
}
