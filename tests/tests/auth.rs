//! Auth plugins through real tarkd and worker processes, against a real OAuth
//! device-authorization server on loopback.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::servers::{OAUTH_TOKEN, OAuthServer};
use tark_tests::{Failed, Options, PluginFiles, Tarkd};
use tonic::Code;

use pb::poll_device_flow_response::Result as FlowResult;

fn start(server: &OAuthServer, client: &str) -> anyhow::Result<Tarkd> {
    Tarkd::start(
        vec![PluginFiles::device_auth(server.port)?, PluginFiles::echo()?],
        Options {
            env: vec![
                (
                    "DEVICE_AUTH_URL".into(),
                    format!("http://127.0.0.1:{}", server.port),
                ),
                ("DEVICE_AUTH_CLIENT_ID".into(), client.into()),
            ],
            ..Options::default()
        },
    )
}

fn plugin(id: &str) -> pb::PluginRef {
    pb::PluginRef { id: id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_signs_in_once_the_user_approves() -> anyhow::Result<()> {
    let server = OAuthServer::start(2)?;
    let t = start(&server, "tark")?;
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);

    let s = a.get_auth_status(plugin("device-auth")).await?.into_inner();
    assert_eq!(s.display_name, "Device flow (example)");
    assert_eq!(s.status(), pb::AuthStatus::NotAuthenticated);

    let code = a
        .start_device_flow(plugin("device-auth"))
        .await?
        .into_inner();
    assert_eq!(code.user_code, "WDJB-MJHT");
    assert_eq!(code.device_code, "dc-1");

    // Asked right away: still pending (tarkd waits an interval before polling).
    let poll = |wait| pb::PollDeviceFlowRequest {
        plugin: "device-auth".into(),
        device_code: "dc-1".into(),
        wait,
    };
    let now = a.poll_device_flow(poll(false)).await?.into_inner();
    assert_eq!(now.result, Some(FlowResult::Pending(true)));

    // Waiting: tarkd polls through two "pending" answers, then gets the token.
    let mut req = tonic::Request::new(poll(true));
    req.set_timeout(Duration::from_secs(20));
    let done = a.poll_device_flow(req).await?.into_inner();
    assert_eq!(done.result, Some(FlowResult::Token(OAUTH_TOKEN.into())));
    assert_eq!(server.polls(), 3);

    // The result is handed over once; the plugin keeps the token.
    let err = a.poll_device_flow(poll(false)).await.failed();
    assert_eq!(err.code(), Code::NotFound);
    let s = a.get_auth_status(plugin("device-auth")).await?.into_inner();
    assert_eq!(s.status(), pb::AuthStatus::Authenticated);
    let token = a.get_token(plugin("device-auth")).await?.into_inner().token;
    assert_eq!(token, OAUTH_TOKEN);
    assert!(
        !t.log().iter().any(|l| l.contains(OAUTH_TOKEN)),
        "the token reached tarkd's log"
    );

    let out = a.logout(plugin("device-auth")).await?.into_inner();
    assert_eq!(out.message, "plugin device-auth: signed out");
    let err = a.get_token(plugin("device-auth")).await.failed();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "plugin device-auth: not signed in")
    );

    // A provider's auth status; a tool or provider is no auth plugin.
    let s = a.get_auth_status(plugin("echo")).await?.into_inner();
    assert_eq!(
        (s.display_name.as_str(), s.status()),
        ("Echo", pb::AuthStatus::Authenticated)
    );
    let err = a.start_device_flow(plugin("echo")).await.failed();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = a.get_auth_status(plugin("ghost")).await.failed();
    assert_eq!(err.code(), Code::NotFound);
    let out = a.logout(plugin("echo")).await?.into_inner();
    assert_eq!(out.message, "plugin echo: signed out");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_and_a_missing_server_are_reported() -> anyhow::Result<()> {
    let server = OAuthServer::start(0)?;
    let t = start(&server, "expire")?;
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let code = a
        .start_device_flow(plugin("device-auth"))
        .await?
        .into_inner();
    assert_eq!(code.device_code, "dc-expire");
    let mut req = tonic::Request::new(pb::PollDeviceFlowRequest {
        plugin: "device-auth".into(),
        device_code: code.device_code,
        wait: true,
    });
    req.set_timeout(Duration::from_secs(20));
    let done = a.poll_device_flow(req).await?.into_inner();
    assert_eq!(done.result, Some(FlowResult::Expired(true)));

    // No URL configured: the plugin's error names the problem.
    let t = Tarkd::start(
        vec![PluginFiles::device_auth(server.port)?],
        Options::default(),
    )?;
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let err = a.start_device_flow(plugin("device-auth")).await.failed();
    assert_eq!(err.code(), Code::Unknown);
    assert!(
        err.message().contains("DEVICE_AUTH_URL is not set"),
        "{err:?}"
    );
    Ok(())
}
