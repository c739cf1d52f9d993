//! tark's host imports for core modules (`tark:storage`, `tark:http`, `tark:env`,
//! `tark:fs`, `tark:log`, `tark:ws`) with tark's conventions: strings are
//! `(ptr, len)` pairs, a result is written at `ret_ptr` and the call returns its
//! length or a negative code. Each import is the same broker call the component
//! path makes, so grants, audit, quotas and address rules are the same.
//!
//! The guest never says how big its `ret_ptr` buffer is. tarkd writes no more
//! than the buffer tark's published plugins allocate for that import
//! ([`Rooms`]), and answers [`WRITE_ERROR`] for a larger result rather than
//! write past it.

use std::borrow::{Borrow, BorrowMut};

use serde_json::json;
use tark_proto::worker::v1 as pb;
use wasmtime::{Caller, Extern, Linker};

use super::{json, memory};
use crate::abi::host::{HostState, Refusal};

/// Bad input: a pointer or length outside memory, not UTF-8, malformed JSON.
pub const BAD_INPUT: i32 = -1;
/// The capability was not granted.
pub const DENIED: i32 = -2;
/// The host could not read what was asked (e.g. the file).
pub const READ_ERROR: i32 = -3;
/// The result does not fit the guest's buffer.
pub const WRITE_ERROR: i32 = -4;

/// The largest string argument an import reads from the guest.
const ARG_MAX: usize = 4 << 20;

/// How many bytes the host may write at `ret_ptr`, per import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rooms {
    pub storage: usize,
    pub http: usize,
    pub env: usize,
    pub fs: usize,
    pub ws: usize,
}

impl Rooms {
    /// The buffers tark's published plugins allocate.
    pub const PUBLISHED: Rooms = Rooms {
        storage: 64 << 10,
        http: 128 << 10,
        env: 256,
        fs: 128 << 10,
        ws: 128 << 10,
    };

    /// The defaults, with tarkd's per-import overrides (bytes; 0 keeps a default).
    pub fn from_proto(overrides: &std::collections::HashMap<String, u32>) -> Self {
        let mut r = Self::PUBLISHED;
        for (name, &bytes) in overrides.iter().filter(|(_, b)| **b > 0) {
            let slot = match name.as_str() {
                "storage" => &mut r.storage,
                "http" => &mut r.http,
                "env" => &mut r.env,
                "fs" => &mut r.fs,
                "ws" => &mut r.ws,
                _ => continue,
            };
            *slot = bytes as usize;
        }
        r
    }
}

/// A core module's store data: the broker connection and limits every guest
/// has, and the result buffer sizes.
pub struct ModuleState {
    pub host: HostState,
    pub rooms: Rooms,
    /// Preview 1 (`wasm32-wasip1` builds), from the plugin's WASI setup,
    /// made at the guest's first preview-1 call.
    pub p1: Option<wasmtime_wasi::p1::WasiP1Ctx>,
}

impl Borrow<HostState> for ModuleState {
    fn borrow(&self) -> &HostState {
        &self.host
    }
}

impl ModuleState {
    /// The preview-1 context, made on first use.
    pub fn p1(&mut self) -> &mut wasmtime_wasi::p1::WasiP1Ctx {
        let Self { p1, host, .. } = self;
        p1.get_or_insert_with(|| host.wasi.p1())
    }
}

impl crate::abi::wasi::refuse::Audit for ModuleState {
    async fn refused(&mut self, capability: &str, function: String, answer: &str) {
        self.host.refused(capability, function, answer).await
    }
}

impl BorrowMut<HostState> for ModuleState {
    fn borrow_mut(&mut self) -> &mut HostState {
        &mut self.host
    }
}

type Cx<'a> = Caller<'a, ModuleState>;

/// The guest's `memory` export (its absence or sharing is refused at load).
pub(super) fn guest_memory(caller: &mut Cx<'_>) -> Option<wasmtime::Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// Reads the guest strings at the given `(ptr, len)` pairs.
fn strings<const N: usize>(caller: &mut Cx<'_>, args: [(i32, i32); N]) -> Option<[String; N]> {
    let mem = guest_memory(caller)?;
    let data = mem.data(&*caller);
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, (ptr, len)) in out.iter_mut().zip(args) {
        match memory::read_str(data, ptr, len, ARG_MAX) {
            Ok(s) => *slot = s.to_owned(),
            Err(e) => {
                tracing::debug!("import argument refused: {e}");
                return None;
            }
        }
    }
    Some(out)
}

