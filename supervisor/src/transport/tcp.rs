//! The TCP listener's door (`api.tcp`, mutual TLS). Who a peer is shows only
//! after the TLS handshake (its certificate), so here connections are
//! counted in all and per peer address: past `api.max_connections` or
//! `api.max_connections_per_uid` (per address, here) a connection is closed
//! before its handshake. The handshake itself is bounded in time
//! (`ServerTlsConfig::timeout`), and accepting backs off on a shortage of
//! descriptors as the socket's door does.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::edge::{Backoff, Limits};
use crate::metrics::{METRICS, Why};

#[derive(Debug, Default)]
struct Counts {
    all: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One TCP connection, counted until it is dropped.
pub struct TcpConn {
    stream: TcpStream,
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.all = c.all.saturating_sub(1);
        if let Some(n) = c.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
    }
}

impl Connected for TcpConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Accepted TCP connections, as tonic's `incoming` stream.
pub struct TcpEdge {
    listener: TcpListener,
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
    backoff: Backoff,
}

impl TcpEdge {
    pub fn new(listener: TcpListener, limits: Limits) -> Self {
        Self {
            listener,
            limits,
            counts: Arc::default(),
            backoff: Backoff::default(),
        }
    }

    fn door(&self, stream: TcpStream, peer: IpAddr) -> Option<TcpConn> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.by_peer.get(&peer).copied().unwrap_or(0);
        let refused = if c.all >= self.limits.max_connections {
            Some("max_connections")
        } else if mine >= self.limits.max_connections_per_uid {
            Some("max_connections_per_peer")
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(c);
            METRICS
                .api_connections_refused
                .get_or_create(&Why {
                    reason: reason.to_owned(),
                })
                .inc();
            tracing::debug!(%peer, "TCP connection refused: api.{reason}");
            return None;
        }
        c.all += 1;
        *c.by_peer.entry(peer).or_default() += 1;
        Some(TcpConn {
            stream,
            counts: Arc::clone(&self.counts),
            peer,
        })
    }
}

impl Stream for TcpEdge {
    type Item = io::Result<TcpConn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.backoff.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        loop {
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, addr))) => {
                    this.backoff.reset();
                    let _ = stream.set_nodelay(true);
                    if let Some(conn) = this.door(stream, addr.ip()) {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                Poll::Ready(Err(e)) => {
                    if this.backoff.failed(&e, cx, "TCP") {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl AsyncRead for TcpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpConn {
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
