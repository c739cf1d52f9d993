//! Plugin sources through tarkctl and a real tarkd: a git repository at a tag
//! and at its head (the `git` binary, `file://`), `.tar.gz` and `.tar.zst`
//! archives, and an archive with a link in it, refused with nothing installed.

use std::path::Path;
use std::process::Command;

use tark_tests::{Options, Tarkd, invoke, output, run_ok};

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args),
    )
    .map(drop)
}

async fn serves(t: &Tarkd, tool: &str) -> anyhow::Result<bool> {
    Ok(output(t.tools().await?.invoke_tool(invoke(tool, "{}")).await).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_git_at_a_ref_and_from_archives() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let work = tempfile::tempdir()?;
    let repo = work.path().join("gadget-repo");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "--quiet", "--initial-branch=main"])?;
    tark_tests::fixtures::gadget(&repo, "1.0.0", "g1", "")?;
    git(&repo, &["add", "."])?;
    git(&repo, &["commit", "--quiet", "-m", "1.0.0"])?;
    git(&repo, &["tag", "v1.0.0"])?;
    tark_tests::fixtures::gadget(&repo, "2.0.0", "g2", "")?;
    git(&repo, &["commit", "--quiet", "-am", "2.0.0"])?;
    let url = format!("file://{}", repo.display());

    let said = t
        .ctl(&["plugin", "add", &format!("{url}#v1.0.0"), "--yes"])?
        .map_err(anyhow::Error::msg)?;
    assert!(said.contains("installed gadget 1.0.0"), "{said}");
    assert!(serves(&t, "g1-ok").await?);
    let bad = t.ctl(&[
        "plugin",
        "update",
        "gadget",
        &format!("{url}#no-such-tag"),
        "--yes",
    ])?;
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("no-such-tag")),
        "{bad:?}"
    );
    let said = t
        .ctl(&["plugin", "update", "gadget", &url, "--yes"])?
        .map_err(anyhow::Error::msg)?;
    assert!(said.contains("installed gadget 2.0.0"), "{said}");
    assert!(serves(&t, "g2-ok").await?);
    // Without a source, update fetches the recorded one again: the repository's
    // head, which has moved on.
    assert_eq!(t.plugin_info("gadget").await?.origin, url);
    tark_tests::fixtures::gadget(&repo, "2.1.0", "g21", "")?;
    git(&repo, &["commit", "--quiet", "-am", "2.1.0"])?;
    let said = t
        .ctl(&["plugin", "update", "gadget", "--yes"])?
        .map_err(anyhow::Error::msg)?;
    assert!(said.contains("installed gadget 2.1.0"), "{said}");
    assert!(serves(&t, "g21-ok").await?);

    // Archives wrap the folder, as `tar -C dir -c gadget` does.
    for (name, version, prefix) in [
        ("gadget.tar.gz", "3.0.0", "g3"),
        ("gadget.tar.zst", "4.0.0", "g4"),
    ] {
        let src = work.path().join(format!("src-{version}"));
        tark_tests::fixtures::gadget(&src.join("gadget"), version, prefix, "")?;
        let path = work.path().join(name);
        let file = std::fs::File::create(&path)?;
        if name.ends_with(".gz") {
            let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            ));
            b.append_dir_all("gadget", src.join("gadget"))?;
            b.into_inner()?.finish()?;
        } else {
            let mut b = tar::Builder::new(zstd::stream::write::Encoder::new(file, 3)?);
            b.append_dir_all("gadget", src.join("gadget"))?;
            b.into_inner()?.finish()?;
        }
        let arg = path.display().to_string();
        let said = t
            .ctl(&["plugin", "update", "gadget", &arg, "--yes"])?
            .map_err(anyhow::Error::msg)?;
        assert!(
            said.contains(&format!("installed gadget {version}")),
            "{said}"
        );
        assert!(serves(&t, &format!("{prefix}-ok")).await?);
    }

    // A link in an archive: refused, naming it; the installed version stays.
    let hostile = work.path().join("hostile.tar.gz");
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(&hostile)?,
        flate2::Compression::default(),
    ));
    let src = work.path().join("src-5");
    tark_tests::fixtures::gadget(&src, "5.0.0", "g5", "")?;
    b.append_dir_all("gadget", &src)?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "gadget/shadow", "/etc/shadow")?;
    b.into_inner()?.finish()?;
    let refused = t.ctl(&[
        "plugin",
        "update",
        "gadget",
        &hostile.display().to_string(),
        "--yes",
    ])?;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("gadget/shadow is a symbolic link")),
        "{refused:?}"
    );
    assert!(serves(&t, "g4-ok").await?);
    // The last archive is the recorded source, by its absolute path.
    let recorded = t.plugin_info("gadget").await?.origin;
    assert!(
        recorded.ends_with("/gadget.tar.zst") && recorded.starts_with('/'),
        "{recorded}"
    );
    let none = t.ctl(&["plugin", "update", "nothing-installed", "--yes"])?;
    assert!(none.is_err(), "{none:?}");
    Ok(())
}
