//! A plugin harming others through its tool list. One whose `get-tools`
//! hangs made every tenant's `ListTools`, and the `InvokeTool` of other
//! plugins' tools, wait out its 5 s deadline, on every call: the failed
//! describe was neither kept nor cut short. And a newcomer claiming a tool
//! name in use got it refused to both (or, under keep-first, could take it
//! by sorting first).

use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, fixtures, for_tenant, invoke, output, tool_plugin};

async fn list(
    tools: &mut pb::tools_client::ToolsClient<tonic::transport::Channel>,
    tenant: &str,
) -> anyhow::Result<(pb::ListToolsResponse, Duration)> {
    let started = Instant::now();
    let listed = tools
        .list_tools(for_tenant(pb::ListToolsRequest {}, tenant))
        .await?
        .into_inner();
    Ok((listed, started.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_describe_holds_up_no_one() -> anyhow::Result<()> {
    // Its call deadline is the default 5 s; describing has 2 s.
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            tool_plugin("hang", "", fixtures::describe_hang("hang"))?,
        ],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    // The first listing waits for the describes, at most their deadline.
    let (first, took) = list(&mut tools, "acme").await?;
    assert!(
        took < Duration::from_secs(4),
        "first ListTools took {took:?}"
    );
    assert!(
        first.tools.iter().any(|t| t.name == "notes_save"),
        "{first:?}"
    );
    assert!(
        first
            .errors
            .iter()
            .any(|e| e.starts_with("hang: plugin hang did not answer within 2000 ms")),
        "{:?}",
        first.errors
    );
    // Then the failure is kept: every tenant's listing and every call of
    // another plugin's tool is answered without waiting for it.
    for tenant in ["acme", "globex", "acme"] {
        let (listed, took) = list(&mut tools, tenant).await?;
        assert!(
            took < Duration::from_millis(500),
            "{tenant}: ListTools took {took:?}"
        );
        assert!(listed.errors.iter().any(|e| e.starts_with("hang:")));
        let started = Instant::now();
        output(
            tools
                .invoke_tool(for_tenant(invoke("notes_list", "{}"), tenant))
                .await,
        )
        .map_err(anyhow::Error::msg)?;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{tenant}: notes_list took {took:?}"
        );
    }
    // An unknown tool fails fast too, naming the plugin it could not ask.
    let started = Instant::now();
    let err = tools.invoke_tool(invoke("nope", "{}")).await.err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(err.is_some_and(|s| s.code() == tonic::Code::NotFound && s.message().contains("hang")),);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_installed_first_keeps_its_tool_names() -> anyhow::Result<()> {
    // zeta is there first; alpha, installed after, claims the same names and
    // sorts before it by id.
    let t = Tarkd::start(
        vec![tool_plugin("zeta", "", fixtures::spinner("dup"))?],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    output(tools.invoke_tool(invoke("dup-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    let src = tempfile::tempdir()?;
    let alpha = tool_plugin("alpha", "", fixtures::spinner("dup"))?;
    for (name, bytes) in &alpha.files {
        std::fs::write(src.path().join(name), bytes)?;
    }
    let said = t.ctl_ok(&["plugin", "add", &src.path().display().to_string(), "--yes"])?;
    assert!(
        said.contains("tool \"dup-ok\" is not served by alpha: zeta keeps it")
            && said.contains("tool \"dup-run\" is not served by alpha"),
        "plugin add says which names it does not get: {said}"
    );
    let (listed, _) = list(&mut tools, "default").await?;
    let served: Vec<_> = listed
        .tools
        .iter()
        .filter(|t| t.name.starts_with("dup-"))
        .map(|t| t.plugin.as_str())
        .collect();
    assert_eq!(served, ["zeta", "zeta"], "{listed:?}");
    let r = tools
        .invoke_tool(invoke("dup-ok", "{}"))
        .await?
        .into_inner();
    assert_eq!(r.plugin, "zeta");
    // Removing the first gives the names to the other.
    t.ctl_ok(&["plugin", "remove", "zeta"])?;
    let r = tools
        .invoke_tool(invoke("dup-ok", "{}"))
        .await?
        .into_inner();
    assert_eq!(r.plugin, "alpha");
    let info = t.ctl_ok(&["plugin", "info", "alpha"])?;
    assert!(
        !info.contains("zeta"),
        "a removed plugin's conflict is no diagnostic: {info}"
    );
    Ok(())
}
