//! WASI preview 1 for `wasm32-wasip1` builds, deny by default: what such a
//! build needs to start and run is served (clocks, randomness, stdout and stderr
//! into the plugin's rate-limited log, an empty environment and argument list,
//! `proc_exit` ending the call); every other preview-1 import the module has is
//! linked to a function that answers an errno and touches nothing. No path,
//! descriptor, socket or variable of the host is reachable: there is no file
//! table behind these functions at all.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tark_proto::worker::v1 as pb;
use wasmtime::{Caller, Linker, Module, Val, ValType};

use super::imports::{ModuleState, guest_memory};
use super::memory;

pub const MODULE: &str = "wasi_snapshot_preview1";

/// The preview-1 errnos tarkd answers.
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
}

/// The functions served. Anything else is refused with [`refusal`].
pub const SERVED: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "random_get",
    "fd_write",
    "proc_exit",
    "sched_yield",
];

/// The errno a refused function answers: descriptors and paths do not exist
/// (`EBADF`: there are no preopens and no sockets); anything else is not
/// implemented.
pub fn refusal(name: &str) -> i32 {
    if ["fd_", "path_", "sock_"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        errno::BADF
    } else {
        errno::NOSYS
    }
}

/// Most bytes of one `fd_write` sent to the log; the rest is dropped (and
/// reported written, so the guest does not retry forever).
const LOG_BYTES_PER_WRITE: usize = 16 << 10;
/// Most iovecs one `fd_write` may pass.
const MAX_IOVECS: i32 = 1024;

/// `proc_exit`: ends the call (and the instance) with a failure naming the code.
#[derive(Debug, thiserror::Error)]
#[error("the plugin called proc_exit({0})")]
pub struct ProcExit(pub i32);

type Cx<'a> = Caller<'a, ModuleState>;

/// Writes little-endian `bytes` at `ptr`: `SUCCESS` or `FAULT`.
fn store(c: &mut Cx<'_>, ptr: i32, bytes: &[u8]) -> i32 {
    let Some(mem) = guest_memory(c) else {
        return errno::FAULT;
    };
    match memory::write(mem.data_mut(&mut *c), ptr, bytes, bytes.len()) {
        Ok(_) => errno::SUCCESS,
        Err(_) => errno::FAULT,
    }
}

/// Nanoseconds on the clock `id` (realtime 0, monotonic 1); `None` for others.
pub fn now(id: i32) -> Option<u64> {
    static BASE: OnceLock<Instant> = OnceLock::new();
    match id {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok()),
        1 => u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_nanos()).ok(),
        _ => None,
    }
}

/// The text of an `fd_write`'s iovecs (`iovs` points at `count` pairs of
/// little-endian `u32` pointer and length), at most `cap` bytes of it, and the
/// total length the guest wrote.
pub fn gather(mem: &[u8], iovs: i32, count: i32, cap: usize) -> Result<(Vec<u8>, u32), i32> {
    if !(0..=MAX_IOVECS).contains(&count) {
        return Err(errno::INVAL);
    }
    let table = memory::read(mem, iovs, count * 8, usize::MAX).map_err(|_| errno::FAULT)?;
    let mut text = Vec::new();
    let mut total: u32 = 0;
    for iov in table.chunks_exact(8) {
        let word = |i: usize| [iov[i], iov[i + 1], iov[i + 2], iov[i + 3]];
        let ptr = i32::from_le_bytes(word(0));
        let len = u32::from_le_bytes(word(4));
        let len = i32::try_from(len).map_err(|_| errno::INVAL)?;
        let bytes = memory::read(mem, ptr, len, usize::MAX).map_err(|_| errno::FAULT)?;
        total = total.checked_add(len as u32).ok_or(errno::INVAL)?;
        let take = bytes.len().min(cap.saturating_sub(text.len()));
        text.extend_from_slice(&bytes[..take]);
    }
    Ok((text, total))
}

