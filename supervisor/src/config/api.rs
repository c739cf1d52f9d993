//! `[api]` and `[metrics]`: who may reach tarkd's sockets, and how much of it.

use std::path::PathBuf;

use serde::Deserialize;

/// The metrics endpoint (off unless `listen` is set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `unix:/path` (0660: tarkd's user and group), or `host:port` (an IP
    /// address) with `bearer_token_file` or `tcp_unauthenticated`.
    pub listen: Option<String>,
    /// A file holding the token a TCP scrape must send as `Authorization:
    /// Bearer <token>` (Prometheus's `bearer_token_file`).
    pub bearer_token_file: Option<PathBuf>,
    /// Serve TCP scrapes without a token, readable by every local user (and
    /// whoever reaches the address): only on explicit request.
    pub tcp_unauthenticated: bool,
}

/// The agent API socket's file access (who may connect at all; what a
/// connected caller may do is `[[principals]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The socket's mode.
    pub socket_mode: u32,
    /// The socket's group (a name), so an agent's user in it can connect.
    pub socket_group: Option<String>,
    /// An address for a TCP listener with mutual TLS (`127.0.0.1:7443`): a
    /// client certificate signed by `client_ca` is required, and its names
    /// are matched against `[[principals]] cert`.
    pub tcp: Option<String>,
    /// PEM files of the listener's certificate chain and key, and of the CA
    /// client certificates must chain to.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate's subject common name may name a
    /// principal: `fallback` (only for a certificate without SANs, RFC 6125)
    /// or `never`.
    pub cert_common_name: crate::access::certs::CommonName,
    /// The largest request or response message, in bytes (gRPC's usual 4 MiB
    /// by default); a larger one is refused with `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Connections to the socket open at once, in all and from one uid; past
    /// either, a connection is refused before a byte of it is read.
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    /// How long a connection may take to send its first request.
    pub first_request_ms: u64,
    /// Calls open at once on one connection (HTTP/2 max_concurrent_streams).
    pub max_streams_per_connection: u32,
    /// Long-lived calls (health Watch, SubscribeChannel, ChatStream,
    /// PollDeviceFlow, reflection) one principal may have open at once.
    pub max_streams_per_principal: usize,
    /// HTTP/2 keepalive: a ping after this long without traffic, and the
    /// connection closed if it is not answered within the timeout.
    pub keepalive_interval_s: u64,
    pub keepalive_timeout_s: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket_mode: 0o660,
            socket_group: None,
            tcp: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            cert_common_name: crate::access::certs::CommonName::default(),
            max_message_bytes: 4 << 20,
            max_connections: 1024,
            max_connections_per_uid: 64,
            first_request_ms: 10_000,
            max_streams_per_connection: 128,
            max_streams_per_principal: 64,
            keepalive_interval_s: 60,
            keepalive_timeout_s: 20,
        }
    }
}
