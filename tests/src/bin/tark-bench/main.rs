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
//! - authors' builds ([`authors`]): one plugin built as tark's SDK guide
//!   builds it (adapted by tarkd), as a WASI component and as an
//!   unknown-unknown component: a call and a cold start of each;
//! - command tools ([`commands`]): a tool running `/bin/true` in tark-jail,
//!   against spawning it directly and against a wasm tool;
//! - `tark-bench cold` ([`cold`]): only the cold starts and the kills, by a
//!   tarkd that spawns each worker and by one that binds standby workers;
//! - `tark-bench scale` ([`scale`]): many tenants each making a call, then idle:
//!   worker count and memory before, during and after the idle timeout;
//! - load ([`load`]): calls per second with 64 callers over 1 and 8 workers, and
//!   CPU time per call of tarkd + workers against the two-hop echo's processes
//!   (`tark-bench load` runs only these, for a profiler to watch).
//!
//! `tark-bench --json FILE` also writes the rows and headline ratios as JSON
//! ([`report`]); `tark-bench render FILE OUT.svg` draws it ([`render`]).

mod authors;
mod cold;
mod commands;
mod echo;
mod hostcalls;
mod legacy;
mod load;
mod render;
mod report;
mod scale;
mod scan;
mod worlds;

use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
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
    let (p50, p99) = (at(0.50), at(0.99));
    report::quantiles(
        (p50, p99),
        (0..=100).map(|q| at(f64::from(q) / 100.0)).collect(),
    );
    (p50, p99)
}

fn row(name: &str, n: usize, (p50, p99): (f64, f64)) {
    println!("{name:<40} {n:>6} {p50:>12.1} {p99:>12.1}");
    report::row(name, n, p50, p99);
}

/// Prints each of `rows`; their (p50, p99), in order.
fn rows(rows: legacy::Rows) -> Vec<(f64, f64)> {
    rows.into_iter()
        .map(|(name, n, v)| {
            let p = percentiles(v);
            row(name, n, p);
            p
        })
        .collect()
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
    if args.get(1).is_some_and(|a| a == "gate") {
        let (Some(recorded), Some(run)) = (args.get(2), args.get(3)) else {
            anyhow::bail!("usage: tark-bench gate RECORDED.json RUN.json");
        };
        return report::gate(std::path::Path::new(recorded), std::path::Path::new(run));
    }
    if args.get(1).is_some_and(|a| a == "render") {
        let (Some(json), Some(svg)) = (args.get(2), args.get(3)) else {
            anyhow::bail!("usage: tark-bench render REPORT.json OUT.svg");
        };
        return render::svg(std::path::Path::new(json), std::path::Path::new(svg));
    }
    if args.get(1).is_some_and(|a| a == "readme") {
        let (Some(json), Some(readme)) = (args.get(2), args.get(3)) else {
            anyhow::bail!("usage: tark-bench readme REPORT.json README.md");
        };
        return report::readme(std::path::Path::new(json), std::path::Path::new(readme));
    }
    // --json FILE: the run's rows and ratios as JSON too (report.rs).
    let json = args
        .iter()
        .position(|a| a == "--json")
        .map(|i| args.get(i + 1).map(std::path::PathBuf::from))
        .map(|p| p.ok_or_else(|| anyhow::anyhow!("--json needs a file name")))
        .transpose()?;
    if args.get(1).is_some_and(|a| a == "load") {
        runtime.block_on(load::only())?;
    } else if args.get(1).is_some_and(|a| a == "stream") {
        runtime.block_on(worlds::only())?;
    } else if args.get(1).is_some_and(|a| a == "cold") {
        runtime.block_on(cold::only())?;
    } else {
        runtime.block_on(bench())?;
    }
    if let Some(path) = json {
        report::write(&path)?;
        println!("tark-bench: wrote {}", path.display());
    }
    Ok(())
}

