//! Per-tenant settings through real processes: a tenant sees and uses only
//! the plugins enabled for it, has its own worker cap and storage quota, and a
//! tenant the table does not name keeps the global settings.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{
    Options, PluginFiles, Tarkd, alive, eventually, fixtures, for_tenant, invoke, output,
    tool_plugin,
};
use tonic::Code;

const CONFIG: &str = r#"
[tenants.team-a]
plugins = ["notes"]
storage_max_keys = 1

[tenants.team-c]
max_live = 1
"#;

async fn tool(t: &Tarkd, tenant: &str, name: &str, args: &str) -> Result<String, String> {
    let mut tools = t.tools().await.map_err(|e| e.to_string())?;
    output(
        tools
            .invoke_tool(for_tenant(invoke(name, args), tenant))
            .await,
    )
}

fn chat(tenant: &str) -> tonic::Request<pb::ChatRequest> {
    for_tenant(
        pb::ChatRequest {
            plugin: "echo".into(),
            model: "echo".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
        },
        tenant,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_use_their_plugins_caps_and_quotas() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::notes()?,
            PluginFiles::echo()?,
            tool_plugin("spinner", "", fixtures::spinner("spin"))?,
        ],
        Options::config(CONFIG),
    )?;
    let mut tools = t.tools().await?;
    let names = |l: pb::ListToolsResponse| -> Vec<String> {
        let mut n: Vec<_> = l.tools.into_iter().map(|t| t.name).collect();
        n.sort();
        n
    };

    // team-a: notes only.
    let listed = tools
        .list_tools(for_tenant(pb::ListToolsRequest::default(), "team-a"))
        .await?
        .into_inner();
    assert_eq!(names(listed), ["notes_get", "notes_list", "notes_save"]);
    let unknown = tool(&t, "team-a", "spin-ok", "{}").await;
    assert!(
        unknown.as_ref().is_err_and(|e| e.contains("unknown tool")),
        "{unknown:?}"
    );
    let refused = t.providers().await?.chat(chat("team-a")).await.err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|s| s.code() == Code::PermissionDenied
                && s.message()
                    == "plugin echo is not enabled for tenant team-a (tenants.team-a.plugins)"),
        "{refused:?}"
    );
    let providers = t
        .providers()
        .await?
        .list_providers(for_tenant(pb::ListProvidersRequest {}, "team-a"))
        .await?
        .into_inner();
    assert!(providers.providers.is_empty(), "{providers:?}");

    // team-a's storage quota: one key per plugin.
    assert_eq!(
        tool(&t, "team-a", "notes_save", r#"{"title":"a","body":"1"}"#)
            .await
            .as_deref(),
        Ok("saved a")
    );
    let over = tool(&t, "team-a", "notes_save", r#"{"title":"b","body":"2"}"#).await;
    assert!(format!("{over:?}").contains("1 keys"), "{over:?}");

    // A tenant the table does not name: every plugin, the global quotas.
    let listed = tools
        .list_tools(for_tenant(pb::ListToolsRequest::default(), "team-b"))
        .await?
        .into_inner();
    assert_eq!(names(listed).len(), 5);
    assert!(t.providers().await?.chat(chat("team-b")).await.is_ok());
    for title in ["a", "b"] {
        let args = format!(r#"{{"title":"{title}","body":"x"}}"#);
        assert!(tool(&t, "team-b", "notes_save", &args).await.is_ok());
    }

    // team-c: one live worker; its next plugin takes the idle one's place.
    assert_eq!(
        tool(&t, "team-c", "spin-ok", "{}").await.as_deref(),
        Ok("ok")
    );
    let spinner = t.worker_pid("spinner", "team-c").await?.unwrap_or(0);
    assert!(tool(&t, "team-c", "notes_list", "{}").await.is_ok());
    assert!(
        eventually(Duration::from_secs(10), || !alive(spinner)).await,
        "team-c's idle spinner worker gave way"
    );
    Ok(())
}

/// A tenant's own policy narrows what a plugin may do for it, and only for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_policy_narrows_its_plugins() -> anyhow::Result<()> {
    let server = tark_tests::servers::HttpServer::start()?;
    let caps = format!(
        "storage = true\nhttp = [\"http://localhost:{}\"]\nenv = [\"HOME\"]",
        server.port
    );
    let config = "[tenants.locked.policy]\nhttp = []\nstorage = false\n";
    let t = Tarkd::start(vec![PluginFiles::probe(&caps)?], Options::config(config))?;
    let url = format!("http://localhost:{}/hello", server.port);
    let call = |tenant: &'static str, args: serde_json::Value| {
        let t = &t;
        async move {
            let mut tools = t.tools().await?;
            let out = output(
                tools
                    .invoke_tool(for_tenant(invoke("probe", &args.to_string()), tenant))
                    .await,
            )
            .map_err(anyhow::Error::msg)?;
            Ok::<serde_json::Value, anyhow::Error>(serde_json::from_str(&out)?)
        }
    };
    let http = serde_json::json!({ "op": "http", "url": url });
    let open = call("default", http.clone()).await?;
    assert_eq!(open["body"], "hello", "{open}");
    let locked = call("locked", http).await?;
    assert!(
        locked["error"].as_str().is_some_and(
            |e| e.contains("forbidden by tenant locked's policy (tenants.locked.policy)")
        ),
        "{locked}"
    );
    let store = serde_json::json!({ "op": "storage_set", "key": "k", "value": "v" });
    assert_eq!(call("default", store.clone()).await?["ok"], true);
    let refused = call("locked", store).await?;
    assert_eq!(refused["ok"], false, "{refused}");
    Ok(())
}
