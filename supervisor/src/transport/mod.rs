//! What tarkd reads off the agent API's Unix socket before gRPC does.
//!
//! A connection is a [`UnixConn`]: the socket, with the client's bytes passed
//! through [`headers::Scanner`] so that any gRPC client's default `:authority`
//! is accepted. Bytes that need no change are read straight into hyper's
//! buffer; only header frames are held back and rewritten.

pub mod headers;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

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
}

impl From<UnixStream> for UnixConn {
    fn from(stream: UnixStream) -> Self {
        Self {
            stream,
            scanner: headers::Scanner::default(),
            pending: Vec::new(),
            out: Vec::new(),
            sent: 0,
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
