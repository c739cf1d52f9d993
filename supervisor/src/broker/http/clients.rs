//! Connection reuse for one broker's outbound HTTP.
//!
//! A broker serves one (tenant, plugin), so the clients here, their
//! connections and their TLS session tickets belong to that pair alone:
//! nothing is shared between tenants or plugins. Within it, a client is kept
//! per (scheme, host, port, checked address set). Every request is still
//! parsed, checked against the grant and the SSRF rules and resolved before a
//! client is chosen, and a client can reach only the addresses it was built
//! for, so when DNS answers differently the request gets another client: a
//! connection made for other addresses is never used for it.
//!
//! Connections stay open between requests (HTTP/2 when the server offers it
//! by ALPN, else HTTP/1.1 keep-alive) and TLS sessions are resumed; idle
//! connections close after [`IDLE`], and all of them when the broker goes,
//! which is when its worker does. The number of clients is bounded
//! ([`MAX_CLIENTS`], least recently used dropped first), so a plugin walking
//! many hosts holds no more than that many pools.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::client::{ClientSessionMemoryCache, Resumption};
use url::Host;

use super::error::HttpError;
use crate::broker::hosts::{Scheme, Target};

/// Clients (each with its own pool) one broker keeps at most: a plugin
/// usually talks to one or two hosts.
pub const MAX_CLIENTS: usize = 4;
/// How long an idle connection is kept.
pub const IDLE: Duration = Duration::from_secs(30);
/// Idle connections a client keeps (HTTP/1.1; HTTP/2 needs one). A worker
/// makes one call at a time, so more would rarely be used again.
const MAX_IDLE_PER_CLIENT: usize = 2;
/// Idle outbound sockets one broker may hold in tarkd: counted in the
/// descriptors tarkd keeps room for per worker.
pub const MAX_IDLE_SOCKETS: usize = MAX_CLIENTS * MAX_IDLE_PER_CLIENT;
/// TLS sessions remembered for resumption, per broker.
const TLS_SESSIONS: usize = 32;
/// Largest response header list accepted over HTTP/2 (HTTP/1.1 has hyper's
/// own bound of 100 headers).
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// What a client is kept for: a request may use a kept client only when all
/// of this is the same. The addresses are a set (sorted, no repeats): the
/// resolver's order does not make a new pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    https: bool,
    host: String,
    port: u16,
    addrs: Vec<SocketAddr>,
}

impl Key {
    pub fn new(target: &Target, addrs: &[SocketAddr]) -> Self {
        let mut addrs = addrs.to_vec();
        addrs.sort_unstable();
        addrs.dedup();
        Self {
            https: target.scheme == Scheme::Https,
            host: target.host_str(),
            port: target.port,
            addrs,
        }
    }
}

/// Least recently used first; small enough that a scan beats a map.
struct Lru<V> {
    entries: Vec<(Key, V)>,
}

impl<V: Clone> Lru<V> {
    fn get_or_make<E>(&mut self, key: &Key, make: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(i) = self.entries.iter().position(|(k, _)| k == key) {
            let hit = self.entries.remove(i);
            let value = hit.1.clone();
            self.entries.push(hit);
            return Ok(value);
        }
        let value = make()?;
        if self.entries.len() >= MAX_CLIENTS {
            self.entries.remove(0);
        }
        self.entries.push((key.clone(), value.clone()));
        Ok(value)
    }
}

/// TLS settings of one broker: the shared roots and verifier, a session store
/// of its own.
struct Tls {
    /// Offers h2 and http/1.1 by ALPN.
    http: Arc<rustls::ClientConfig>,
    /// No ALPN: a WebSocket handshake is HTTP/1.1.
    ws: Arc<rustls::ClientConfig>,
}

/// One broker's outbound HTTP clients.
pub struct Clients {
    /// tarkd's TLS settings (or why there are none).
    base: Result<Arc<rustls::ClientConfig>, String>,
    tls: OnceLock<Tls>,
    kept: Mutex<Lru<reqwest::Client>>,
}

impl Clients {
    pub fn new(base: Result<Arc<rustls::ClientConfig>, String>) -> Self {
        Self {
            base,
            tls: OnceLock::new(),
            kept: Mutex::new(Lru {
                entries: Vec::new(),
            }),
        }
    }

    /// Made at the first TLS use, so a worker that never connects pays nothing.
    fn tls(&self) -> Result<&Tls, HttpError> {
        let base = self
            .base
            .as_ref()
            .map_err(|e| HttpError::Failed(e.clone()))?;
        Ok(self.tls.get_or_init(|| {
            let sessions = Arc::new(ClientSessionMemoryCache::new(TLS_SESSIONS));
            let mut http = (**base).clone();
            http.resumption = Resumption::store(sessions.clone());
            http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let mut ws = (**base).clone();
            ws.resumption = Resumption::store(sessions);
            ws.alpn_protocols = Vec::new();
            Tls {
                http: Arc::new(http),
                ws: Arc::new(ws),
            }
        }))
    }

    /// TLS settings for this broker's WebSocket connections.
    pub fn ws_tls(&self) -> Result<Arc<rustls::ClientConfig>, HttpError> {
        Ok(Arc::clone(&self.tls()?.ws))
    }

