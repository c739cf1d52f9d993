//! A manifest's `[oauth]` run by tarkd through real processes, against a real
//! provider on loopback: `tarkctl auth PLUGIN login` for PKCE (the URL, the
//! browser's redirect caught on the manifest's loopback redirect_uri, the code
//! exchanged by tarkd with the verifier), the plugin's `auth_process_tokens`,
//! credentials kept per tenant and read back by the plugin through `fs_read`
//! of its credentials_path, refresh when expired, the device flow, and the
//! refusals (secrets missing, a forged state, an endpoint outside the grant).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::servers::pkce::{CLIENT_ID, PkceServer};
use tark_tests::{Options, PluginFiles, Tarkd, for_tenant};
use tonic::Code;

const PLUGIN: &str = "oauth-provider";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes the plugin's secrets file (mode 0600, as tarkd requires).
fn secrets(t: &Tarkd, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = t.dir.path().join("state/secrets");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{PLUGIN}.env"));
    std::fs::write(&file, text)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// tarkd with the example pointed at `server`, and the home `~` means for it.
fn start(
    server: &PkceServer,
    redirect_port: u16,
    flow: &str,
) -> anyhow::Result<(Tarkd, tempfile::TempDir)> {
    let home = tempfile::tempdir()?;
    let t = Tarkd::start(
        vec![PluginFiles::oauth_provider(
            server.port,
            redirect_port,
            flow,
        )?],
        Options::config(&format!("[fs]\nhome = {:?}\n", home.path())),
    )?;
    secrets(&t, &format!("OAUTH_EXAMPLE_CLIENT_ID={CLIENT_ID}\n"))?;
    Ok((t, home))
}

/// One plain HTTP/1.1 GET (the user's browser): status and Location.
fn browser_get(url: &str) -> anyhow::Result<(u16, String)> {
    let url = url::Url::parse(url)?;
    let addr = (
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(80),
    );
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    write!(
        s,
        "GET {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .to_owned();
    Ok((status, location))
}

async fn status(t: &Tarkd, tenant: &str) -> anyhow::Result<pb::AuthStatus> {
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let r = a
        .get_auth_status(for_tenant(pb::PluginRef { id: PLUGIN.into() }, tenant))
        .await?
        .into_inner();
    Ok(r.status())
}

async fn credentials(t: &Tarkd, tenant: &str) -> anyhow::Result<serde_json::Value> {
    let r = t
        .providers()
        .await?
        .get_credentials(for_tenant(pb::PluginRef { id: PLUGIN.into() }, tenant))
        .await?
        .into_inner();
    Ok(serde_json::from_str(&r.credentials_json)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarkctl_signs_in_with_pkce_and_tarkd_keeps_and_refreshes_the_tokens() -> anyhow::Result<()>
{
    let server = PkceServer::start(0)?; // the first token is expired at once
    let redirect_port = free_port()?;
    let (t, home) = start(&server, redirect_port, "pkce")?;
    assert_eq!(
        status(&t, "default").await?,
        pb::AuthStatus::NotAuthenticated
    );
    let info = t.plugin_info(PLUGIN).await?;
    assert_eq!(info.oauth_flow, "pkce");

    let mut login = Command::new(tark_tests::binary("tarkctl")?)
        .arg("--socket")
        .arg(&t.socket)
        .args(["auth", PLUGIN, "login"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(
        login
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdout"))?,
    );
    let mut url = String::new();
    while !url.starts_with("http") {
        url.clear();
        if out.read_line(&mut url)? == 0 {
            anyhow::bail!("tarkctl printed no URL");
        }
    }
    let authorize = url::Url::parse(url.trim())?;
    let q = |k: &str| {
        authorize
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        q("client_id"),
        CLIENT_ID,
        "${{VAR}} filled from the secrets file"
    );
    assert_eq!(q("code_challenge_method"), "S256");
    assert!(q("code_verifier").is_empty(), "the verifier stays in tarkd");

    // The browser: the provider redirects it to tarkctl's loopback listener.
    let (code, location) = browser_get(authorize.as_str())?;
    assert_eq!(code, 302);
    assert!(location.starts_with(&format!("http://127.0.0.1:{redirect_port}/callback?code=")));
    let (code, _) = browser_get(&location)?;
    assert_eq!(code, 200);
    let mut rest = String::new();
    out.read_to_string(&mut rest)?;
    let done = login.wait()?;
    assert!(done.success(), "{rest}");
    assert!(
        rest.contains("plugin oauth-provider: signed in for tenant default"),
        "{rest}"
    );
    assert_eq!(
        server.exchanges(),
        1,
        "the provider checked the PKCE verifier"
    );

    // The plugin reads its credentials through fs_read of credentials_path:
    // tarkd answers from storage, refreshing the expired token first, once.
    assert_eq!(status(&t, "default").await?, pb::AuthStatus::Authenticated);
    let c = credentials(&t, "default").await?;
    assert_eq!(c["access_token"], "access-2");
    assert_eq!(
        c["account_id"], "acct-openid offline_access",
        "auth_process_tokens ran"
    );
    assert_eq!(server.refreshes(), 1);
    assert_eq!(
        credentials(&t, "default").await?["access_token"],
        "access-2"
    );
    assert_eq!(
        server.refreshes(),
        1,
        "fresh tokens are not refreshed again"
    );
    assert!(
        !home.path().join(".config").exists(),
        "nothing is written on the host"
    );

    // Another tenant has not signed in, and cannot see this one's tokens.
    assert_eq!(status(&t, "acme").await?, pb::AuthStatus::NotAuthenticated);
    let err = t
        .providers()
        .await?
        .get_credentials(for_tenant(pb::PluginRef { id: PLUGIN.into() }, "acme"))
        .await
        .err();
    assert!(err.is_some(), "acme has no credentials");

    // Signing out forgets what tarkd keeps: the plugin's next read of its
    // credentials_path finds nothing.
    let out = t.tarkctl(&["auth", PLUGIN, "logout"])?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        status(&t, "default").await?,
        pb::AuthStatus::NotAuthenticated
    );
    assert!(credentials(&t, "default").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_device_flow_is_run_by_tarkd() -> anyhow::Result<()> {
    let server = PkceServer::start(3600)?;
    let (t, _home) = start(&server, free_port()?, "device_flow")?;
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let code = a
        .start_device_flow(pb::PluginRef { id: PLUGIN.into() })
        .await?
        .into_inner();
    assert_eq!((code.user_code.as_str(), code.interval), ("ABCD-EFGH", 0));
    let done = a
        .poll_device_flow(pb::PollDeviceFlowRequest {
            plugin: PLUGIN.into(),
            device_code: code.device_code.clone(),
            wait: true,
        })
        .await?
        .into_inner();
    assert_eq!(
        done.result,
        Some(pb::poll_device_flow_response::Result::SignedIn(true)),
        "no token is handed out"
    );
    assert_eq!(status(&t, "default").await?, pb::AuthStatus::Authenticated);
    let c = credentials(&t, "default").await?;
    assert_eq!(
        (c["access_token"].as_str(), c["account_id"].as_str()),
        (Some("device-access"), Some("acct-device"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_refused_with_the_reason() -> anyhow::Result<()> {
    let server = PkceServer::start(3600)?;
    let (t, _home) = start(&server, free_port()?, "pkce")?;
    let mut a = pb::auth_client::AuthClient::new(t.channel().await?);
    let start = || pb::PluginRef { id: PLUGIN.into() };

    // A forged state is refused and the code is never exchanged.
    let login = a.start_o_auth_login(start()).await?.into_inner();
    let (_, location) = browser_get(&login.authorize_url)?;
    let redirect = url::Url::parse(&location)?;
    let code = redirect
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let forged = a
        .complete_o_auth_login(pb::CompleteOAuthLoginRequest {
            plugin: PLUGIN.into(),
            code: code.clone(),
            state: "forged".into(),
        })
        .await
        .err();
    assert!(
        forged
            .as_ref()
            .is_some_and(|s| s.code() == Code::FailedPrecondition
                && s.message().contains("state does not match")),
        "{forged:?}"
    );
    assert_eq!(server.exchanges(), 0);

    // Without the secret the manifest names, nothing starts.
    secrets(&t, "")?;
    let missing = a.start_o_auth_login(start()).await.err();
    assert!(
        missing.as_ref().is_some_and(|s| s
            .message()
            .contains("oauth.client_id needs ${OAUTH_EXAMPLE_CLIENT_ID}")),
        "{missing:?}"
    );

    // A token endpoint outside the plugin's approved http grant is refused.
    let elsewhere = PkceServer::start(3600)?;
    let mut files = PluginFiles::oauth_provider(server.port, free_port()?, "pkce")?;
    let manifest = String::from_utf8(files.files[0].1.clone())?.replace(
        &format!("token_url = \"http://127.0.0.1:{}/token\"", server.port),
        &format!("token_url = \"http://127.0.0.1:{}/token\"", elsewhere.port),
    );
    files.files[0].1 = manifest.into_bytes();
    let t2 = Tarkd::start(vec![files], Options::default())?;
    secrets(&t2, &format!("OAUTH_EXAMPLE_CLIENT_ID={CLIENT_ID}\n"))?;
    let mut a2 = pb::auth_client::AuthClient::new(t2.channel().await?);
    let login = a2.start_o_auth_login(start()).await?.into_inner();
    let (_, location) = browser_get(&login.authorize_url)?;
    let redirect = url::Url::parse(&location)?;
    let get = |k: &str| {
        redirect
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let denied = a2
        .complete_o_auth_login(pb::CompleteOAuthLoginRequest {
            plugin: PLUGIN.into(),
            code: get("code"),
            state: get("state"),
        })
        .await
        .err();
    assert!(
        denied
            .as_ref()
            .is_some_and(|s| s.code() == Code::PermissionDenied
                && s.message().contains(&elsewhere.port.to_string())),
        "{denied:?}"
    );
    assert_eq!(elsewhere.exchanges(), 0, "the request never left tarkd");
    Ok(())
}
