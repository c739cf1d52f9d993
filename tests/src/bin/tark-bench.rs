//! tark-bench: latency of tarkd's hot paths against a baseline measured in the
//! same run. Run it with `scripts/bench` (release build).
//!
//! - echo: a bare tonic unary call over a Unix socket (the baseline);
//! - invoke: `InvokeTool` end to end (agent → tarkd → worker → plugin), for a tool
//!   with no host calls and for the notes plugin's `notes_get` (one storage read
//!   through the broker);
//! - cold start: the first call to a plugin with no worker, with the compiled
//!   module in tarkd's cache and without (the worker compiles).

use std::time::{Duration, Instant};

use anyhow::Context;
use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};

struct Echo;

#[tonic::async_trait]
impl wpb::broker_server::Broker for Echo {
    async fn env_get(
        &self,
        req: tonic::Request<wpb::EnvName>,
    ) -> Result<tonic::Response<wpb::EnvValue>, tonic::Status> {
        Ok(tonic::Response::new(wpb::EnvValue {
            value: Some(req.into_inner().name),
        }))
    }
}

/// p50 and p99 of a sample, in microseconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.50), at(0.99))
}

fn row(name: &str, n: usize, (p50, p99): (f64, f64)) {
    println!("{name:<34} {n:>6} {p50:>12.1} {p99:>12.1}");
}

async fn time<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// Serves the echo baseline on its own runtime threads, as tarkd would.
fn start_echo(path: std::path::PathBuf) -> anyhow::Result<()> {
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async move {
                if let Ok(l) = tokio::net::UnixListener::from_std(listener) {
                    let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
                    let _ = tonic::transport::Server::builder()
                        .add_service(wpb::broker_server::BrokerServer::new(Echo))
                        .serve_with_incoming(incoming)
                        .await;
                }
            });
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("TARK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let cold_n = (n / 100).max(10);

    // Baseline: bare tonic unary echo over a Unix socket.
    let dir = tempfile::tempdir()?;
    let echo_path = dir.path().join("echo.sock");
    start_echo(echo_path.clone())?;
    let channel = tonic::transport::Endpoint::from_static("http://echo")
        .connect_with_connector(tower::service_fn(move |_| {
            let p = echo_path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await?;
    let echo = wpb::broker_client::BrokerClient::new(channel);
    let mut call_echo = || {
        let mut c = echo.clone();
        async move {
            c.env_get(wpb::EnvName {
                name: "ping".into(),
            })
            .await?;
            Ok(())
        }
    };

    // tarkd with the notes plugin and a tool without host calls.
    let sandbox = std::env::var("TARK_BENCH_SANDBOX").map_or(true, |v| v != "off");
    let config = format!("[sandbox]\nlockdown = {sandbox}\n");
    let bare = fixtures::tool("bare", "", "")?;
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            PluginFiles::new("bare", &manifest("bare", "tool", ""), Some(bare)),
        ],
        Options {
            config,
            ..Default::default()
        },
    )?;
    let tools = t.tools().await?;
    output(
        tools
            .clone()
            .invoke_tool(invoke("notes_save", r#"{"title":"b","body":"bench"}"#))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    let call = |tool: &'static str, args: &'static str| {
        let c = tools.clone();
        move || {
            let mut c = c.clone();
            async move {
                output(c.invoke_tool(invoke(tool, args)).await)
                    .map(drop)
                    .map_err(anyhow::Error::msg)
            }
        }
    };
    let mut bare_call = call("bare-ok", "{}");
    let mut notes_call = call("notes_get", r#"{"title":"b"}"#);
    // Warm up, then sample the three round-robin, so the baseline and the invoke
    // paths are measured under the same machine state (this VM's latency shifts
    // between runs as threads land on one core or two).
    for _ in 0..n / 10 {
        call_echo().await?;
        bare_call().await?;
        notes_call().await?;
    }
    let (mut echo_samples, mut bare_samples, mut notes_samples) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        echo_samples.extend(time(1, &mut call_echo).await?);
        bare_samples.extend(time(1, &mut bare_call).await?);
        notes_samples.extend(time(1, &mut notes_call).await?);
    }
    drop(echo);

    // Cold start: restart the plugin, then time its first call.
    let mut plugins = t.plugins().await?;
    let cache_dir = t.dir.path().join("state/cache");
    let cold = |clear_cache: bool| {
        let mut p = plugins.clone();
        let mut c = tools.clone();
        let cache_dir = cache_dir.clone();
        async move {
            p.restart_plugin(pb::PluginRef { id: "bare".into() })
                .await?;
            if clear_cache {
                for e in std::fs::read_dir(&cache_dir)? {
                    std::fs::remove_file(e?.path())?;
                }
            }
            let t0 = Instant::now();
            output(c.invoke_tool(invoke("bare-ok", "{}")).await).map_err(anyhow::Error::msg)?;
            Ok::<_, anyhow::Error>(t0.elapsed())
        }
    };
    let mut warm_cold = Vec::new();
    let mut compile_cold = Vec::new();
    for _ in 0..cold_n {
        warm_cold.push(cold(false).await?);
        compile_cold.push(cold(true).await?);
    }
    let _ = plugins
        .list_plugins(pb::ListPluginsRequest {})
        .await
        .context("tarkd still serving")?;

    let echo_p = percentiles(echo_samples);
    let bare_p = percentiles(bare_samples);
    let notes_p = percentiles(notes_samples);
    println!(
        "tark-bench: {} cores, sandbox lockdown {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if sandbox { "on" } else { "off" }
    );
    println!(
        "{:<34} {:>6} {:>12} {:>12}",
        "measurement", "n", "p50 µs", "p99 µs"
    );
    row("echo (tonic unary, UDS) baseline", n, echo_p);
    row("InvokeTool bare-ok (no host call)", n, bare_p);
    row("InvokeTool notes_get (1 storage get)", n, notes_p);
    row(
        "cold start, compiled module cached",
        cold_n,
        percentiles(warm_cold),
    );
    row(
        "cold start, worker compiles",
        cold_n,
        percentiles(compile_cold),
    );
    println!(
        "ratio invoke/echo at p50: bare-ok {:.2}, notes_get {:.2}",
        bare_p.0 / echo_p.0,
        notes_p.0 / echo_p.0
    );
    Ok(())
}