/// Links preview 1 for `module`: the served functions, and a refusal for each
/// other preview-1 function it imports.
pub fn add_to_linker(linker: &mut Linker<ModuleState>, module: &Module) -> wasmtime::Result<()> {
    let empty = |mut c: Cx<'_>, count_ptr: i32, size_ptr: i32| -> i32 {
        match store(&mut c, count_ptr, &0u32.to_le_bytes()) {
            errno::SUCCESS => store(&mut c, size_ptr, &0u32.to_le_bytes()),
            e => e,
        }
    };
    linker.func_wrap(MODULE, "args_sizes_get", empty)?;
    linker.func_wrap(MODULE, "environ_sizes_get", empty)?;
    // Nothing to copy for an empty list.
    linker.func_wrap(MODULE, "args_get", |_: Cx<'_>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    linker.func_wrap(MODULE, "environ_get", |_: Cx<'_>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Cx<'_>, id: i32, out: i32| match now(id) {
            Some(_) => store(&mut c, out, &1u64.to_le_bytes()),
            None => errno::INVAL,
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Cx<'_>, id: i32, _precision: i64, out: i32| match now(id) {
            Some(t) => store(&mut c, out, &t.to_le_bytes()),
            None => errno::INVAL,
        },
    )?;
    linker.func_wrap(MODULE, "random_get", |mut c: Cx<'_>, buf: i32, len: i32| {
        let Some(mem) = guest_memory(&mut c) else {
            return errno::FAULT;
        };
        let data = mem.data_mut(&mut c);
        match memory::range(data.len(), buf, len, usize::MAX) {
            Ok(r) => match getrandom::fill(&mut data[r]) {
                Ok(()) => errno::SUCCESS,
                Err(_) => errno::NOSYS,
            },
            Err(_) => errno::FAULT,
        }
    })?;
    linker.func_wrap(MODULE, "sched_yield", |_: Cx<'_>| errno::SUCCESS)?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Cx<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_write",
        |mut c: Cx<'_>, (fd, iovs, count, written): (i32, i32, i32, i32)| {
            Box::new(async move {
                let level = match fd {
                    1 => pb::LogLevel::Info,
                    2 => pb::LogLevel::Warn,
                    _ => return errno::BADF,
                };
                let Some(mem) = guest_memory(&mut c) else {
                    return errno::FAULT;
                };
                let (text, total) = match gather(mem.data(&c), iovs, count, LOG_BYTES_PER_WRITE) {
                    Ok(g) => g,
                    Err(e) => return e,
                };
                let text = String::from_utf8_lossy(&text);
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    c.data_mut().host.log(level, line.to_owned()).await;
                }
                store(&mut c, written, &total.to_le_bytes())
            })
        },
    )?;
    for import in module.imports().filter(|i| i.module() == MODULE) {
        let name = import.name();
        if SERVED.contains(&name) {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue; // not a function: instantiation reports it
        };
        let answers_errno =
            ty.results().len() == 1 && matches!(ty.results().next(), Some(ValType::I32));
        let errno = refusal(name);
        let owned = name.to_owned();
        linker.func_new(MODULE, name, ty, move |_, _, results: &mut [Val]| {
            if !answers_errno {
                wasmtime::bail!("{MODULE}::{owned} has a signature preview 1 does not define");
            }
            results[0] = Val::I32(errno);
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_name() {
        for (name, want) in [
            ("path_open", errno::BADF),
            ("fd_read", errno::BADF),
            ("fd_prestat_get", errno::BADF),
            ("sock_accept", errno::BADF),
            ("poll_oneoff", errno::NOSYS),
            ("proc_raise", errno::NOSYS),
            ("made_up", errno::NOSYS),
        ] {
            assert_eq!(refusal(name), want, "{name}");
            assert!(!SERVED.contains(&name));
        }
    }

    #[test]
    fn clocks() {
        assert!(now(0).is_some_and(|t| t > 1_600_000_000_000_000_000));
        let a = now(1);
        let b = now(1);
        assert!(a.is_some() && b >= a);
        assert_eq!(now(2), None);
        assert_eq!(now(-1), None);
    }

    #[test]
    fn iovecs_are_checked() {
        // Two iovecs at 0: "hi" at 16 and "there" at 18.
        let mut mem = vec![0u8; 32];
        mem[0..4].copy_from_slice(&16u32.to_le_bytes());
        mem[4..8].copy_from_slice(&2u32.to_le_bytes());
        mem[8..12].copy_from_slice(&18u32.to_le_bytes());
        mem[12..16].copy_from_slice(&5u32.to_le_bytes());
        mem[16..23].copy_from_slice(b"hithere");
        assert_eq!(gather(&mem, 0, 2, 100), Ok((b"hithere".to_vec(), 7)));
        assert_eq!(gather(&mem, 0, 2, 3), Ok((b"hit".to_vec(), 7)));
        assert_eq!(gather(&mem, 0, -1, 100), Err(errno::INVAL));
        assert_eq!(gather(&mem, 0, 5000, 100), Err(errno::INVAL));
        assert_eq!(gather(&mem, 28, 1, 100), Err(errno::FAULT));
        // An iovec pointing outside memory.
        mem[12..16].copy_from_slice(&500u32.to_le_bytes());
        assert_eq!(gather(&mem, 0, 2, 100), Err(errno::FAULT));
        // A length with the top bit set.
        mem[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gather(&mem, 0, 2, 100), Err(errno::INVAL));
    }
}
