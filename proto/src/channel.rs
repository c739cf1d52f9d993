//! gRPC over an already-connected Unix stream, as tarkd and its workers use it
//! (socketpairs made before the worker starts; no path, no port).

use std::io;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};

/// Largest message either side of the worker channel accepts: a plugin's wasm or
/// compiled artifact travels in one `Load`.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A tonic channel over `stream`. The stream is used once: if the connection
/// drops, calls fail instead of reconnecting, because the peer is gone.
pub async fn client_over(stream: UnixStream) -> Result<Channel, tonic::transport::Error> {
    let slot = Arc::new(Mutex::new(Some(stream)));
    Endpoint::from_static("http://tark.channel")
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

/// Makes a tokio stream of a std one.
pub fn adopt(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

/// The `incoming` stream for a tonic server that serves exactly one connection.
///
/// It yields the stream and then stays pending: a tonic server whose incoming
/// stream ends starts shutting down, which would end the one connection it has.
/// The server must therefore be stopped by its shutdown future.
pub fn one_connection(stream: UnixStream) -> impl Stream<Item = io::Result<UnixStream>> {
    tokio_stream::once(Ok(stream)).chain(tokio_stream::pending())
}
