//! A tau wasm extension, written the way tau's are: `memory`,
//! `tau_extension_alloc(len) -> ptr` and `tau_extension_invoke(ptr, len) ->
//! (ptr << 32) | len`, a JSON envelope `{"hook", "payload", "manifest_id",
//! "manifest_version"}` in and a JSON object out. No host imports: tau's
//! extensions are deny-by-default.
//!
//! `pre-tool-call` blocks a shell command containing `rm -rf` and turns a
//! `deploy` into a dry run stamped with the envelope it came in; every other
//! hook is acknowledged.
//! Two named hooks misbehave on purpose so tests can see tau's limits hold:
//! `spin` never returns (fuel / timeout), `flood` answers 300,000 bytes (over
//! `max_response_bytes`).

use std::alloc::{Layout, alloc};

use serde_json::{Value, json};

#[unsafe(no_mangle)]
pub extern "C" fn tau_extension_alloc(len: i32) -> i32 {
    match Layout::from_size_align(len.max(1) as usize, 1) {
        Ok(layout) => unsafe { alloc(layout) as i32 },
        Err(_) => 0,
    }
}

/// The answer stays alive for the host to read; each call leaks one string,
/// as tau's own examples do (the host replaces the instance when it likes).
fn answer(value: Value) -> i64 {
    let text = value.to_string().into_bytes().into_boxed_slice();
    let len = text.len() as i64;
    let ptr = Box::into_raw(text) as *mut u8 as i64;
    (ptr << 32) | len
}

fn pre_tool_call(request: &Value, payload: &Value) -> Value {
    let tool = payload["tool_name"].as_str().unwrap_or("");
    let args = &payload["arguments"];
    if tool == "shell" && args["cmd"].as_str().is_some_and(|c| c.contains("rm -rf")) {
        return json!({ "decision": "block", "reason": "tau-guard: rm -rf is not allowed" });
    }
    if tool == "deploy" {
        let mut args = args.clone();
        args["dry_run"] = json!(true);
        // Which extension (and envelope schema) rewrote the call.
        args["checked_by"] = json!(format!(
            "{}@{} ({} v{})",
            request["manifest_id"].as_str().unwrap_or("?"),
            request["manifest_version"].as_str().unwrap_or("?"),
            payload["kind"].as_str().unwrap_or("?"),
            payload["schema_version"],
        ));
        return json!({ "decision": "modify", "arguments": args });
    }
    json!({ "decision": "allow" })
}

#[unsafe(no_mangle)]
pub extern "C" fn tau_extension_invoke(ptr: i32, len: i32) -> i64 {
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    let Ok(request) = serde_json::from_slice::<Value>(bytes) else {
        return answer(json!({ "error": "tau-guard: the request is not JSON" }));
    };
    let hook = request["hook"].as_str().unwrap_or("");
    let payload = &request["payload"];
    match hook {
        "pre-tool-call" => answer(pre_tool_call(&request, payload)),
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = core::hint::black_box(n.wrapping_add(1));
            }
        }
        "flood" => {
            // 300,000 bytes of JSON, built with one fill (cheap in fuel).
            let mut text = vec![b' '; 300_000];
            text[0] = b'{';
            text[299_999] = b'}';
            let len = text.len() as i64;
            let ptr = Box::into_raw(text.into_boxed_slice()) as *mut u8 as i64;
            (ptr << 32) | len
        }
        "fail" => answer(json!({ "error": "tau-guard: asked to fail" })),
        _ => answer(json!({
            "ok": true,
            "hook": hook,
            "kind": payload["kind"],
            "schema_version": payload["schema_version"],
            "manifest_id": request["manifest_id"],
            "manifest_version": request["manifest_version"],
        })),
    }
}
