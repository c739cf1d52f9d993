//! An auth plugin in tark's core-module ABI, written the way tark's plugin
//! authors write them (no wit-bindgen): `status`, `display_name`, `get_token`
//! and `logout`, the token read with `fs_read` from the manifest's
//! `credentials_path`, where the host keeps what the OAuth sign-in returned.

use std::alloc::{Layout, alloc as raw_alloc, dealloc as raw_dealloc};

use serde_json::Value;

#[link(wasm_import_module = "tark:fs")]
unsafe extern "C" {
    #[link_name = "read"]
    fn fs_read(path_ptr: i32, path_len: i32, ret_ptr: i32) -> i32;
}

#[link(wasm_import_module = "tark:log")]
unsafe extern "C" {
    #[link_name = "info"]
    fn log_info(ptr: i32, len: i32);
}

const CREDENTIALS: &str = "~/.config/tark/legacy-auth.json";

static mut BUFFER: [u8; 65536] = [0; 65536];

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

/// The access token, if the tenant has signed in.
fn token() -> Option<String> {
    let buffer = core::ptr::addr_of_mut!(BUFFER).cast::<u8>();
    let n = unsafe { fs_read(CREDENTIALS.as_ptr() as i32, CREDENTIALS.len() as i32, buffer as i32) };
    if n <= 0 {
        return None;
    }
    let bytes = unsafe { core::slice::from_raw_parts(buffer, n as usize) };
    let credentials: Value = serde_json::from_slice(bytes).ok()?;
    credentials["access_token"].as_str().map(str::to_owned)
}

/// tark's auth status codes: 0 not signed in, 1 signed in, 2 expired.
#[unsafe(no_mangle)]
pub extern "C" fn status() -> i32 {
    if token().is_some() { 1 } else { 0 }
}

#[unsafe(no_mangle)]
pub extern "C" fn display_name(ret: i32) -> i32 {
    write(ret, "Legacy auth example")
}

#[unsafe(no_mangle)]
pub extern "C" fn get_token(ret: i32) -> i32 {
    match token() {
        Some(t) => write(ret, &t),
        None => -1,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn logout() -> i32 {
    let m = "signed out";
    unsafe { log_info(m.as_ptr() as i32, m.len() as i32) };
    0
}