async fn bench() -> anyhow::Result<()> {
    let n: usize = env_or("TARK_BENCH_N", 3000);
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
    // And an HTTPS one (h2 by ALPN), trusted by tarkd through SSL_CERT_FILE.
    let https = hostcalls::Https::start(dir.path())?;
    let https_port = https.server.port;
    let roots = https.roots.display().to_string();

    // Tarkds with the notes plugin and a tool without host calls: one with the
    // full sandbox, one with the worker lockdown and namespaces off, and for
    // cold starts one with the full sandbox and no standby workers.
    let start = |sandboxed: bool, standby: usize| -> anyhow::Result<Tarkd> {
        // Kills are part of the benchmark: no quarantine.
        let config = format!(
            "[sandbox]\nlockdown = {sandboxed}\nnamespaces = {sandboxed}\n[supervision]\nintensity = 1000000\n[workers]\nstandby = {standby}\n"
        );
        let bare = fixtures::tool("bare", "", "")?;
        let probe_caps = format!(
            "storage = true\nhttp = [\"http://localhost:{http_port}\", \"https://localhost:{https_port}\"]"
        );
        Tarkd::start(
            vec![
                PluginFiles::notes()?,
                PluginFiles::new("bare", &manifest("bare", "tool", ""), Some(bare)),
                PluginFiles::probe(&probe_caps)?,
                PluginFiles::echo()?,
            ],
            Options {
                config,
                env: vec![("SSL_CERT_FILE".into(), roots.clone())],
                ..Default::default()
            },
        )
    };
    let (on, off) = (start(true, cold::STANDBY)?, start(false, cold::STANDBY)?);
    let spawning = start(true, 0)?;
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

    let host_calls = hostcalls::run(&on, http_port, &https, n).await?;

    // Cold start (full sandbox): restart the plugin, then time its first call,
    // with the compiled module in the cache and without; by a tarkd that
    // spawns each worker, and (cached) by one that binds a standby worker,
    // once its pool is full again.
    let (mut cached, mut compiled, mut bound) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cold_n {
        cached.push(cold::cold_start(&spawning, false, false).await?);
        compiled.push(cold::cold_start(&spawning, true, false).await?);
        bound.push(cold::cold_start(&on, false, true).await?);
    }
    let recovered = cold::kill_to_success(&spawning, cold_n, false).await?;
    let recovered_bound = cold::kill_to_success(&on, cold_n, true).await?;

    let (first_chunk, chunk_rate) = worlds::stream(&on.providers().await?, 100, cold_n).await?;
    let hook_rows = hook_dispatch(cold_n * 5).await?;
    let legacy_rows = legacy::bench(n, cold_n).await?;
    let author_rows = authors::bench(n, cold_n).await?;
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
    row(
        "cold start, standby worker, cached module",
        cold_n,
        percentiles(bound),
    );
    row(
        "worker SIGKILL to next success, standby worker",
        cold_n,
        percentiles(recovered_bound),
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
    let (tls_broker_p, tls_direct_p, tls_fresh_p) = (
        percentiles(host_calls.https_broker),
        percentiles(host_calls.https_direct),
        percentiles(host_calls.https_fresh),
    );
    row("https GET (h2) via plugin + broker", n_http, tls_broker_p);
    row("https GET (h2) by tarkd's client", n_http, tls_direct_p);
    row("https GET, new client each (no reuse)", n_http, tls_fresh_p);
    let (first_p, rate_p) = (percentiles(first_chunk), median(chunk_rate));
    row("ChatStream first chunk (100-word reply)", cold_n, first_p);
    for (name, n, p) in hook_rows {
        row(&name, n, p);
    }
    let legacy_p = rows(legacy_rows);
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
    if let Some(author_rows) = author_rows {
        let p = rows(author_rows);
        if let [seed, wasi, plain, cold_seed, cold_wasi, cold_plain] = p[..] {
            println!(
                "ratio against the unknown-unknown component at p50: InvokeTool seed recipe {:.2}, WASI component {:.2}; cold start seed recipe {:.2}, WASI component {:.2}",
                seed.0 / plain.0,
                wasi.0 / plain.0,
                cold_seed.0 / cold_plain.0,
                cold_wasi.0 / cold_plain.0
            );
        }
    }
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
        report::load(name, l.per_sec, l.cpu_us_per_call, l.calls);
    }
    for (name, value) in [
        ("invoke_bare_ok_vs_two_hop_echo_p50", on_p.0 / hops_p.0),
        (
            "cpu_per_call_1_worker_vs_two_hop_echo",
            load_1.cpu_us_per_call / load_hops.cpu_us_per_call,
        ),
        (
            "cpu_per_call_8_workers_vs_two_hop_echo",
            load_8.cpu_us_per_call / load_hops.cpu_us_per_call,
        ),
        ("http_via_broker_vs_direct_p50", broker_p.0 / direct_p.0),
        (
            "https_via_broker_vs_direct_p50",
            tls_broker_p.0 / tls_direct_p.0,
        ),
        (
            "https_new_client_vs_kept_p50",
            tls_fresh_p.0 / tls_direct_p.0,
        ),
    ] {
        report::ratio(name, value);
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
    println!(
        "https via plugin+broker / direct at p50: {:.2} (+{:.0} µs); a new client per GET / kept connections (direct): {:.2}",
        tls_broker_p.0 / tls_direct_p.0,
        tls_broker_p.0 - tls_direct_p.0,
        tls_fresh_p.0 / tls_direct_p.0
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
/// A number from the environment (`TARK_BENCH_*`), or `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
