//! An auth plugin in tark's core-module ABI (examples/plugins/legacy-auth)
//! through real processes: tarkd runs its manifest's `[oauth]` device flow
//! against a provider on loopback, the plugin answers the Auth service from
//! the token it reads through `fs_read` of its credentials_path (`status`,
//! `display_name`, `get_token`), per tenant, and a sign-out forgets it.

use tark_proto::plugin::v1 as pb;
use tark_tests::servers::pkce::{CLIENT_ID, PkceServer};
use tark_tests::{Options, PluginFiles, Tarkd, for_tenant};

const PLUGIN: &str = "legacy-auth";

fn plugin() -> pb::PluginRef {
    pb::PluginRef { id: PLUGIN.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_module_auth_plugin_signs_in_through_tarkd() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let server = PkceServer::start(3600)?;
    let home = tempfile::tempdir()?;
    let t = Tarkd::start(
        vec![PluginFiles::legacy_auth(server.port)?],
        Options::config(&format!("[fs]\nhome = {:?}\n", home.path())),
    )?;
    let secrets = t.dir.path().join("state/secrets");
    std::fs::create_dir_all(&secrets)?;
    let file = secrets.join(format!("{PLUGIN}.env"));
    std::fs::write(&file, format!("LEGACY_AUTH_CLIENT_ID={CLIENT_ID}\n"))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;

    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let s = a.get_auth_status(plugin()).await?.into_inner();
    assert_eq!(s.status(), pb::AuthStatus::NotAuthenticated);
    assert_eq!(s.display_name, "Legacy auth example");
    // What the module provides is known once a worker has loaded it.
    let info = t.plugin_info(PLUGIN).await?;
    for export in ["status", "display_name", "get_token", "logout"] {
        assert!(
            info.provides.iter().any(|e| e == export),
            "{export}: {:?}",
            info.provides
        );
    }
    let none = a.get_token(plugin()).await.err();
    assert!(none.is_some(), "no token before sign-in");

    let code = a.start_device_flow(plugin()).await?.into_inner();
    assert_eq!(code.user_code, "ABCD-EFGH");
    let done = a
        .poll_device_flow(pb::PollDeviceFlowRequest {
            plugin: PLUGIN.into(),
            device_code: code.device_code,
            wait: true,
        })
        .await?
        .into_inner();
    assert_eq!(
        done.result,
        Some(pb::poll_device_flow_response::Result::SignedIn(true))
    );
    let s = a.get_auth_status(plugin()).await?.into_inner();
    assert_eq!(s.status(), pb::AuthStatus::Authenticated);
    let token = a.get_token(plugin()).await?.into_inner();
    assert_eq!(token.token, "device-access");

    // Another tenant is not signed in.
    let other = a
        .get_auth_status(for_tenant(plugin(), "acme"))
        .await?
        .into_inner();
    assert_eq!(other.status(), pb::AuthStatus::NotAuthenticated);

    a.logout(plugin()).await?;
    let s = a.get_auth_status(plugin()).await?.into_inner();
    assert_eq!(s.status(), pb::AuthStatus::NotAuthenticated);
    Ok(())
}
