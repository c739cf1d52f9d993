//! The scrape endpoint: `GET /metrics` over HTTP/1.1 on `[metrics] listen`, a
//! Unix socket (`unix:/run/tarkd/metrics.sock`, mode 0660: tarkd's user and
//! group) or TCP (`127.0.0.1:9464`), where a scrape must carry the bearer
//! token of `metrics.bearer_token_file` unless the operator chose
//! `tcp_unauthenticated` (on loopback every local user could read which
//! plugins run, how often they fail, what they are refused). It serves
//! nothing else and reads no request body.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A bound scrape listener.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

/// Where `[metrics] listen` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(PathBuf),
}

/// Parses `listen`: `unix:PATH` (absolute) or a TCP `host:port`.
pub fn parse(listen: &str) -> Result<Address, String> {
    match listen.strip_prefix("unix:") {
        Some(path) if path.starts_with('/') => Ok(Address::Unix(PathBuf::from(path))),
        Some(_) => Err(format!(
            "metrics.listen {listen:?}: a unix: path must be absolute"
        )),
        None if listen.parse::<std::net::SocketAddr>().is_ok() => Ok(Address::Tcp(listen.into())),
        None => Err(format!(
            "metrics.listen {listen:?}: expected host:port (an IP address) or unix:/path"
        )),
    }
}

/// Binds the listener (a stale socket file is replaced).
pub async fn bind(address: &Address) -> std::io::Result<Listener> {
    match address {
        Address::Tcp(addr) => Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?)),
        Address::Unix(path) => {
            use std::os::unix::fs::PermissionsExt;
            if std::os::unix::net::UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            Ok(Listener::Unix(listener, path.clone()))
        }
    }
}

/// Reads the bearer token (its first line) a TCP scrape must carry.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("metrics.bearer_token_file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.len() < 16 {
        return Err(format!(
            "metrics.bearer_token_file {}: the token must be at least 16 characters",
            path.display()
        ));
    }
    Ok(token)
}

/// Serves scrapes until the process ends; `render` gives the current text.
/// A TCP scrape must carry `token` when there is one (Unix sockets are
/// guarded by their mode).
pub async fn serve(
    listener: Listener,
    token: Option<String>,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) {
    let token = Arc::new(token);
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics listener: {e}");
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = Arc::clone(&render);
        let needs = match conn {
            Conn::Tcp(_) => Arc::clone(&token),
            Conn::Unix(_) => Arc::new(None),
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let render = Arc::clone(&render);
                let needs = Arc::clone(&needs);
                async move {
                    Ok::<_, Infallible>(if authorized(&req, needs.as_deref()) {
                        answer(&req, &*render)
                    } else {
                        unauthorized()
                    })
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let served = match conn {
                Conn::Tcp(s) => builder.serve_connection(TokioIo::new(s), service).await,
                Conn::Unix(s) => builder.serve_connection(TokioIo::new(s), service).await,
            };
            if let Err(e) = served {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Whether a request carries the token (in constant time), when one is needed.
fn authorized<B>(req: &http::Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from_static(
        b"a bearer token is required (metrics.bearer_token_file)\n",
    )));
    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
    response
}

fn answer<B>(req: &http::Request<B>, render: &dyn Fn() -> String) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        ),
        (&http::Method::GET, _) => (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "GET /metrics\n".into(),
        ),
        _ => (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_scrape_needs_the_token() {
        let req = |auth: Option<&str>| {
            let mut b = http::Request::builder().uri("/metrics");
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b.body(()).unwrap_or_default()
        };
        let token = Some("0123456789abcdef");
        let cases = [
            (None, None, true),
            (Some("Bearer x"), None, true),
            (None, token, false),
            (Some("Bearer 0123456789abcdef"), token, true),
            (Some("Bearer 0123456789abcdeF"), token, false),
            (Some("Bearer 0123456789abcde"), token, false),
            (Some("bearer 0123456789abcdef"), token, false),
            (Some("0123456789abcdef"), token, false),
        ];
        for (auth, token, ok) in cases {
            assert_eq!(authorized(&req(auth), token), ok, "{auth:?} {token:?}");
        }
    }

    #[test]
    fn listen_addresses() {
        let table: [(&str, Option<Address>); 7] = [
            (
                "127.0.0.1:9464",
                Some(Address::Tcp("127.0.0.1:9464".into())),
            ),
            ("[::1]:9464", Some(Address::Tcp("[::1]:9464".into()))),
            (
                "unix:/run/tarkd/metrics.sock",
                Some(Address::Unix("/run/tarkd/metrics.sock".into())),
            ),
            ("unix:metrics.sock", None),
            ("localhost:9464", None),
            ("9464", None),
            ("", None),
        ];
        for (listen, want) in table {
            assert_eq!(parse(listen).ok(), want, "{listen:?}");
        }
    }
}