    /// The client for `target` at `addrs`, addresses that were checked: a kept
    /// one for the same key, else a new one that can reach only them.
    pub fn client(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Result<reqwest::Client, HttpError> {
        let key = Key::new(target, addrs);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get_or_make(&key, || self.build(target, addrs))
    }

    fn build(&self, target: &Target, addrs: &[SocketAddr]) -> Result<reqwest::Client, HttpError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(MAX_IDLE_PER_CLIENT)
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .user_agent(concat!("tarkd/", env!("CARGO_PKG_VERSION")));
        builder = match target.scheme {
            Scheme::Https => builder.tls_backend_preconfigured((*self.tls()?.http).clone()),
            // Plain http is HTTP/1.1 (h2 without TLS needs prior knowledge),
            // and works without TLS roots.
            Scheme::Http => match self.tls() {
                Ok(tls) => builder.tls_backend_preconfigured((*tls.http).clone()),
                Err(_) => builder,
            }
            .http1_only(),
        };
        if let Host::Domain(d) = &target.host {
            builder = builder.resolve_to_addrs(d, addrs);
        }
        // Any other name would go to this resolver, which refuses: the only
        // addresses this client can reach are the ones checked.
        builder
            .dns_resolver(Arc::new(NoDns))
            .build()
            .map_err(|e| HttpError::Failed(format!("http client: {e}")))
    }
}

/// A resolver that answers nothing (see `Clients::build`).
struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            Err(format!("{name} was not checked by tarkd; refusing to resolve it").into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::hosts;

    fn target(url: &str) -> Target {
        match hosts::parse_target(url, false) {
            Ok(t) => t,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// Which requests share a client: only the same scheme, host, port and
    /// address set; the addresses' order and repeats do not matter.
    #[test]
    fn key_table() {
        let a = ["10.0.0.1:443", "10.0.0.2:443"];
        let base = Key::new(&target("https://api.example.com/v1"), &addrs(&a));
        for (url, list, same) in [
            ("https://api.example.com/other?q=1", &a[..], true),
            ("https://API.example.com/", &a[..], true),
            ("https://api.example.com:443/", &a[..], true),
            (
                "https://api.example.com/",
                &["10.0.0.2:443", "10.0.0.1:443", "10.0.0.2:443"][..],
                true,
            ),
            ("https://api.example.com/", &["10.0.0.1:443"][..], false),
            (
                "https://api.example.com/",
                &["10.0.0.3:443", "10.0.0.2:443"][..],
                false,
            ),
            ("http://api.example.com:443/", &a[..], false),
            ("https://api.example.com:8443/", &a[..], false),
            ("https://other.example.com/", &a[..], false),
        ] {
            let key = Key::new(&target(url), &addrs(list));
            assert_eq!(key == base, same, "{url} {list:?}");
        }
    }

    /// A kept value is handed out again; the least recently used goes first
    /// once MAX_CLIENTS are kept; a failed make keeps nothing.
    #[test]
    fn lru() {
        let mut lru = Lru {
            entries: Vec::new(),
        };
        let key = |i: usize| Key::new(&target(&format!("https://h{i}.example/")), &[]);
        let mut made = 0;
        let mut get = |lru: &mut Lru<usize>, i: usize| {
            lru.get_or_make(&key(i), || {
                made += 1;
                Ok::<_, ()>(made)
            })
        };
        assert_eq!(get(&mut lru, 0), Ok(1));
        assert_eq!(get(&mut lru, 0), Ok(1));
        for i in 1..MAX_CLIENTS {
            assert_eq!(get(&mut lru, i), Ok(i + 1));
        }
        // 0 was used most recently before 1..MAX: touch it, so 1 is the oldest.
        assert_eq!(get(&mut lru, 0), Ok(1));
        assert_eq!(get(&mut lru, MAX_CLIENTS), Ok(MAX_CLIENTS + 1));
        assert_eq!(lru.entries.len(), MAX_CLIENTS);
        assert_eq!(get(&mut lru, 0), Ok(1), "0 was kept");
        assert_eq!(get(&mut lru, 1), Ok(MAX_CLIENTS + 2), "1 was dropped");
        assert_eq!(
            lru.get_or_make(&key(99), || Err::<usize, _>("refused")),
            Err("refused")
        );
        assert!(lru.entries.iter().all(|(k, _)| *k != key(99)));
    }

    /// HTTP servers are offered h2 and http/1.1, WebSocket servers nothing
    /// (their handshake is HTTP/1.1); without TLS roots both fail with why.
    #[test]
    fn tls_settings() {
        let base = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        let Ok(base) = base else {
            panic!("{base:?}");
        };
        let clients = Clients::new(Ok(Arc::new(base)));
        let Ok(tls) = clients.tls() else {
            panic!("TLS settings");
        };
        assert_eq!(
            tls.http.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(tls.ws.alpn_protocols.is_empty());
        let none = Clients::new(Err("TLS roots could not be loaded: none".into()));
        assert!(matches!(none.ws_tls(), Err(HttpError::Failed(m)) if m.contains("TLS roots")));
        let Ok(https) = hosts::parse_target("https://example.com/", false) else {
            panic!("target");
        };
        assert!(
            matches!(none.client(&https, &[]), Err(HttpError::Failed(m)) if m.contains("TLS roots"))
        );
    }
}
