//! Enable, disable and remove through a real tarkd and tarkctl: a disabled
//! plugin serves nothing, keeps its storage and stays disabled across a
//! restart; a removed one is gone at once, its storage kept unless purged; a
//! tarkd killed mid-install or mid-removal clears what was left at start.

use std::path::Path;
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{
    Failed, Options, PluginFiles, Tarkd, alive, eventually, fixtures, invoke, output,
};
use tonic::Code;

async fn get_note(t: &Tarkd) -> anyhow::Result<Result<String, String>> {
    Ok(output(
        t.tools()
            .await?
            .invoke_tool(invoke("notes_get", r#"{"title":"kept"}"#))
            .await,
    ))
}

fn write_source(dir: &Path) -> anyhow::Result<()> {
    let notes = PluginFiles::notes()?;
    for (name, bytes) in &notes.files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_enable_remove_and_purge() -> anyhow::Result<()> {
    let mut t = Tarkd::start(
        vec![PluginFiles::notes()?, PluginFiles::echo()?],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    output(
        tools
            .invoke_tool(invoke("notes_save", r#"{"title":"kept","body":"b"}"#))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    let pid = t.running_worker("notes", "default").await?;

    // Disabled: workers drained, calls refused naming the way back, no tools.
    let said = t.ctl_ok(&["plugin", "disable", "notes"])?;
    assert!(
        said.starts_with("plugin notes disabled: stopped 1 worker(s)"),
        "{said}"
    );
    assert!(eventually(Duration::from_secs(30), || !alive(pid)).await);
    let err = tools.invoke_tool(invoke("notes_list", "{}")).await.failed();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "a disabled plugin offers no tools: {err:?}"
    );
    let info = t.plugin_info("notes").await?;
    assert_eq!(info.state(), pb::PluginState::Disabled);
    let said = t.ctl_ok(&["plugin", "disable", "notes"])?;
    assert_eq!(said, "plugin notes is already disabled");
    // A call addressed to a disabled plugin says so, with its reason.
    t.ctl_ok(&["plugin", "disable", "echo"])?;
    let err = t
        .providers()
        .await?
        .list_models(pb::PluginRef { id: "echo".into() })
        .await
        .failed();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.message(),
        "plugin echo is disabled (tarkctl plugin enable echo)"
    );
    assert!(
        String::from_utf8_lossy(err.details()).contains("PLUGIN_DISABLED"),
        "{err:?}"
    );
    assert!(
        t.log().join("\n").contains("disabled"),
        "the log does not say so"
    );
    // The state survives a restart.
    t.stop(libc::SIGTERM)?;
    t.launch()?;
    assert_eq!(
        t.plugin_info("notes").await?.state(),
        pb::PluginState::Disabled
    );
    let mut tools = t.tools().await?;
    assert_eq!(
        tools
            .invoke_tool(invoke("notes_get", r#"{"title":"kept"}"#))
            .await
            .failed()
            .code(),
        Code::NotFound
    );

    // Enabled again, with what it stored.
    assert_eq!(
        t.ctl_ok(&["plugin", "enable", "notes"])?,
        "plugin notes enabled"
    );
    assert!(
        get_note(&t)
            .await?
            .map_err(anyhow::Error::msg)?
            .contains('b')
    );

    // Removed: gone at once, storage kept for a reinstall.
    let said = t.ctl_ok(&["plugin", "remove", "notes"])?;
    assert!(said.contains("its storage is kept"), "{said}");
    let plugins_dir = t.dir.path().join("plugins");
    assert!(!plugins_dir.join("notes").exists());
    assert!(!t.dir.path().join("state/approvals/notes.toml").exists());
    let gone = t.plugin_info("notes").await;
    let code = gone
        .err()
        .and_then(|e| e.downcast_ref::<tonic::Status>().map(tonic::Status::code));
    assert_eq!(code, Some(Code::NotFound));
    let again = t.tarkctl(&["plugin", "remove", "notes"])?;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no plugin named \"notes\""),
        "{again:?}"
    );
    let src = tempfile::tempdir()?;
    let src_dir = src.path().join("notes");
    write_source(&src_dir)?;
    let src_arg = src_dir.display().to_string();
    t.ctl_ok(&["plugin", "add", &src_arg, "--yes"])?;
    assert!(
        get_note(&t)
            .await?
            .map_err(anyhow::Error::msg)?
            .contains('b')
    );

    // Purged: a reinstall starts empty.
    let said = t.ctl_ok(&["plugin", "remove", "notes", "--purge"])?;
    assert!(said.contains("purged 1 stored key(s)"), "{said}");
    t.ctl_ok(&["plugin", "add", &src_arg, "--yes"])?;
    let note = get_note(&t).await?;
    assert!(
        note.is_err() || !note.as_deref().unwrap_or("").contains('b'),
        "{note:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_install_or_removal_are_cleared_at_start() -> anyhow::Result<()> {
    let mut t = Tarkd::start(vec![PluginFiles::notes()?], Options::default())?;
    t.stop(libc::SIGKILL)?;
    let plugins_dir = t.dir.path().join("plugins");
    // What an install killed before its switch leaves (a staged copy), what
    // a removal killed after its rename leaves, and the older scheme's aside.
    for left in [".notes.staging", ".gone.removed", ".notes.old"] {
        write_source(&plugins_dir.join(left))?;
    }
    t.launch()?;
    for left in [".notes.staging", ".gone.removed", ".notes.old"] {
        assert!(!plugins_dir.join(left).exists(), "{left} was left");
    }
    // The installed copy is untouched and serves.
    output(
        t.tools()
            .await?
            .invoke_tool(invoke("notes_list", "{}"))
            .await,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

async fn serves(t: &Tarkd, tool: &str) -> anyhow::Result<bool> {
    let r = t.tools().await?.invoke_tool(invoke(tool, "{}")).await;
    Ok(output(r).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_kept_and_rolled_back_with_grants_rechecked() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::config("[lifecycle]\nkeep_versions = 2\n"))?;
    let src = tempfile::tempdir()?;
    let v1 = fixtures::gadget(&src.path().join("v1"), "1.0.0", "g1", "")?;
    let v2 = fixtures::gadget(&src.path().join("v2"), "2.0.0", "g2", "")?;
    let v3 = fixtures::gadget(&src.path().join("v3"), "3.0.0", "g3", "storage = true")?;
    let other = src.path().join("other");
    write_source(&other)?;
    let other = other.display().to_string();

    let refused = t.tarkctl(&["plugin", "update", "gadget", &v1, "--yes"])?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("plugin gadget is not installed"),
        "{refused:?}"
    );
    t.ctl_ok(&["plugin", "add", &v1, "--yes"])?;
    let refused = t.tarkctl(&["plugin", "update", "gadget", &other, "--yes"])?;
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("holds plugin notes, not gadget"),
        "{refused:?}"
    );
    t.ctl_ok(&["plugin", "update", "gadget", &v2, "--yes"])?;
    t.ctl_ok(&["plugin", "update", "gadget", &v3, "--yes"])?;
    assert!(serves(&t, "g3-ok").await?);

    let history = |t: &Tarkd| -> anyhow::Result<Vec<(String, bool)>> {
        let out = t.ctl_ok(&["--json", "plugin", "history", "gadget"])?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r["version"].as_str().unwrap_or("").to_owned(),
                    r["installed"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    };
    let v = |s: &str, installed: bool| (s.to_owned(), installed);
    // Two kept (lifecycle.keep_versions), newest first, after the installed one.
    assert_eq!(
        history(&t)?,
        [v("3.0.0", true), v("2.0.0", false), v("1.0.0", false)]
    );

    // Back to 1.0.0: it serves, and 3.0.0 is kept in its place.
    let said = t.ctl_ok(&["plugin", "rollback", "gadget", "--to", "1.0.0"])?;
    assert!(said.contains("installed gadget 1.0.0"), "{said}");
    assert!(serves(&t, "g1-ok").await? && !serves(&t, "g3-ok").await?);
    assert_eq!(
        history(&t)?,
        [v("1.0.0", true), v("3.0.0", false), v("2.0.0", false)]
    );

    // Forward again to the newest kept, 3.0.0: its storage was approved
    // under 3.0.0, but the approval was narrowed to 1.0.0's declaration, so
    // it needs approval again.
    let said = t.ctl_ok(&["plugin", "rollback", "gadget"])?;
    assert!(said.contains("installed gadget 3.0.0"), "{said}");
    assert!(
        said.contains("not granted (declared, not approved)") && said.contains("storage"),
        "{said}"
    );
    assert!(serves(&t, "g3-ok").await?);

    let missing = t.tarkctl(&["plugin", "rollback", "gadget", "--to", "9.9.9"])?;
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("plugin gadget: no kept version 9.9.9 to roll back to (kept: 1.0.0, 2.0.0)"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_does_not_load_is_never_switched_in() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let v1 = fixtures::gadget(&src.path().join("v1"), "1.0.0", "g1", "")?;
    t.ctl_ok(&["plugin", "add", &v1, "--yes"])?;
    // Valid magic, then nothing a compiler accepts; and a component of
    // another world than the manifest's.
    let broken = src.path().join("broken");
    fixtures::gadget(&broken, "2.0.0", "g2", "")?;
    let cases: [(Vec<u8>, &str); 2] = [
        (
            b"\0asm\x01\0\0\0\xff\xff\xff".to_vec(),
            "cannot be installed",
        ),
        (tark_tests::fixtures::wrong_world()?, "cannot be installed"),
    ];
    let arg = broken.display().to_string();
    for (module, words) in cases {
        std::fs::write(broken.join("plugin.wasm"), module)?;
        let o = t.tarkctl(&["plugin", "update", "gadget", &arg, "--yes"])?;
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(words), "{err}");
        assert!(serves(&t, "g1-ok").await?, "1.0.0 stopped serving");
    }
    // The same through a reload of a folder copied in by hand.
    let installed = t.dir.path().join("plugins/gadget");
    std::fs::copy(broken.join("plugin.wasm"), installed.join("plugin.wasm"))?;
    std::fs::copy(broken.join("plugin.toml"), installed.join("plugin.toml"))?;
    let o = t.tarkctl(&["plugin", "reload"])?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("reload refused, nothing changed: plugin gadget:"),
        "{err}"
    );
    assert!(serves(&t, "g1-ok").await?);
    // No validation worker is left, or shown.
    let status = t.status().await?;
    let internal = status
        .plugins
        .iter()
        .flat_map(|p| &p.workers)
        .filter(|w| w.tenant.starts_with('@'))
        .count();
    assert_eq!(internal, 0, "{status:?}");
    Ok(())
}
