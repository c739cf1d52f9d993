//! tark's published plugins are folders (`chatgpt/` holding `chatgpt-oauth`, a
//! `dist/plugin.wasm`, sources and notes beside it). `tarkctl plugin add`
//! installs such a folder as it is: whole, under its plugin name, said so;
//! a link or special file in it refuses the install, named.

use std::path::Path;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, Tarkd, fixtures};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The legacy-provider example laid out as a published plugin folder.
fn published(dir: &Path, manifest_extra: &str) -> anyhow::Result<()> {
    let example = fixtures::repo_root().join("examples/plugins/legacy-provider");
    std::fs::create_dir_all(dir.join("dist"))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join(".git"))?;
    let manifest = std::fs::read_to_string(example.join("plugin.toml"))?;
    std::fs::write(dir.join("plugin.toml"), manifest + manifest_extra)?;
    std::fs::copy(
        example.join("dist/plugin.wasm"),
        dir.join("dist/plugin.wasm"),
    )?;
    std::fs::copy(example.join("src/lib.rs"), dir.join("src/lib.rs"))?;
    std::fs::write(dir.join("README.md"), "# legacy provider\n")?;
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_folder_installs_whole_under_its_plugin_name() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = src.path().join("legacy");
    published(&dir, "")?;
    let dir_arg = dir.display().to_string();

    let added = t.tarkctl(&["plugin", "add", &dir_arg, "--yes"])?;
    let shown = text(&added);
    assert!(added.status.success(), "{shown}");
    assert!(
        shown.contains("the folder is named legacy; the plugin installs as legacy-provider"),
        "{shown}"
    );
    assert!(shown.contains("installed legacy-provider 0.1.0"), "{shown}");
    assert!(shown.contains("copies 4 files"), "{shown}");

    let installed = t.dir.path().join("plugins/legacy-provider");
    assert_eq!(
        std::fs::read_to_string(installed.join("README.md"))?,
        "# legacy provider\n"
    );
    assert!(installed.join("src/lib.rs").is_file());
    assert!(installed.join("dist/plugin.wasm").is_file());
    assert!(!installed.join(".git").exists(), "dot entries are skipped");

    let info = t.plugin_info("legacy-provider").await?;
    assert_eq!(info.diagnostics, Vec::<String>::new());
    assert_eq!(info.api_version, "0.1");
    assert_eq!(info.activation, ["onProvider:legacy-echo"]);
    let list = t.list_providers().await?;
    assert!(
        list.providers
            .iter()
            .any(|p| p.plugin == "legacy-provider" && p.id == "legacy-echo"),
        "{list:?}"
    );
    let models = t
        .providers()
        .await?
        .list_models(pb::PluginRef {
            id: "legacy-provider".into(),
        })
        .await?
        .into_inner();
    assert_eq!(models.models.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_special_files_and_unsupported_api_versions_refuse_the_install() -> anyhow::Result<()>
{
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let add = |dir: &Path| t.tarkctl(&["plugin", "add", &dir.display().to_string(), "--yes"]);

    let linked = src.path().join("linked");
    published(&linked, "")?;
    std::os::unix::fs::symlink("/etc/shadow", linked.join("src/shadow"))?;
    let out = add(&linked)?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("src/shadow is a symbolic link"),
        "{}",
        text(&out)
    );

    let fifo = src.path().join("fifo");
    published(&fifo, "")?;
    nix::unistd::mkfifo(&fifo.join("pipe"), nix::sys::stat::Mode::S_IRWXU)?;
    let out = add(&fifo)?;
    assert!(
        text(&out).contains("pipe is not a regular file"),
        "{}",
        text(&out)
    );

    let newer = src.path().join("newer");
    published(&newer, "")?;
    let manifest = std::fs::read_to_string(newer.join("plugin.toml"))?;
    std::fs::write(
        newer.join("plugin.toml"),
        manifest.replace("api_version = \"0.1\"", "api_version = \"0.3\""),
    )?;
    let out = add(&newer)?;
    assert!(
        text(&out).contains("plugin.api_version \"0.3\" is not supported"),
        "{}",
        text(&out)
    );
    assert!(
        t.plugin_info("legacy-provider").await.is_err(),
        "nothing installed"
    );

    // A key tarkd does not know installs, and says so.
    let typo = src.path().join("typo");
    published(&typo, "\n[capabilites]\nhttp = [\"example.com\"]\n")?;
    let out = add(&typo)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("unknown key capabilites"),
        "{}",
        text(&out)
    );
    let info = t.plugin_info("legacy-provider").await?;
    assert!(
        info.diagnostics
            .iter()
            .any(|d| d.contains("unknown key capabilites")),
        "{:?}",
        info.diagnostics
    );
    Ok(())
}
