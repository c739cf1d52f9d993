//! Host-call costs, sampled round-robin in one run: a storage get from inside
//! a plugin (a call making GETS gets less one making none, per get), and GETs
//! to loopback servers, plain http and HTTPS (HTTP/2 by ALPN), through the
//! probe plugin and the broker against the same GET made by tarkd's own
//! outbound client in this process: with its connections kept between calls,
//! as a broker keeps them, and (HTTPS) with a new client, so a new connection
//! and a full handshake, for every GET, as tarkd made every request before
//! it kept connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tark_proto::worker::v1 as wpb;
use tark_tests::https::HttpsServer;
use tark_tests::tls::Ca;
use tark_tests::{Tarkd, invoke, output};
use tarkd::broker::hosts::{self, Target};
use tarkd::broker::http::clients::Clients;
use tarkd::broker::http::{HttpLimits, Outbound};

/// The samples, per row.
pub struct HostCalls {
    /// Per get: (a call making GETS gets − a call making none) / GETS.
    pub storage_get: Vec<Duration>,
    pub http_broker: Vec<Duration>,
    pub http_direct: Vec<Duration>,
    pub https_broker: Vec<Duration>,
    pub https_direct: Vec<Duration>,
    /// A new client (connection, full TLS handshake) per GET.
    pub https_fresh: Vec<Duration>,
}

/// How many storage gets one sampled call makes.
const GETS: u32 = 100;

/// A loopback HTTPS server for `localhost` and its CA, for tarkd (through
/// SSL_CERT_FILE) and for this process's client.
pub struct Https {
    pub server: HttpsServer,
    /// The CA's PEM file, for tarkd's SSL_CERT_FILE.
    pub roots: PathBuf,
    tls: Arc<rustls::ClientConfig>,
}

impl Https {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let ca = Ca::new("tark-bench CA")?;
        let server = HttpsServer::start(&ca, &["h2", "http/1.1"])?;
        let roots = dir.join("bench-ca.pem");
        std::fs::write(&roots, &ca.pem)?;
        let mut store = rustls::RootCertStore::empty();
        store.add(CertificateDer::from_pem_slice(ca.pem.as_bytes())?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self {
            server,
            roots,
            tls: Arc::new(tls),
        })
    }
}

/// A GET by tarkd's own outbound client with `clients`, allowed `rule`.
async fn fetch(
    outbound: &Outbound,
    clients: &Clients,
    rule: &hosts::HostRule,
    url: &str,
) -> anyhow::Result<wpb::HttpResponse> {
    let check = |t: &Target| hosts::allowed(std::slice::from_ref(rule), t);
    let req = wpb::HttpRequest {
        method: "GET".into(),
        url: url.to_owned(),
        headers: vec![],
        body: None,
    };
    Ok(outbound
        .fetch(clients, req, Duration::from_secs(10), &check)
        .await?)
}

/// Awaits `work`, adding how long it took to `into`.
async fn timed<T>(
    into: &mut Vec<Duration>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let t0 = Instant::now();
    let r = work.await;
    into.push(t0.elapsed());
    r
}

pub async fn run(on: &Tarkd, http_port: u16, https: &Https, n: usize) -> anyhow::Result<HostCalls> {
    let tools = on.tools().await?;
    let probe = |args: String| {
        let mut c = tools.clone();
        async move { output(c.invoke_tool(invoke("probe", &args)).await).map_err(anyhow::Error::msg) }
    };
    probe(json!({ "op": "storage_set", "key": "k", "value": "v" }).to_string()).await?;
    let gets = |times: u32| json!({ "op": "storage_get", "key": "k", "times": times }).to_string();
    let url = format!("http://localhost:{http_port}/hello");
    let secure = format!("https://localhost:{}/", https.server.port);
    let via_broker = |url: &str| json!({ "op": "http", "url": url }).to_string();
    let outbound = Outbound::new(HttpLimits::default());
    // tarkd's own client as a broker uses it: connections kept between calls.
    let clients = outbound.clients();
    let tls_clients = Clients::new(Ok(Arc::clone(&https.tls)));
    let rule = hosts::parse_rule(&format!("http://localhost:{http_port}"))?;
    let tls_rule = hosts::parse_rule(&format!("https://localhost:{}", https.server.port))?;
    let n_http = n / 3;
    for _ in 0..n_http / 10 {
        probe(gets(0)).await?;
        probe(via_broker(&url)).await?;
        probe(via_broker(&secure)).await?;
        fetch(&outbound, &clients, &rule, &url).await?;
        fetch(&outbound, &tls_clients, &tls_rule, &secure).await?;
    }
    let (mut zero, mut many) = (Vec::new(), Vec::new());
    let (mut http_broker, mut http_direct) = (Vec::new(), Vec::new());
    let (mut https_broker, mut https_direct, mut https_fresh) =
        (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let t0 = Instant::now();
        probe(gets(0)).await?;
        zero.push(t0.elapsed());
        let t0 = Instant::now();
        probe(gets(GETS)).await?;
        many.push(t0.elapsed());
        if i >= n_http {
            continue;
        }
        let r = timed(&mut http_broker, probe(via_broker(&url))).await?;
        anyhow::ensure!(r.contains("hello"), "broker GET failed: {r}");
        let r = timed(&mut http_direct, fetch(&outbound, &clients, &rule, &url)).await?;
        anyhow::ensure!(r.body == "hello", "direct GET failed");
        let r = timed(&mut https_broker, probe(via_broker(&secure))).await?;
        anyhow::ensure!(r.contains("HTTP/2.0"), "broker HTTPS GET failed: {r}");
        let r = timed(
            &mut https_direct,
            fetch(&outbound, &tls_clients, &tls_rule, &secure),
        )
        .await?;
        anyhow::ensure!(r.body == "HTTP/2.0", "direct HTTPS GET failed");
        // A new client (so connection and handshake) is part of what is timed.
        let fresh = async {
            let fresh = Clients::new(Ok(Arc::clone(&https.tls)));
            fetch(&outbound, &fresh, &tls_rule, &secure).await
        };
        let r = timed(&mut https_fresh, fresh).await?;
        anyhow::ensure!(r.body == "HTTP/2.0", "direct HTTPS GET (new client) failed");
    }
    zero.sort();
    let base = zero[zero.len() / 2];
    let storage_get = many
        .into_iter()
        .map(|t| t.saturating_sub(base) / GETS)
        .collect();
    Ok(HostCalls {
        storage_get,
        http_broker,
        http_direct,
        https_broker,
        https_direct,
        https_fresh,
    })
}
