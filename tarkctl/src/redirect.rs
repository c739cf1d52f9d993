//! The browser step of a PKCE sign-in: listen on the manifest's loopback
//! `redirect_uri` until the provider sends the browser back with `code` and
//! `state` (or an `error`), answer the browser, and hand both to tarkd.
//!
//! Only the redirect's path is answered; anything else that reaches the port
//! gets a 404 and the wait goes on. Nothing here sees a token: the code is
//! exchanged by tarkd.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The longest request line and headers read from the browser.
const MAX_REQUEST: usize = 16 << 10;

/// Where to listen for `redirect_uri`: its loopback address and port, and path.
pub fn listen_address(redirect_uri: &str) -> anyhow::Result<(std::net::SocketAddr, String)> {
    let url =
        url::Url::parse(redirect_uri).with_context(|| format!("redirect_uri {redirect_uri:?}"))?;
    let ip: std::net::IpAddr = match url.host() {
        Some(url::Host::Domain("localhost")) => [127, 0, 0, 1].into(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => ip.into(),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => ip.into(),
        _ => bail!("redirect_uri {redirect_uri:?} is not a loopback address tarkctl can listen on"),
    };
    if url.scheme() != "http" {
        bail!("redirect_uri {redirect_uri:?} is not plain http on loopback");
    }
    let port = url.port_or_known_default().unwrap_or(80);
    Ok(((ip, port).into(), url.path().to_owned()))
}

/// What the redirect brought back.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    Code { code: String, state: String },
    Error(String),
}

/// The redirect in a request line (`GET /callback?code=..&state=.. HTTP/1.1`),
/// or `None` for a request to another path.
pub fn parse(request_line: &str, path: &str) -> Option<Redirect> {
    let target = request_line.strip_prefix("GET ")?.split(' ').next()?;
    let url = url::Url::parse(&format!("http://localhost{target}")).ok()?;
    if url.path() != path {
        return None;
    }
    let get = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(e) = get("error") {
        let description = get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Some(Redirect::Error(format!("{e}{description}")));
    }
    Some(Redirect::Code {
        code: get("code")?,
        state: get("state").unwrap_or_default(),
    })
}

/// Waits (at most `wait`) for the browser's redirect to `redirect_uri`.
pub async fn wait_for(
    listener: TcpListener,
    path: &str,
    wait: Duration,
) -> anyhow::Result<Redirect> {
    let accept = async {
        loop {
            let (mut stream, _) = listener.accept().await?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 2048];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buf);
            let line = text.lines().next().unwrap_or("");
            let found = parse(line, path);
            let (status, body) = match &found {
                Some(Redirect::Code { .. }) => (
                    "200 OK",
                    "Signed in: you can close this window and return to the terminal.",
                ),
                Some(Redirect::Error(_)) => {
                    ("200 OK", "The sign-in was refused: see the terminal.")
                }
                None => ("404 Not Found", "Not the sign-in redirect."),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
            if let Some(r) = found {
                return anyhow::Ok(r);
            }
        }
    };
    tokio::time::timeout(wait, accept)
        .await
        .map_err(|_| anyhow::anyhow!("no redirect came back within {} s", wait.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_table() {
        let code = |c: &str, s: &str| {
            Some(Redirect::Code {
                code: c.into(),
                state: s.into(),
            })
        };
        for (line, want) in [
            (
                "GET /callback?code=abc&state=xyz HTTP/1.1",
                code("abc", "xyz"),
            ),
            (
                "GET /callback?state=s&code=a%2Bb HTTP/1.1",
                code("a+b", "s"),
            ),
            ("GET /callback?code=abc HTTP/1.1", code("abc", "")),
            (
                "GET /callback?error=access_denied&error_description=no+thanks HTTP/1.1",
                Some(Redirect::Error("access_denied: no thanks".into())),
            ),
            ("GET /callback HTTP/1.1", None),
            ("GET /favicon.ico HTTP/1.1", None),
            ("GET /callbackx?code=a HTTP/1.1", None),
            ("POST /callback?code=a HTTP/1.1", None),
            ("", None),
        ] {
            assert_eq!(parse(line, "/callback"), want, "{line}");
        }
    }

    #[test]
    fn only_loopback_is_listened_on() {
        for (uri, ok) in [
            ("http://localhost:8888/callback", true),
            ("http://127.0.0.1:9/cb", true),
            ("http://[::1]:9/cb", true),
            ("https://localhost:8888/callback", false),
            ("http://example.com:8888/callback", false),
            ("http://0.0.0.0:8888/callback", false),
        ] {
            assert_eq!(listen_address(uri).is_ok(), ok, "{uri}");
        }
    }
}
