//! tark-bench: latency of tarkd's hot paths against baselines measured in the
//! same run. Run it with `scripts/bench` (release build).
//!
//! - echo ([`echo`]): a bare tonic unary call over a Unix socket, on the same
//!   runtime, on a second runtime, and through two processes (the floor of
//!   agent → tarkd → worker);
//! - invoke: `InvokeTool` end to end (agent → tarkd → worker → plugin), for a tool
//!   with no host calls and for the notes plugin's `notes_get` (one storage read
//!   through the broker);
//! - cold start: the first call to a plugin with no worker, with the compiled
//!   module in tarkd's cache and without (the worker compiles);
//! - host calls: one storage get made from inside a plugin (a call making 100 gets
//!   less one making none, per get), and an http GET to a loopback server made by
//!   the probe plugin through the broker, against the same GET made by tarkd's own
//!   outbound client in this process;
//! - worlds ([`worlds`]): a streamed chat's first chunk and chunks per second;
//!   `DispatchHook` with 1 and 8 hook plugins;
//! - core modules ([`legacy`]): one provider call to tark's core-module ABI
//!   against the same call to a component, and the cold start of a
//!   wasm32-wasip1 module against an unknown-unknown one and a component;
//! - command tools ([`commands`]): a tool running `/bin/true` in tark-jail,
//!   against spawning it directly and against a wasm tool;
//! - `tark-bench scale` ([`scale`]): many tenants each making a call, then idle:
//!   worker count and memory before, during and after the idle timeout;
//! - load ([`load`]): calls per second with 64 callers over 1 and 8 workers, and
//!   CPU time per call of tarkd + workers against the two-hop echo's processes.

