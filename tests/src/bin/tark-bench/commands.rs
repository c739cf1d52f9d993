//! Command tools: `InvokeTool` of a tool that runs `/bin/true` in tark-jail,
//! against spawning `/bin/true` from this process (the floor of running a
//! program) and against `InvokeTool` of a wasm tool with no host calls, all
//! sampled round-robin in the same run.

use std::time::{Duration, Instant};

use tark_tests::fixtures::{self, manifest};
use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};

/// (jailed command tool, direct spawn, wasm tool) latencies.
pub async fn bench(n: usize) -> anyhow::Result<[Vec<Duration>; 3]> {
    let helper = "[plugin]\nname = \"helper\"\nversion = \"1.0.0\"\ntype = \"tool\"\n\n[capabilities]\nshell = true\n\n[[tools]]\nname = \"nothing\"\ncommand = \"/bin/true\"\n";
    let bare = fixtures::tool("bare", "", "")?;
    let t = Tarkd::start(
        vec![
            PluginFiles::new("helper", helper, None),
            PluginFiles::new("bare", &manifest("bare", "tool", ""), Some(bare)),
        ],
        Options::default(),
    )?;
    let tools = t.tools().await?;
    let call = |tool: &'static str| {
        let mut c = tools.clone();
        async move {
            output(c.invoke_tool(invoke(tool, "{}")).await)
                .map(drop)
                .map_err(anyhow::Error::msg)
        }
    };
    let spawn = || async {
        let status = tokio::process::Command::new("/bin/true").status().await?;
        anyhow::ensure!(status.success(), "/bin/true failed");
        Ok(())
    };
    for _ in 0..(n / 10).max(3) {
        call("nothing").await?;
        spawn().await?;
        call("bare-ok").await?;
    }
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for _ in 0..n {
        let t0 = Instant::now();
        call("nothing").await?;
        samples[0].push(t0.elapsed());
        let t0 = Instant::now();
        spawn().await?;
        samples[1].push(t0.elapsed());
        let t0 = Instant::now();
        call("bare-ok").await?;
        samples[2].push(t0.elapsed());
    }
    Ok(samples)
}
