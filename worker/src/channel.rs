//! The worker's ends of the two socketpairs tarkd hands it.
//!
//! fd 3 carries tarkd's calls to the worker (`Worker` service); fd 4 carries the
//! worker's calls to tarkd (`Broker` service). The worker never opens a socket or a
//! path of its own: both ends exist before it starts.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::net::UnixStream;

/// The worker's end of the control channel (tarkd → worker).
pub const CONTROL_FD: RawFd = 3;
/// The worker's end of the broker channel (worker → tarkd).
pub const BROKER_FD: RawFd = 4;

/// Takes ownership of an inherited fd and makes it a tokio stream.
///
/// # Safety
/// `fd` must be an open socket that nothing else in the process owns.
pub unsafe fn adopt(fd: RawFd) -> io::Result<UnixStream> {
    // SAFETY: the caller guarantees exclusive ownership of an open fd.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    tark_proto::channel::adopt(std::os::unix::net::UnixStream::from(owned))
}
