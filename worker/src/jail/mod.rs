//! tark-jail: one command of a command tool, confined.
//!
//! tarkd starts tark-worker under the name `tark-jail`, with the same outer
//! confinement as a worker (its own uid, network/mount/IPC/UTS/PID
//! namespaces, a death signal tied to tarkd), as uid 0 of its user namespace
//! (mapped to its own uid outside), and with a pipe on fd 3. Only after it
//! has checked that the process really is in a network namespace of its own
//! does tarkd write the [`CommandSpec`] into that pipe. The jail then, still
//! one thread: forks into its PID namespace (so nothing the command starts
//! outlives it), builds a root of its own holding only the system's programs,
//! the declared paths and sockets ([`root`]), drops every capability for good
//! ([`caps`]), sets rlimits, and (no new privileges from here on) restricts
//! itself with landlock to reading the system's programs ([`paths`]) and the
//! paths the plugin declared and the operator approved (no writes, no TCP, no
//! signals or abstract sockets outside), refuses Unix sockets unless the tool
//! declared one ([`sockets`]), and executes the program with a fixed
//! environment. A tau process extension's folder is also readable and
//! executable (`exec`), and tau's request is its standard input (a memory
//! file, [`stdin`]). No shell is involved: the argv is what tarkd rendered from
//! the manifest's template.
//!
//! A jail failure exits 126 with a `tark-jail:` line on stderr, which tarkd
//! shows with the tool's error.

mod caps;
pub mod paths;
pub mod root;
mod sockets;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;

use landlock::{
    Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
    path_beneath_rules,
};
use prost::Message;
use rlimit::Resource;
use tark_proto::worker::v1::CommandSpec;

/// Where the spec arrives.
const SPEC_FD: i32 = 3;
/// Largest spec the jail reads (tarkd bounds argv well below this).
const MAX_SPEC_BYTES: u64 = 1 << 20;
/// Exit status of a jail that could not run the command.
const JAIL_FAILED: u8 = 126;
/// Open files and processes (of the jail's uid) a command may have.
const MAX_OPEN_FILES: u64 = 256;
const MAX_PROCESSES: u64 = 64;

/// The jail's entry point; it returns only when the command could not start.
pub fn main() -> std::process::ExitCode {
    let err = match run() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("tark-jail: {err}");
    std::process::ExitCode::from(JAIL_FAILED)
}

fn run() -> Result<std::convert::Infallible, String> {
    crate::pidns::enter().map_err(|e| format!("entering the PID namespace: {e}"))?;
    let spec = read_spec()?;
    let stdin = stdin(&spec.stdin)?;
    for p in spec.read.iter().chain(&spec.exec).chain([&spec.cwd]) {
        if !paths::acceptable(p) {
            return Err(format!("{p:?} is not a plain absolute path"));
        }
    }
    for p in &spec.sockets {
        if !paths::acceptable(p) {
            return Err(format!("socket {p:?} is not a plain absolute path"));
        }
    }
    // The root of its own, then nothing held over the command.
    let visible: Vec<String> = spec.read.iter().chain(&spec.exec).cloned().collect();
    root::enter(&visible, &spec.sockets)?;
    caps::drop_all()?;
    limits(&spec).map_err(|e| format!("setting rlimits: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    landlock(&spec.read, &spec.exec, spec.landlock_min_abi)?;
    if spec.sockets.is_empty() {
        sockets::refuse()?;
    }
    let mut command = std::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .env("PATH", paths::PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", "/nonexistent")
        .current_dir(&spec.cwd)
        .stdin(stdin);
    Err(format!("running {:?}: {}", spec.program, command.exec()))
}

fn read_spec() -> Result<CommandSpec, String> {
    // SAFETY: tarkd puts the spec pipe on fd 3 and nothing else owns it.
    let pipe = unsafe { std::fs::File::from_raw_fd(SPEC_FD) };
    let mut bytes = Vec::new();
    pipe.take(MAX_SPEC_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the command from fd 3: {e}"))?;
    CommandSpec::decode(bytes.as_slice()).map_err(|e| format!("decoding the command: {e}"))
}

/// The command's standard input: `bytes` in a memory file of its own, read
/// from the start (a pipe would need a writer once the jail is the command),
/// or nothing.
fn stdin(bytes: &[u8]) -> Result<std::process::Stdio, String> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use std::io::{Seek, Write};
    if bytes.is_empty() {
        return Ok(std::process::Stdio::null());
    }
    let fd = memfd_create(c"tark-jail-stdin", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| format!("making the command's stdin: {e}"))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)
        .and_then(|()| file.rewind())
        .map_err(|e| format!("writing the command's stdin: {e}"))?;
    Ok(file.into())
}

fn limits(spec: &CommandSpec) -> std::io::Result<()> {
    rlimit::setrlimit(Resource::NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES)?;
    rlimit::setrlimit(Resource::NPROC, MAX_PROCESSES, MAX_PROCESSES)?;
    rlimit::setrlimit(Resource::CORE, 0, 0)?;
    // Landlock already forbids writing files; this also covers a path it
    // would let through.
    rlimit::setrlimit(Resource::FSIZE, 0, 0)?;
    rlimit::setrlimit(Resource::CPU, spec.cpu_seconds, spec.cpu_seconds)?;
    rlimit::setrlimit(
        Resource::AS,
        spec.address_space_bytes,
        spec.address_space_bytes,
    )?;
    Ok(())
}

/// Read-only beneath `read`, read and execute beneath the system folders and
/// `exec`, and nothing else; no TCP; signals and abstract sockets scoped to the jail. A
/// kernel with an older ABI enforces what it knows (the rest is covered by the
/// read-only root, the namespaces and the uid, see [`crate::landlock_abi`]);
/// below `min_abi` the command is refused rather than run with less.
fn landlock(read: &[String], exec: &[String], min_abi: u32) -> Result<(), String> {
    let abi = crate::landlock_abi::TARGET;
    let read_only = AccessFs::ReadFile | AccessFs::ReadDir;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(paths::SYSTEM, AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(paths::CONFIG, read_only)))
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                paths::SINKS,
                read_only | AccessFs::WriteFile,
            ))
        })
        .and_then(|r| r.add_rules(path_beneath_rules(read, read_only)))
        .and_then(|r| r.add_rules(path_beneath_rules(exec, AccessFs::from_read(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    crate::landlock_abi::judge(&status, min_abi)
        .map(drop)
        .map_err(|why| format!("landlock: {why}"))
}
