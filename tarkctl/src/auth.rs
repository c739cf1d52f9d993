//! `tarkctl auth <plugin> [status|login|logout]`: sign-in through auth plugins.
//! `login` shows the code and the URL, waits while tarkd polls the plugin, and
//! reports the outcome (never the token itself).

use std::time::Duration;

use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

use anyhow::Context;

use crate::redirect;
use crate::render::print_json;
use crate::{request, status_error};

use pb::poll_device_flow_response::Result as FlowResult;

/// How long one waiting poll may take before tarkctl asks again.
const WAIT_STEP: Duration = Duration::from_secs(30);

fn status_name(s: pb::AuthStatus) -> &'static str {
    match s {
        pb::AuthStatus::Authenticated => "authenticated",
        pb::AuthStatus::NotAuthenticated => "not authenticated",
        pb::AuthStatus::Expired => "expired",
        pb::AuthStatus::NotRequired => "not required",
        pb::AuthStatus::Unspecified => "unknown",
    }
}

/// A manifest's PKCE sign-in: the URL to open, the redirect caught on its
/// loopback address, the code handed to tarkd (which exchanges it).
async fn pkce_login(
    c: &mut pb::auth_client::AuthClient<Channel>,
    plugin: &str,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let id = pb::PluginRef { id: plugin.into() };
    let login = c
        .start_o_auth_login(request(id, tenant)?)
        .await
        .map_err(status_error)?
        .into_inner();
    let (addr, path) = redirect::listen_address(&login.redirect_uri)?;
    // Listening before the URL is shown: the browser may come back at once.
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "listening on {addr} for the redirect to {}",
            login.redirect_uri
        )
    })?;
    if json {
        print_json(
            &json!({ "plugin": plugin, "authorize_url": login.authorize_url,
                            "redirect_uri": login.redirect_uri }),
        );
    } else {
        println!(
            "Open this URL in your browser to sign in to {plugin}:\n{}",
            login.authorize_url
        );
        println!("Waiting for the redirect to {} ...", login.redirect_uri);
    }
    // Flushed now: a caller reading the URL from a pipe must not wait for exit.
    std::io::Write::flush(&mut std::io::stdout())?;
    let wait = Duration::from_secs(login.expires_in.max(1));
    let (code, state) = match redirect::wait_for(listener, &path, wait).await? {
        redirect::Redirect::Code { code, state } => (code, state),
        redirect::Redirect::Error(e) => {
            anyhow::bail!("plugin {plugin}: the provider refused the sign-in: {e}")
        }
    };
    let done = c
        .complete_o_auth_login(request(
            pb::CompleteOAuthLoginRequest {
                plugin: plugin.into(),
                code,
                state,
            },
            tenant,
        )?)
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        print_json(&json!({ "plugin": plugin, "signed_in": true, "message": done.message }));
    } else {
        println!("{}", done.message);
    }
    Ok(())
}

pub async fn run(
    channel: Channel,
    plugin: String,
    action: &str,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = pb::auth_client::AuthClient::new(channel.clone());
    let id = || pb::PluginRef { id: plugin.clone() };
    match action {
        "status" => {
            let s = c
                .get_auth_status(request(id(), tenant)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let state = status_name(s.status());
            if json {
                print_json(
                    &json!({ "plugin": plugin, "display_name": s.display_name, "status": state }),
                );
            } else {
                println!("{} ({plugin}): {state}", s.display_name);
            }
        }
        "logout" => {
            let r = c
                .logout(request(id(), tenant)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&json!({ "plugin": plugin, "message": r.message }));
            } else {
                println!("{}", r.message);
            }
        }
        "login" => {
            let info = pb::plugins_client::PluginsClient::new(channel.clone())
                .get_plugin(request(id(), tenant)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if info.oauth_flow == "pkce" {
                return pkce_login(&mut c, &plugin, tenant, json).await;
            }
            let code = c
                .start_device_flow(request(id(), tenant)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(
                    &json!({ "user_code": code.user_code, "verification_url": code.verification_url,
                                    "expires_in": code.expires_in }),
                );
            } else {
                println!(
                    "Open {} and enter the code {} (valid {} s). Waiting...",
                    code.verification_url, code.user_code, code.expires_in
                );
            }
            let outcome = loop {
                let mut req = request(
                    pb::PollDeviceFlowRequest {
                        plugin: plugin.clone(),
                        device_code: code.device_code.clone(),
                        wait: true,
                    },
                    tenant,
                )?;
                req.set_timeout(WAIT_STEP);
                let r = c
                    .poll_device_flow(req)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match r.result {
                    Some(FlowResult::Pending(_)) | None => continue,
                    Some(done) => break done,
                }
            };
            let (ok, text) = match outcome {
                FlowResult::Token(_) | FlowResult::SignedIn(_) => (true, "signed in".to_owned()),
                FlowResult::Expired(_) => (false, "the code expired; run login again".to_owned()),
                FlowResult::Error(e) => (false, format!("sign-in failed: {e}")),
                FlowResult::Pending(_) => (false, "still pending".to_owned()),
            };
            if json {
                print_json(&json!({ "plugin": plugin, "signed_in": ok, "message": text }));
            } else {
                println!("{plugin}: {text}");
            }
            if !ok {
                anyhow::bail!("plugin {plugin}: {text}");
            }
        }
        other => anyhow::bail!("unknown auth action {other:?} (status, login or logout)"),
    }
    Ok(())
}
