//! Plugins built the way authors build them, against the same plugin built as
//! this repository's examples were before: examples/plugins/guide-tool's one
//! source, built three ways, each in a tarkd of its own, sampled round-robin
//! in one run:
//!
//! - `seed recipe`: the committed `wasm32-wasip1` core module (tark's SDK
//!   guide), which tarkd adapts to a component at load;
//! - `WASI component`: the same object linked into a component with the
//!   preview-1 adapter (what `cargo component build` gives);
//! - `unknown-unknown`: a `wasm32-unknown-unknown` component, no WASI.
//!
//! The last two are built by scripts/bench into `TARK_BENCH_VARIANTS`; without
//! them this part is skipped, and says so.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, call, fixtures};

use crate::legacy::Rows;

/// Each variant's file in `TARK_BENCH_VARIANTS` (empty: the committed one).
const VARIANTS: [&str; 3] = ["", "wasip1-component.wasm", "unknown-component.wasm"];

/// Cold start (restart, then the first call, compiled artifact cached) and
/// one warm call of each variant; `None` when the variants are not built.
pub async fn bench(n: usize, cold_n: usize) -> anyhow::Result<Option<Rows>> {
    let Some(dir) = std::env::var_os("TARK_BENCH_VARIANTS").map(PathBuf::from) else {
        println!(
            "tark-bench: authors' builds skipped: TARK_BENCH_VARIANTS unset (scripts/bench sets it)"
        );
        return Ok(None);
    };
    let example = fixtures::repo_root().join("examples/plugins/guide-tool");
    let manifest = std::fs::read_to_string(example.join("plugin.toml"))?;
    let mut tarkds = Vec::new();
    for file in VARIANTS {
        let wasm = if file.is_empty() {
            std::fs::read(example.join("plugin.wasm"))?
        } else {
            std::fs::read(dir.join(file))?
        };
        let t = Tarkd::start(
            vec![PluginFiles::new("my-tool", &manifest, Some(wasm))],
            Options {
                config: "[supervision]\nintensity = 1000000\n".into(),
                ..Default::default()
            },
        )?;
        tarkds.push(t);
    }
    let mut tools = Vec::new();
    let mut plugins = Vec::new();
    for t in &tarkds {
        tools.push(t.tools().await?);
        plugins.push(t.plugins().await?);
    }
    let args = r#"{"name":"Ada"}"#;
    // Warm up: compile (and adapt) once, fill each tarkd's artifact cache.
    for _ in 0..(n / 10).max(10) {
        for c in &mut tools {
            call(c, "greet", args).await.map_err(anyhow::Error::msg)?;
        }
    }
    let mut warm: [Vec<Duration>; 3] = Default::default();
    for _ in 0..n {
        for (i, c) in tools.iter_mut().enumerate() {
            let t0 = Instant::now();
            call(c, "greet", args).await.map_err(anyhow::Error::msg)?;
            warm[i].push(t0.elapsed());
        }
    }
    let mut cold: [Vec<Duration>; 3] = Default::default();
    for _ in 0..cold_n {
        for i in 0..3 {
            plugins[i]
                .restart_plugin(pb::PluginRef {
                    id: "my-tool".into(),
                })
                .await?;
            let t0 = Instant::now();
            call(&mut tools[i], "greet", args)
                .await
                .map_err(anyhow::Error::msg)?;
            cold[i].push(t0.elapsed());
        }
    }
    let [w0, w1, w2] = warm;
    let [c0, c1, c2] = cold;
    Ok(Some(vec![
        ("InvokeTool, seed recipe (adapted core module)", n, w0),
        ("InvokeTool, WASI component (wasip1 + adapter)", n, w1),
        ("InvokeTool, unknown-unknown component", n, w2),
        ("cold start, seed recipe (adapted)", cold_n, c0),
        ("cold start, WASI component", cold_n, c1),
        ("cold start, unknown-unknown component", cold_n, c2),
    ]))
}
