//! Metrics scraped from a real tarkd after known calls: over `[metrics]
//! listen` (a Unix socket here) with a plain HTTP/1.1 GET, parsed as
//! Prometheus text, and the same through `tarkctl metrics`.

use std::collections::HashMap;

use anyhow::{Context, ensure};
use tark_tests::{Options, PluginFiles, Tarkd, call, invoke};

/// Series (name with labels) to value, from the text exposition format.
fn parse(text: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut series = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').context("no value")?;
        series.insert(name.to_owned(), value.parse()?);
    }
    Ok(series)
}

async fn scrape(socket: &std::path::Path) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Empty};
    let io = hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(socket).await?);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())?;
    let response = send.send_request(req).await?;
    ensure!(response.status() == 200, "{}", response.status());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_calls_show_in_the_scraped_metrics() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let endpoint = dir.path().join("metrics.sock");
    let t = Tarkd::start(
        vec![PluginFiles::notes()?, PluginFiles::probe("")?],
        Options::config(&format!(
            "[metrics]\nlisten = \"unix:{}\"\n",
            endpoint.display()
        )),
    )?;
    let mut tools = t.tools().await?;
    let probe_denied = r#"{"op":"storage_get","key":"k"}"#;
    // Warm up: workers started, tool lists described (calls of their own).
    call(&mut tools, "notes_save", r#"{"title":"w","body":"b"}"#)
        .await
        .map_err(anyhow::Error::msg)?;
    call(&mut tools, "probe", probe_denied)
        .await
        .map_err(anyhow::Error::msg)?;
    let before = parse(&scrape(&endpoint).await?)?;

    for i in 0..3 {
        let args = format!(r#"{{"title":"t{i}","body":"b"}}"#);
        call(&mut tools, "notes_save", &args)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let unknown = tools.invoke_tool(invoke("no_such_tool", "{}")).await;
    ensure!(unknown.is_err());
    // A host call outside the probe's (empty) grant: one storage denial.
    call(&mut tools, "probe", probe_denied)
        .await
        .map_err(anyhow::Error::msg)?;

    let text = scrape(&endpoint).await?;
    let after = parse(&text)?;
    let delta =
        |series: &str| after.get(series).unwrap_or(&0.0) - before.get(series).unwrap_or(&0.0);
    let invoke = "rpc=\"/tark.plugin.v1.Tools/InvokeTool\"";
    let want = [
        (
            format!("tarkd_api_calls_total{{{invoke},code=\"Ok\"}}"),
            4.0,
        ),
        (
            format!("tarkd_api_calls_total{{{invoke},code=\"NotFound\"}}"),
            1.0,
        ),
        (
            format!("tarkd_api_call_duration_seconds_count{{{invoke}}}"),
            5.0,
        ),
        (
            "tarkd_plugin_calls_total{plugin=\"notes\",code=\"Ok\"}".into(),
            3.0,
        ),
        (
            "tarkd_plugin_calls_total{plugin=\"probe\",code=\"Ok\"}".into(),
            1.0,
        ),
        (
            "tarkd_plugin_call_duration_seconds_bucket{le=\"+Inf\",plugin=\"notes\"}".into(),
            3.0,
        ),
        ("tarkd_worker_starts_total{plugin=\"notes\"}".into(), 0.0),
        ("tarkd_denials_total{capability=\"storage\"}".into(), 1.0),
        (
            "tarkd_broker_calls_total{capability=\"StorageGet\"}".into(),
            1.0,
        ),
    ];
    for (series, value) in &want {
        ensure!(
            delta(series) == *value,
            "{series}: {} (want +{value}) in\n{text}",
            delta(series)
        );
    }
    ensure!(
        after
            .get("tarkd_worker_starts_total{plugin=\"notes\"}")
            .is_some_and(|n| *n >= 1.0)
    );
    ensure!(
        after.get("tarkd_live_workers").is_some_and(|n| *n >= 2.0),
        "{text}"
    );
    ensure!(
        after.get("tarkd_storage_bytes").is_some_and(|b| *b > 0.0),
        "{text}"
    );

    let out = t.tarkctl(&["metrics"])?;
    ensure!(out.status.success(), "{out:?}");
    let via_tarkctl = parse(&String::from_utf8(out.stdout)?)?;
    ensure!(via_tarkctl.contains_key("tarkd_worker_starts_total{plugin=\"notes\"}"));
    Ok(())
}

#[test]
fn logs_can_be_one_json_object_per_line() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tarkd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {:?}\nstate_dir = {:?}\nplugins_dir = {:?}\n",
            dir.path().join("tarkd.sock"),
            dir.path().join("state"),
            dir.path().join("plugins")
        ),
    )?;
    let mut child = std::process::Command::new(tark_tests::binary("tarkd")?)
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json"])
        .env("TARKD_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut serving = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        let object: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
        if object["fields"]["message"] == "tarkd serving" {
            serving = Some(object);
            break;
        }
    }
    child.kill()?;
    child.wait()?;
    let serving = serving.context("no \"tarkd serving\" line")?;
    ensure!(
        serving["level"] == "INFO" && serving["fields"]["pid"].is_number(),
        "{serving}"
    );
    Ok(())
}
