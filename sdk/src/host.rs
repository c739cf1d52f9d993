//! Typed host calls over the world's imports. Each one is a request to tarkd,
//! which checks it against the plugin's grant: a refusal comes back as an
//! [`Error`] (or `None` for storage and env), never as a trap.

use crate::world::tark::plugin as raw;

/// A host call tarkd refused or could not make, or a value that did not
/// (de)serialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// tarkd's message (or serde's).
    pub message: String,
    /// The HTTP status, when the failure is one tarkd surfaced as an error.
    pub status: Option<u16>,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} (HTTP {s})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::new(e.to_string())
    }
}

impl From<raw::http::HttpError> for Error {
    fn from(e: raw::http::HttpError) -> Self {
        Self {
            message: e.message,
            status: e.status,
        }
    }
}

/// The plugin's private key-value storage (per tenant), strings or JSON.
/// Needs `storage = true`.
pub mod storage {
    use super::{Error, raw};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    pub fn get(key: &str) -> Option<String> {
        raw::storage::get(key)
    }

    pub fn set(key: &str, value: &str) -> Result<(), Error> {
        raw::storage::set(key, value).map_err(Error::from)
    }

    pub fn delete(key: &str) -> Result<(), Error> {
        raw::storage::delete(key).map_err(Error::from)
    }

    pub fn keys() -> Vec<String> {
        raw::storage::list_keys()
    }

    /// The value under `key` as `T`; `Ok(None)` when there is none.
    pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
        get(key)
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(Error::from)
    }

    pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
        set(key, &serde_json::to_string(value)?)
    }
}

/// Outbound HTTP to the hosts in the plugin's `http` grant.
pub mod http {
    use super::{Error, raw};
    use serde::de::DeserializeOwned;

    /// A response: any status the server sent.
    #[derive(Debug, Clone)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Response {
        /// The first header named `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The body as JSON.
        pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
            serde_json::from_str(&self.body).map_err(Error::from)
        }

        /// Whether the status is 2xx.
        pub fn ok(&self) -> bool {
            (200..300).contains(&self.status)
        }
    }

    impl From<raw::http::HttpResponse> for Response {
        fn from(r: raw::http::HttpResponse) -> Self {
            Self {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }
        }
    }

    fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
        raw::http::get(url, &owned(headers))
            .map(Response::from)
            .map_err(Error::from)
    }

    pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
        raw::http::post(url, body, &owned(headers))
            .map(Response::from)
            .map_err(Error::from)
    }

    /// POSTs `value` as JSON (`content-type: application/json` added).
    pub fn post_json<T: serde::Serialize + ?Sized>(
        url: &str,
        value: &T,
        headers: &[(&str, &str)],
    ) -> Result<Response, Error> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        post(url, &serde_json::to_string(value)?, &all)
    }
}

/// Environment variables in the plugin's `env` grant (`None` for one that is
/// unset or not granted: the two cannot be told apart).
pub mod env {
    use super::raw;

    pub fn var(name: &str) -> Option<String> {
        raw::env::get(name)
    }
}

/// Files in the plugin's `fs_read` grant, as text.
pub mod fs {
    use super::{Error, raw};

    pub fn read(path: &str) -> Result<String, Error> {
        raw::fs::read(path).map_err(Error::from)
    }
}

/// The plugin's log in tarkd's (attributed, rate-limited). Use the macros:
/// [`info!`](crate::info), [`warn!`](crate::warn), [`error!`](crate::error),
/// [`debug!`](crate::debug).
pub mod log {
    use super::raw;

    pub fn debug(message: &str) {
        raw::log::debug(message)
    }
    pub fn info(message: &str) {
        raw::log::info(message)
    }
    pub fn warn(message: &str) {
        raw::log::warn(message)
    }
    pub fn error(message: &str) {
        raw::log::error(message)
    }
}

/// Logs at info, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// Logs at warn, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// Logs at error, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// Logs at debug, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

/// WebSocket connections to hosts in the plugin's `http` grant (tool and
/// channel worlds). The host answers in JSON; these read it.
#[cfg(any(all(feature = "tool", not(feature = "published")), feature = "channel"))]
pub mod ws {
    use super::{Error, raw};
    use serde_json::Value;

    fn answer(json: String) -> Result<Value, Error> {
        let v: Value = serde_json::from_str(&json)?;
        if v["ok"] == Value::Bool(true) {
            Ok(v)
        } else {
            Err(Error::new(
                v["error"].as_str().unwrap_or("ws call failed").to_owned(),
            ))
        }
    }

    /// An open connection; closed on drop.
    #[derive(Debug)]
    pub struct Socket(i64);

    /// Connects to `url` (`wss://` or `ws://`), with extra request headers.
    pub fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, Error> {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let v = answer(raw::ws::connect(url, &Value::Object(headers).to_string()))?;
        v["handle"]
            .as_i64()
            .map(Socket)
            .ok_or_else(|| Error::new("ws connect answered no handle"))
    }

    impl Socket {
        pub fn send(&self, data: &str) -> Result<(), Error> {
            answer(raw::ws::send(self.0, data)).map(drop)
        }

        /// The next message, or `None` when `timeout_ms` passed without one.
        pub fn recv(&self, timeout_ms: i64, max_bytes: i64) -> Result<Option<String>, Error> {
            let v = answer(raw::ws::recv(self.0, timeout_ms, max_bytes))?;
            Ok(v["data"].as_str().map(str::to_owned))
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = raw::ws::close(self.0);
        }
    }
}
