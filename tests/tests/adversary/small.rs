//! The smaller holes: an unsigned 3.0.0 replacing a signed 2.0.0 where
//! signatures are not required (after which the downgrade check protected
//! nothing); `HandleWebhook` with a body that is not UTF-8 answered
//! `INTERNAL`; `ListTools` for a tenant that requires signed plugins listed
//! tools it could not call; the metrics endpoint readable by any local uid
//! over loopback TCP, keeping series of removed plugins.

use std::io::{Read, Write};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, fixtures, for_tenant, invoke, output};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_version_does_not_replace_a_signed_one_unasked() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let work = tempfile::tempdir()?;
    let w = work.path();
    let v2 = fixtures::gadget(&w.join("v2"), "2.0.0", "g2", "")?;
    let v3 = fixtures::gadget(&w.join("v3"), "3.0.0", "g3", "")?;
    let key_file = w.join("k.key");
    let key = key_file.display().to_string();
    t.ctl_ok(&["keygen", "--out", &key])?;
    t.ctl_ok(&[
        "trust",
        "add",
        &key_file.with_extension("pub").display().to_string(),
    ])?;
    t.ctl_ok(&["plugin", "sign", "--key", &key, &v2])?;
    t.ctl_ok(&["plugin", "add", &v2, "--yes"])?;
    let refused = t.ctl(&["plugin", "update", "gadget", &v3, "--yes"])?;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("the installed 2.0.0 is signed")
                && e.contains("does not replace a signed one")),
        "{refused:?}"
    );
    let mut tools = t.tools().await?;
    output(tools.invoke_tool(invoke("g2-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    // An admin may, and it is on record.
    t.ctl_ok(&[
        "plugin",
        "update",
        "gadget",
        &v3,
        "--yes",
        "--allow-unsigned",
    ])?;
    output(tools.invoke_tool(invoke("g3-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    let audit = t.ctl_ok(&["audit", "--plugin", "gadget"])?;
    assert!(audit.contains("allow-unsigned"), "{audit}");
    Ok(())
}

/// `WebhookRequest` as a client may send it: `body` (field 6) as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawWebhook {
    #[prost(string, tag = "1")]
    plugin: String,
    #[prost(bytes = "vec", tag = "6")]
    body: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_that_is_not_utf8_is_the_callers_error() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![PluginFiles::echo_channel()?], Options::default())?;
    let mut grpc = tonic::client::Grpc::new(t.channel().await?);
    grpc.ready().await?;
    let path = http::uri::PathAndQuery::from_static("/tark.plugin.v1.Channels/HandleWebhook");
    let req = tonic::Request::new(RawWebhook {
        plugin: "echo-channel".into(),
        body: vec![b'o', b'k', 0xff, 0xfe],
    });
    let codec = tonic_prost::ProstCodec::<RawWebhook, pb::WebhookResponse>::default();
    let status = grpc.unary(req, path, codec).await.err();
    assert!(
        status.as_ref().is_some_and(
            |s| s.code() == Code::InvalidArgument && s.message().contains("does not decode")
        ),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_lists_only_tools_it_can_call() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config("[tenants.acme.policy]\nrequire_signed = true\n[tenants.default]\n"),
    )?;
    let mut tools = t.tools().await?;
    let list = |tenant: &'static str| {
        let mut tools = tools.clone();
        async move {
            tools
                .list_tools(for_tenant(pb::ListToolsRequest {}, tenant))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let default = list("default").await?;
    assert!(default.tools.iter().any(|t| t.name == "notes_save"));
    let acme = list("acme").await?;
    assert!(acme.tools.is_empty(), "{acme:?}");
    assert!(
        acme.errors
            .iter()
            .any(|e| e
                .contains("plugin notes is not signed, and tenant acme requires signed plugins")),
        "{:?}",
        acme.errors
    );
    let call = tools
        .invoke_tool(for_tenant(invoke("notes_list", "{}"), "acme"))
        .await
        .err();
    assert!(call.is_some_and(|s| s.code() == Code::FailedPrecondition));
    Ok(())
}

/// A GET of /metrics on `port`: the status line and the body.
fn scrape(port: u16, token: Option<&str>) -> anyhow::Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.lines().next().unwrap_or_default().to_owned();
    Ok((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_tcp_need_a_token_and_forget_removed_plugins() -> anyhow::Result<()> {
    let port = tark_tests::tls::free_port()?;
    // Plain TCP is refused at start unless asked for.
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tarkd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {:?}\nstate_dir = {:?}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.path().join("s.sock"),
            dir.path().join("state")
        ),
    )?;
    let out = std::process::Command::new(tark_tests::binary("tarkd")?)
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("metrics.bearer_token_file"),
        "{said}"
    );
    let token = "a-scrape-token-of-some-length";
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nbearer_token_file = {token_file:?}\n"
        )),
    )?;
    let (status, _) = scrape(port, None)?;
    assert!(status.contains("401"), "{status}");
    let (status, _) = scrape(port, Some("wrong-token-of-the-same-lengthx"))?;
    assert!(status.contains("401"), "{status}");
    let mut tools = t.tools().await?;
    output(tools.invoke_tool(invoke("notes_list", "{}")).await).map_err(anyhow::Error::msg)?;
    let (status, body) = scrape(port, Some(token))?;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("plugin=\"notes\""), "{body}");
    t.ctl_ok(&["plugin", "remove", "notes"])?;
    let (_, body) = scrape(port, Some(token))?;
    assert!(
        !body.contains("plugin=\"notes\""),
        "a removed plugin's series: {body}"
    );
    Ok(())
}