/// Writes a result at `ret`, at most the import's buffer (`room` picks it):
/// its length, or [`WRITE_ERROR`].
fn put(caller: &mut Cx<'_>, ret: i32, bytes: &[u8], room: fn(&Rooms) -> usize) -> i32 {
    let room = room(&caller.data().rooms);
    let Some(mem) = guest_memory(caller) else {
        return WRITE_ERROR;
    };
    memory::write(mem.data_mut(&mut *caller), ret, bytes, room).unwrap_or_else(|e| {
        tracing::debug!("import result refused: {e}");
        WRITE_ERROR
    })
}

fn refusal_code(r: &Refusal, otherwise: i32) -> i32 {
    if r.denied { DENIED } else { otherwise }
}

/// The broker's http answer as tark's JSON: `{status, headers, body}`, or
/// `{error}`; `None` for a denial (the caller answers [`DENIED`]).
fn http_json(r: Result<pb::HttpResponse, Refusal>) -> Option<String> {
    match r {
        Ok(r) => {
            let headers: Vec<(String, String)> =
                r.headers.into_iter().map(|h| (h.name, h.value)).collect();
            Some(json!({ "status": r.status, "headers": headers, "body": r.body }).to_string())
        }
        Err(r) if r.denied => None,
        Err(r) => Some(json!({ "error": r.message }).to_string()),
    }
}

async fn http(
    caller: &mut Cx<'_>,
    method: &str,
    url: String,
    body: Option<String>,
    headers: &str,
    ret: i32,
) -> i32 {
    let Some(headers) = json::parse_headers(headers) else {
        return BAD_INPUT;
    };
    let req = pb::HttpRequest {
        method: method.to_owned(),
        url,
        headers,
        body,
    };
    let answer = caller.data_mut().host.http(req).await;
    match http_json(answer) {
        Some(json) => put(caller, ret, json.as_bytes(), |r| r.http),
        None => DENIED,
    }
}

