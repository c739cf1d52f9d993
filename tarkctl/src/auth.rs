//! `tarkctl auth <plugin> [status|login|logout]`: sign-in through auth plugins.
//! `login` shows the code and the URL, waits while tarkd polls the plugin, and
//! reports the outcome (never the token itself).

use std::time::Duration;

use serde_json::json;
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

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

pub async fn run(
    channel: Channel,
    plugin: String,
    action: &str,
    tenant: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = pb::auth_client::AuthClient::new(channel);
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
                FlowResult::Token(_) => (true, "signed in".to_owned()),
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
