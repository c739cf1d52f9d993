//! Grants that reached further than they read: env patterns `A*`, `H*`,
//! `_*` (accepted, they read `AWS_CA_BUNDLE`, `HOME`, `HTTPLIB2_CA_CERTS`);
//! `fs_read` over `/proc` reading another root process's environment (a
//! password in a root `sleep`'s); a 38 KB path that broke the broker's reply
//! (an HTTP/2 protocol error instead of a refusal) and paths over 4096 bytes
//! refused without an audit record.

use std::process::{Command, Stdio};

use serde_json::json;
use tark_tests::{Options, PluginFiles, Tarkd, probe};

/// A process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_patterns_are_a_name_or_prefix_underscore_star() -> anyhow::Result<()> {
    let secret = "aws-bundle-secret-4711";
    let t = Tarkd::start(
        vec![PluginFiles::probe(r#"env = ["A*", "H*", "_*"]"#)?],
        Options {
            env: vec![("AWS_CA_BUNDLE".into(), secret.into())],
            ..Options::default()
        },
    )?;
    let got = probe(&t, json!({"op": "env", "name": "AWS_CA_BUNDLE"})).await?;
    assert!(!got.to_string().contains(secret), "read: {got}");
    let got = probe(&t, json!({"op": "env", "name": "HOME"})).await?;
    assert!(got.is_string(), "the plugin runs: {got}");
    let info = t.plugin_info("probe").await?;
    let said = info.diagnostics.join("; ");
    for pattern in ["\"A*\"", "\"H*\"", "\"_*\""] {
        assert!(
            said.contains(pattern) && said.contains("PREFIX_*"),
            "{pattern} not refused with the rule: {said}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_reaches_no_other_process() -> anyhow::Result<()> {
    let password = "hunter2-in-a-root-environment";
    let sleeper = Killed(
        Command::new("sleep")
            .arg("600")
            .env("DB_PASSWORD", password)
            .stdin(Stdio::null())
            .spawn()?,
    );
    let t = Tarkd::start(
        vec![PluginFiles::probe(r#"fs_read = ["/proc"]"#)?],
        Options::default(),
    )?;
    let read = |path: String| {
        let t = &t;
        async move { probe(t, json!({"op": "fs", "path": path})).await }
    };
    for path in [
        format!("/proc/{}/environ", sleeper.0.id()),
        format!("/proc/{}/cmdline", sleeper.0.id()),
        format!("/proc/{}/environ", t.pid()),
        "/proc/1/environ".to_owned(),
        format!("/proc/{}/task/{}/environ", t.pid(), t.pid()),
    ] {
        let got = read(path.clone()).await?;
        assert!(!got.to_string().contains(password), "{path}: {got}");
        assert!(
            got["ok"] == false
                && got["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("another process")),
            "{path}: {got}"
        );
    }
    // Through another process's links: refused too (they lead out of /proc).
    for path in [
        format!("/proc/{}/root/etc/hostname", sleeper.0.id()),
        format!("/proc/{}/cwd", t.pid()),
    ] {
        let got = read(path.clone()).await?;
        assert!(got["ok"] == false, "{path}: {got}");
    }
    // The plugin's own process, as /proc/self: its worker, not tarkd.
    let own = read("/proc/self/status".into()).await?;
    let status = own["content"].as_str().unwrap_or_default();
    let pid = t.running_worker("probe", "default").await?;
    assert!(
        status.contains(&format!("\nPid:\t{pid}\n")) || status.contains("tark-worker"),
        "{own}"
    );
    assert!(read("/proc/cpuinfo".into()).await?["ok"] == true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_paths_and_names_are_clean_audited_refusals() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::probe(r#"fs_read = ["./data"]"#)?],
        Options::default(),
    )?;
    for len in [5_000, 38_000, 400_000] {
        let path = format!("/{}", "a".repeat(len));
        let got = probe(&t, json!({"op": "fs", "path": path})).await?;
        assert!(
            got["ok"] == false
                && got["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("over the 4096-byte limit") && e.len() < 4096),
            "{len}: {}",
            &got.to_string()[..got.to_string().len().min(500)]
        );
    }
    let name = "A".repeat(300_000);
    let got = probe(&t, json!({"op": "env", "name": name})).await?;
    assert_eq!(got, json!({"ok": true, "value": null}));
    // Each refusal is in the audit, with its target cut short.
    let audit = t.ctl_ok(&["--json", "audit", "--plugin", "probe"])?;
    let v: serde_json::Value = serde_json::from_str(&audit)?;
    let fs_denials = v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["capability"] == "fs" && e["decision"] == "deny")
        .count();
    assert!(fs_denials >= 3, "{audit}");
    assert!(
        audit.len() < 64 << 10,
        "audit entries are bounded: {} bytes",
        audit.len()
    );
    // The worker survived every call; the log holds no megabyte line.
    assert!(t.log().iter().all(|l| l.len() < 16 << 10));
    assert!(probe(&t, json!({"op": "fs", "path": "./data/readme.txt"})).await?["ok"] == true);
    Ok(())
}
