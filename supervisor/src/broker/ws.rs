//! WebSocket connections held for one worker's plugin (channel plugins).
//!
//! Hosts are checked exactly as for http (`ws`/`wss` as `http`/`https`), resolved
//! once, and the TCP connection is made to a checked address. Each worker may
//! hold a bounded number of connections; they live in its broker, so they all
//! close when the worker exits and its broker is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::broker::hosts::{self, Allow, Refusal, Target};
use crate::broker::http::{HttpError, header_allowed, resolve};

/// `[ws]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsLimits {
    /// Open connections per worker.
    pub max_handles: usize,
    pub max_message_kib: u64,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_handles: 8,
            max_message_kib: 1024,
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One worker's open connections.
#[derive(Default)]
pub struct Sessions {
    next: std::sync::atomic::AtomicI64,
    open: Mutex<HashMap<i64, Arc<Mutex<Socket>>>>,
}

impl Sessions {
    async fn open_count(&self) -> usize {
        self.open.lock().await.len()
    }

    /// Connects to `url` if `check` allows it, within `budget`.
    pub async fn connect(
        &self,
        url: &str,
        headers_json: &str,
        limits: &WsLimits,
        tls: Arc<rustls::ClientConfig>,
        budget: Duration,
        check: &(dyn Fn(&Target) -> Result<Allow, Refusal> + Sync),
    ) -> Result<i64, HttpError> {
        let full = || {
            HttpError::TooLarge(format!(
                "already {} WebSocket connections open (the limit per worker)",
                limits.max_handles
            ))
        };
        // Checked before connecting (no connection is made to be dropped) and
        // again when the connection is kept.
        if self.open_count().await >= limits.max_handles {
            return Err(full());
        }
        let target = hosts::parse_target(url, true)?;
        let allow = check(&target)?;
        let mut request = target
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| HttpError::Invalid(format!("{url}: {e}")))?;
        for (name, value) in parse_headers(headers_json)? {
            let header = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::Invalid(format!("{name:?} is not a header name")))?;
            let value = tungstenite::http::HeaderValue::from_str(&value)
                .map_err(|_| HttpError::Invalid(format!("header {name:?} has an invalid value")))?;
            request.headers_mut().append(header, value);
        }
        let max = usize::try_from(limits.max_message_kib * 1024).unwrap_or(usize::MAX);
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let connect = async {
            let addrs = resolve(&target, allow).await?;
            let tcp = TcpStream::connect(&addrs[..])
                .await
                .map_err(|e| HttpError::Failed(format!("{url}: {e}")))?;
            tokio_tungstenite::client_async_tls_with_config(
                request,
                tcp,
                Some(config),
                Some(Connector::Rustls(tls)),
            )
            .await
            .map_err(|e| HttpError::Failed(format!("{url}: {e}")))
        };
        let (socket, _) = tokio::time::timeout(budget, connect)
            .await
            .map_err(|_| HttpError::Timeout(format!("{url}: connect timed out")))??;
        let handle = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut open = self.open.lock().await;
        if open.len() >= limits.max_handles {
            return Err(full());
        }
        open.insert(handle, Arc::new(Mutex::new(socket)));
        Ok(handle)
    }

    async fn get(&self, handle: i64) -> Result<Arc<Mutex<Socket>>, HttpError> {
        self.open
            .lock()
            .await
            .get(&handle)
            .cloned()
            .ok_or_else(|| HttpError::Invalid(format!("no open WebSocket with handle {handle}")))
    }

    pub async fn send(&self, handle: i64, data: String, budget: Duration) -> Result<(), HttpError> {
        let socket = self.get(handle).await?;
        let mut socket = socket.lock().await;
        match tokio::time::timeout(budget, socket.send(Message::text(data))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                drop(socket);
                self.open.lock().await.remove(&handle);
                Err(HttpError::Failed(format!("WebSocket {handle}: {e}")))
            }
            Err(_) => Err(HttpError::Timeout(format!(
                "WebSocket {handle}: send timed out"
            ))),
        }
    }

    /// The next text message, `None` on timeout.
    pub async fn recv(
        &self,
        handle: i64,
        wait: Duration,
        max_bytes: usize,
    ) -> Result<Option<String>, HttpError> {
        let socket = self.get(handle).await?;
        let mut socket = socket.lock().await;
        let next = async {
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => {
                        return String::from_utf8(b.to_vec()).map_err(|_| {
                            HttpError::Invalid(format!(
                                "WebSocket {handle}: binary message is not UTF-8"
                            ))
                        });
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(HttpError::Failed(format!(
                            "WebSocket {handle} was closed by the server"
                        )));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        return Err(HttpError::Failed(format!("WebSocket {handle}: {e}")));
                    }
                }
            }
        };
        let got = match tokio::time::timeout(wait, next).await {
            Err(_) => return Ok(None),
            Ok(got) => got,
        };
        drop(socket);
        match got {
            Ok(text) if text.len() > max_bytes => Err(HttpError::TooLarge(format!(
                "WebSocket {handle}: message of {} bytes is over max_bytes {max_bytes}",
                text.len()
            ))),
            Ok(text) => Ok(Some(text)),
            Err(e) => {
                if matches!(e, HttpError::Failed(_)) {
                    self.open.lock().await.remove(&handle);
                }
                Err(e)
            }
        }
    }

    pub async fn close(&self, handle: i64) -> Result<(), HttpError> {
        let socket = self.open.lock().await.remove(&handle);
        let Some(socket) = socket else {
            return Err(HttpError::Invalid(format!(
                "no open WebSocket with handle {handle}"
            )));
        };
        let mut socket = socket.lock().await;
        // A polite close, but never waiting long for a peer that does not answer.
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        Ok(())
    }
}

/// The plugin's extra handshake headers: a JSON object of strings, without the
/// headers the handshake itself owns.
fn parse_headers(json: &str) -> Result<Vec<(String, String)>, HttpError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let map: HashMap<String, String> = serde_json::from_str(json).map_err(|e| {
        HttpError::Invalid(format!("headers must be a JSON object of strings: {e}"))
    })?;
    let mut out: Vec<(String, String)> = map.into_iter().collect();
    out.sort();
    for (name, _) in &out {
        let lower = name.to_ascii_lowercase();
        if !header_allowed(name) || lower.starts_with("sec-websocket-") {
            return Err(HttpError::Invalid(format!(
                "header {name:?} cannot be set by a plugin"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_json_table() {
        assert_eq!(parse_headers("").ok(), Some(vec![]));
        assert_eq!(
            parse_headers(r#"{"Authorization":"Bot x"}"#).ok(),
            Some(vec![("Authorization".into(), "Bot x".into())])
        );
        for bad in [
            "[1]",
            "{\"a\":1}",
            "not json",
            r#"{"Host":"evil"}"#,
            r#"{"Sec-WebSocket-Key":"x"}"#,
            r#"{"Upgrade":"h2c"}"#,
        ] {
            assert!(parse_headers(bad).is_err(), "{bad}");
        }
    }
}
