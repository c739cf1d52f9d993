//! Outbound HTTP on a plugin's behalf.
//!
//! Every hop (the first request and each redirect) goes through the same steps:
//! parse and normalise the URL, ask the caller's check (the allowlist), resolve
//! the host once, refuse restricted addresses unless the allowlist named the host
//! exactly, and connect to exactly the addresses that were checked (the hop's
//! client, kept by the broker in `clients`, has DNS pinned to them, no proxy, no
//! automatic redirects). A DNS answer that changes between check and connect
//! cannot move the request.

pub mod clients;
mod error;

pub use error::HttpError;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tark_proto::worker::v1 as pb;
use url::Host;

use crate::broker::addresses;
use crate::broker::hosts::{self, Allow, Refusal, Target};
use clients::Clients;

/// Limits on what a plugin may send and receive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    pub max_request_kib: u64,
    pub max_response_kib: u64,
    /// Longest a request may take, redirects included; the plugin call's own
    /// deadline shortens it.
    pub timeout_ms: u64,
    pub max_redirects: u8,
    pub max_headers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_kib: 1024,
            max_response_kib: 1024,
            timeout_ms: 30_000,
            max_redirects: 5,
            max_headers: 64,
        }
    }
}

/// Headers a plugin may not set: they describe the connection, not the request,
/// and tarkd owns the connection.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

/// Headers dropped when a redirect leaves the original host.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie"];

/// Whether a plugin may set a header of this name.
pub fn header_allowed(name: &str) -> bool {
    !FORBIDDEN_HEADERS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
}

/// The outbound client shared by all brokers: TLS settings and limits.
pub struct Outbound {
    /// The system's roots; when they cannot be loaded, TLS connections fail
    /// with the reason (plain http to a named host still works).
    tls: Result<Arc<rustls::ClientConfig>, String>,
    pub limits: HttpLimits,
}

impl Outbound {
    pub fn new(limits: HttpLimits) -> Self {
        use rustls_platform_verifier::ConfigVerifierExt;
        // ring, not aws-lc: installed once per process; a second call is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = rustls::ClientConfig::with_platform_verifier()
            .map(Arc::new)
            .map_err(|e| format!("TLS roots could not be loaded: {e}"));
        if let Err(e) = &tls {
            tracing::error!("{e}; https and wss will fail");
        }
        Self { tls, limits }
    }

    /// The clients of one broker: its own pools and TLS sessions, on tarkd's
    /// roots and provider.
    pub fn clients(&self) -> Clients {
        Clients::new(self.tls.clone())
    }

