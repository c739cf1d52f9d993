//! How a worker ended, told the way an operator wants to read it: the signal or
//! status, and the system call seccomp stopped when a worker died by SIGSYS (the
//! worker names it on stderr, and tarkd believes it only if the death matches).

use std::process::ExitStatus;

/// Lines of a worker's stderr tarkd relays to its own log, per worker.
const MAX_STDERR_LINES: usize = 200;
/// Longest stderr line tarkd reads from a worker.
const MAX_STDERR_LINE: usize = 1024;
/// What a worker writes before seccomp's SIGSYS ends it (tark-worker's seccomp
/// module), followed by the system call's number.
const VIOLATION_PREFIX: &str = "tark-worker: seccomp: forbidden system call ";

/// Adds the system call seccomp stopped to a SIGSYS death's description.
pub(super) fn with_violation(reason: String, status: ExitStatus, violation: Option<i64>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), violation) {
        (Some(libc::SIGSYS), Some(nr)) => match crate::workers::syscalls::name(nr) {
            Some(name) => format!("{reason}: forbidden system call {name} ({nr})"),
            None => format!("{reason}: forbidden system call {nr}"),
        },
        _ => reason,
    }
}

/// Describes how a process ended, the way an operator wants to read it.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str())
            .unwrap_or("unknown signal");
        format!("killed by signal {sig} ({name})")
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        format!("ended: {status}")
    }
}

/// The first size of a worker's stderr reader's buffer.
const STDERR_BUFFER: usize = 256;

/// Relays a worker's stderr into tarkd's log, labelled and bounded (line length
/// and count), until the worker exits. Returns the system call the worker said
/// seccomp stopped, if it said so (it is only believed if it then died by SIGSYS).
pub(super) async fn relay_stderr(
    plugin: String,
    pid: u32,
    stderr: tokio::process::ChildStderr,
) -> Option<i64> {
    use tokio_stream::StreamExt;
    let codec = tokio_util::codec::LinesCodec::new_with_max_length(MAX_STDERR_LINE);
    // A worker's stderr is nearly always silent, and there is one reader per
    // live worker: its buffer starts small (FramedRead's default is 8 KiB,
    // 8 MiB of tarkd's memory per 1,000 workers) and grows with a line.
    let mut lines = tokio_util::codec::FramedRead::with_capacity(stderr, codec, STDERR_BUFFER);
    let (mut n, mut violation) = (0, None);
    while let Some(line) = lines.next().await {
        let Ok(line) = line else {
            // An overlong line is dropped whole; anything else ends the stream.
            continue;
        };
        if let Some(nr) = line.strip_prefix(VIOLATION_PREFIX) {
            violation = nr.trim().parse().ok();
        }
        n += 1;
        if n <= MAX_STDERR_LINES {
            tracing::warn!(target: "worker", plugin = %plugin, pid, "{line}");
        }
    }
    violation
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exits_are_described_for_operators() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(31)),
            "killed by signal 31 (SIGSYS)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }

    #[test]
    fn sigsys_deaths_name_the_call_and_others_ignore_the_claim() {
        let sys = ExitStatus::from_raw(libc::SIGSYS);
        let base = || describe_exit(sys);
        assert_eq!(
            with_violation(base(), sys, Some(libc::SYS_socket)),
            format!(
                "killed by signal 31 (SIGSYS): forbidden system call socket ({})",
                libc::SYS_socket
            )
        );
        assert_eq!(
            with_violation(base(), sys, Some(99_999)),
            "killed by signal 31 (SIGSYS): forbidden system call 99999"
        );
        assert_eq!(
            with_violation(base(), sys, None),
            "killed by signal 31 (SIGSYS)"
        );
        let killed = ExitStatus::from_raw(9);
        assert_eq!(
            with_violation(describe_exit(killed), killed, Some(41)),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
