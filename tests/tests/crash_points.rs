//! kill -9 of tarkd at each point of an update, a rollback and a removal (the
//! `test-hooks` feature's `TARKD_TEST_CRASH_AT`): after a restart the plugin
//! serves either its old version or its new one (for a removal: is installed
//! or gone), never neither, and nothing half-done is left in the plugins dir.
#![cfg(feature = "test-hooks")]

use tark_tests::{Options, PluginFiles, Tarkd, invoke, output};

/// (the installed version, whether it serves its own tool), `None` when the
/// plugin is not installed.
async fn state(t: &Tarkd) -> anyhow::Result<Option<(String, bool)>> {
    let Ok(info) = t.plugin_info("gadget").await else {
        return Ok(None);
    };
    let tool = match info.version.as_str() {
        "1.0.0" => "g1-ok",
        "2.0.0" => "g2-ok",
        other => anyhow::bail!("unexpected version {other}"),
    };
    let served = output(t.tools().await?.invoke_tool(invoke(tool, "{}")).await).is_ok();
    Ok(Some((info.version, served)))
}

/// Dot-entries left in the plugins dir besides the kept versions.
fn leftovers(t: &Tarkd) -> anyhow::Result<Vec<String>> {
    let mut left = Vec::new();
    for e in std::fs::read_dir(t.dir.path().join("plugins"))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name != ".history" {
            left.push(name);
        }
    }
    Ok(left)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_anywhere_leaves_old_or_new_serving() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let v1_dir = work.path().join("v1");
    tark_tests::fixtures::gadget(&v1_dir, "1.0.0", "g1", "")?;
    let v2 = tark_tests::fixtures::gadget(&work.path().join("v2"), "2.0.0", "g2", "")?;
    // (crash point, what the operator runs, the state after the restart)
    let cases: [(&str, &[&str], Option<&str>); 7] = [
        (
            "install:staged",
            &["plugin", "update", "gadget", &v2, "--yes"],
            Some("1.0.0"),
        ),
        (
            "install:approved",
            &["plugin", "update", "gadget", &v2, "--yes"],
            Some("1.0.0"),
        ),
        (
            "install:switched",
            &["plugin", "update", "gadget", &v2, "--yes"],
            Some("2.0.0"),
        ),
        (
            "install:kept",
            &["plugin", "update", "gadget", &v2, "--yes"],
            Some("2.0.0"),
        ),
        (
            "rollback:taken",
            &["plugin", "rollback", "gadget"],
            Some("2.0.0"),
        ),
        (
            "remove:unlisted",
            &["plugin", "remove", "gadget"],
            Some("1.0.0"),
        ),
        ("remove:aside", &["plugin", "remove", "gadget"], None),
    ];
    for (point, args, after) in cases {
        let v1 = PluginFiles::new(
            "gadget",
            &std::fs::read_to_string(v1_dir.join("plugin.toml"))?,
            Some(std::fs::read(v1_dir.join("plugin.wasm"))?),
        );
        let mut t = Tarkd::start(
            vec![v1],
            Options {
                env: vec![("TARKD_TEST_CRASH_AT".into(), point.into())],
                ..Options::default()
            },
        )?;
        if point.starts_with("rollback") {
            // Something to roll back to: 1.0.0 kept, 2.0.0 installed.
            let o = t.tarkctl(&["plugin", "update", "gadget", &v2, "--yes"])?;
            anyhow::ensure!(o.status.success(), "{point}: {o:?}");
        }
        let o = t.tarkctl(args)?;
        assert!(!o.status.success(), "{point}: tarkd was not killed: {o:?}");
        let died = t.stop(0)?;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&died),
            Some(libc::SIGKILL),
            "{point}"
        );
        t.set_env(Vec::new());
        t.launch()?;
        let now = state(&t).await?;
        assert_eq!(
            now.as_ref().map(|(v, _)| v.as_str()),
            after,
            "{point}: {now:?}"
        );
        if let Some((v, served)) = &now {
            assert!(served, "{point}: {v} is installed but does not serve");
        }
        assert!(
            leftovers(&t)?.is_empty(),
            "{point}: left {:?}",
            leftovers(&t)?
        );
        if point.starts_with("rollback") {
            // The version it was taking is kept again, for the next try.
            let o = t.tarkctl(&["plugin", "rollback", "gadget"])?;
            assert!(o.status.success(), "{point}: {o:?}");
            assert_eq!(state(&t).await?, Some(("1.0.0".into(), true)));
        }
    }
    Ok(())
}
