//! A tau process extension's hook (`runtime: "process"`), run as tau runs it:
//! its entrypoint with tau's request on standard input (one line of JSON) and
//! its answer, one JSON object, on standard output, within the extension's
//! `timeout_ms` capped by tarkd's policy. It runs in the command tools' jail
//! ([`super`]) behind the same gate: the shell capability (tau's
//! `run-commands`) declared, approved and allowed, every run audited. In the
//! jail the extension's own folder is readable and executable, and nothing of
//! the host's but the system's programs. An installed copy keeps no
//! executable bit, so a script runs under the interpreter its `#!` line names
//! and anything else under `/bin/sh`, tau's own fallback.

use std::path::Path;

use tark_proto::worker::v1 as wpb;
use tonic::Code;

use super::{ADDRESS_SPACE_BYTES, Jail, MAX_STDERR_BYTES, execute};
use crate::plugins::registry::Plugin;
use crate::reasons::Reason;
use crate::workers::CallError;

/// The longest `#!` line read.
const MAX_SHEBANG: usize = 256;

/// Runs `program` (relative to the plugin's folder) for `hook` with `request`
/// on its stdin; its stdout. A refusal, the deadline, a jail that could not
/// start or a process that failed are errors.
pub async fn run(
    jail: Jail,
    tenant: &str,
    plugin: &Plugin,
    program: &str,
    hook: &str,
    request: &str,
) -> Result<String, CallError> {
    let id = &plugin.id;
    jail.shell_gate(tenant, plugin, hook, &format!("hook {hook} runs a process"))?;
    let dir = plugin.dir.to_string_lossy().into_owned();
    let path = plugin.dir.join(program);
    let head = read_head(&path);
    let (command, args) = argv(&head, &path.to_string_lossy());
    jail.audit(
        tenant,
        id,
        "allow",
        &format!("{hook}: {command} {}", args.join(" ")),
        "",
    );
    let mut stdin = request.as_bytes().to_vec();
    stdin.push(b'\n');
    let spec = wpb::CommandSpec {
        program: command,
        args,
        cwd: dir.clone(),
        read: Vec::new(),
        cpu_seconds: jail.deadline.as_secs() + 1,
        address_space_bytes: ADDRESS_SPACE_BYTES,
        sockets: Vec::new(),
        landlock_min_abi: jail.landlock_min_abi,
        stdin,
        exec: vec![dir],
    };
    let what = format!("hook {hook}");
    let done = execute(&jail, &format!("{tenant}/{id}/{hook}"), spec)
        .await
        .map_err(|e| e.at(id, &what, jail.deadline))?;
    let failed = |message: String| {
        CallError::new(Code::Unknown, format!("plugin {id}: {what}: {message}"))
            .because(Reason::PluginError, id)
    };
    if done.over {
        return Err(failed(format!(
            "the process's output is over the limit of {} bytes; it was stopped",
            jail.max_output
        )));
    }
    if !done.status.success() {
        let stderr =
            String::from_utf8_lossy(&done.stderr[..done.stderr.len().min(MAX_STDERR_BYTES)])
                .trim()
                .to_owned();
        return Err(failed(format!(
            "the extension process exited with {}{}",
            done.status,
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )));
    }
    String::from_utf8(done.stdout)
        .map_err(|_| failed("the extension process's output is not UTF-8".to_owned()))
}

/// The start of the program file, enough for its `#!` line; empty when it
/// cannot be read (the jail then reports why it cannot run).
fn read_head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_SHEBANG as u64).read_to_end(&mut head);
    }
    head
}

/// The program and arguments that run the file at `path` whose first bytes
/// are `head`: the `#!` interpreter (and its one optional argument, as Linux
/// passes it), a binary itself, or `/bin/sh` (tau's fallback).
fn argv(head: &[u8], path: &str) -> (String, Vec<String>) {
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        if let Some((interpreter, arg)) = line
            .split_once([' ', '\t'])
            .map(|(i, a)| (i, a.trim()))
            .or(Some((line, "")).filter(|(i, _)| !i.is_empty()))
        {
            let mut args: Vec<String> = Vec::new();
            if !arg.is_empty() {
                args.push(arg.to_owned());
            }
            args.push(path.to_owned());
            return (interpreter.to_owned(), args);
        }
    }
    if head.starts_with(b"\x7fELF") {
        return (path.to_owned(), Vec::new());
    }
    ("/bin/sh".to_owned(), vec![path.to_owned()])
}

#[cfg(test)]
mod tests {
    use super::argv;

    #[test]
    fn how_a_program_is_run() {
        let p = "/x/run.sh";
        let cases: [(&[u8], &str, &[&str]); 8] = [
            (b"#!/bin/sh\nread x\n", "/bin/sh", &[p]),
            (
                b"#!/usr/bin/env bash\nset -e\n",
                "/usr/bin/env",
                &["bash", p],
            ),
            (b"#! /bin/bash -eu \n", "/bin/bash", &["-eu", p]),
            (
                b"#!/usr/bin/env python3 -u -B\n",
                "/usr/bin/env",
                &["python3 -u -B", p],
            ),
            (b"#!\n", "/bin/sh", &[p]),
            (b"\x7fELF\x02\x01", p, &[]),
            (b"echo hi\n", "/bin/sh", &[p]),
            (b"", "/bin/sh", &[p]),
        ];
        for (head, program, args) in cases {
            let (got, got_args) = argv(head, p);
            assert_eq!(
                (
                    got.as_str(),
                    got_args.iter().map(String::as_str).collect::<Vec<_>>()
                ),
                (program, args.to_vec()),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
