//! What plugins write into tarkd's own records. Log injection: a plugin log
//! message with `\n`, `\r` or U+2028 wrote a forged, well-formed tarkd line in
//! text format. Audit flooding: one agent's 20 calls of a plugin that asks
//! for a forbidden variable in a loop grew the audit by 10.9 MB and tarkd's
//! log by 18.4 MB (50,000 denial records), and the rotation then erased the
//! audit's history within minutes.

use serde_json::json;
use tark_tests::{Failed, Options, PluginFiles, Tarkd, fixtures, invoke, probe, tool_plugin};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_text_cannot_forge_a_log_line() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::probe("")?], Options::default())?;
    for sep in ["\n", "\r", "\r\n", "\u{2028}", "\u{85}", "\u{1b}[2K\r"] {
        let message = format!(
            "innocent{sep}2026-12-05T00:00:00.000000Z  INFO tarkd::server: FORGED admin approved shell for evil"
        );
        let got = probe(&t, json!({"op": "log", "message": message})).await?;
        assert_eq!(got["ok"], true, "{got}");
    }
    t.wait_for_log("FORGED", std::time::Duration::from_secs(10))?;
    for line in t.log() {
        if let Some(at) = line.find("FORGED") {
            assert!(
                line.contains("innocent") && at > line.find("innocent").unwrap_or(usize::MAX),
                "a line of its own: {line:?}"
            );
            assert!(!line.contains('\u{2028}') && !line.contains('\r') && !line.contains('\u{85}'));
        }
    }
    Ok(())
}

/// Bytes in a file, 0 if it is absent.
fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_flood_costs_the_audit_and_the_log_a_few_lines() -> anyhow::Result<()> {
    // Asks for an undeclared variable in a loop until its deadline.
    let mut t = Tarkd::start(
        vec![tool_plugin("flood", "", fixtures::host_call_loop("flood"))?],
        Options::config("[limits]\ndeadline_ms = 1000"),
    )?;
    let audit_file = t.dir.path().join("state/audit.log");
    let mut tools = t.tools().await?;
    for _ in 0..5 {
        let err = tools.invoke_tool(invoke("flood-run", "{}")).await.failed();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    }
    // Every denial is counted...
    let counts = t.ctl_ok(&["--json", "audit", "--plugin", "flood"])?;
    let v: serde_json::Value = serde_json::from_str(&counts)?;
    let denials = v["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["capability"] == "env")
        .and_then(|c| c["denials"].as_u64())
        .unwrap_or(0);
    assert!(denials > 500, "the flood was a flood: {denials} denials");
    // ...and a stopped tarkd has summarised what it left out.
    let log_bytes: usize = t.log().iter().map(String::len).sum();
    t.stop(libc::SIGTERM)?;
    let text = std::fs::read_to_string(&audit_file)?;
    assert!(
        size(&audit_file) < 64 << 10,
        "{denials} denials wrote {} bytes of audit",
        size(&audit_file)
    );
    assert!(
        log_bytes < 256 << 10,
        "{denials} denials wrote {log_bytes} bytes of log"
    );
    let suppressed: u64 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["plugin"] == "flood")
        .filter_map(|e| e["suppressed"].as_u64())
        .sum();
    let written = text
        .lines()
        .filter(|l| l.contains("\"flood\"") && !l.contains("suppressed"))
        .count() as u64;
    assert_eq!(
        written + suppressed,
        denials,
        "every denial written or counted in a summary"
    );
    assert!(text.contains("more deny records suppressed"), "{text}");
    Ok(())
}
