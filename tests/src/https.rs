//! An HTTPS server on loopback that counts what outbound connection reuse is
//! about: TCP connections accepted and still open, TLS handshakes (full or
//! resumed), and the HTTP version each request came in (its answer's body).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::HandshakeKind;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::tls::Ca;

/// What the server has seen so far.
#[derive(Debug, Default)]
pub struct Counts {
    pub connections: AtomicUsize,
    pub open: AtomicUsize,
    pub full: AtomicUsize,
    pub resumed: AtomicUsize,
}

/// (connections, full handshakes, resumed handshakes) as numbers.
pub type Seen = (usize, usize, usize);

/// A running HTTPS server for `localhost`.
pub struct HttpsServer {
    pub port: u16,
    counts: Arc<Counts>,
}

impl HttpsServer {
    /// Serves with a certificate for localhost signed by `ca`, offering
    /// `alpn` (h2, http/1.1, or both); every request is answered 200 with its
    /// HTTP version ("HTTP/2.0", "HTTP/1.1").
    pub fn start(ca: &Ca, alpn: &[&str]) -> anyhow::Result<Self> {
        let (cert, key) = ca.leaf("localhost", false)?;
        let certs =
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let counts = Arc::new(Counts::default());
        let counted = Arc::clone(&counts);
        let port = crate::servers::serve(move |stream| {
            let (acceptor, counts) = (acceptor.clone(), Arc::clone(&counted));
            async move {
                counts.connections.fetch_add(1, Ordering::SeqCst);
                counts.open.fetch_add(1, Ordering::SeqCst);
                connection(acceptor, &counts, stream).await;
                counts.open.fetch_sub(1, Ordering::SeqCst);
            }
        })?;
        Ok(Self { port, counts })
    }

    /// (connections, full handshakes, resumed handshakes) so far.
    pub fn seen(&self) -> Seen {
        let c = &self.counts;
        (
            c.connections.load(Ordering::SeqCst),
            c.full.load(Ordering::SeqCst),
            c.resumed.load(Ordering::SeqCst),
        )
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }
}

async fn connection(acceptor: TlsAcceptor, counts: &Counts, stream: TcpStream) {
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let (_, session) = tls.get_ref();
    match session.handshake_kind() {
        Some(HandshakeKind::Resumed) => counts.resumed.fetch_add(1, Ordering::SeqCst),
        _ => counts.full.fetch_add(1, Ordering::SeqCst),
    };
    let h2 = session.alpn_protocol() == Some(b"h2");
    let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
        let version = format!("{:?}", req.version());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(version))))
    });
    let io = TokioIo::new(tls);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}
