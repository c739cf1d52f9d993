//! Guest memory and guest JSON, as a hostile core module hands them to the
//! worker: every accessor of `worker/src/abi/module/memory.rs` over arbitrary
//! pointers, lengths and buffer sizes (an accepted range lies inside the memory
//! and the limit; a write never touches a byte outside its range, and a refused
//! one touches none), and every decoder of `module/json.rs` over arbitrary text
//! (an error, never a panic).
//!
//! The two files are compiled here from the worker's source tree by path: they
//! are pure (no wasmtime), and this keeps the fuzz build free of the engine.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../worker/src/abi/module/memory.rs"]
mod memory;

#[allow(dead_code)]
#[path = "../../worker/src/abi/module/json.rs"]
mod json;

/// Input: a 12-byte header (memory size, pointer, length, room) then bytes that
/// are both the memory's contents and the JSON text.
fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let word = |i: usize| i32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let size = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let room = usize::from(u16::from_le_bytes([data[2], data[3]]));
    let (ptr, len) = (word(4), word(8));
    let rest = &data[12..];
    let mut mem = rest.to_vec();
    mem.resize(size, 0);

    accessors(&mut mem, ptr, len, room, rest);
    if let Ok(text) = std::str::from_utf8(rest) {
        decoders(text);
    }
});

fn accessors(mem: &mut [u8], ptr: i32, len: i32, room: usize, bytes: &[u8]) {
    let size = mem.len();
    let fits = len >= 0
        && (len as usize) <= room
        && (ptr as u32 as usize).checked_add(len as usize).is_some_and(|end| end <= size);
    match memory::range(size, ptr, len, room) {
        Ok(r) => {
            assert!(fits, "{ptr} {len} {room} {size}");
            assert_eq!((r.start, r.len()), (ptr as u32 as usize, len as usize));
            assert_eq!(memory::read(mem, ptr, len, room), Ok(&mem[r.clone()]));
            if let Ok(s) = memory::read_str(mem, ptr, len, room) {
                assert_eq!(s.as_bytes(), &mem[r]);
            }
        }
        Err(_) => {
            assert!(!fits, "{ptr} {len} {room} {size}");
            assert!(memory::read(mem, ptr, len, room).is_err());
            assert!(memory::read_str(mem, ptr, len, room).is_err());
        }
    }

    // Writes: exactly the range, or nothing.
    let before = mem.to_vec();
    let start = ptr as u32 as usize;
    match memory::write(mem, ptr, bytes, room) {
        Ok(n) => {
            assert_eq!(n as usize, bytes.len());
            assert!(bytes.len() <= room && start + bytes.len() <= size);
            assert_eq!(&mem[start..start + bytes.len()], bytes);
            assert_eq!(&mem[..start], &before[..start]);
            assert_eq!(&mem[start + bytes.len()..], &before[start + bytes.len()..]);
        }
        Err(_) => assert_eq!(mem, &before[..]),
    }

    // What alloc returned, and two buffers of one call.
    if let Ok(r) = memory::allocated(size, ptr, room) {
        assert!(ptr != 0 && r.end <= size && r.len() == room);
        let other = start / 2..start / 2 + (len as u32 as usize % 64);
        if memory::disjoint(&r, &other).is_ok() {
            assert!(!r.clone().any(|i| other.contains(&i)));
        }
    }
}

fn decoders(text: &str) {
    const EXPORT: &str = "fuzzed_export";
    if let Ok(v) = json::decode::<json::ProviderInfo>(EXPORT, text) {
        let _ = v.into_api();
    }
    if let Ok(v) = json::decode::<Vec<json::ModelInfo>>(EXPORT, text) {
        let _: Vec<_> = v.into_iter().map(json::ModelInfo::into_api).collect();
    }
    if let Ok(v) = json::decode::<json::ChatResponse>(EXPORT, text) {
        let _ = v.into_api();
    }
    let _ = json::decode::<json::ChannelInfo>(EXPORT, text);
    let _ = json::decode::<json::SendResult>(EXPORT, text);
    if let Ok(v) = json::decode::<json::WebhookResponse>(EXPORT, text) {
        let _ = v.into_api();
    }
    if let Ok(v) = json::decode::<json::ErrorObject>(EXPORT, text) {
        let _ = v.message();
    }
    match json::inbound(EXPORT, text) {
        Ok(_) => {}
        Err(e) => assert!(e.starts_with(EXPORT), "{e}"),
    }
    if let Some(h) = json::parse_headers(text) {
        assert!(text.trim().is_empty() || text.trim_start().starts_with('['));
        let _ = h.len();
    }
}