/// Links every `tark:*` import.
pub fn add_to_linker(linker: &mut Linker<ModuleState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "tark:storage",
        "get",
        |mut c: Cx<'_>, (kp, kl, ret): (i32, i32, i32)| {
            Box::new(async move {
                let Some([key]) = strings(&mut c, [(kp, kl)]) else {
                    return BAD_INPUT;
                };
                let value = c.data_mut().host.storage_get(key).await.unwrap_or_default();
                put(&mut c, ret, value.as_bytes(), |r| r.storage)
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:storage",
        "set",
        |mut c: Cx<'_>, (kp, kl, vp, vl): (i32, i32, i32, i32)| {
            Box::new(async move {
                let Some([key, value]) = strings(&mut c, [(kp, kl), (vp, vl)]) else {
                    return BAD_INPUT;
                };
                match c.data_mut().host.storage_set(key, value).await {
                    Ok(()) => 0,
                    Err(r) => refusal_code(&r, BAD_INPUT),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:storage",
        "delete",
        |mut c: Cx<'_>, (kp, kl): (i32, i32)| {
            Box::new(async move {
                let Some([key]) = strings(&mut c, [(kp, kl)]) else {
                    return BAD_INPUT;
                };
                match c.data_mut().host.storage_delete(key).await {
                    Ok(()) => 0,
                    Err(r) => refusal_code(&r, BAD_INPUT),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:http",
        "get",
        |mut c: Cx<'_>, (up, ul, hp, hl, ret): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let Some([url, headers]) = strings(&mut c, [(up, ul), (hp, hl)]) else {
                    return BAD_INPUT;
                };
                http(&mut c, "GET", url, None, &headers, ret).await
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:http",
        "post",
        |mut c: Cx<'_>, (up, ul, bp, bl, hp, hl, ret): (i32, i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let Some([url, body, headers]) = strings(&mut c, [(up, ul), (bp, bl), (hp, hl)])
                else {
                    return BAD_INPUT;
                };
                http(&mut c, "POST", url, Some(body), &headers, ret).await
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:env",
        "get",
        |mut c: Cx<'_>, (np, nl, ret): (i32, i32, i32)| {
            Box::new(async move {
                let Some([name]) = strings(&mut c, [(np, nl)]) else {
                    return BAD_INPUT;
                };
                // Unset and refused read alike (""), as on the component path:
                // a plugin cannot probe which variables tarkd has.
                let value = c.data_mut().host.env_get(name).await.unwrap_or_default();
                put(&mut c, ret, value.as_bytes(), |r| r.env)
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:fs",
        "read",
        |mut c: Cx<'_>, (pp, pl, ret): (i32, i32, i32)| {
            Box::new(async move {
                let Some([path]) = strings(&mut c, [(pp, pl)]) else {
                    return BAD_INPUT;
                };
                match c.data_mut().host.fs_read(path).await {
                    Ok(content) => put(&mut c, ret, content.as_bytes(), |r| r.fs),
                    Err(r) => refusal_code(&r, READ_ERROR),
                }
            })
        },
    )?;
    for (name, level) in [
        ("debug", pb::LogLevel::Debug),
        ("info", pb::LogLevel::Info),
        ("warn", pb::LogLevel::Warn),
        ("error", pb::LogLevel::Error),
    ] {
        linker.func_wrap_async(
            "tark:log",
            name,
            move |mut c: Cx<'_>, (p, l): (i32, i32)| {
                Box::new(async move {
                    if let Some([message]) = strings(&mut c, [(p, l)]) {
                        c.data_mut().host.log(level, message).await;
                    }
                })
            },
        )?;
    }
    add_ws(linker)
}

fn add_ws(linker: &mut Linker<ModuleState>) -> wasmtime::Result<()> {
    fn answer(c: &mut Cx<'_>, ret: i32, json: String) -> i32 {
        put(c, ret, json.as_bytes(), |r| r.ws)
    }
    linker.func_wrap_async(
        "tark:ws",
        "connect",
        |mut c: Cx<'_>, (up, ul, hp, hl, ret): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let Some([url, headers]) = strings(&mut c, [(up, ul), (hp, hl)]) else {
                    return BAD_INPUT;
                };
                let json = c.data_mut().host.ws_connect(url, headers).await;
                answer(&mut c, ret, json)
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:ws",
        "send",
        |mut c: Cx<'_>, (handle, dp, dl, ret): (i64, i32, i32, i32)| {
            Box::new(async move {
                let Some([data]) = strings(&mut c, [(dp, dl)]) else {
                    return BAD_INPUT;
                };
                let json = c.data_mut().host.ws_send(handle, data).await;
                answer(&mut c, ret, json)
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:ws",
        "recv",
        |mut c: Cx<'_>, (handle, timeout_ms, max_bytes, ret): (i64, i64, i64, i32)| {
            Box::new(async move {
                let json = c
                    .data_mut()
                    .host
                    .ws_recv(handle, timeout_ms, max_bytes)
                    .await;
                answer(&mut c, ret, json)
            })
        },
    )?;
    linker.func_wrap_async(
        "tark:ws",
        "close",
        |mut c: Cx<'_>, (handle, ret): (i64, i32)| {
            Box::new(async move {
                let json = c.data_mut().host.ws_close(handle).await;
                answer(&mut c, ret, json)
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_tarks_json() {
        let ok = http_json(Ok(pb::HttpResponse {
            status: 201,
            headers: vec![pb::HttpHeader {
                name: "a".into(),
                value: "b".into(),
            }],
            body: "hi".into(),
        }));
        assert_eq!(
            ok.as_deref(),
            Some(r#"{"body":"hi","headers":[["a","b"]],"status":201}"#)
        );
        let denied = Refusal {
            denied: true,
            message: "no".into(),
        };
        assert_eq!(http_json(Err(denied)), None);
        let failed = Refusal {
            denied: false,
            message: "timed out".into(),
        };
        assert_eq!(
            http_json(Err(failed)).as_deref(),
            Some(r#"{"error":"timed out"}"#)
        );
    }

    #[test]
    fn rooms_take_overrides() {
        let mut o = std::collections::HashMap::new();
        o.insert("env".to_owned(), 4096);
        o.insert("http".to_owned(), 0);
        o.insert("nonsense".to_owned(), 1);
        let r = Rooms::from_proto(&o);
        assert_eq!(r.env, 4096);
        assert_eq!(r.http, Rooms::PUBLISHED.http);
    }
}
