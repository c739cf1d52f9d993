//! tark's core-module ABI against components, in one tarkd and one run: the same
//! provider call (`Chat` of one message, `ListModels`) to the core-module
//! example (legacy-provider: pointer/length ABI, JSON) and to the component echo
//! provider (canonical ABI), sampled round-robin; and the cold start (restart,
//! then the first call) of a wasm32-unknown-unknown core module, a wasm32-wasip1
//! core module (ws-channel, with tarkd's WASI linked) and a component.

use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd};

/// Each row's name, sample count and samples.
pub type Rows = Vec<(&'static str, usize, Vec<Duration>)>;

fn chat(plugin: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        plugin: plugin.into(),
        model: "echo".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "hello".into(),
        }],
    }
}

pub async fn bench(n: usize, cold_n: usize) -> anyhow::Result<Rows> {
    // ws-channel's origin is never dialled: channel_info makes no host call.
    let t = Tarkd::start(
        vec![
            PluginFiles::legacy_provider()?,
            PluginFiles::echo()?,
            PluginFiles::ws_channel(9)?,
        ],
        Options {
            config: "[supervision]\nintensity = 1000000\n".into(),
            ..Default::default()
        },
    )?;
    let providers = t.providers().await?;
    let channels = pb::channels_client::ChannelsClient::new(t.channel().await?);
    let mut plugins = t.plugins().await?;

    let chat_of = |plugin: &'static str| {
        let c = providers.clone();
        move || {
            let mut c = c.clone();
            async move {
                let r = c.chat(chat(plugin)).await?.into_inner();
                anyhow::ensure!(r.text.contains("hello"), "{plugin} answered {:?}", r.text);
                Ok(())
            }
        }
    };
    let models_of = |plugin: &'static str| {
        let c = providers.clone();
        move || {
            let mut c = c.clone();
            async move {
                let r = c
                    .list_models(pb::PluginRef { id: plugin.into() })
                    .await?
                    .into_inner();
                anyhow::ensure!(!r.models.is_empty(), "{plugin} listed no models");
                Ok(())
            }
        }
    };
    let mut calls = [chat_of("legacy-provider"), chat_of("echo")];
    let mut lists = [models_of("legacy-provider"), models_of("echo")];
    for _ in 0..n / 10 {
        for c in &mut calls {
            c().await?;
        }
        for c in &mut lists {
            c().await?;
        }
    }
    let mut warm: [Vec<Duration>; 4] = Default::default();
    for _ in 0..n {
        for (i, c) in calls.iter_mut().enumerate() {
            let t0 = Instant::now();
            c().await?;
            warm[i].push(t0.elapsed());
        }
        for (i, c) in lists.iter_mut().enumerate() {
            let t0 = Instant::now();
            c().await?;
            warm[2 + i].push(t0.elapsed());
        }
    }

    // Cold start: restart the plugin's workers, then its first call (compiled
    // artifact from tarkd's cache: ws-channel's first call, unsampled, fills it).
    channels
        .clone()
        .list_channels(pb::ListChannelsRequest::default())
        .await?;
    let mut cold: [Vec<Duration>; 3] = Default::default();
    for _ in 0..cold_n {
        for (i, id) in ["legacy-provider", "ws-channel", "echo"].iter().enumerate() {
            plugins
                .restart_plugin(pb::PluginRef { id: (*id).into() })
                .await?;
            let t0 = Instant::now();
            if *id == "ws-channel" {
                let r = channels
                    .clone()
                    .list_channels(pb::ListChannelsRequest::default())
                    .await?
                    .into_inner();
                anyhow::ensure!(r.errors.is_empty() && !r.channels.is_empty(), "{r:?}");
            } else {
                models_of(id)().await?;
            }
            cold[i].push(t0.elapsed());
        }
    }

    let [chat_core, chat_component, models_core, models_component] = warm;
    let [cold_core, cold_wasip1, cold_component] = cold;
    Ok(vec![
        ("Chat, core module (legacy-provider)", n, chat_core),
        ("Chat, component (echo)", n, chat_component),
        ("ListModels, core module", n, models_core),
        ("ListModels, component", n, models_component),
        (
            "cold start, core module (unknown-unknown)",
            cold_n,
            cold_core,
        ),
        (
            "cold start, core module (wasm32-wasip1)",
            cold_n,
            cold_wasip1,
        ),
        ("cold start, component", cold_n, cold_component),
    ])
}
