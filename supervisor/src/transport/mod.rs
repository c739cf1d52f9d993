//! What tarkd reads off the agent API's Unix socket before gRPC does.
//!
//! [`edge`] accepts connections: it knows the peer from its credentials
//! before reading a byte, refuses one that is no principal or over the
//! connection limits, and hands the rest on as [`UnixConn`]s. A connection
//! is the socket, with the client's bytes passed through
//! [`headers::Scanner`] so that any gRPC client's default `:authority` is
//! accepted ([`hpack`], [`huffman`]); bytes that need no change are read
//! straight into hyper's buffer, only header frames are held back. A
//! connection that has not sent its first request within
//! `api.first_request_ms` is closed. [`tcp`] counts the TCP listener's
//! connections the same way.

pub mod edge;
pub mod headers;
pub mod hpack;
pub mod huffman;
pub mod tcp;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

/// One accepted agent API connection.
pub struct UnixConn {
    stream: UnixStream,
    scanner: headers::Scanner,
    /// Client bytes read but not yet scanned (an incomplete frame).
    pending: Vec<u8>,
    /// Scanned bytes the server has yet to read, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// Until its first request has been read: when it is given up.
    first_request: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
    /// Its place under the connection limits, given back when it closes.
    _admitted: Option<edge::Admitted>,
}

impl From<UnixStream> for UnixConn {
    fn from(stream: UnixStream) -> Self {
        Self {
            stream,
            scanner: headers::Scanner::default(),
            pending: Vec::new(),
            out: Vec::new(),
            sent: 0,
            first_request: None,
            _admitted: None,
        }
    }
}

impl UnixConn {
    /// An admitted connection that must send its first request within
    /// `first_request`.
    pub fn admitted(stream: UnixStream, admitted: edge::Admitted, first_request: Duration) -> Self {
        Self {
            first_request: Some((Box::pin(tokio::time::sleep(first_request)), first_request)),
            _admitted: Some(admitted),
            ..Self::from(stream)
        }
    }
}

impl Connected for UnixConn {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl UnixConn {
    /// Moves queued output into `buf`; true if it wrote anything.
    fn drain_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let queued = &self.out[self.sent..];
        let n = queued.len().min(buf.remaining());
        buf.put_slice(&queued[..n]);
        self.sent += n;
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        n > 0
    }

    /// An error once the first request is overdue.
    fn overdue(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.scanner.first_request_seen() {
            self.first_request = None;
        }
        if let Some((timer, after)) = self.first_request.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no request within {} ms of connecting (api.first_request_ms)",
                    after.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

impl AsyncRead for UnixConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.drain_out(buf) {
                return Poll::Ready(Ok(()));
            }
            this.overdue(cx)?;
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
            let end = buf.filled().len();
            if end == start {
                // End of stream: an incomplete frame left in `pending` is
                // one h2 would not have parsed either.
                return Poll::Ready(Ok(()));
            }
            let read = &buf.filled()[start..end];
            let kept = if this.pending.is_empty() {
                this.scanner.passthrough(read)
            } else {
                0
            };
            if start + kept == end {
                return Poll::Ready(Ok(()));
            }
            this.pending.extend_from_slice(&read[kept..]);
            buf.set_filled(start + kept);
            this.scanner.process(&mut this.pending, &mut this.out)?;
            if this.pending.is_empty() && this.pending.capacity() > headers::MAX_FRAME {
                // A large frame's buffer is not kept for the connection's life.
                this.pending = Vec::new();
            }
            if kept > 0 {
                this.drain_out(buf);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for UnixConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