mod commands;
mod echo;
mod legacy;
mod load;
mod scale;
mod scan;
mod worlds;

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tark_tests::fixtures::{self, manifest};
use tark_tests::servers::HttpServer;
use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};

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
    println!("{name:<40} {n:>6} {p50:>12.1} {p99:>12.1}");
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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(child) = echo::child_main(&args) {
        return child;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.get(1).is_some_and(|a| a == "scale") {
        return runtime.block_on(scale::run());
    }
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let n: usize = std::env::var("TARK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let cold_n = (n / 100).max(10);

    // Baselines: bare tonic unary echoes over Unix sockets.
    let dir = tempfile::tempdir()?;
    let baselines = echo::start(dir.path()).await?;
    let (same, second, hops) = (
        baselines.same_runtime.clone(),
        baselines.second_runtime.clone(),
        baselines.two_hops.clone(),
    );

    // A loopback HTTP server for the broker's http path.
    let server = HttpServer::start()?;
    let http_port = server.port;

    // Two tarkds with the notes plugin and a tool without host calls: one with the
    // full sandbox, one with the worker lockdown and namespaces off.
    let start = |sandboxed: bool| -> anyhow::Result<Tarkd> {
        // Kills are part of the benchmark: no quarantine.
        let config = format!(
            "[sandbox]\nlockdown = {sandboxed}\nnamespaces = {sandboxed}\n[supervision]\nintensity = 1000000\n"
        );
        let bare = fixtures::tool("bare", "", "")?;
        let probe_caps = format!("storage = true\nhttp = [\"http://localhost:{http_port}\"]");
        Tarkd::start(
            vec![
                PluginFiles::notes()?,
                PluginFiles::new("bare", &manifest("bare", "tool", ""), Some(bare)),
                PluginFiles::probe(&probe_caps)?,
                PluginFiles::echo()?,
            ],
            Options {
                config,
                ..Default::default()
            },
        )
    };
    let (on, off) = (start(true)?, start(false)?);
    let (tools_on, tools_off) = (on.tools().await?, off.tools().await?);
    for tools in [&tools_on, &tools_off] {
        output(
            tools
                .clone()
                .invoke_tool(invoke("notes_save", r#"{"title":"b","body":"bench"}"#))
                .await,
        )
        .map_err(anyhow::Error::msg)?;
    }
    let call = |tools: &pb::tools_client::ToolsClient<tonic::transport::Channel>,
                tool: &'static str,
                args: &'static str| {
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
    let mut bare_on = call(&tools_on, "bare-ok", "{}");
    let mut bare_off = call(&tools_off, "bare-ok", "{}");
    let mut notes_on = call(&tools_on, "notes_get", r#"{"title":"b"}"#);
    // Warm up, then sample round-robin, so the baseline and every invoke path are
    // measured under the same machine state (this VM's latency shifts between
    // runs as threads land on one core or two).
    let mut echo_second = || echo::call(&second);
    let mut echo_same = || echo::call(&same);
    let mut echo_hops = || echo::call(&hops);
    for _ in 0..n / 10 {
        echo_second().await?;
        echo_same().await?;
        echo_hops().await?;
        bare_on().await?;
        bare_off().await?;
        notes_on().await?;
    }
    let mut samples: [Vec<Duration>; 6] = Default::default();
    for _ in 0..n {
        samples[0].extend(time(1, &mut echo_second).await?);
        samples[1].extend(time(1, &mut bare_on).await?);
        samples[2].extend(time(1, &mut bare_off).await?);
        samples[3].extend(time(1, &mut notes_on).await?);
        samples[4].extend(time(1, &mut echo_same).await?);
        samples[5].extend(time(1, &mut echo_hops).await?);
    }

    let host_calls = host_calls(&on, http_port, n).await?;

    // Cold start (full sandbox): restart the plugin, then time its first call,
    // with the compiled module in the cache and without.
    let plugins = on.plugins().await?;
    let cache_dir = on.dir.path().join("state/cache");
    let cold = |clear_cache: bool| {
        let (mut p, mut c, cache_dir) = (plugins.clone(), tools_on.clone(), cache_dir.clone());
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
    let (mut cached, mut compiled, mut recovered) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cold_n {
        cached.push(cold(false).await?);
        compiled.push(cold(true).await?);
    }
    // Kill to next success: SIGKILL the worker, then call until a call succeeds.
    let mut system = on.system().await?;
    for _ in 0..cold_n {
        let status = system.status(pb::StatusRequest {}).await?.into_inner();
        let pid = status
            .plugins
            .iter()
            .filter(|p| p.id == "bare")
            .flat_map(|p| &p.workers)
            .find(|w| w.running)
            .map(|w| w.pid);
        let pid = pid.context("no running worker for bare")?;
        let mut c = tools_on.clone();
        let t0 = Instant::now();
        // SAFETY: kill(2) on the benchmark's own worker.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        while output(c.invoke_tool(invoke("bare-ok", "{}")).await).is_err() {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "no recovery after a kill"
            );
        }
        recovered.push(t0.elapsed());
    }

    let (first_chunk, chunk_rate) = worlds::stream(&on.providers().await?, 100, cold_n).await?;
    let hook_rows = hook_dispatch(cold_n * 5).await?;
    let legacy_rows = legacy::bench(n, cold_n).await?;
    let [jailed, spawned, wasm_tool] = commands::bench(cold_n * 5).await?;
    let callers = 64;
    let load_time = Duration::from_secs(3);
    let hop_pids: Vec<u32> = baselines
        .children
        .iter()
        .map(std::process::Child::id)
        .collect();
    let load_hops = load::two_hops(&hops, &hop_pids, callers, load_time).await?;
    let load_1 = load::invoke_load(&on, 1, callers, load_time).await?;
    let load_8 = load::invoke_load(&on, 8, callers, load_time).await?;

    let [echo_s, on_s, off_s, notes_s, same_s, hops_s] = samples;
    let (same_p, hops_p) = (percentiles(same_s), percentiles(hops_s));
    let (echo_p, on_p, off_p, notes_p) = (
        percentiles(echo_s),
        percentiles(on_s),
        percentiles(off_s),
        percentiles(notes_s),
    );
    println!(
        "tark-bench: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<40} {:>6} {:>12} {:>12}",
        "measurement", "n", "p50 µs", "p99 µs"
    );
    row("echo, same runtime (baseline)", n, same_p);
    row("echo, second runtime", n, echo_p);
    row("echo, two hops: proxy + echo processes", n, hops_p);
    row("InvokeTool bare-ok, full sandbox", n, on_p);
    row("InvokeTool bare-ok, sandbox off", n, off_p);
    row("InvokeTool notes_get, full sandbox", n, notes_p);
    row(
        "cold start, full sandbox, cached module",
        cold_n,
        percentiles(cached),
    );
    row(
        "cold start, full sandbox, worker compiles",
        cold_n,
        percentiles(compiled),
    );
    row(
        "worker SIGKILL to next success",
        cold_n,
        percentiles(recovered),
    );
    let n_http = host_calls.http_broker.len();
    let get_p = percentiles(host_calls.storage_get);
    let (broker_p, direct_p) = (
        percentiles(host_calls.http_broker),
        percentiles(host_calls.http_direct),
    );
    row("storage get inside a plugin (per get)", n, get_p);
    row("http GET loopback via plugin + broker", n_http, broker_p);
    row("http GET loopback by tarkd's client", n_http, direct_p);
    let (first_p, rate_p) = (percentiles(first_chunk), median(chunk_rate));
    row("ChatStream first chunk (100-word reply)", cold_n, first_p);
    for (name, n, p) in hook_rows {
        row(&name, n, p);
    }
    let legacy_p: Vec<(f64, f64)> = legacy_rows
        .into_iter()
        .map(|(name, n, v)| {
            let p = percentiles(v);
            row(name, n, p);
            p
        })
        .collect();
    let (jailed_p, spawned_p, wasm_p) = (
        percentiles(jailed),
        percentiles(spawned),
        percentiles(wasm_tool),
    );
    row(
        "InvokeTool command tool /bin/true, jailed",
        cold_n * 5,
        jailed_p,
    );
    row("spawn /bin/true from this process", cold_n * 5, spawned_p);
    row("InvokeTool bare-ok (same tarkd)", cold_n * 5, wasm_p);
    println!(
        "ratio command tool / direct spawn at p50: {:.2}; command tool / wasm tool: {:.2}",
        jailed_p.0 / spawned_p.0,
        jailed_p.0 / wasm_p.0
    );
    println!("ChatStream chunks/s over a whole stream, median: {rate_p:.0}");
    if let [
        chat_core,
        chat_comp,
        models_core,
        models_comp,
        cold_core,
        cold_wasip1,
        cold_comp,
    ] = legacy_p[..]
    {
        println!(
            "ratio core module / component at p50: Chat {:.2}, ListModels {:.2}, cold start {:.2} (wasip1 {:.2})",
            chat_core.0 / chat_comp.0,
            models_core.0 / models_comp.0,
            cold_core.0 / cold_comp.0,
            cold_wasip1.0 / cold_comp.0
        );
    }
    println!(
        "ratio InvokeTool bare-ok / echo at p50: same runtime {:.2}, two hops {:.2}, second runtime {:.2}; notes_get / two hops {:.2}; sandbox cost at p50: {:+.1} %",
        on_p.0 / same_p.0,
        on_p.0 / hops_p.0,
        on_p.0 / echo_p.0,
        notes_p.0 / hops_p.0,
        (on_p.0 / off_p.0 - 1.0) * 100.0
    );
    println!("load, {callers} callers for {} s:", load_time.as_secs());
    for (name, l) in [
        ("echo, two hops (proxy + echo CPU)", &load_hops),
        ("InvokeTool bare-ok, 1 worker (tarkd + worker CPU)", &load_1),
        (
            "InvokeTool bare-ok, 8 workers (tarkd + workers CPU)",
            &load_8,
        ),
    ] {
        println!(
            "  {name:<52} {:>9.0} calls/s {:>8.1} µs CPU/call ({} calls)",
            l.per_sec, l.cpu_us_per_call, l.calls
        );
    }
    println!(
        "ratio CPU/call InvokeTool / two-hop echo: 1 worker {:.2}, 8 workers {:.2}",
        load_1.cpu_us_per_call / load_hops.cpu_us_per_call,
        load_8.cpu_us_per_call / load_hops.cpu_us_per_call
    );
    println!(
        "http via plugin+broker / direct at p50: {:.2} (+{:.0} µs: the InvokeTool and the broker hop)",
        broker_p.0 / direct_p.0,
        broker_p.0 - direct_p.0
    );
    let (valid_ns, path_ns) = scan::run(100_000)?;
    println!(
        "agent API frame scan per call: {valid_ns:.0} ns (valid :authority), {path_ns:.0} ns (socket path, re-encoded); share of InvokeTool CPU/call (1 worker): {:.2} %, {:.2} %",
        valid_ns / 10.0 / load_1.cpu_us_per_call,
        path_ns / 10.0 / load_1.cpu_us_per_call
    );
    Ok(())
}

/// The median of a sample.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `DispatchHook` rows for 1 and 8 hook plugins (each tarkd of its own).
async fn hook_dispatch(n: usize) -> anyhow::Result<Vec<(String, usize, (f64, f64))>> {
    let mut rows = Vec::new();
    for count in [1, 8] {
        let plugins = (1..=count)
            .map(|i| PluginFiles::guard(&format!("guard-{i}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let t = Tarkd::start(plugins, Options::default())?;
        let client = tark_proto::plugin::v1::hooks_client::HooksClient::new(t.channel().await?);
        worlds::hooks(&client, n / 10).await?;
        let (seq, fan) = worlds::hooks(&client, n).await?;
        rows.push((
            format!("DispatchHook before-tool, {count} hook(s)"),
            n,
            percentiles(seq),
        ));
        rows.push((
            format!("DispatchHook named event, {count} hook(s)"),
            n,
            percentiles(fan),
        ));
    }
    Ok(rows)
}

/// Host-call costs, sampled round-robin in one run.
struct HostCalls {
    /// Per get: (a call making GETS gets − a call making none) / GETS.
    storage_get: Vec<Duration>,
    http_broker: Vec<Duration>,
    http_direct: Vec<Duration>,
}

/// How many storage gets one sampled call makes.
const GETS: u32 = 100;

async fn host_calls(on: &Tarkd, http_port: u16, n: usize) -> anyhow::Result<HostCalls> {
    let tools = on.tools().await?;
    let probe = |args: String| {
        let mut c = tools.clone();
        async move { output(c.invoke_tool(invoke("probe", &args)).await).map_err(anyhow::Error::msg) }
    };
    probe(json!({ "op": "storage_set", "key": "k", "value": "v" }).to_string()).await?;
    let gets = |times: u32| json!({ "op": "storage_get", "key": "k", "times": times }).to_string();
    let url = format!("http://localhost:{http_port}/hello");
    let via_broker = json!({ "op": "http", "url": url }).to_string();
    let outbound = tarkd::broker::http::Outbound::new(tarkd::broker::http::HttpLimits::default());
    let rules = [tarkd::broker::hosts::parse_rule(&format!(
        "http://localhost:{http_port}"
    ))?];
    let check = |t: &tarkd::broker::hosts::Target| tarkd::broker::hosts::allowed(&rules, t);
    let direct = || {
        let req = wpb::HttpRequest {
            method: "GET".into(),
            url: url.clone(),
            headers: vec![],
            body: None,
        };
        outbound.fetch(req, Duration::from_secs(10), &check)
    };
    let n_http = n / 3;
    for _ in 0..n_http / 10 {
        probe(gets(0)).await?;
        probe(via_broker.clone()).await?;
        direct().await?;
    }
    let (mut zero, mut many) = (Vec::new(), Vec::new());
    let (mut http_broker, mut http_direct) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t0 = Instant::now();
        probe(gets(0)).await?;
        zero.push(t0.elapsed());
        let t0 = Instant::now();
        probe(gets(GETS)).await?;
        many.push(t0.elapsed());
        if i < n_http {
            let t0 = Instant::now();
            let r = probe(via_broker.clone()).await?;
            http_broker.push(t0.elapsed());
            anyhow::ensure!(r.contains("hello"), "broker GET failed: {r}");
            let t0 = Instant::now();
            let r = direct().await?;
            http_direct.push(t0.elapsed());
            anyhow::ensure!(r.body == "hello", "direct GET failed");
        }
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
    })
}
