//! Approvals and trust through real processes: `tarkctl plugin add` and
//! `tarkctl plugin grants` against a running tarkd, with the probe plugin making
//! the host calls that the grants decide.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tark_tests::servers::HttpServer;
use tark_tests::{Options, PluginFiles, Tarkd, fixtures, probe};

/// Writes the probe plugin's folder (manifest with `caps`, at `version`).
fn write_probe(dir: &Path, version: &str, caps: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let wasm = fixtures::repo_root().join("examples/plugins/probe/plugin.wasm");
    std::fs::copy(wasm, dir.join("plugin.wasm"))?;
    let manifest = fixtures::manifest("probe", "tool", caps).replace("1.0.0", version);
    std::fs::write(dir.join("plugin.toml"), manifest)?;
    Ok(())
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_needs_approval_and_grants_narrow_running_workers() -> anyhow::Result<()> {
    let mut t = Tarkd::start(
        vec![],
        Options {
            env: vec![("PROBE_X".into(), "x".into())],
            ..Default::default()
        },
    )?;
    let src = tempfile::tempdir()?;
    let src_dir = src.path().join("probe-build");
    write_probe(&src_dir, "0.1.0", "storage = true\nenv = [\"PROBE_*\"]")?;
    let src_arg = src_dir.display().to_string();

    // Without a terminal, --yes or --grant, nothing is installed.
    let asked = t.tarkctl(&["plugin", "add", &src_arg])?;
    let shown = text(&asked);
    assert!(!asked.status.success(), "{shown}");
    assert!(
        shown.contains("storage")
            && shown.contains("env=PROBE_*")
            && shown.contains("approval needed"),
        "{shown}"
    );
    assert!(
        t.plugins()
            .await?
            .get_plugin(tark_proto::plugin::v1::PluginRef { id: "probe".into() })
            .await
            .is_err()
    );

    // An approval may not exceed the declaration.
    let wider = t.tarkctl(&["plugin", "add", &src_arg, "--grant", "http=evil.example"])?;
    assert!(
        !wider.status.success() && text(&wider).contains("grants more than the plugin declares"),
        "{}",
        text(&wider)
    );

    // A narrower approval installs; what it leaves out is refused.
    let narrow = t.tarkctl(&["plugin", "add", &src_arg, "--grant", "env=PROBE_*"])?;
    assert!(narrow.status.success(), "{}", text(&narrow));
    let set = json!({ "op": "storage_set", "key": "k", "value": "v" });
    let refused = probe(&t, set.clone()).await?;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("not approved by the operator")),
        "{refused}"
    );
    assert_eq!(
        probe(&t, json!({ "op": "env", "name": "PROBE_X" })).await?["value"],
        "x"
    );
    let info = t.tarkctl(&["--json", "plugin", "info", "probe"])?;
    let info: Value = serde_json::from_slice(&info.stdout)?;
    assert_eq!(info["pending_approval"], json!(["storage"]), "{info}");

    // Approving what is pending applies to the running worker; so does revoking.
    let pid = t.worker_pid("probe", "default").await?;
    let approved = t.tarkctl(&["plugin", "grants", "probe", "--approve-all"])?;
    assert!(approved.status.success(), "{}", text(&approved));
    assert_eq!(probe(&t, set.clone()).await?["ok"], true);
    let revoked = t.tarkctl(&["--json", "plugin", "grants", "probe", "--revoke", "storage"])?;
    let revoked: Value = serde_json::from_slice(&revoked.stdout)?;
    assert_eq!(revoked["approved"], json!(["env=PROBE_*"]), "{revoked}");
    assert_eq!(revoked["pending"], json!(["storage"]), "{revoked}");
    assert_eq!(probe(&t, set.clone()).await?["ok"], false);
    assert_eq!(
        t.worker_pid("probe", "default").await?,
        pid,
        "grants changed without a restart"
    );

    // An update asking for more needs approval again; until then the old one runs.
    write_probe(
        &src_dir,
        "0.2.0",
        "storage = true\nenv = [\"PROBE_*\"]\nhttp = [\"api.example.com\"]",
    )?;
    let asked = t.tarkctl(&["plugin", "add", &src_arg])?;
    assert!(!asked.status.success(), "{}", text(&asked));
    assert!(
        text(&asked).contains("http=api.example.com"),
        "{}",
        text(&asked)
    );
    assert_eq!(t.plugin_info("probe").await?.version, "0.1.0");
    let yes = t.tarkctl(&["plugin", "add", &src_arg, "--yes"])?;
    assert!(yes.status.success(), "{}", text(&yes));
    let info = t.plugin_info("probe").await?;
    assert_eq!(
        (info.version.as_str(), info.pending_approval.len()),
        ("0.2.0", 0)
    );
    assert_ne!(
        t.worker_pid("probe", "default").await?,
        pid,
        "the update got a fresh worker"
    );
    assert_eq!(probe(&t, set.clone()).await?["ok"], true);

    // An update that asks for nothing new keeps the approval without asking.
    write_probe(&src_dir, "0.2.1", "storage = true\nenv = [\"PROBE_*\"]")?;
    let quiet = t.tarkctl(&["plugin", "add", &src_arg])?;
    assert!(quiet.status.success(), "{}", text(&quiet));
    assert_eq!(t.plugin_info("probe").await?.version, "0.2.1");

    // Approvals are durable.
    t.stop(libc::SIGTERM)?;
    t.launch()?;
    assert_eq!(
        probe(&t, json!({ "op": "storage_get", "key": "k" })).await?["value"],
        "v"
    );
    let g = t.tarkctl(&["plugin", "grants", "probe"])?;
    assert!(
        text(&g).contains("trust: enforced") && text(&g).contains("storage"),
        "{}",
        text(&g)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unapproved_plugins_get_nothing() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::probe("storage = true")?],
        Options {
            unapproved: true,
            ..Default::default()
        },
    )?;
    let v = probe(&t, json!({ "op": "storage_set", "key": "k", "value": "v" })).await?;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("tarkctl plugin grants probe")),
        "{v}"
    );
    let info = t.plugin_info("probe").await?;
    assert!(
        !info.approved && info.pending_approval == ["storage"],
        "{info:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_allows_and_audits_but_keeps_policy_and_network_rules() -> anyhow::Result<()> {
    let server = HttpServer::start()?;
    let t = Tarkd::start(
        vec![PluginFiles::probe("")?],
        Options {
            config: "[policy]\ntrust = \"warn\"\nenv = [\"PROBE_*\"]\n".into(),
            env: vec![("PROBE_X".into(), "x".into()), ("OTHER".into(), "o".into())],
            ..Default::default()
        },
    )?;
    // Undeclared, allowed by the policy: allowed, and audited as such.
    assert_eq!(
        probe(&t, json!({ "op": "env", "name": "PROBE_X" })).await?["value"],
        "x"
    );
    let line = t.wait_for_log("allowed outside the grant", Duration::from_secs(5))?;
    assert!(
        line.contains("PROBE_X") && line.contains("allow-undeclared"),
        "{line}"
    );
    // The policy still forbids.
    assert_eq!(
        probe(&t, json!({ "op": "env", "name": "OTHER" })).await?["value"],
        Value::Null
    );
    // An undeclared host is reachable only at public addresses: localhost is not.
    let url = format!("http://localhost:{}/hello", server.port);
    let v = probe(&t, json!({ "op": "http", "url": url })).await?;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("(loopback)")),
        "{v}"
    );
    assert_eq!(server.hits(), 0);
    Ok(())
}

