//! A guest's stdout and stderr: bytes collected while a call runs and sent
//! to the plugin's log, one record per line, when it ends (the runner drains
//! them), so they take the same path as the guest's own `log` calls: tarkd
//! rate-limits, caps, escapes and attributes them. A call writes at most
//! [`CAP`] bytes per stream; past that, writes still succeed (a guest must not
//! fail or spin because its log is full) and the excess is counted and said.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Most bytes of one stream kept per call.
pub const CAP: usize = 64 << 10;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

/// One stream's buffer, shared by every handle the guest opens on it.
#[derive(Clone, Default)]
pub struct LogPipe(Arc<Mutex<Buffer>>);

impl LogPipe {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, data: &[u8]) {
        let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = CAP.saturating_sub(b.bytes.len());
        let take = data.len().min(room);
        b.bytes.extend_from_slice(&data[..take]);
        b.dropped += data.len() - take;
    }

    /// The lines written since the last drain (blank ones left out), and a
    /// last line saying how much was dropped, if any was.
    pub fn drain(&self) -> Vec<String> {
        let (bytes, dropped) = {
            let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            (std::mem::take(&mut b.bytes), std::mem::take(&mut b.dropped))
        };
        let mut lines: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        if dropped > 0 {
            lines.push(format!(
                "[{dropped} bytes of output dropped: over {CAP} bytes in one call]"
            ));
        }
        lines
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what is over the cap is dropped, not refused.
        Ok(CAP)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_capped() {
        let p = LogPipe::new();
        p.push(b"one\n\ntwo\r\nthree");
        assert_eq!(p.drain(), ["one", "two", "three"]);
        assert!(p.drain().is_empty());
        p.push(&vec![b'x'; CAP + 10]);
        let lines = p.drain();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), CAP);
        assert!(lines[1].contains("10 bytes of output dropped"), "{lines:?}");
        // Not valid UTF-8: replaced, never refused.
        p.push(b"a\xffb\n");
        assert_eq!(p.drain(), ["a\u{fffd}b"]);
    }
}