    /// Makes `req` with `clients`, checking each hop with `check`, within
    /// `budget`.
    pub async fn fetch(
        &self,
        clients: &Clients,
        req: pb::HttpRequest,
        budget: Duration,
        check: &(dyn Fn(&Target) -> Result<Allow, Refusal> + Sync),
    ) -> Result<pb::HttpResponse, HttpError> {
        let budget = budget.min(Duration::from_millis(self.limits.timeout_ms));
        let started = Instant::now();
        let follow = self.follow(clients, req, started + budget, check);
        match tokio::time::timeout(budget, follow).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(format!(
                "http request timed out after {} ms",
                budget.as_millis()
            ))),
        }
    }

    async fn follow(
        &self,
        clients: &Clients,
        req: pb::HttpRequest,
        until: Instant,
        check: &(dyn Fn(&Target) -> Result<Allow, Refusal> + Sync),
    ) -> Result<pb::HttpResponse, HttpError> {
        let mut method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::Invalid(format!("{:?} is not an HTTP method", req.method)))?;
        let mut headers = self.headers(&req.headers)?;
        let mut body = req.body;
        let max_request = self.limits.max_request_kib * 1024;
        if body.as_ref().is_some_and(|b| b.len() as u64 > max_request) {
            return Err(HttpError::TooLarge(format!(
                "http request body is over the {} KiB limit",
                self.limits.max_request_kib
            )));
        }
        let mut url = req.url;
        let mut first_host = None;
        let mut hops = 0;
        loop {
            let target = hosts::parse_target(&url, false)?;
            let allow = check(&target)?;
            let addrs = resolve(&target, allow).await?;
            let host = target.host_str();
            if *first_host.get_or_insert_with(|| host.clone()) != host {
                for name in CREDENTIAL_HEADERS {
                    headers.remove(*name);
                }
            }
            let client = clients.client(&target, &addrs)?;
            let resp = send(
                &client,
                &target,
                method.clone(),
                headers.clone(),
                body.clone(),
                until,
            )
            .await?;
            let status = resp.status();
            let location = resp.headers().get(reqwest::header::LOCATION).cloned();
            if let (true, Some(location)) = (status.is_redirection(), location) {
                if hops == self.limits.max_redirects {
                    return Err(HttpError::Failed(format!(
                        "too many redirects (more than {})",
                        self.limits.max_redirects
                    )));
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| target.url.join(l).ok())
                    .ok_or_else(|| HttpError::Failed(format!("{url}: invalid redirect")))?;
                // 303, and 301/302 after a POST, become a GET without a body, as
                // every browser does; 307/308 repeat the request as it was.
                if status == 303 || (matches!(status.as_u16(), 301 | 302) && method == "POST") {
                    method = reqwest::Method::GET;
                    body = None;
                }
                url = next.into();
                hops += 1;
                continue;
            }
            return self.read(resp).await;
        }
    }

    /// The plugin's headers, validated; forbidden ones are an error, not
    /// silently dropped, so the author learns why.
    fn headers(&self, given: &[pb::HttpHeader]) -> Result<reqwest::header::HeaderMap, HttpError> {
        if given.len() > self.limits.max_headers {
            return Err(HttpError::Invalid(format!(
                "{} headers: at most {} allowed",
                given.len(),
                self.limits.max_headers
            )));
        }
        let mut map = reqwest::header::HeaderMap::new();
        for h in given {
            if !header_allowed(&h.name) {
                return Err(HttpError::Invalid(format!(
                    "header {:?} cannot be set by a plugin",
                    h.name
                )));
            }
            let name = reqwest::header::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| HttpError::Invalid(format!("{:?} is not a header name", h.name)))?;
            let value = reqwest::header::HeaderValue::from_str(&h.value).map_err(|_| {
                HttpError::Invalid(format!("header {:?} has an invalid value", h.name))
            })?;
            map.append(name, value);
        }
        Ok(map)
    }

    async fn read(&self, mut resp: reqwest::Response) -> Result<pb::HttpResponse, HttpError> {
        let cap = self.limits.max_response_kib * 1024;
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(too_large(self.limits.max_response_kib));
        }
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| pb::HttpHeader {
                name: k.as_str().to_owned(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect();
        let status = u32::from(resp.status().as_u16());
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HttpError::Failed(format!("reading the response: {}", error_chain(&e))))?
        {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(too_large(self.limits.max_response_kib));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(pb::HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Sends one hop with the client kept for its checked addresses.
async fn send(
    client: &reqwest::Client,
    target: &Target,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    until: Instant,
) -> Result<reqwest::Response, HttpError> {
    let mut rb = client
        .request(method, target.url.clone())
        .headers(headers)
        .timeout(until.saturating_duration_since(Instant::now()));
    if let Some(body) = body {
        rb = rb.body(body);
    }
    rb.send()
        .await
        .map_err(|e| HttpError::Failed(format!("{}: {}", target.url, error_chain(&e))))
}

fn too_large(kib: u64) -> HttpError {
    HttpError::TooLarge(format!("http response body is over the {kib} KiB limit"))
}

/// reqwest's message with its causes: "error sending request" alone says nothing.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Resolves a target once and checks every address; a host with any restricted
/// address is refused as a whole unless the allowlist named it, and one with a
/// cloud metadata address unless tarkd's own policy named it too.
pub async fn resolve(target: &Target, allow: Allow) -> Result<Vec<SocketAddr>, HttpError> {
    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), target.port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), target.port)],
        Host::Domain(d) => tokio::net::lookup_host((d.as_str(), target.port))
            .await
            .map_err(|e| HttpError::Failed(format!("resolving {d}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(HttpError::Failed(format!(
            "{} has no addresses",
            target.host
        )));
    }
    for a in &addrs {
        let Some(why) = addresses::restricted(a.ip()) else {
            continue;
        };
        let needs = match allow {
            Allow::Policy => continue,
            Allow::Named if why != addresses::METADATA => continue,
            Allow::Named => "tarkd's own [policy] http naming this exact host",
            Allow::Covered => "an allowlist entry naming this exact host",
        };
        return Err(HttpError::Denied(format!(
            "{} denied: it resolves to {} ({why}); only {needs} may reach such addresses",
            target.host,
            a.ip()
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real resolution (localhost is in /etc/hosts): a name reached through a
    /// `*.suffix`-like allowance may not resolve to loopback; one named exactly may.
    #[tokio::test]
    async fn resolved_addresses_are_checked() {
        let target = hosts::parse_target("http://localhost:8080/", false);
        let Ok(target) = target else {
            panic!("{target:?}");
        };
        let covered = resolve(&target, Allow::Covered).await;
        assert!(
            matches!(&covered, Err(HttpError::Denied(m)) if m.contains("(loopback)")),
            "{covered:?}"
        );
        let named = resolve(&target, Allow::Named).await;
        assert!(named.is_ok_and(|a| !a.is_empty() && a.iter().all(|a| a.port() == 8080)));
        let literal = hosts::parse_target("http://[::1]:9/", false);
        let Ok(literal) = literal else {
            panic!("{literal:?}");
        };
        assert!(matches!(
            resolve(&literal, Allow::Covered).await,
            Err(HttpError::Denied(_))
        ));
        // A cloud metadata service: a plugin's exact entry is not enough.
        for url in ["http://169.254.169.254/latest/", "http://[fd00:ec2::254]/"] {
            let Ok(metadata) = hosts::parse_target(url, false) else {
                panic!("{url}");
            };
            let named = resolve(&metadata, Allow::Named).await;
            assert!(
                matches!(&named, Err(HttpError::Denied(m)) if m.contains("(cloud metadata)") && m.contains("[policy]")),
                "{named:?}"
            );
            assert!(resolve(&metadata, Allow::Policy).await.is_ok(), "{url}");
        }
    }

    #[test]
    fn header_table() {
        for (name, ok) in [
            ("Authorization", true),
            ("content-type", true),
            ("X-Api-Key", true),
            ("Host", false),
            ("HOST", false),
            ("Connection", false),
            ("Transfer-Encoding", false),
            ("Upgrade", false),
            ("Proxy-Authorization", false),
            ("TE", false),
            ("Content-Length", false),
            ("Keep-Alive", false),
            ("Expect", false),
        ] {
            assert_eq!(header_allowed(name), ok, "{name}");
        }
    }
}
