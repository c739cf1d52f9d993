//! Several plugin roots through a real tarkd: a local project's plugins come
//! before the installed ones, which come before configured roots; the same id
//! in two roots is one plugin (the first root's copy); two plugins claiming
//! one tool name are settled by `sources.conflicts`, and every such finding
//! is in the plugins' diagnostics and the audit log.

use std::path::Path;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Failed, Options, PluginFiles, Tarkd, fixtures, invoke, tool_plugin};
use tonic::Code;

fn write(plugin: PluginFiles, root: &Path) -> anyhow::Result<()> {
    for (name, bytes) in plugin.files {
        let path = root.join(&plugin.folder).join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

/// A project root holding `alpha`, a configured root holding `beta` (both
/// offering tools `dup-ok` and `dup-run`) and a copy of `gamma`, which is
/// also installed.
fn roots(conflicts: &str) -> anyhow::Result<(tempfile::TempDir, Tarkd)> {
    let dir = tempfile::tempdir()?;
    let (project, root) = (dir.path().join("project"), dir.path().join("root"));
    write(
        tool_plugin("alpha", "", fixtures::tool("dup", "", ""))?,
        &project,
    )?;
    write(
        tool_plugin("beta", "", fixtures::tool("dup", "", ""))?,
        &root,
    )?;
    write(
        tool_plugin("gamma", "", fixtures::tool("gr", "", ""))?,
        &root,
    )?;
    let config = format!(
        "[sources]\nproject = {project:?}\nroots = [{root:?}]\nconflicts = \"{conflicts}\"\n"
    );
    let installed = tool_plugin("gamma", "", fixtures::tool("gi", "", ""))?;
    let t = Tarkd::start(vec![installed], Options::config(&config))?;
    Ok((dir, t))
}

async fn served_by(t: &Tarkd, tool: &str) -> anyhow::Result<Result<String, tonic::Status>> {
    Ok(t.tools()
        .await?
        .invoke_tool(invoke(tool, "{}"))
        .await
        .map(|r| r.into_inner().plugin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_first_serves_the_project_plugin_and_reports_the_conflict() -> anyhow::Result<()> {
    let (_dir, t) = roots("keep-first")?;
    // Listed once, by the plugin from the root that comes first; the
    // conflict is still shown, the keeper first.
    let listed = t
        .tools()
        .await?
        .list_tools(pb::ListToolsRequest::default())
        .await?
        .into_inner();
    let dup: Vec<&str> = listed
        .tools
        .iter()
        .filter(|x| x.name == "dup-ok")
        .map(|x| x.plugin.as_str())
        .collect();
    assert_eq!(dup, ["alpha"], "{listed:?}");
    let conflict = listed.conflicts.iter().find(|c| c.tool == "dup-ok");
    assert_eq!(
        conflict.map(|c| c.plugins.clone()),
        Some(vec!["alpha".to_owned(), "beta".to_owned()])
    );
    assert_eq!(
        served_by(&t, "dup-ok").await?.ok().as_deref(),
        Some("alpha")
    );
    // In the inventory and the audit log.
    let beta = t.plugin_info("beta").await?;
    assert!(
        beta.diagnostics.iter().any(|d| d.contains(
            "tool \"dup-ok\" is claimed by alpha, beta; sources.conflicts = keep-first keeps alpha"
        )),
        "{:?}",
        beta.diagnostics
    );
    let audit = t.ctl_ok(&["audit", "--plugin", "beta"])?;
    assert!(audit.contains("conflict"), "{audit}");

    // The same id in two roots: the installed copy, the root's shadowed.
    let gamma = t.plugin_info("gamma").await?;
    assert!(gamma.path.contains("plugins"), "{}", gamma.path);
    assert_eq!(served_by(&t, "gi-ok").await?.ok().as_deref(), Some("gamma"));
    let shadow = served_by(&t, "gr-ok").await?;
    assert_eq!(
        shadow.as_ref().err().map(|s| s.code()),
        Some(Code::NotFound),
        "{shadow:?}"
    );
    let audit = t.ctl_ok(&["audit", "--plugin", "gamma"])?;
    assert!(audit.contains("shadowed"), "{audit}");

    // tarkctl manages only the installed root.
    let refused = t.ctl(&["plugin", "remove", "alpha"])?;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("is read from project (sources.project)")),
        "{refused:?}"
    );
    assert_eq!(
        served_by(&t, "dup-ok").await?.ok().as_deref(),
        Some("alpha")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_last_and_error_settle_the_same_conflict_otherwise() -> anyhow::Result<()> {
    let (_dir, t) = roots("keep-last")?;
    assert_eq!(served_by(&t, "dup-ok").await?.ok().as_deref(), Some("beta"));
    drop(t);
    let (_dir, t) = roots("error")?;
    let status = t
        .tools()
        .await?
        .invoke_tool(invoke("dup-run", "{}"))
        .await
        .failed();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("more than one plugin (alpha, beta)"),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_that_claims_a_provider_id_in_use_is_settled_at_once() -> anyhow::Result<()> {
    let contributes =
        "license = \"Apache-2.0\"\n\n[[contributes.providers]]\nid = \"echo\"\nname = \"Echo\"\n";
    let echo = PluginFiles::example_edited(
        "echo-provider",
        "echo",
        "license = \"Apache-2.0\"",
        contributes,
    )?;
    let t = Tarkd::start(
        vec![echo],
        Options::config("[sources]\nconflicts = \"error\""),
    )?;
    let listed = |r: pb::ListProvidersResponse| {
        r.providers
            .into_iter()
            .map(|p| p.plugin)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(t.list_providers().await?), ["echo"]);

    // A second plugin contributing provider id "echo": under `error`, neither serves.
    let dir = tempfile::tempdir()?;
    let mut two = PluginFiles::example_edited(
        "echo-provider",
        "echo-two",
        "license = \"Apache-2.0\"",
        contributes,
    )?;
    for (name, bytes) in &mut two.files {
        if name == "plugin.toml" {
            *bytes = String::from_utf8_lossy(bytes)
                .replace("name = \"echo\"", "name = \"echo-two\"")
                .into_bytes();
        }
    }
    write(two, dir.path())?;
    let folder = dir.path().join("echo-two");
    t.ctl_ok(&["plugin", "add", &folder.to_string_lossy(), "--yes"])?;
    let silenced = t.list_providers().await?;
    assert!(silenced.providers.is_empty(), "{silenced:?}");
    for id in ["echo", "echo-two"] {
        let said = format!("plugin {id} serves nothing: provider id \"echo\" is claimed by");
        assert!(
            silenced.errors.iter().any(|e| e.starts_with(&said)),
            "{id}: {:?}",
            silenced.errors
        );
    }
    let echo = t.plugin_info("echo").await?;
    assert!(
        echo.diagnostics.iter().any(|d| d.contains(
            "provider id \"echo\" is claimed by echo, echo-two; sources.conflicts = error"
        )),
        "{:?}",
        echo.diagnostics
    );
    let chat = t
        .providers()
        .await?
        .chat(pb::ChatRequest {
            plugin: "echo".into(),
            model: String::new(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
        })
        .await
        .failed();
    assert!(chat.message().contains("serves nothing"), "{chat:?}");
    let audit = t.ctl_ok(&["audit", "--plugin", "echo-two"])?;
    assert!(audit.contains("conflict"), "{audit}");

    // Removing the newcomer settles it again: echo serves.
    t.ctl_ok(&["plugin", "remove", "echo-two"])?;
    assert_eq!(listed(t.list_providers().await?), ["echo"]);
    Ok(())
}
