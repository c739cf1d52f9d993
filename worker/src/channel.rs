//! gRPC over the two socketpairs tarkd hands the worker.
//!
//! fd 3 carries tarkd's calls to the worker (`Worker` service); fd 4 carries the
//! worker's calls to tarkd (`Broker` service). The worker never opens a socket or a
//! path of its own: both ends exist before it starts.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

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
    let std = std::os::unix::net::UnixStream::from(owned);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

/// A tonic channel over an already-connected stream. The stream can be used once:
/// if the connection drops, the channel fails instead of reconnecting, because
/// there is nothing to reconnect to.
pub async fn client_over(stream: UnixStream) -> Result<Channel, tonic::transport::Error> {
    let slot = Arc::new(Mutex::new(Some(stream)));
    Endpoint::from_static("http://tarkd.channel")
        .connect_with_connector(tower::service_fn(move |_| {
            let taken = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                taken
                    .map(TokioIo::new)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "channel closed"))
            }
        }))
        .await
}
