//! The WASI calls tarkd refuses, answered here rather than by `wasmtime-wasi`
//! only so that each attempt reaches tarkd's audit as a denial (`Refused`):
//! `wasmtime-wasi` already refuses them under [`super::Setup`]'s context, but
//! silently. What the guest is answered is what `wasmtime-wasi` would answer.
//!
//! Files are not here: with no preopened directory a guest holds no
//! descriptor to name a path with, and libc fails an `open` before any host
//! call. A hand-rolled preview-1 `path_*` call is refused and recorded.

use wasmtime::component::{Linker as ComponentLinker, Val};
use wasmtime::{Linker, Module, ValType};

/// What store data must do for a refusal to reach tarkd's audit (the host
/// state sends it over the broker channel).
pub trait Audit: Send {
    /// Records that `function` was refused under `capability`, answered `answer`.
    fn refused(
        &mut self,
        capability: &str,
        function: String,
        answer: &str,
    ) -> impl Future<Output = ()> + Send;
}

/// The preview-1 import module.
pub const P1_MODULE: &str = "wasi_snapshot_preview1";

/// `wasi:sockets` as `wasmtime-wasi` 48 links it.
const SOCKETS: &str = "0.2.12";

/// The WASI 0.2 functions that would open a socket or look a name up: each is
/// answered `error-code::access-denied`. `(interface, function)`.
pub const P2_REFUSED: &[(&str, &str)] = &[
    ("wasi:sockets/tcp-create-socket", "create-tcp-socket"),
    ("wasi:sockets/udp-create-socket", "create-udp-socket"),
    ("wasi:sockets/ip-name-lookup", "resolve-addresses"),
];

/// The preview-1 errno answered for a refused function: `EBADF`, as for any
/// descriptor the guest does not hold (there are no preopens and no sockets).
pub const P1_BADF: i32 = 8;

/// Which preview-1 functions are refused and audited, and under which
/// capability: paths and sockets. Everything else is `wasmtime-wasi`'s.
pub fn p1_capability(name: &str) -> Option<&'static str> {
    if name.starts_with("path_") {
        Some("wasi:filesystem")
    } else if name.starts_with("sock_") {
        Some("wasi:sockets")
    } else {
        None
    }
}

/// Shadows the refused WASI 0.2 functions in a component linker that already
/// has `wasmtime-wasi`'s.
pub fn add_p2<T: Audit + 'static>(linker: &mut ComponentLinker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for &(interface, function) in P2_REFUSED {
        let mut inst = linker.instance(&format!("{interface}@{SOCKETS}"))?;
        inst.func_new_async(function, move |mut store, _ty, params, results| {
            Box::new(async move {
                // A borrowed handle (the network of `resolve-addresses`) must be
                // given back before the call returns.
                for p in params {
                    if let Val::Resource(r) = p {
                        r.resource_drop_async(&mut store).await?;
                    }
                }
                store
                    .data_mut()
                    .refused(
                        "wasi:sockets",
                        format!("{interface}#{function}"),
                        "access-denied",
                    )
                    .await;
                if let Some(r) = results.first_mut() {
                    *r = Val::Result(Err(Some(Box::new(Val::Enum("access-denied".into())))));
                }
                Ok(())
            })
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Shadows the refused preview-1 functions `module` imports in a linker that
/// already has `wasmtime-wasi`'s preview 1.
pub fn add_p1<T: Audit + 'static>(linker: &mut Linker<T>, module: &Module) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for import in module.imports().filter(|i| i.module() == P1_MODULE) {
        let name = import.name().to_owned();
        let Some(capability) = p1_capability(&name) else {
            continue;
        };
        let Some(ty) = import.ty().func().cloned() else {
            continue; // not a function: instantiation reports it
        };
        if !(ty.results().len() == 1 && matches!(ty.results().next(), Some(ValType::I32))) {
            wasmtime::bail!("{P1_MODULE}::{name} has a signature preview 1 does not define");
        }
        let function = format!("{P1_MODULE}#{name}");
        linker.func_new_async(P1_MODULE, &name, ty, move |mut caller, _params, results| {
            let function = function.clone();
            Box::new(async move {
                caller
                    .data_mut()
                    .refused(capability, function, "EBADF")
                    .await;
                results[0] = wasmtime::Val::I32(P1_BADF);
                Ok(())
            })
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview1_refusals_by_name() {
        for (name, want) in [
            ("path_open", Some("wasi:filesystem")),
            ("path_unlink_file", Some("wasi:filesystem")),
            ("sock_accept", Some("wasi:sockets")),
            ("sock_recv", Some("wasi:sockets")),
            ("fd_write", None),
            ("fd_prestat_get", None),
            ("environ_get", None),
            ("proc_exit", None),
        ] {
            assert_eq!(p1_capability(name), want, "{name}");
        }
    }
}
