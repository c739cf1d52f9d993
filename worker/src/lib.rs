//! tark-worker: hosts one plugin for tarkd inside a process that holds no authority.
//!
//! The worker is started by tarkd with two socketpair ends (fd 3: tarkd's calls to
//! the worker; fd 4: the worker's broker calls to tarkd), a cleared environment and
//! nothing else. It compiles or loads the plugin, locks itself down
//! ([`sandbox::lockdown`]) and then serves calls, turning every host import the
//! plugin makes into a broker RPC.

pub mod abi;
pub mod adapt;
pub mod channel;
pub mod engine;
#[cfg(any(test, feature = "escape-hatch"))]
pub mod escape;
pub mod jail;
pub mod landlock_abi;
pub mod limits;
pub mod pidns;
pub mod priority;
pub mod sandbox;
pub mod seccomp;
pub mod service;
pub mod streams;
pub mod watchdog;
