//! Calls cut off by their caller (a client deadline, a dropped stream) stop in the
//! guest, and the next call always succeeds.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, call, invoke};

/// A small, repeatable source of cut-off times (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (self.0 >> 33) % (hi - lo + 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_cancellations_then_every_next_call_succeeds() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::probe("storage = true")?, PluginFiles::echo()?],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    let mut providers = t.providers().await?;
    let long = r#"{"op":"storage_get","key":"k","times":400}"#;
    let mut rng = Lcg(0x7a4d);
    let (mut cut, mut finished) = (0, 0);
    for i in 0..1000 {
        let after = Duration::from_micros(rng.next_in(2_000, 8_000));
        if i % 4 == 3 {
            // A stream dropped part-way.
            let req = pb::ChatRequest {
                plugin: "echo".into(),
                model: "forever".into(),
                messages: vec![pb::ChatMessage {
                    role: "user".into(),
                    content: "go".into(),
                }],
            };
            let mut stream = providers.chat_stream(req).await?.into_inner();
            let _ = tokio::time::timeout(after, async {
                while let Ok(Some(_)) = stream.message().await {}
            })
            .await;
            cut += 1;
        } else {
            let mut req = tonic::Request::new(invoke("probe", long));
            req.set_timeout(after);
            match tools.invoke_tool(req).await {
                Ok(_) => finished += 1,
                Err(_) => cut += 1,
            }
        }
        // The next call must succeed, whatever state the last one was cut in.
        call(&mut tools, "probe", r#"{"op":"storage_get","key":"k"}"#)
            .await
            .map_err(|e| anyhow::anyhow!("call after cancellation {i} failed: {e}"))?;
    }
    assert!(
        cut > 500,
        "only {cut} of 1000 calls were cut off ({finished} finished)"
    );
    Ok(())
}
