//! Outbound HTTP connection reuse through real processes: the probe plugin
//! calls an HTTPS server on loopback (tarkd trusting its CA through
//! SSL_CERT_FILE) that counts TCP connections and TLS handshakes. A worker's
//! requests to one host share a connection (HTTP/2 where offered, HTTP/1.1
//! keep-alive otherwise); another tenant gets a connection and a TLS session
//! of its own; the connection closes with the worker.

use std::time::Duration;

use serde_json::{Value, json};
use tark_tests::https::HttpsServer;
use tark_tests::tls::Ca;
use tark_tests::{Options, PluginFiles, Tarkd, eventually, for_tenant, invoke, output, probe};

async fn probe_for(t: &Tarkd, tenant: &str, args: &Value) -> anyhow::Result<Value> {
    let mut tools = t.tools().await?;
    let call = tools.invoke_tool(for_tenant(invoke("probe", &args.to_string()), tenant));
    Ok(match output(call.await) {
        Ok(o) => serde_json::from_str(&o)?,
        Err(e) => Value::String(e),
    })
}

fn answered(v: &Value, version: &str) {
    assert_eq!(
        (v["status"].as_u64(), v["body"].as_str()),
        (Some(200), Some(version)),
        "{v}"
    );
}

/// An HTTPS server offering `alpn`, and tarkd with the probe allowed it and
/// trusting its CA (through SSL_CERT_FILE, in `dir`); the GET to make.
fn setup(alpn: &[&str], dir: &std::path::Path) -> anyhow::Result<(HttpsServer, Tarkd, Value)> {
    let ca = Ca::new("tarkd outbound test CA")?;
    let server = HttpsServer::start(&ca, alpn)?;
    let roots = dir.join("ca.pem");
    std::fs::write(&roots, &ca.pem)?;
    let caps = format!("http = [\"https://localhost:{}\"]", server.port);
    let t = Tarkd::start(
        vec![PluginFiles::probe(&caps)?],
        Options {
            env: vec![("SSL_CERT_FILE".into(), roots.display().to_string())],
            ..Default::default()
        },
    )?;
    let get = json!({ "op": "http", "url": format!("https://localhost:{}/", server.port) });
    Ok((server, t, get))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requests_share_a_connection_per_worker_and_it_closes_with_the_worker()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, t, get) = setup(&["h2", "http/1.1"], dir.path())?;

    for _ in 0..3 {
        answered(&probe(&t, get.clone()).await?, "HTTP/2.0");
    }
    assert_eq!(server.seen(), (1, 1, 0), "(connections, full, resumed)");

    // Another tenant's worker has its own broker: a connection and a TLS
    // session of its own, never the first tenant's ticket.
    for _ in 0..2 {
        answered(&probe_for(&t, "tenant-b", &get).await?, "HTTP/2.0");
    }
    assert_eq!(server.seen(), (2, 2, 0), "(connections, full, resumed)");
    assert_eq!(server.open(), 2);

    // The connection goes with its worker.
    t.kill_worker("probe", "default").await?;
    assert!(
        eventually(Duration::from_secs(20), || server.open() == 1).await,
        "{} connections open after the worker was killed",
        server.open()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_server_gets_keep_alive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, t, get) = setup(&["http/1.1"], dir.path())?;
    for _ in 0..3 {
        answered(&probe(&t, get.clone()).await?, "HTTP/1.1");
    }
    assert_eq!(server.seen(), (1, 1, 0), "(connections, full, resumed)");
    Ok(())
}
