//! WASI for plugins, from `wasmtime-wasi`, deny by default and the same for
//! both ABIs: WASI 0.2 for components (what `cargo component` and
//! `wasm32-wasip2` builds import, and what the preview-1 adapter turns a
//! `wasm32-wasip1` module into), preview 1 for core modules.
//!
//! What a guest gets ([`Setup::builder`]): no preopened directory, no argument,
//! an empty stdin, stdout and stderr into the plugin's log ([`output`]), the
//! environment variables its `env` grant allows (tarkd looks them up and checks
//! each, `EnvList`; never the worker's environment), clocks and randomness.
//! Sockets and name lookups are off; each attempt is answered with WASI's
//! `access-denied` (preview 1: `EACCES`/`EBADF`) and recorded by tarkd as a
//! denial ([`refuse`]). `exit` ends the call, not the worker.

pub mod output;
pub mod refuse;

use std::sync::Arc;

use tark_proto::worker::v1 as pb;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use output::LogPipe;

/// The WASI 0.2 interfaces a component may import (any version 0.2.x): what
/// tarkd links. Anything else under `wasi:` is refused at load, by name.
pub const P2_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Whether a component import is a WASI interface, and if so whether tarkd
/// provides it: `None` for a non-WASI import, `Some(false)` for one it does not
/// (`wasi:http/...`, `wasi:keyvalue/...`, a 0.3 interface).
pub fn p2_provides(import: &str) -> Option<bool> {
    if !import.starts_with("wasi:") {
        return None;
    }
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    let v02 = version.starts_with("0.2.");
    Some(v02 && P2_INTERFACES.contains(&name))
}

/// Whether a component imports WASI at all, or why it cannot be hosted: the
/// WASI interfaces among `imports` that tarkd does not provide, by name.
pub fn component_imports<'a>(imports: impl Iterator<Item = &'a str>) -> Result<bool, String> {
    let wasi: Vec<&str> = imports.filter(|n| p2_provides(n).is_some()).collect();
    let missing: Vec<&str> = wasi
        .iter()
        .copied()
        .filter(|n| p2_provides(n) == Some(false))
        .collect();
    if missing.is_empty() {
        Ok(!wasi.is_empty())
    } else {
        Err(format!(
            "the component imports {}, which tarkd does not provide to plugins (it provides the WASI 0.2 interfaces std uses: wasi:cli, wasi:clocks, wasi:io, wasi:random, and wasi:filesystem and wasi:sockets with nothing in them)",
            missing.join(", ")
        ))
    }
}

/// The WASI a plugin's instances start with: its granted environment and the
/// pipes into its log. Cheap to clone; each instance gets a fresh context.
#[derive(Clone)]
pub struct Setup {
    env: Arc<[(String, String)]>,
    pub stdout: LogPipe,
    pub stderr: LogPipe,
}

impl Setup {
    pub fn new(env: Vec<pb::EnvVar>) -> Self {
        Self {
            env: env.into_iter().map(|v| (v.name, v.value)).collect(),
            stdout: LogPipe::new(),
            stderr: LogPipe::new(),
        }
    }

    /// The deny-by-default context. Everything not set here is
    /// `WasiCtxBuilder`'s default, which grants nothing: no preopens, no
    /// arguments, no inherited environment or stdio.
    pub fn builder(&self) -> WasiCtxBuilder {
        let mut b = WasiCtxBuilder::new();
        b.stdin(tokio::io::empty())
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .envs(&self.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        b
    }

    /// A context for a component's store.
    pub fn component(&self) -> WasiCtx {
        self.builder().build()
    }

    /// A context for a core module's store.
    pub fn p1(&self) -> wasmtime_wasi::p1::WasiP1Ctx {
        self.builder().build_p1()
    }
}

/// The message of a guest's `exit`, if `err` is one: the call ends with it.
pub fn exit_message(err: &wasmtime::Error) -> Option<String> {
    err.downcast_ref::<wasmtime_wasi::I32Exit>()
        .map(|e| format!("the plugin called exit({}), which ends the call", e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_wasi_imports_are_provided() {
        for (import, want) in [
            ("tark:plugin/storage@0.1.0", None),
            ("wasi:cli/environment@0.2.0", Some(true)),
            ("wasi:cli/stdout@0.2.6", Some(true)),
            ("wasi:io/streams@0.2.12", Some(true)),
            ("wasi:filesystem/preopens@0.2.3", Some(true)),
            ("wasi:sockets/tcp@0.2.0", Some(true)),
            ("wasi:http/outgoing-handler@0.2.0", Some(false)),
            ("wasi:keyvalue/store@0.2.0-draft", Some(false)),
            ("wasi:cli/environment@0.3.0", Some(false)),
            ("wasi:cli/environment", Some(false)),
            ("wasi:cli/run@0.2.0", Some(false)),
        ] {
            assert_eq!(p2_provides(import), want, "{import}");
        }
    }

    #[test]
    fn component_imports_are_judged_together() {
        let tark = "tark:plugin/storage@0.1.0";
        let out = "wasi:cli/stdout@0.2.0";
        let http = "wasi:http/outgoing-handler@0.2.0";
        assert_eq!(component_imports([tark].into_iter()), Ok(false));
        assert_eq!(component_imports([tark, out].into_iter()), Ok(true));
        let refused = component_imports([tark, out, http].into_iter());
        assert!(refused.is_err_and(|e| e.contains(http) && !e.contains(out)));
    }
}
