//! `tarkctl conformance` through real processes: a private tarkd started by
//! tarkctl, the plugin in its sandboxed workers, the JSON report. A plugin that
//! keeps its contract passes every check; one that traps and reaches beyond
//! what it declares fails exactly those checks, and tarkctl exits non-zero.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tark_tests::{Options, PluginFiles, Tarkd, binary, fixtures};

fn write(plugin: &PluginFiles, into: &Path) -> anyhow::Result<()> {
    for (name, bytes) in &plugin.files {
        let path = into.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

/// Runs `tarkctl conformance` on `target` with `--json=FILE`: its success
/// and the report.
fn conformance(target: &str, socket: Option<&Path>) -> anyhow::Result<(bool, Value, String)> {
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.json");
    let mut cmd = Command::new(binary("tarkctl")?);
    if let Some(s) = socket {
        cmd.arg("--socket").arg(s);
    }
    let out = cmd
        .arg("conformance")
        .arg(target)
        .arg(format!("--json={}", report.display()))
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&report)?)?;
    Ok((out.status.success(), report, text))
}

fn status<'a>(report: &'a Value, id: &str) -> (&'a str, &'a str) {
    let check = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id));
    (
        check
            .and_then(|c| c["status"].as_str())
            .unwrap_or("missing"),
        check.and_then(|c| c["detail"].as_str()).unwrap_or(""),
    )
}

#[test]
fn a_plugin_that_keeps_its_contract_passes_every_check() -> anyhow::Result<()> {
    let notes = fixtures::repo_root().join("examples/plugins/notes");
    let (ok, report, text) = conformance(&notes.to_string_lossy(), None)?;
    assert!(ok, "{text}");
    assert_eq!(report["plugin"], "notes");
    assert_eq!(report["type"], "tool");
    assert_eq!(report["passed"], true);
    let checks = report["checks"].as_array().map(Vec::len).unwrap_or(0);
    assert!(checks >= 15, "{report:#}");
    for id in [
        "install",
        "tools.list",
        "tools.execute.valid:notes_save",
        "tools.execute.invalid:notes_save",
        "limits",
        "capabilities.declared",
        "worker.survived",
    ] {
        assert_eq!(status(&report, id).0, "pass", "{id}: {report:#}");
    }
    // The table, too.
    assert!(
        text.contains("notes: ") && text.contains(" 0 failed"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_plugin_that_traps_and_reaches_beyond_its_manifest_fails_those_checks() -> anyhow::Result<()> {
    // `bad-run` reads an environment variable it never declared, then traps.
    let imports = r#"(import "tark:plugin/env@0.1.0" "get" (func $get (param i32 i32 i32)))
  (data (i32.const 3000) "CONFORMANCE_SECRET")"#;
    let wasm = fixtures::tool(
        "bad",
        imports,
        "(call $get (i32.const 3000) (i32.const 18) (i32.const 3072)) (unreachable)",
    );
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("bad");
    write(&tark_tests::tool_plugin("bad", "", wasm)?, &folder)?;
    let (ok, report, text) = conformance(&folder.to_string_lossy(), None)?;
    assert!(!ok, "{text}");
    assert_eq!(report["passed"], false);
    assert_eq!(status(&report, "install").0, "pass", "{report:#}");
    assert_eq!(
        status(&report, "tools.execute.valid:bad-ok").0,
        "pass",
        "{report:#}"
    );
    let (run, detail) = status(&report, "tools.execute.valid:bad-run");
    assert_eq!(run, "fail", "{report:#}");
    assert!(detail.contains("PLUGIN_TRAPPED"), "{detail}");
    let (caps, detail) = status(&report, "capabilities.declared");
    assert_eq!(caps, "fail", "{report:#}");
    assert!(detail.contains("CONFORMANCE_SECRET"), "{detail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_plugin_is_checked_from_its_folder_without_touching_it() -> anyhow::Result<()>
{
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::default())?;
    let (ok, report, text) = conformance("notes", Some(&t.socket))?;
    assert!(ok, "{text}");
    assert_eq!(report["plugin"], "notes");
    // The host's tarkd ran nothing: no worker of notes was started there.
    assert_eq!(t.worker_pid("notes", "default").await?, None);
    // A name that is neither a folder nor installed is a clear error.
    let out = Command::new(binary("tarkctl")?)
        .arg("--socket")
        .arg(&t.socket)
        .args(["conformance", "no-such-plugin"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-plugin is neither a folder nor an installed plugin"),
        "{err}"
    );
    Ok(())
}