/// Runs `tarkctl plugin add` on a terminal (util-linux `script` gives it one)
/// and answers its question with `answer`.
fn add_on_a_terminal(t: &Tarkd, src: &Path, answer: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let cmd = format!(
        "{} --socket {} plugin add {}",
        tark_tests::binary("tarkctl")?.display(),
        t.socket.display(),
        src.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(answer.as_bytes())?;
    }
    Ok(text(&child.wait_with_output()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_add_asks_on_a_terminal() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    write_probe(src.path(), "0.1.0", "storage = true")?;
    let declined = add_on_a_terminal(&t, src.path(), "n\n")?;
    assert!(
        declined.contains("Approve these capabilities") && declined.contains("not approved"),
        "{declined}"
    );
    assert!(
        t.plugin_info("probe").await.is_err(),
        "installed without approval"
    );
    let accepted = add_on_a_terminal(&t, src.path(), "y\n")?;
    assert!(accepted.contains("installed probe 0.1.0"), "{accepted}");
    assert!(t.plugin_info("probe").await?.approved);
    Ok(())
}

/// tarkd (root) reads the folder a caller names; an unprivileged caller may only
/// have it read a folder and files that caller owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprivileged_callers_install_only_files_they_own() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(()); // needs another uid to act as the caller
    }
    // An admin principal that is neither root nor tarkd's user: installing is
    // an admin's, and tarkd still reads only what such a caller owns.
    let t = Tarkd::start(
        vec![],
        Options::config(
            "[[principals]]\nname = \"nobody-admin\"\nuids = [65534]\nrole = \"admin\"\n",
        ),
    )?;
    // Let the unprivileged caller reach the socket (a deployment adds it to
    // tarkd's group instead).
    let open =
        |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(t.dir.path(), 0o755)?;
    open(&t.socket, 0o666)?;
    let src = tempfile::tempdir()?;
    open(src.path(), 0o755)?;
    write_probe(src.path(), "0.1.0", "storage = true")?;
    let nobody = 65534;
    let add = || -> anyhow::Result<std::process::Output> {
        Ok(std::process::Command::new("setpriv")
            .arg(format!("--reuid={nobody}"))
            .arg(format!("--regid={nobody}"))
            .arg("--clear-groups")
            .arg(tark_tests::binary("tarkctl")?)
            .arg("--socket")
            .arg(&t.socket)
            .args(["plugin", "add", "--yes"])
            .arg(src.path())
            .output()?)
    };
    let refused = add()?;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("not by the caller (uid 65534)"),
        "{}",
        text(&refused)
    );
    // The folder itself and every file in it.
    for f in ["", "plugin.toml", "plugin.wasm"] {
        std::os::unix::fs::chown(src.path().join(f), Some(nobody), Some(nobody))?;
    }
    let installed = add()?;
    assert!(installed.status.success(), "{}", text(&installed));
    assert_eq!(t.plugin_info("probe").await?.version, "0.1.0");
    Ok(())
}
