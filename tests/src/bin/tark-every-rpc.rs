//! tark-every-rpc SOCKET TENANT: calls every RPC of the agent API once, for
//! TENANT, with an empty request, and prints `Service/Method CODE` per line.
//! The access tests run it as other uids, so every RPC is tried through a
//! real connection by a real peer (what a request contains does not matter to
//! the access decision, which comes first).

use tark_proto::plugin::v1 as pb;
use tark_tests::for_tenant;
use tonic::transport::{Channel, Endpoint};

fn code<T>(r: &Result<T, tonic::Status>) -> String {
    match r {
        Ok(_) => "Ok".to_owned(),
        Err(s) => format!("{:?}", s.code()),
    }
}

async fn connect(socket: String) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_static("http://tarkd")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await?)
}

/// Calls `$method` on `$client` with a default request for the tenant.
macro_rules! each {
    ($out:ident, $tenant:ident, $client:expr, $service:literal, [$($method:ident => $name:literal),* $(,)?]) => {
        $(
            let r = $client.clone().$method(for_tenant(Default::default(), &$tenant)).await;
            $out.push(format!("{}/{} {}", $service, $name, code(&r)));
        )*
    };
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(socket), Some(tenant)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        anyhow::bail!("usage: tark-every-rpc SOCKET TENANT");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let ch = connect(socket).await?;
        let mut out = Vec::new();
        let plugins = pb::plugins_client::PluginsClient::new(ch.clone());
        each!(out, tenant, plugins, "Plugins", [
            list_plugins => "ListPlugins", get_plugin => "GetPlugin",
            install_plugin => "InstallPlugin", remove_plugin => "RemovePlugin",
            plugin_history => "PluginHistory", rollback_plugin => "RollbackPlugin",
            add_trusted_key => "AddTrustedKey", list_trusted_keys => "ListTrustedKeys",
            revoke_trusted_key => "RevokeTrustedKey",
            enable_plugin => "EnablePlugin", disable_plugin => "DisablePlugin",
            reload_plugins => "ReloadPlugins", restart_plugin => "RestartPlugin",
            get_grants => "GetGrants", set_grants => "SetGrants",
        ]);
        let tools = pb::tools_client::ToolsClient::new(ch.clone());
        each!(out, tenant, tools, "Tools", [list_tools => "ListTools", invoke_tool => "InvokeTool"]);
        let auth = pb::auth_client::AuthClient::new(ch.clone());
        each!(out, tenant, auth, "Auth", [
            get_auth_status => "GetAuthStatus", start_device_flow => "StartDeviceFlow",
            poll_device_flow => "PollDeviceFlow", get_token => "GetToken", logout => "Logout",
            start_o_auth_login => "StartOAuthLogin", complete_o_auth_login => "CompleteOAuthLogin",
        ]);
        let providers = pb::providers_client::ProvidersClient::new(ch.clone());
        each!(out, tenant, providers, "Providers", [
            list_providers => "ListProviders", list_models => "ListModels", chat => "Chat",
            chat_stream => "ChatStream", get_credentials => "GetCredentials",
        ]);
        let hooks = pb::hooks_client::HooksClient::new(ch.clone());
        each!(out, tenant, hooks, "Hooks", [dispatch_hook => "DispatchHook"]);
        let channels = pb::channels_client::ChannelsClient::new(ch.clone());
        each!(out, tenant, channels, "Channels", [
            list_channels => "ListChannels", start_channel => "StartChannel",
            stop_channel => "StopChannel", handle_webhook => "HandleWebhook",
            poll_channel => "PollChannel", send_message => "SendMessage",
            subscribe_channel => "SubscribeChannel",
        ]);
        let system = pb::system_client::SystemClient::new(ch);
        each!(out, tenant, system, "System", [status => "Status", audit => "Audit", metrics => "Metrics", check_host => "CheckHost"]);
        for line in out {
            println!("{line}");
        }
        Ok(())
    })
}
