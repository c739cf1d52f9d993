//! The plugin worlds' own paths: a streamed chat (time to the first chunk, and
//! chunks per second over the whole stream) and hook dispatch.

use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

/// Per stream: time to the first chunk, and chunks per second.
pub async fn stream(
    providers: &pb::providers_client::ProvidersClient<Channel>,
    words: usize,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<f64>)> {
    let text = vec!["word"; words].join(" ");
    let (mut first, mut rate) = (Vec::new(), Vec::new());
    // The first stream starts the provider's worker: warm up, unsampled.
    for i in 0..=n {
        let req = pb::ChatRequest {
            plugin: "echo".into(),
            model: "echo".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: text.clone(),
            }],
        };
        let t0 = Instant::now();
        let mut s = providers.clone().chat_stream(req).await?.into_inner();
        let mut chunks = 0usize;
        let sampled = i > 0;
        while let Some(c) = s.message().await? {
            if chunks == 0 && sampled {
                first.push(t0.elapsed());
            }
            chunks += 1;
            if c.done {
                break;
            }
        }
        anyhow::ensure!(chunks == words + 1, "stream gave {chunks} chunks");
        if sampled {
            rate.push(chunks as f64 / t0.elapsed().as_secs_f64());
        }
    }
    Ok((first, rate))
}

/// `DispatchHook` latency for a before-tool event (hooks one after another) and
/// a named event (all at once).
pub async fn hooks(
    hooks: &pb::hooks_client::HooksClient<Channel>,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    use pb::hook_event::Event;
    let before = pb::HookEvent {
        event: Some(Event::ToolExecute(pb::ToolExecuteEvent {
            tool: "shell".into(),
            arguments_json: r#"{"cmd":"ls"}"#.into(),
        })),
        ..Default::default()
    };
    let named = pb::HookEvent {
        event: Some(Event::Named(pb::NamedEvent {
            name: "session-start".into(),
            payload_json: "{}".into(),
        })),
        ..Default::default()
    };
    let (mut seq, mut fan) = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (event, out) in [(&before, &mut seq), (&named, &mut fan)] {
            let t0 = Instant::now();
            let o = hooks
                .clone()
                .dispatch_hook(event.clone())
                .await?
                .into_inner();
            out.push(t0.elapsed());
            anyhow::ensure!(o.errors.is_empty() && !o.blocked, "hooks failed: {o:?}");
        }
    }
    Ok((seq, fan))
}

/// `tark-bench stream`: only the streamed chat, `TARK_BENCH_ROUNDS` rounds
/// (default 3) of `TARK_BENCH_N` 100-word streams (default 100), with the CPU
/// tarkd and the provider's worker spend per chunk. For comparing builds
/// (`TARK_BIN_DIR`) quickly.
pub async fn only() -> anyhow::Result<()> {
    let env = super::env_or::<usize>;
    let (rounds, n) = (env("TARK_BENCH_ROUNDS", 3), env("TARK_BENCH_N", 100));
    let t = tark_tests::Tarkd::start(
        vec![tark_tests::PluginFiles::echo()?],
        tark_tests::Options::default(),
    )?;
    let providers = t.providers().await?;
    // Warm: the worker is started by the first stream.
    stream(&providers, 100, 1).await?;
    let worker = t.worker_pid("echo", "default").await?.unwrap_or(0);
    let pids = [t.pid(), worker];
    let cpu = || super::load::ticks(&pids);
    for round in 1..=rounds {
        let before = cpu();
        let (first, rate) = stream(&providers, 100, n).await?;
        let ticks = cpu() - before;
        let chunks = (n * 101) as f64;
        let cpu_us = ticks as f64 * super::load::tick_us() / chunks;
        let (first_p, rate_p) = (super::percentiles(first), super::median(rate));
        println!(
            "round {round}: ChatStream {rate_p:>7.0} chunks/s (median of {n}), first chunk p50 {:>6.1} µs, {cpu_us:>6.1} µs CPU/chunk (tarkd + worker)",
            first_p.0
        );
    }
    Ok(())
}
